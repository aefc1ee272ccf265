// Mounted tests of the layerctl stack commands, through the binary with a
// store in a fresh temporary directory: create / mount / ps / umount / rm,
// volume, bind and tmpfs mounts inside a stack, ps -s sizes checked against
// sums computed here, commit (the new layer reproduces the stack's tree), the
// error messages and exit codes, and recovery from a killed daemon.
#include <doctest/doctest.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <unistd.h>

#include <chrono>
#include <nlohmann/json.hpp>
#include <set>
#include <thread>

#include "tests/support/mount.h"
#include "tests/support/tmptree.h"
#include "tests/support/tree.h"

using namespace layerfs::test;
using json = nlohmann::json;

namespace {

std::string trim(std::string s) {
  while (!s.empty() && (s.back() == '\n' || s.back() == ' ')) s.pop_back();
  return s;
}

// layerctl with --root in the test's temporary directory. Its destructor
// unmounts every stack it mounted (and TempDir detaches anything left).
class Ctl {
 public:
  explicit Ctl(const TempDir& t) : root_(t / "store") {}
  ~Ctl() {
    for (const auto& mp : mounted_) {
      if (is_mounted(mp)) run({"umount", mp});
      if (is_mounted(mp)) unmount_path(mp);
    }
  }
  Ctl(const Ctl&) = delete;
  Ctl& operator=(const Ctl&) = delete;

  const std::string& root() const { return root_; }

  CmdResult run(std::vector<std::string> args) {
    std::vector<std::string> argv = {LAYERCTL_BINARY, "--root", root_};
    argv.insert(argv.end(), args.begin(), args.end());
    return run_command(argv, std::chrono::seconds(60));
  }
  // Runs a command that must succeed; returns its stdout without the last newline.
  std::string ok(std::vector<std::string> args) {
    CmdResult r = run(args);
    std::string cmd;
    for (const auto& a : args) cmd += " " + a;
    REQUIRE_MESSAGE(r.exit_code == 0, "layerctl" << cmd << ": " << r.describe());
    return trim(r.out);
  }
  // `mount NAME MP ARGS...`, remembered for cleanup.
  void mount(const std::string& name, const std::string& mp,
             const std::vector<std::string>& extra = {}) {
    std::vector<std::string> args = {"mount", name, mp};
    args.insert(args.end(), extra.begin(), extra.end());
    mounted_.push_back(mp);
    ok(args);
  }
  // Expects failure with `code`, and `message` in stderr.
  void fails(std::vector<std::string> args, int code, const std::string& message) {
    CmdResult r = run(args);
    std::string cmd;
    for (const auto& a : args) cmd += " " + a;
    CAPTURE(cmd);
    CHECK_MESSAGE(r.exit_code == code, r.describe());
    CHECK_MESSAGE(r.err.find(message) != std::string::npos, r.describe());
  }
  json ps_json(const std::vector<std::string>& flags) {
    std::vector<std::string> args = {"ps", "--format", "json"};
    args.insert(args.end(), flags.begin(), flags.end());
    std::string out = ok(args);
    json rows = json::array();
    size_t start = 0;
    while (start < out.size()) {
      size_t end = out.find('\n', start);
      if (end == std::string::npos) end = out.size();
      if (end > start) rows.push_back(json::parse(out.substr(start, end - start)));
      start = end + 1;
    }
    return rows;
  }

 private:
  std::string root_;
  std::vector<std::string> mounted_;
};

// Mounts below (or at) `mp` in /proc/self/mountinfo.
std::vector<MountEntry> mounts_at_or_below(const std::string& mp) {
  std::vector<MountEntry> out;
  for (const auto& m : read_mountinfo()) {
    if (m.mountpoint == mp || m.mountpoint.rfind(mp + "/", 0) == 0) out.push_back(m);
  }
  return out;
}

std::optional<MountEntry> mount_at(const std::string& path) {
  std::optional<MountEntry> found;
  for (const auto& m : read_mountinfo()) {
    if (m.mountpoint == path) found = m;
  }
  return found;
}

// Docker's classic size of a tree: st_size of non-directories, each inode once.
int64_t classic_size(const std::string& dir) {
  int64_t total = 0;
  std::set<std::pair<dev_t, ino_t>> seen;
  for (const auto& [rel, n] : scan_tree(dir, {.content = false, .xattrs = false})) {
    if (S_ISDIR(n.mode) || n.size <= 0) continue;
    if (!seen.insert({n.dev, n.ino}).second) continue;
    total += n.size;
  }
  return total;
}

bool is_dir_path(const std::string& p) {
  auto st = try_lstat(p);
  return st && S_ISDIR(st->st_mode);
}

// A base layer with a bit of everything the commit test changes.
void build_base(const std::string& root) {
  build(root, {
                  dir("etc"),
                  file("etc/hosts", "127.0.0.1 localhost\n"),
                  file("etc/passwd", "root:x:0:0\n", 0644),
                  file("etc/gone", "to be deleted\n"),
                  dir("etc/conf.d"),
                  file("etc/conf.d/a.conf", "a=1\n"),
                  file("etc/conf.d/b.conf", "b=2\n"),
                  dir("usr/lib/app"),
                  file("usr/lib/app/main", "binary\n", 0755),
                  file("usr/lib/app/data", "payload\n"),
                  dir("usr/lib/app/sub"),
                  file("usr/lib/app/sub/deep", "deep\n"),
                  file("bin/tool", "tool v1\n", 0755),
                  hardlink("bin/tool-alias", "bin/tool"),
                  file("bin/shared", "shared\n"),
                  hardlink("bin/shared2", "bin/shared"),
                  sym("bin/link", "tool"),
                  sym("bin/oldlink", "tool"),
                  file("var/log/keep.log", "log\n"),
                  file("opt/mode-only", "same content\n", 0644),
              });
}

}  // namespace

TEST_CASE("layerctl stacks: stacks of one name in two stores never meet") {
  TempDir t1, t2;
  Ctl a(t1), b(t2);
  for (Ctl* c : {&a, &b}) {
    const std::string src = (c == &a ? t1 : t2).mkdir("src");
    build(src, {file(c == &a ? "from-a" : "from-b", "x\n")});
    c->ok({"layer", "import", src, "--name", "base"});
    c->ok({"create", "web", "base"});
  }
  const std::string mpa = t1.mkdir("mnt"), mpb = t2.mkdir("mnt");
  a.mount("web", mpa);
  b.mount("web", mpb);  // not "already mounted": that is the other store's web
  CHECK(exists(mpa + "/from-a"));
  CHECK(exists(mpb + "/from-b"));
  json pa = a.ps_json({}), pb = b.ps_json({});
  REQUIRE(pa.size() == 1);
  REQUIRE(pb.size() == 1);
  CHECK(pa[0]["Mountpoint"] == mpa);
  CHECK(pb[0]["Mountpoint"] == mpb);
  a.fails({"umount", mpb}, 1, "no stack is mounted at " + mpb);
  a.ok({"umount", "web"});
  CHECK_FALSE(mount_at(mpa).has_value());
  CHECK(mount_at(mpb).has_value());
  b.ok({"umount", mpb});
  CHECK_FALSE(mount_at(mpb).has_value());
}

TEST_CASE("layerctl stacks: create, mount, ps, umount and rm") {
  TempDir t;
  Ctl ctl(t);
  const std::string src = t.mkdir("src");
  build(src, {file("hello.txt", "hello\n"), file("dir/inner", "inner\n")});
  const std::string id = ctl.ok({"layer", "import", src, "--name", "base"});
  CHECK(id.rfind("sha256:", 0) == 0);
  CHECK(ctl.ok({"create", "web", "base"}) == "web");

  // Created, not mounted: only ps -a shows it.
  CHECK(ctl.ps_json({}).empty());
  json all = ctl.ps_json({"-a"});
  REQUIRE(all.size() == 1);
  CHECK(all[0]["Name"] == "web");
  CHECK(all[0]["Layers"] == json::array({id}));
  CHECK(all[0]["Mountpoint"] == "");
  std::string table = ctl.ok({"ps", "-a"});
  CHECK(table.rfind("NAME      LAYERS    MOUNTPOINT   CREATED", 0) == 0);
  CHECK(table.find("\nweb       1                      ") != std::string::npos);
  CHECK(ctl.ok({"ps", "-a", "-q"}) == "web");

  const std::string mp = t.mkdir("mnt");
  ctl.mount("web", mp);
  auto m = mount_at(mp);
  REQUIRE(m.has_value());
  CHECK(m->fstype == "fuse.layerfs");
  CHECK(m->source == "layerctl:web@" + ctl.root());
  CHECK(read_file(mp + "/hello.txt") == "hello\n");
  CHECK(read_file(mp + "/dir/inner") == "inner\n");
  json mounted = ctl.ps_json({});
  REQUIRE(mounted.size() == 1);
  CHECK(mounted[0]["Mountpoint"] == mp);
  CHECK(ctl.ok({"ps"}).find(mp) != std::string::npos);

  write_file(mp + "/new.txt", "new");
  ctl.ok({"umount", "web"});
  CHECK_FALSE(is_mounted(mp));
  CHECK(ctl.ps_json({}).empty());
  // The change is in the writable layer, and there again at the next mount.
  CHECK(read_file(ctl.root() + "/stacks/web/upper/new.txt") == "new");
  ctl.mount("web", mp);
  CHECK(read_file(mp + "/new.txt") == "new");
  ctl.ok({"umount", mp});
  CHECK_FALSE(is_mounted(mp));

  CHECK(ctl.ok({"rm", "web"}) == "web");
  CHECK(ctl.ps_json({"-a"}).empty());
  CHECK_FALSE(exists(ctl.root() + "/stacks/web"));
  // The layer is free to go again.
  ctl.ok({"layer", "rm", "base"});
}

TEST_CASE("layerctl stacks: errors, messages and exit codes") {
  TempDir t;
  Ctl ctl(t);
  const std::string src = t.mkdir("src");
  build(src, {file("f", "x")});
  ctl.ok({"layer", "import", src, "--name", "base"});
  const std::string mp = t.mkdir("mnt");
  const std::string mp2 = t.mkdir("mnt2");

  ctl.fails({"create", "web"}, 1, "LAYER is required");
  ctl.fails({"create", "web", "nope"}, 1, "Error: No such layer: nope");
  ctl.fails({"create", "bad/name", "base"}, 1, "Invalid stack name (bad/name)");
  ctl.ok({"create", "web", "base"});
  ctl.fails({"create", "web", "base"}, 1, "Error: the stack name web is already in use");
  ctl.fails({"mount", "ghost", mp}, 1, "Error: No such stack: ghost");
  ctl.fails({"umount", "ghost"}, 1, "Error: No such stack: ghost");
  ctl.fails({"rm", "ghost"}, 1, "Error: No such stack: ghost");
  ctl.fails({"commit", "ghost"}, 1, "Error: No such stack: ghost");
  ctl.fails({"rm"}, 1, "NAME is required");
  ctl.fails({"mount", "web"}, 1, "MOUNTPOINT is required");
  ctl.fails({"umount", "web"}, 1, "Error: stack web is not mounted");
  ctl.fails({"ps", "--format", "yaml"}, 125, "yaml");

  // Bad mount specs: Docker's messages, status 125, nothing mounted.
  ctl.fails({"mount", "web", mp, "-v", "a:/b:c:d"}, 125,
            "Error: invalid volume specification: 'a:/b:c:d'");
  ctl.fails({"mount", "web", mp, "-v", "vol:/x:rx"}, 125, "Error: invalid mode: rx");
  ctl.fails({"mount", "web", mp, "--mount", "type=volume,dst=/x,color=red"}, 125,
            "Error: unknown option 'color' in 'color=red'");
  ctl.fails({"mount", "web", mp, "--mount", "type=bind,src=" + t.path() + "/none,dst=/x"}, 125,
            "Error: invalid mount config for type \"bind\": bind source path does not exist: " +
                t.path() + "/none");
  ctl.fails({"mount", "web", mp, "--tmpfs", "/t:color=red"}, 125,
            "Error: invalid tmpfs option [\"color\" \"red\"]");
  ctl.fails({"mount", "web", mp, "-v", "/a", "--tmpfs", "/a"}, 125,
            "Error: Duplicate mount point: /a");
  CHECK(mounts_at_or_below(mp).empty());

  ctl.mount("web", mp);
  ctl.fails({"mount", "web", mp2}, 1, "Error: stack web is already mounted at " + mp);
  ctl.fails({"rm", "web"}, 1, "Error: stack web is mounted at " + mp + "; umount it first");
  ctl.fails({"layer", "rm", "base"}, 1, "web");
  CHECK(is_mounted(mp));
  {
    // Something open inside: not unmounted, and said so.
    Fd busy = open_fd(mp + "/f", O_RDONLY);
    ctl.fails({"umount", "web"}, 1, "Error: cannot unmount " + mp + ": target is busy");
    CHECK(is_mounted(mp));
    CHECK(ctl.ps_json({})[0]["Mountpoint"] == mp);
  }
  ctl.ok({"umount", "web"});
  ctl.ok({"create", "db", "base"});
  // rm of several names: the others go, the errors are reported together.
  ctl.fails({"rm", "ghost", "web", "db"}, 1, "Error: No such stack: ghost");
  CHECK(ctl.ps_json({"-a"}).empty());
}

TEST_CASE("layerctl stacks: -v named, anonymous and bind mounts") {
  TempDir t;
  Ctl ctl(t);
  const std::string src = t.mkdir("src");
  build(src, {file("etc/motd", "hi\n")});
  ctl.ok({"layer", "import", src, "--name", "base"});
  ctl.ok({"create", "web", "base"});
  const std::string mp = t.mkdir("mnt");
  const std::string host = t.mkdir("host");
  write_file(host + "/from-host", "host data");
  const std::string created = t / "created-by-v";  // -v makes a missing bind source

  ctl.mount(
      "web", mp,
      {"-v", "named:/data", "-v", "/anon", "-v", host + ":/host:ro", "-v", created + ":/made"});
  // The named volume was created, and what is written lands in its _data.
  const std::string data = ctl.root() + "/volumes/named/_data";
  REQUIRE(exists(data));
  write_file(mp + "/data/file", "in the volume");
  CHECK(read_file(data + "/file") == "in the volume");
  // The bind is read-only.
  CHECK(read_file(mp + "/host/from-host") == "host data");
  CHECK(sys::write(mp + "/host/new", "x") == EROFS);
  CHECK(sys::unlink(mp + "/host/from-host") == EROFS);
  CHECK(is_dir_path(created));
  write_file(mp + "/made/x", "x");
  CHECK(read_file(created + "/x") == "x");

  // The anonymous volume: a 64-hex name, recorded as the stack's.
  json row = ctl.ps_json({})[0];
  REQUIRE(row["Volumes"].size() == 2);
  CHECK(row["Volumes"][0] == "named");
  const std::string anon = row["Volumes"][1];
  CHECK(anon.size() == 64);
  write_file(mp + "/anon/a", "anonymous");
  CHECK(read_file(ctl.root() + "/volumes/" + anon + "/_data/a") == "anonymous");

  // The mount targets were made inside the stack.
  CHECK(is_dir_path(ctl.root() + "/stacks/web/upper/data"));
  CHECK(mounts_at_or_below(mp).size() == 5);
  ctl.ok({"umount", "web"});
  CHECK(mounts_at_or_below(mp).empty());

  // Mounted again with the same -v /anon: the same anonymous volume.
  ctl.mount("web", mp, {"-v", "/anon"});
  CHECK(read_file(mp + "/anon/a") == "anonymous");
  ctl.ok({"umount", mp});

  // rm without -v keeps the anonymous volume; the named one always stays.
  ctl.ok({"rm", "web"});
  CHECK(read_file(data + "/file") == "in the volume");
  CHECK(exists(ctl.root() + "/volumes/" + anon + "/_data/a"));

  // rm -v removes a stack's anonymous volumes, never named ones.
  ctl.ok({"create", "db", "base"});
  ctl.mount("db", mp, {"-v", "/scratch", "-v", "named:/data"});
  const std::string anon2 = ctl.ps_json({})[0]["Volumes"][0];
  CHECK(anon2.size() == 64);
  CHECK(read_file(mp + "/data/file") == "in the volume");
  ctl.ok({"umount", "db"});
  ctl.ok({"rm", "-v", "db"});
  CHECK_FALSE(exists(ctl.root() + "/volumes/" + anon2));
  CHECK(read_file(data + "/file") == "in the volume");
}

TEST_CASE("layerctl stacks: --mount of each type, readonly, and --tmpfs with a size") {
  TempDir t;
  Ctl ctl(t);
  const std::string src = t.mkdir("src");
  build(src, {file("etc/motd", "hi\n"), file("etc/single", "original\n")});
  ctl.ok({"layer", "import", src, "--name", "base"});
  ctl.ok({"create", "web", "base"});
  const std::string mp = t.mkdir("mnt");
  const std::string host = t.mkdir("host");
  write_file(host + "/h", "host");
  write_file(t / "one-file", "a file bound over another\n");

  ctl.mount(
      "web", mp,
      {"--mount", "type=bind,source=" + host + ",target=/b,readonly", "--mount",
       "type=bind,src=" + (t / "one-file") + ",dst=/etc/single", "--mount",
       "type=volume,src=vol,dst=/v,ro", "--mount", "type=volume,target=/va", "--mount",
       "type=tmpfs,dst=/t,tmpfs-size=2m,tmpfs-mode=0700", "--tmpfs", "/run:size=1m", "--mount",
       "type=volume,src=tv,dst=/tv,volume-label=team=a,volume-opt=type=tmpfs,"
       "volume-opt=device=tmpfs,\"volume-opt=o=size=1m,mode=0750\""});
  // A volume created by --mount with options: a tmpfs volume, labelled.
  auto tv = mount_at(mp + "/tv");
  REQUIRE(tv.has_value());
  CHECK(tv->fstype == "tmpfs");
  CHECK((lstat_path(mp + "/tv").st_mode & 07777) == 0750);
  CHECK(ctl.ok({"volume", "ls", "-q", "--filter", "label=team=a"}) == "tv");
  CHECK(read_file(mp + "/b/h") == "host");
  CHECK(sys::write(mp + "/b/x", "x") == EROFS);
  CHECK(read_file(mp + "/etc/single") == "a file bound over another\n");
  CHECK(sys::write(mp + "/v/x", "x") == EROFS);
  CHECK(exists(ctl.root() + "/volumes/vol/_data"));
  write_file(mp + "/va/x", "x");

  auto t_mount = mount_at(mp + "/t");
  REQUIRE(t_mount.has_value());
  CHECK(t_mount->fstype == "tmpfs");
  CHECK((lstat_path(mp + "/t").st_mode & 07777) == 0700);
  struct statvfs sv;
  REQUIRE(::statvfs((mp + "/t").c_str(), &sv) == 0);
  CHECK(sv.f_blocks * sv.f_frsize == 2 * 1024 * 1024);
  auto run_mount = mount_at(mp + "/run");
  REQUIRE(run_mount.has_value());
  CHECK(run_mount->fstype == "tmpfs");
  CHECK((lstat_path(mp + "/run").st_mode & 07777) == 01777);
  REQUIRE(::statvfs((mp + "/run").c_str(), &sv) == 0);
  CHECK(sv.f_blocks * sv.f_frsize == 1024 * 1024);
  // Docker's defaults for tmpfs mounts.
  for (const char* opt : {"nosuid", "nodev", "noexec"}) {
    CAPTURE(opt);
    CHECK(("," + run_mount->options + ",").find(std::string(",") + opt + ",") != std::string::npos);
  }
  write_file(mp + "/run/pid", "1");

  // Unmounting by mountpoint removes every mount, innermost first.
  CHECK(mounts_at_or_below(mp).size() == 8);
  ctl.ok({"umount", mp});
  CHECK(mounts_at_or_below(mp).empty());
  // tmpfs content is gone with it; the stack's own file under the bind is intact.
  ctl.mount("web", mp);
  CHECK(list_dir(mp + "/run").empty());
  CHECK(read_file(mp + "/etc/single") == "original\n");
  ctl.ok({"umount", "web"});
}

TEST_CASE("layerctl stacks: ps -s shows SIZE as docker ps -s does") {
  TempDir t;
  Ctl ctl(t);
  const std::string l1 = t.mkdir("l1");
  const std::string l2 = t.mkdir("l2");
  // 7000 + 740 bytes (the hard link once, the directory nothing) + a symlink of 4.
  build(l1, {file("big", pattern(7000)), file("small", pattern(740, 2)),
             hardlink("small-again", "small"), sym("lnk", "big!")});
  build(l2, {file("etc/conf", std::string(5, 'c'))});
  const int64_t layers = classic_size(l1) + classic_size(l2);
  REQUIRE(layers == 7000 + 740 + 4 + 5);
  ctl.ok({"layer", "import", l1, "--name", "one"});
  ctl.ok({"layer", "import", l2, "--name", "two"});
  ctl.ok({"create", "web", "one", "two"});
  const std::string mp = t.mkdir("mnt");
  ctl.mount("web", mp);

  json row = ctl.ps_json({"-s"})[0];
  CHECK(row["SizeRw"] == 0);
  CHECK(row["SizeRootFs"] == layers);
  CHECK(row["Size"] == "0B (virtual 7.75kB)");

  write_file(mp + "/out.txt", "hello");  // 5 bytes, as in Docker's documentation
  // The daemon publishes its count at most once a second.
  std::string size;
  for (int i = 0; i < 50; ++i) {
    size = ctl.ps_json({"-s"})[0]["Size"];
    if (size != "0B (virtual 7.75kB)") break;
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  CHECK(size == "5B (virtual 7.75kB)");
  row = ctl.ps_json({"-s"})[0];
  CHECK(row["SizeRw"] == 5);
  CHECK(row["SizeRootFs"] == layers + 5);
  std::string table = ctl.ok({"ps", "-s"});
  CHECK(table.substr(0, table.find('\n')).find("SIZE") != std::string::npos);
  CHECK(table.size() >= std::string("5B (virtual 7.75kB)").size());
  CHECK(table.substr(table.size() - 19) == "5B (virtual 7.75kB)");

  // Unmounted, the final count is kept.
  ctl.ok({"umount", "web"});
  row = ctl.ps_json({"-a", "-s"})[0];
  CHECK(row["SizeRw"] == 5);
  CHECK(row["Size"] == "5B (virtual 7.75kB)");
}

TEST_CASE("layerctl stacks: commit gives a layer that reproduces the stack's tree") {
  TempDir t;
  Ctl ctl(t);
  const std::string base = t.mkdir("base");
  const std::string top = t.mkdir("top");
  build_base(base);
  // A second layer with whiteouts of its own and an opaque directory.
  build(top,
        {wh_file("var/log/keep.log"), file("var/log/new.log", "new log\n"),
         opaque("usr/lib/app/sub", OpaqueForm::kWhFile), file("usr/lib/app/sub/fresh", "f\n")});
  ctl.ok({"layer", "import", base, "--name", "base"});
  ctl.ok({"layer", "import", top, "--name", "top"});
  ctl.ok({"create", "web", "base", "top"});
  const std::string mp = t.mkdir("mnt");
  ctl.mount("web", mp, {"-v", "vol:/etc/vol", "--tmpfs", "/run"});
  write_file(mp + "/etc/vol/in-volume", "not part of the stack");
  write_file(mp + "/run/pid", "not part of the stack");

  // Changes of every kind.
  write_file(mp + "/etc/hosts", "10.0.0.1 changed\n");   // modified
  write_file(mp + "/etc/new-file", "brand new\n");       // added
  REQUIRE(sys::unlink(mp + "/etc/gone") == 0);           // deleted
  REQUIRE(sys::unlink(mp + "/etc/conf.d/a.conf") == 0);  // rmdir + mkdir:
  REQUIRE(sys::unlink(mp + "/etc/conf.d/b.conf") == 0);  // an opaque dir
  REQUIRE(sys::rmdir(mp + "/etc/conf.d") == 0);
  REQUIRE(sys::mkdir(mp + "/etc/conf.d", 0750) == 0);
  write_file(mp + "/etc/conf.d/b.conf", "b=3\n");
  REQUIRE(sys::rename(mp + "/usr/lib/app", mp + "/usr/lib/application") == 0);  // lower dir
  append_file(mp + "/bin/tool", "patched\n");  // one name of a lower hard link
  REQUIRE(sys::link(mp + "/bin/shared", mp + "/bin/shared3") == 0);  // a new name of one
  REQUIRE(sys::symlink("../etc/hosts", mp + "/bin/hosts-link") == 0);
  REQUIRE(sys::unlink(mp + "/bin/oldlink") == 0);
  REQUIRE(sys::symlink("elsewhere", mp + "/bin/oldlink") == 0);  // a symlink replaced
  REQUIRE(sys::chmod(mp + "/opt/mode-only", 0600) == 0);         // metadata only
  REQUIRE(sys::setxattr(mp + "/etc/passwd", "user.note", "x") == 0);
  REQUIRE(sys::unlink(mp + "/var/log/new.log") == 0);  // from the top layer
  REQUIRE(sys::mkdir(mp + "/var/log/new.log") == 0);   // replaced by a directory
  write_file(mp + "/usr/lib/application/sub/later", "later\n");

  CompareOptions cmp;  // modes, owners, xattrs, hard links, devices; not times
  cmp.ignore = {"etc/vol", "run"};
  const Snapshot before = scan_tree(mp);

  // Committed while mounted.
  const std::string id = ctl.ok({"commit", "web", "--name", "changes"});
  REQUIRE(id.rfind("sha256:", 0) == 0);
  CHECK(diff_trees(before, scan_tree(mp), cmp, "before commit", "after commit") == "");
  // The volume's and the tmpfs's content are not part of the layer.
  CHECK(ctl.run({"layer", "export", "changes", "-o", t / "changes.tar"}).exit_code == 0);
  CmdResult listing = run_command({"/usr/bin/tar", "tf", t / "changes.tar"});
  CHECK(listing.out.find("in-volume") == std::string::npos);
  CHECK(listing.out.find("run/pid") == std::string::npos);
  CHECK(listing.out.find("etc/new-file") != std::string::npos);
  CHECK(listing.out.find("etc/.wh.gone") != std::string::npos);
  CHECK(listing.out.find("usr/lib/.wh.app") != std::string::npos);
  CHECK(listing.out.find("etc/conf.d/.wh..wh..opq") != std::string::npos);
  // Both names of the changed hard-linked file, though only one was written.
  CHECK(listing.out.find("bin/tool\n") != std::string::npos);
  CHECK(listing.out.find("bin/tool-alias\n") != std::string::npos);
  CHECK(listing.out.find("etc/hosts\n") != std::string::npos);
  CHECK(listing.out.find("bin/shared3\n") != std::string::npos);
  CHECK(listing.out.find("opt/mode-only\n") != std::string::npos);
  // Unchanged files are not in it.
  CHECK(listing.out.find("bin/link\n") == std::string::npos);
  CHECK(listing.out.find("etc/conf.d/a.conf") == std::string::npos);

  // A stack of the old layers plus the new one shows the same tree.
  ctl.ok({"create", "copy", "base", "top", "changes"});
  const std::string mp2 = t.mkdir("mnt2");
  ctl.mount("copy", mp2);
  CHECK(diff_trees(before, scan_tree(mp2), cmp, "stack", "new stack") == "");
  ctl.ok({"umount", "copy"});
  ctl.ok({"umount", "web"});

  // ... and after a remount of both.
  ctl.mount("copy", mp2);
  ctl.mount("web", mp);
  CHECK(diff_trees(before, scan_tree(mp), cmp, "stack", "stack remounted") == "");
  CHECK(diff_trees(before, scan_tree(mp2), cmp, "stack", "new stack remounted") == "");
  ctl.ok({"umount", "copy"});
  ctl.ok({"umount", "web"});

  // Committed unmounted: the same changes give the same layer (same diffID).
  CHECK(ctl.ok({"commit", "web"}) == id);
}

TEST_CASE("layerctl stacks: a stack whose daemon was killed can be unmounted and mounted again") {
  TempDir t;
  Ctl ctl(t);
  const std::string src = t.mkdir("src");
  build(src, {file("f", "content\n")});
  ctl.ok({"layer", "import", src, "--name", "base"});
  ctl.ok({"create", "web", "base"});
  const std::string mp = t.mkdir("mnt");
  ctl.mount("web", mp, {"-v", "vol:/data", "--tmpfs", "/run"});
  write_file(mp + "/kept", "kept\n");
  auto daemons = find_daemons(mp);
  REQUIRE(daemons.size() == 1);
  REQUIRE(::kill(daemons[0], SIGKILL) == 0);
  for (int i = 0; i < 100 && ::kill(daemons[0], 0) == 0; ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  CHECK(sys::lstat(mp + "/f") == ENOTCONN);

  ctl.ok({"umount", "web"});
  CHECK(mounts_at_or_below(mp).empty());
  ctl.mount("web", mp);
  CHECK(read_file(mp + "/f") == "content\n");
  CHECK(read_file(mp + "/kept") == "kept\n");
  ctl.ok({"umount", "web"});
  CHECK(mounts_at_or_below(mp).empty());
}
