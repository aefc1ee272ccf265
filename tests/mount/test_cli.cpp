// Mounted tests: the layerfs command line. Background mode returns only once the mount is usable;
// unmounting ends the daemon; /proc/mounts shows SOURCE MOUNTPOINT fuse.layerfs; every problem
// found before mounting gives a message on stderr, a non-zero exit and no mount; the usual
// options are accepted and reach the kernel mount.
#include <doctest/doctest.h>
#include <fcntl.h>
#include <signal.h>
#include <sys/mount.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <fstream>
#include <sstream>
#include <thread>

#include "tests/support/scenario.h"

using namespace layerfs::test;

namespace {

// The /proc/mounts line for `mountpoint`, split in fields.
std::vector<std::string> proc_mounts_line(const std::string& mountpoint) {
  std::ifstream in("/proc/mounts");
  std::string line;
  std::vector<std::string> found;
  while (std::getline(in, line)) {
    std::istringstream ls(line);
    std::vector<std::string> f;
    std::string w;
    while (ls >> w) f.push_back(w);
    if (f.size() >= 3 && f[1] == mountpoint) found = f;
  }
  return found;
}

bool has_option(const std::string& list, const std::string& opt) {
  std::string padded = "," + list + ",";
  return padded.find("," + opt + ",") != std::string::npos;
}

bool mentions_any(const std::string& text, const std::vector<std::string>& words) {
  for (const auto& w : words) {
    if (text.find(w) != std::string::npos) return true;
  }
  return false;
}

// Runs layerfs expecting it to refuse before mounting.
void expect_refusal(const std::string& what, const std::vector<std::string>& args,
                    const std::string& mountpoint, const std::vector<std::string>& named,
                    const std::vector<std::string>& prefix = {}) {
  CAPTURE(what);
  CmdResult r;
  if (prefix.empty()) {
    r = run_layerfs(args);
  } else {
    std::vector<std::string> argv = prefix;
    argv.push_back(layerfs_binary());
    argv.insert(argv.end(), args.begin(), args.end());
    r = run_command(argv);
  }
  const std::string result = r.describe();
  CAPTURE(result);
  CHECK_FALSE(r.timed_out);
  CHECK(r.exit_code != 0);
  CHECK_MESSAGE(!r.err.empty(), "no message on stderr");
  if (!named.empty()) {
    CHECK_MESSAGE(mentions_any(r.err, named), "stderr names none of the problem's parts");
  }
  auto m = find_mount(mountpoint);
  CHECK_MESSAGE(!(m && m->fstype == "fuse.layerfs"), "something was mounted anyway");
  if (m && m->fstype == "fuse.layerfs") unmount_path(mountpoint);
  CHECK(find_daemons(mountpoint).empty());
}

}  // namespace

TEST_CASE("cli: without -f the command returns once the mount is usable") {
  LAYERFS_ONLY("layerfs command line");
  Scenario s({.lowers = {{file("hello", "world")}}, .mount = false});
  BackgroundMount bg(s.mnt(), s.spec());
  CHECK_MESSAGE(bg.command().exit_code == 0, bg.command().describe());
  CHECK_MESSAGE(bg.mounted_on_return(), "the command returned before the mount was there");
  // Usable at once, served by a daemon that outlived the command.
  CHECK(read_file(s.mnt("hello")) == "world");
  CHECK(bg.daemon_pid() > 0);
  CHECK(bg.daemon_pid() != ::getpid());
  CHECK_MESSAGE(bg.unmount(), bg.problem());
  CHECK_FALSE(is_mounted(s.mnt()));
}

TEST_CASE("cli: unmounting ends a foreground daemon cleanly") {
  LAYERFS_ONLY("layerfs command line");
  Scenario s({.lowers = {{file("f", "x")}}});
  CHECK(read_file(s.mnt("f")) == "x");
  pid_t pid = s.mount().daemon_pid();
  CHECK(pid > 0);
  CHECK_MESSAGE(s.mount().unmount(), s.mount().problem());
  CHECK(s.mount().exit_status() == 0);
  CHECK_FALSE(is_mounted(s.mnt()));
}

TEST_CASE("cli: SIGTERM unmounts, ends the daemon cleanly and keeps what was written") {
  LAYERFS_ONLY("layerfs command line");
  Scenario s({.lowers = {{file("f", "lower")}}});
  REQUIRE(sys::write(s.mnt("f"), "+", O_WRONLY | O_APPEND) == 0);
  REQUIRE(sys::write(s.mnt("new"), "fresh") == 0);
  pid_t pid = s.mount().daemon_pid();
  REQUIRE(pid > 0);
  ::kill(pid, SIGTERM);
  // The daemon takes its mount away by itself.
  bool gone = false;
  for (int i = 0; i < 500 && !gone; ++i) {
    gone = !is_mounted(s.mnt());
    if (!gone) ::usleep(10000);
  }
  CHECK_MESSAGE(gone, "the mount was still there 5 s after SIGTERM");
  CHECK(s.mount().kill_daemon(SIGTERM));
  CHECK(s.mount().exit_status() == 0);
  s.unmount();  // nothing left to do but forget the mount
  s.do_mount();
  CHECK(read_file(s.mnt("f")) == "lower+");
  CHECK(read_file(s.mnt("new")) == "fresh");
}

TEST_CASE("cli: threads=1 answers concurrent clients one request at a time") {
  LAYERFS_ONLY("layerfs command line");
  std::vector<Entry> lower;
  for (int i = 0; i < 4; ++i)
    lower.push_back(file("l" + std::to_string(i), std::string(1 << 20, 'a' + i)));
  Scenario s({.lowers = {lower}, .options = {"threads=1"}, .reference = false});
  // Clients that copy up, fsync (a request the loop would hand to another
  // thread, if it could start one), create and stat at the same time.
  std::vector<std::thread> clients;
  std::atomic<int> failures{0};
  for (int c = 0; c < 4; ++c) {
    clients.emplace_back([&, c] {
      const std::string l = s.mnt("l" + std::to_string(c));
      if (sys::write(l, "+", O_WRONLY | O_APPEND | O_SYNC) != 0) ++failures;
      for (int i = 0; i < 20; ++i) {
        const std::string p = s.mnt("c" + std::to_string(c) + "_" + std::to_string(i));
        if (sys::write(p, std::to_string(i), O_WRONLY | O_CREAT | O_EXCL | O_SYNC) != 0) ++failures;
        if (sys::lstat(l) != 0) ++failures;
      }
    });
  }
  for (auto& t : clients) t.join();
  CHECK(failures == 0);
  for (int c = 0; c < 4; ++c) {
    CHECK(read_file(s.mnt("l" + std::to_string(c))) == std::string(1 << 20, 'a' + c) + "+");
    CHECK(read_file(s.mnt("c" + std::to_string(c) + "_19")) == "19");
  }
}

TEST_CASE("cli: /proc/mounts shows SOURCE MOUNTPOINT fuse.layerfs") {
  LAYERFS_ONLY("layerfs command line");
  TempDir t;
  std::string l = t.mkdir("lower"), m1 = t.mkdir("m1"), m2 = t.mkdir("m2"), m3 = t.mkdir("m3");
  MountSpec with_source{.lowers = {l}, .source = "my-source"};
  MountSpec without{.lowers = {l}};
  MountSpec with_fsname{.lowers = {l}, .options = {"fsname=named-fs"}};
  Mount a(m1, with_source), b(m2, without), c(m3, with_fsname);
  auto fa = proc_mounts_line(a.path());
  auto fb = proc_mounts_line(b.path());
  auto fc = proc_mounts_line(c.path());
  REQUIRE(fa.size() >= 3);
  REQUIRE(fb.size() >= 3);
  REQUIRE(fc.size() >= 3);
  CHECK(fa[0] == "my-source");
  CHECK(fa[2] == "fuse.layerfs");
  CHECK(fb[0] == "layerfs");
  CHECK(fb[2] == "fuse.layerfs");
  CHECK(fc[0] == "named-fs");
  CHECK(fc[2] == "fuse.layerfs");
}

TEST_CASE("cli: -d writes a debug trace") {
  LAYERFS_ONLY("layerfs command line");
  TempDir t;
  std::string l = t.mkdir("lower");
  write_file(l + "/f", "data");
  Mount m(t.mkdir("mnt"), MountSpec{.lowers = {l}, .flags = {"-d"}});
  CHECK(read_file(m / "f") == "data");
  CHECK_MESSAGE(!m.log().empty(), "no debug output with -d");
}

TEST_CASE("cli: -d keeps the daemon in the foreground") {
  LAYERFS_ONLY("layerfs command line");
  TempDir t;
  std::string l = t.mkdir("lower");
  write_file(l + "/f", "data");
  // Started without -f: with -d the command itself must stay and serve the mount.
  Mount m(t.mkdir("mnt"), MountSpec{.lowers = {l}, .flags = {"-d"}, .foreground = false});
  CHECK(read_file(m / "f") == "data");
  int status = 0;
  CHECK_MESSAGE(::waitpid(m.daemon_pid(), &status, WNOHANG) == 0,
                "layerfs -d went to the background");
  CHECK_FALSE(m.log().empty());
}

TEST_CASE("cli: -h and -V answer without mounting") {
  LAYERFS_ONLY("layerfs command line");
  CmdResult h = run_layerfs({"-h"});
  CHECK_MESSAGE(h.exit_code == 0, h.describe());
  CHECK_MESSAGE((h.out + h.err).find("lowerdir") != std::string::npos, h.describe());
  CmdResult v = run_layerfs({"-V"});
  CHECK_MESSAGE(v.exit_code == 0, v.describe());
  CHECK_FALSE((v.out + v.err).empty());
}

TEST_CASE("cli: problems found before mounting are refused with a message") {
  LAYERFS_ONLY("layerfs command line");
  TempDir t;
  const std::string l = t.mkdir("lower"), u = t.mkdir("upper"), w = t.mkdir("work");
  const std::string mnt = t.mkdir("mnt"), file = t / "a-file";
  write_file(file, "not a dir");
  const std::string layers = "lowerdir=" + l + ",upperdir=" + u + ",workdir=" + w;
  const std::string missing = t / "no-such-dir";

  expect_refusal("missing lowerdir", {mnt, "-o", "lowerdir=" + missing}, mnt, {"no-such-dir"});
  expect_refusal("second missing lowerdir", {mnt, "-o", "lowerdir=" + l + ":" + missing}, mnt,
                 {"no-such-dir"});
  expect_refusal("lowerdir is a file", {mnt, "-o", "lowerdir=" + file}, mnt, {"a-file"});
  expect_refusal("missing upperdir",
                 {mnt, "-o", "lowerdir=" + l + ",upperdir=" + missing + ",workdir=" + w}, mnt,
                 {"no-such-dir"});
  expect_refusal("missing workdir",
                 {mnt, "-o", "lowerdir=" + l + ",upperdir=" + u + ",workdir=" + missing}, mnt,
                 {"no-such-dir"});
  expect_refusal("missing mountpoint", {missing, "-o", "lowerdir=" + l}, missing, {"no-such-dir"});
  expect_refusal("unknown option", {mnt, "-o", layers + ",frobnicate"}, mnt, {"frobnicate"});
  expect_refusal("unknown flag", {mnt, "-o", layers, "--frobnicate"}, mnt, {"frobnicate"});
  expect_refusal("bad timeout value", {mnt, "-o", layers + ",timeout=soon"}, mnt,
                 {"timeout", "soon"});
  expect_refusal("upperdir without workdir", {mnt, "-o", "lowerdir=" + l + ",upperdir=" + u}, mnt,
                 {"workdir"});
  expect_refusal("workdir without upperdir", {mnt, "-o", "lowerdir=" + l + ",workdir=" + w}, mnt,
                 {"upperdir"});
  expect_refusal("no lowerdir", {mnt, "-o", "upperdir=" + u + ",workdir=" + w}, mnt, {"lowerdir"});
  expect_refusal("no arguments", {}, mnt, {});
  expect_refusal("no mountpoint", {"-o", layers}, mnt, {});
  expect_refusal("too many arguments", {"src", mnt, t / "extra", "-o", layers}, mnt, {});

  // Layout problems: upper or work inside a lower or the mountpoint, or the other way round.
  const std::string lu = t.mkdir("lower/up"), lw = t.mkdir("lower/wk");
  const std::string mu = t.mkdir("mnt2/up"), mw = t.mkdir("mnt2/wk"), mnt2 = t / "mnt2";
  const std::string uw = t.mkdir("upper/wk"), ul = t.mkdir("upper/low"), um = t.mkdir("upper/m");
  expect_refusal("upper inside a lower",
                 {mnt, "-o", "lowerdir=" + l + ",upperdir=" + lu + ",workdir=" + w}, mnt,
                 {lu, l, "upper"});
  expect_refusal("work inside a lower",
                 {mnt, "-o", "lowerdir=" + l + ",upperdir=" + u + ",workdir=" + lw}, mnt,
                 {lw, l, "work"});
  expect_refusal("lower inside the upper",
                 {mnt, "-o", "lowerdir=" + ul + ",upperdir=" + u + ",workdir=" + w}, mnt,
                 {ul, u, "upper"});
  expect_refusal("upper inside the mountpoint",
                 {mnt2, "-o", "lowerdir=" + l + ",upperdir=" + mu + ",workdir=" + w}, mnt2,
                 {mu, mnt2, "mountpoint"});
  expect_refusal("work inside the mountpoint",
                 {mnt2, "-o", "lowerdir=" + l + ",upperdir=" + u + ",workdir=" + mw}, mnt2,
                 {mw, mnt2, "mountpoint"});
  expect_refusal("mountpoint inside the upper",
                 {um, "-o", "lowerdir=" + l + ",upperdir=" + u + ",workdir=" + w}, um,
                 {um, u, "upper"});
  expect_refusal("work inside the upper",
                 {mnt, "-o", "lowerdir=" + l + ",upperdir=" + u + ",workdir=" + uw}, mnt,
                 {uw, u, "work"});
  expect_refusal("upper and work the same",
                 {mnt, "-o", "lowerdir=" + l + ",upperdir=" + u + ",workdir=" + u}, mnt,
                 {u, "work"});

  // Upper and work on different filesystems.
  const std::string tw = t.mkdir("tmpfs-work");
  REQUIRE(::mount("layerfs-test-tmpfs", tw.c_str(), "tmpfs", 0, "mode=0755") == 0);
  expect_refusal("upper and work on different filesystems",
                 {mnt, "-o", "lowerdir=" + l + ",upperdir=" + u + ",workdir=" + tw}, mnt,
                 {tw, u, "filesystem", "file system", "device"});
  ::umount2(tw.c_str(), MNT_DETACH);

  // An unreadable lower, seen by an unprivileged user.
  const std::string secret = t.mkdir("secret", 0700);
  const std::string user_mnt = t.mkdir("user-mnt", 0777);
  expect_refusal("unreadable lowerdir", {user_mnt, "-o", "lowerdir=" + secret}, user_mnt,
                 {secret, "secret"},
                 {"/usr/bin/setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"});
}

TEST_CASE("cli: an upper used by a live mount is refused") {
  LAYERFS_ONLY("layerfs command line");
  Scenario s({.lowers = {{file("f", "x")}}});
  const std::string w2 = s.tmp().mkdir("work2"), m2 = s.tmp().mkdir("mnt2");
  expect_refusal("upper in use",
                 {m2, "-o", "lowerdir=" + s.lower(0) + ",upperdir=" + s.upper() + ",workdir=" + w2},
                 m2, {s.upper(), "upper", "in use", "busy", "lock"});
  // The first mount is unharmed.
  CHECK(read_file(s.mnt("f")) == "x");
  write_file(s.mnt("g"), "still writable");
  CHECK(read_file(s.mnt("g")) == "still writable");
}

TEST_CASE("cli: mount options are accepted and reach the kernel mount") {
  LAYERFS_ONLY("layerfs command line");
  Scenario s({.lowers = {{file("f", "x")}},
              .options = {"allow_other", "nosuid", "nodev", "noexec", "noatime", "timeout=5",
                          "threads=3"}});
  auto m = find_mount(s.mnt());
  REQUIRE(m.has_value());
  CAPTURE(m->options);
  CAPTURE(m->super_options);
  CHECK(has_option(m->options, "nosuid"));
  CHECK(has_option(m->options, "nodev"));
  CHECK(has_option(m->options, "noexec"));
  CHECK(has_option(m->options, "noatime"));
  CHECK(has_option(m->super_options, "allow_other"));
  CHECK(has_option(m->super_options, "default_permissions"));
  CHECK(read_file(s.mnt("f")) == "x");
}

TEST_CASE("cli: nodefault_permissions turns default_permissions off") {
  LAYERFS_ONLY("layerfs command line");
  Scenario s({.lowers = {{file("f", "x")}}, .options = {"nodefault_permissions"}});
  auto m = find_mount(s.mnt());
  REQUIRE(m.has_value());
  CAPTURE(m->super_options);
  CHECK_FALSE(has_option(m->super_options, "default_permissions"));
  CHECK(read_file(s.mnt("f")) == "x");
}

TEST_CASE("cli: layer paths with commas and colons are escaped with backslashes") {
  LAYERFS_ONLY("layerfs command line");
  TempDir t;
  const std::string l1 = t.mkdir("low,er:1"), l2 = t.mkdir("lower\\2");
  const std::string u = t.mkdir("up,per"), w = t.mkdir("wo,rk");
  write_file(l1 + "/a", "from 1");
  write_file(l2 + "/b", "from 2");
  Mount m(t.mkdir("mnt"), MountSpec{.lowers = {l1, l2}, .upper = u, .work = w});
  CHECK(read_file(m / "a") == "from 1");
  CHECK(read_file(m / "b") == "from 2");
  write_file(m / "c", "new");
  CHECK(read_file(u + "/c") == "new");
}

TEST_CASE("cli: the index and the staging area stay in the workdir") {
  LAYERFS_ONLY("layerfs keeps its index in the workdir");
  Scenario s({.lowers = {{file("a", "a"), dir("d"), file("d/x", "x")}}});
  s.both("unlink a", [](const std::string& r) { return sys::unlink(r + "/a"); });
  s.both("write d/x", [](const std::string& r) { return sys::write(r + "/d/x", "y"); });
  CHECK(list_dir(s.mnt()) == std::vector<std::string>{"d"});
  CHECK_FALSE(list_dir(s.work()).empty());
  s.check_tree();
}
