// Tests for tools/layer_store.cpp and `layerctl layer ...`: imports from every
// input form, diffIDs against sha256sum, sizes against an independent count,
// round trips through export, names and references, removal refused while a
// stack uses a layer, the CLI's output and errors, concurrent and killed
// imports, and interop with umoci.
#include <doctest/doctest.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/wait.h>
#include <sys/xattr.h>
#include <unistd.h>

#include <chrono>
#include <thread>

#include "tests/support/temp_dir.h"
#include "tests/tools/test_layer_support.h"
#include "tools/layer_store.h"

namespace layerfs::ctl {
namespace {

using test::tdir;
using test::tfile;

const std::string kLayerctl = LAYERCTL_BINARY;

// A tree with every kind of entry a layer holds: content, modes, owners,
// mtimes, a symlink, hard links, xattrs, a device, a fifo, whiteouts.
void make_rich_tree(const std::string& src) {
  REQUIRE(::mkdir(src.c_str(), 0755) == 0);
  REQUIRE(::mkdir((src + "/etc").c_str(), 0755) == 0);
  REQUIRE(::mkdir((src + "/etc/app").c_str(), 0750) == 0);
  REQUIRE(::mkdir((src + "/opaque").c_str(), 0755) == 0);
  test::spit(src + "/etc/app/config", "hello\n", 0640);
  test::spit(src + "/etc/app/.wh.old", "");
  test::spit(src + "/opaque/.wh..wh..opq", "");
  test::spit(src + "/opaque/kept", "kept");
  test::spit(src + "/bin", std::string(5000, 'b'), 04755);
  REQUIRE(::link((src + "/bin").c_str(), (src + "/bin-again").c_str()) == 0);
  REQUIRE(::symlink("etc/app/config", (src + "/link").c_str()) == 0);
  REQUIRE(::mkfifo((src + "/fifo").c_str(), 0600) == 0);
  REQUIRE(::setxattr((src + "/etc/app/config").c_str(), "user.note", "n", 1, 0) == 0);
  if (::geteuid() == 0) {
    REQUIRE(::lchown((src + "/etc/app/config").c_str(), 1000, 1001) == 0);
    REQUIRE(::lchown((src + "/link").c_str(), 7, 8) == 0);
    REQUIRE(::chmod((src + "/bin").c_str(), 04755) == 0);  // chown cleared nothing here
    REQUIRE(::mknod((src + "/etc/null").c_str(), S_IFCHR | 0666, makedev(1, 3)) == 0);
    REQUIRE(::setxattr((src + "/etc").c_str(), "trusted.keep", "t", 1, 0) == 0);
  }
  for (const char* p : {"etc/app/config", "bin", "fifo", "etc/app", "etc", "opaque", "."}) {
    timespec ts[2] = {{1000, 0}, {1600000000 + static_cast<time_t>(std::strlen(p)), 0}};
    REQUIRE(::utimensat(AT_FDCWD, (src + "/" + p).c_str(), ts, AT_SYMLINK_NOFOLLOW) == 0);
  }
}

// Everything in the store that a failed command must leave as it was.
std::string store_state(const std::string& root) {
  std::string out;
  auto s = Store::open(root, Access::kRead);
  for (const char* prefix : {"layer/", "layername/", "stack/"}) {
    for (const auto& [k, v] : s->list(prefix)) out += k + "=" + v.dump() + "\n";
  }
  for (const char* d : {"layers", "tmp"}) {
    if (!test::path_exists(root + "/" + d)) continue;
    for (const auto& [k, v] : test::snapshot(root + "/" + d)) {
      if (k.find('/') == std::string::npos) out += std::string(d) + "/" + k + "\n";
    }
  }
  return out;
}

test::Run ctl(const std::string& root, std::vector<std::string> args) {
  args.insert(args.begin(), {kLayerctl, "--root", root});
  return test::run(args);
}

std::string tree_of(const std::string& root, const std::string& id) {
  return root + "/layers/" + id.substr(7) + "/tree";
}

TEST_CASE("importing a directory, a tar, a .tar.gz and a .tar.zst") {
  test::TempDir t("layers");
  const std::string root = t.path() + "/store";
  const std::string src = t.path() + "/src";
  make_rich_tree(src);
  const std::string tar = t.path() + "/l.tar";
  REQUIRE(test::run({"tar", "--numeric-owner", "--xattrs", "--xattrs-include=*", "-C", src, "-cf",
                     tar, "."})
              .status == 0);
  REQUIRE(test::run({"sh", "-c", "gzip -c " + tar + " > " + tar + ".gz"}).status == 0);
  REQUIRE(test::run({"zstd", "-q", tar, "-o", tar + ".zst"}).status == 0);
  const std::string id = test::sha256sum(tar);

  for (const std::string& in : {tar, tar + ".gz", tar + ".zst"}) {
    CAPTURE(in);
    LayerInfo info = import_layer(root, in, {});
    CHECK(info.id == id);
    CHECK(info.tar_size == test::slurp(tar).size());
    CHECK(info.size == test::classic_size(src));
    auto a = test::snapshot(src), b = test::snapshot(tree_of(root, id));
    CHECK_MESSAGE(a == b, "source:\n", test::describe(a), "layer:\n", test::describe(b));
  }
  CHECK(list_layers(*Store::open(root, Access::kRead)).size() == 1);  // the same layer, 3 times

  LayerInfo d = import_layer(root, src, {});
  CHECK(d.id != id);  // GNU tar and layerctl write different bytes
  CHECK(d.size == test::classic_size(src));
  auto a = test::snapshot(src), b = test::snapshot(tree_of(root, d.id));
  CHECK_MESSAGE(a == b, "source:\n", test::describe(a), "layer:\n", test::describe(b));
  // A directory's diffID is the sha256 of the tar layerctl exports for it.
  export_layer(root, d.id, t.path() + "/d.tar", Compression::kNone, {});
  CHECK(test::sha256sum(t.path() + "/d.tar") == d.id);
  CHECK(test::snapshot(root + "/tmp").empty());
}

TEST_CASE("sizes count file lengths, hard links once, whiteouts and directories nothing") {
  test::TempDir t("layers");
  const std::string tar = t.path() + "/s.tar";
  test::write_tar(tar, {tdir("d"), tfile("d/a", std::string(1234, 'a')), test::tlink("d/a2", "d/a"),
                        tfile("d/.wh.x", ""), test::tsym("l", "d/a"), tfile("e", "")});
  LayerInfo info = import_layer(t.path() + "/store", tar, {});
  CHECK(info.size == 1234 + 3);
  CHECK(info.size == test::classic_size(tree_of(t.path() + "/store", info.id)));
}

TEST_CASE("import, export in each compression and import again gives the same layer") {
  test::TempDir t("layers");
  const std::string root = t.path() + "/store";
  const std::string src = t.path() + "/src";
  make_rich_tree(src);
  LayerInfo first = import_layer(root, src, {});
  for (const char* c : {"none", "gzip", "zstd"}) {
    CAPTURE(c);
    const std::string out = t.path() + "/export-" + c;
    export_layer(root, first.id, out, parse_compression(c), {});
    test::Run kind = test::run({"file", "-b", out});
    if (std::string(c) == "gzip") CHECK(kind.out.find("gzip") != std::string::npos);
    if (std::string(c) == "zstd") CHECK(kind.out.find("Zstandard") != std::string::npos);
    if (std::string(c) == "none") CHECK(test::sha256sum(out) == first.id);

    const std::string root2 = t.path() + "/store-" + c;
    LayerInfo again = import_layer(root2, out, {});
    CHECK(again.id == first.id);
    CHECK(again.size == first.size);
    auto a = test::snapshot(src), b = test::snapshot(tree_of(root2, again.id));
    CHECK_MESSAGE(a == b, "source:\n", test::describe(a), "round trip:\n", test::describe(b));
  }
  // No temporary file is left beside the output.
  for (const auto& [k, v] : test::snapshot(t.path())) {
    CHECK(k.find(".layerctl-") == std::string::npos);
  }
}

TEST_CASE("layers are found by id, hex, prefix or name") {
  test::TempDir t("layers");
  const std::string root = t.path() + "/store";
  test::write_tar(t.path() + "/a.tar", {tfile("a", "a")});
  test::write_tar(t.path() + "/b.tar", {tfile("b", "b")});
  LayerInfo a = import_layer(root, t.path() + "/a.tar", {.name = "base"});
  LayerInfo b = import_layer(root, t.path() + "/b.tar", {});
  auto s = Store::open(root, Access::kRead);
  CHECK(find_layer(*s, a.id).id == a.id);
  CHECK(find_layer(*s, a.id.substr(7)).id == a.id);
  CHECK(find_layer(*s, a.id.substr(7, 12)).id == a.id);
  CHECK(find_layer(*s, "sha256:" + b.id.substr(7, 12)).id == b.id);
  CHECK(find_layer(*s, "base").id == a.id);
  CHECK(*find_layer(*s, "base").name == "base");
  const std::string too_short = a.id.substr(7, 11);
  const std::string too_short_error = "No such layer: " + too_short;
  CHECK_THROWS_WITH_AS(find_layer(*s, too_short), too_short_error.c_str(), Error);
  CHECK_THROWS_WITH_AS(find_layer(*s, "nothing"), "No such layer: nothing", Error);
  auto ids = layer_trees_top_first(*s, {a.id, b.id});
  REQUIRE(ids.size() == 2);
  CHECK(ids[0] == tree_of(s->root(), b.id));
  CHECK(ids[1] == tree_of(s->root(), a.id));
  CHECK_THROWS_AS(layer_trees_top_first(*s, {a.id, "sha256:" + std::string(64, '0')}), Error);
}

TEST_CASE("layer names are unique and follow Docker's rule") {
  test::TempDir t("layers");
  const std::string root = t.path() + "/store";
  test::write_tar(t.path() + "/a.tar", {tfile("a", "a")});
  test::write_tar(t.path() + "/b.tar", {tfile("b", "b")});
  LayerInfo a = import_layer(root, t.path() + "/a.tar", {.name = "one"});
  std::string before = store_state(root);
  CHECK_THROWS_AS(import_layer(root, t.path() + "/b.tar", {.name = "one"}), Error);
  CHECK_THROWS_AS(import_layer(root, t.path() + "/a.tar", {.name = "two"}), Error);
  CHECK_THROWS_AS(import_layer(root, t.path() + "/b.tar", {.name = "bad name"}), Error);
  CHECK_THROWS_AS(import_layer(root, t.path() + "/b.tar", {.name = std::string(64, 'a')}), Error);
  CHECK(store_state(root) == before);
  // The same layer with its own name again is fine; an unnamed one takes a name.
  CHECK(import_layer(root, t.path() + "/a.tar", {.name = "one"}).id == a.id);
  LayerInfo b = import_layer(root, t.path() + "/b.tar", {});
  CHECK(import_layer(root, t.path() + "/b.tar", {.name = "two"}).name == "two");
  auto s = Store::open(root, Access::kRead);
  CHECK(find_layer(*s, "two").id == b.id);
}

TEST_CASE("a layer used by a stack is not removed") {
  test::TempDir t("layers");
  const std::string root = t.path() + "/store";
  test::write_tar(t.path() + "/a.tar", {tfile("a", "a")});
  LayerInfo a = import_layer(root, t.path() + "/a.tar", {.name = "base"});
  {
    auto s = Store::open(root, Access::kWrite);
    s->write({{"stack/web", json{{"name", "web"}, {"layers", {a.id}}}},
              {"stack/db", json{{"name", "db"}, {"layers", {a.id}}}}});
  }
  const std::string before = store_state(root);
  try {
    remove_layer(root, "base");
    FAIL("removed");
  } catch (const Error& e) {
    std::string m = e.what();
    CHECK(m.find("web") != std::string::npos);
    CHECK(m.find("db") != std::string::npos);
  }
  CHECK(store_state(root) == before);
  {
    auto s = Store::open(root, Access::kRead);
    CHECK(find_layer(*s, "base").stacks == std::vector<std::string>{"db", "web"});
    CHECK(list_layers(*s).at(0).stacks.size() == 2);
  }
  test::Run r = ctl(root, {"layer", "rm", a.id.substr(7, 12)});
  CHECK(r.status == 1);
  CHECK(r.err.find("used by stacks db, web") != std::string::npos);
  {
    auto s = Store::open(root, Access::kWrite);
    s->write({{"stack/web", std::nullopt}, {"stack/db", std::nullopt}});
  }
  CHECK(remove_layer(root, "base").id == a.id);
  CHECK_FALSE(test::path_exists(root + "/layers/" + a.id.substr(7)));
  CHECK(Store::open(root, Access::kRead)->list("layer").empty());
  CHECK(test::snapshot(root + "/tmp").empty());
  CHECK_THROWS_AS(remove_layer(root, "base"), Error);
}

TEST_CASE("layerctl layer: ls, inspect, rm and export through the binary") {
  test::TempDir t("layers");
  const std::string root = t.path() + "/store";
  test::write_tar(t.path() + "/a.tar", {tfile("a", std::string(1500, 'a'))});
  test::write_tar(t.path() + "/b.tar", {tfile("b", "bb")}, "gzip");

  test::Run r = ctl(root, {"layer", "import", t.path() + "/a.tar", "--name", "alpha"});
  REQUIRE(r.status == 0);
  const std::string a = test::sha256sum(t.path() + "/a.tar");
  CHECK(r.out == a + "\n");
  CHECK(r.err.empty());  // no progress when stderr is not a terminal
  r = ctl(root, {"layer", "import", t.path() + "/b.tar"});
  REQUIRE(r.status == 0);
  const std::string b = r.out.substr(0, r.out.size() - 1);

  r = ctl(root, {"layer", "ls"});
  REQUIRE(r.status == 0);
  CHECK(r.out.rfind("LAYER ID       NAME      CREATED", 0) == 0);
  CHECK(r.out.find(a.substr(7, 12) + "   alpha     ") != std::string::npos);
  CHECK(r.out.find(b.substr(7, 12) + "   <none>    ") != std::string::npos);
  CHECK(r.out.find("1.5kB") != std::string::npos);
  CHECK(r.out.find("ago") != std::string::npos);

  r = ctl(root, {"layer", "ls", "-q"});
  CHECK(r.status == 0);
  CHECK((r.out == a.substr(7, 12) + "\n" + b.substr(7, 12) + "\n" ||
         r.out == b.substr(7, 12) + "\n" + a.substr(7, 12) + "\n"));

  r = ctl(root, {"layer", "ls", "--format", "json"});
  REQUIRE(r.status == 0);
  int lines = 0;
  for (size_t pos = 0; pos < r.out.size();) {
    size_t nl = r.out.find('\n', pos);
    json j = json::parse(r.out.substr(pos, nl - pos));
    CHECK(j["Size"].is_string());
    CHECK(j["ID"].get<std::string>().size() == 12);
    pos = nl + 1;
    ++lines;
  }
  CHECK(lines == 2);
  CHECK(ctl(root, {"layer", "ls", "--format", "yaml"}).status == 125);

  r = ctl(root, {"layer", "inspect", "alpha", "missing", b});
  CHECK(r.status == 1);
  CHECK(r.err == "Error: No such layer: missing\n");
  json arr = json::parse(r.out);
  REQUIRE(arr.size() == 2);
  CHECK(arr[0]["Id"] == a);
  CHECK(arr[0]["Name"] == "alpha");
  CHECK(arr[0]["Size"] == 1500);
  CHECK(arr[1]["Id"] == b);
  CHECK(r.out.find("\n    {\n        \"") != std::string::npos);  // 4-space indent

  r = ctl(root, {"layer", "export", "alpha", "-o", t.path() + "/out.tar"});
  CHECK(r.status == 0);
  CHECK(test::sha256sum(t.path() + "/out.tar") == a);
  r = ctl(root, {"layer", "export", "alpha", "-o", t.path() + "/out.tar.gz"});
  CHECK(test::run({"file", "-b", t.path() + "/out.tar.gz"}).out.find("gzip") == 0);
  r = ctl(root, {"layer", "export", "alpha", "-o", t.path() + "/out.layer"});
  CHECK(test::run({"file", "-b", t.path() + "/out.layer"}).out.find("Zstandard") == 0);
  r = ctl(root, {"layer", "export", "alpha", "-o", t.path() + "/x.tar", "--compress", "gzip"});
  CHECK(test::run({"file", "-b", t.path() + "/x.tar"}).out.find("gzip") == 0);
  CHECK(ctl(root, {"layer", "export", "alpha", "-o", t.path() + "/y", "--compress", "xz"}).status ==
        125);
  r = ctl(root, {"layer", "export", "nope", "-o", t.path() + "/z"});
  CHECK(r.status == 1);
  CHECK(r.err == "Error: No such layer: nope\n");
  CHECK_FALSE(test::path_exists(t.path() + "/z"));
  CHECK(ctl(root, {"layer", "export", "alpha"}).status == 1);  // -o is required
  CHECK(ctl(root, {"layer", "export", "alpha", "-o", t.path()}).status == 1);

  const std::string before = store_state(root);
  r = ctl(root, {"layer", "import", t.path() + "/does-not-exist"});
  CHECK(r.status == 1);
  CHECK(r.err.find("does-not-exist") != std::string::npos);
  test::write_tar(t.path() + "/evil.tar", {tfile("ok", "fine"), tfile("../escape", "x")});
  r = ctl(root, {"layer", "import", t.path() + "/evil.tar"});
  CHECK(r.status == 1);
  CHECK(r.err.find("refusing entry \"../escape\"") != std::string::npos);
  CHECK_FALSE(test::path_exists(t.path() + "/escape"));
  CHECK(store_state(root) == before);
  CHECK(ctl(root, {"layer", "import"}).status == 1);
  CHECK(ctl(root, {"layer", "import", t.path() + "/a.tar", "--bogus"}).status == 125);

  r = ctl(root, {"layer", "rm", "alpha", "missing", b.substr(7, 12)});
  CHECK(r.status == 1);
  CHECK(r.out == a + "\n" + b + "\n");
  CHECK(r.err == "Error: No such layer: missing\n");
  CHECK(ctl(root, {"layer", "ls", "-q"}).out.empty());
  CHECK(ctl(root, {"layer", "rm"}).status == 1);

  for (const char* sub : {"import", "ls", "inspect", "rm", "export"}) {
    CAPTURE(sub);
    r = ctl(root, {"layer", sub, "--help"});
    CHECK(r.status == 0);
    CHECK(r.out.find("Usage") != std::string::npos);
  }
}

TEST_CASE("two imports at once both land and the store stays consistent") {
  test::TempDir t("layers");
  const std::string root = t.path() + "/store";
  test::write_tar(t.path() + "/a.tar", {tfile("a", std::string(8 << 20, 'a'))});
  test::write_tar(t.path() + "/b.tar", {tfile("b", std::string(8 << 20, 'b'))}, "zstd");
  // Two processes, started together.
  std::vector<pid_t> pids;
  int go[2];
  REQUIRE(::pipe(go) == 0);
  for (const char* in : {"a.tar", "b.tar"}) {
    pid_t pid = ::fork();
    REQUIRE(pid >= 0);
    if (pid == 0) {
      ::close(go[1]);
      char c;
      if (::read(go[0], &c, 1) != 0) _exit(3);
      int devnull = ::open("/dev/null", O_WRONLY);
      ::dup2(devnull, 1);
      std::string path = t.path() + "/" + in;
      ::execl(kLayerctl.c_str(), "layerctl", "--root", root.c_str(), "layer", "import",
              path.c_str(), static_cast<char*>(nullptr));
      _exit(127);
    }
    pids.push_back(pid);
  }
  ::close(go[0]);
  ::close(go[1]);  // both start now
  for (pid_t p : pids) {
    int st = 0;
    REQUIRE(::waitpid(p, &st, 0) == p);
    CHECK(WIFEXITED(st));
    CHECK(WEXITSTATUS(st) == 0);
  }
  auto s = Store::open(root, Access::kRead);
  auto layers = list_layers(*s);
  REQUIRE(layers.size() == 2);
  for (const auto& l : layers) {
    CAPTURE(l.id);
    CHECK(l.size == 8 << 20);
    CHECK(test::path_exists(tree_of(root, l.id)));
  }
  CHECK(test::snapshot(root + "/tmp").empty());
}

TEST_CASE("an import killed half-way leaves the store usable and no layer registered") {
  test::TempDir t("layers");
  const std::string root = t.path() + "/store";
  const std::string big = t.path() + "/big.tar";
  REQUIRE(test::run({"sh", "-c",
                     "cd " + t.path() + " && truncate -s 600M zeros && tar -cf big.tar zeros && " +
                         "rm zeros"})
              .status == 0);
  test::write_tar(t.path() + "/small.tar", {tfile("s", "s")});
  LayerInfo small = import_layer(root, t.path() + "/small.tar", {});
  const std::string before = store_state(root);

  pid_t pid = ::fork();
  REQUIRE(pid >= 0);
  if (pid == 0) {
    int devnull = ::open("/dev/null", O_WRONLY);
    ::dup2(devnull, 1);
    ::dup2(devnull, 2);
    ::execl(kLayerctl.c_str(), "layerctl", "--root", root.c_str(), "layer", "import", big.c_str(),
            static_cast<char*>(nullptr));
    _exit(127);
  }
  // Kill it once it is writing the layer's files.
  bool started = false;
  for (int i = 0; i < 2000 && !started; ++i) {
    if (DIR* d = ::opendir((root + "/tmp").c_str())) {
      while (struct dirent* e = ::readdir(d)) {
        if (test::path_exists(root + "/tmp/" + e->d_name + "/tree/zeros")) started = true;
      }
      ::closedir(d);
    }
    if (!started) std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  CHECK(started);
  ::kill(pid, SIGKILL);
  int st = 0;
  REQUIRE(::waitpid(pid, &st, 0) == pid);
  REQUIRE(WIFSIGNALED(st));

  {
    auto s = Store::open(root, Access::kRead);
    auto layers = list_layers(*s);
    REQUIRE(layers.size() == 1);
    CHECK(layers[0].id == small.id);
  }
  // The next changing command cleans the remains up, and works.
  test::write_tar(t.path() + "/next.tar", {tfile("n", "n")});
  LayerInfo next = import_layer(root, t.path() + "/next.tar", {});
  CHECK(test::snapshot(root + "/tmp").empty());
  remove_layer(root, next.id);
  CHECK(store_state(root) == before);
}

TEST_CASE("umoci unpacks a layer exported by layerctl to the same files" *
          doctest::skip(test::needs_root())) {
  if (test::run({"sh", "-c", "command -v umoci"}).status != 0) {
    if (std::getenv("CI")) FAIL("umoci is not installed (apt-get install umoci)");
    MESSAGE("umoci is not installed: skipped");
    return;
  }
  test::TempDir t("layers");
  const std::string root = t.path() + "/store";
  const std::string src = t.path() + "/src";
  make_rich_tree(src);
  LayerInfo info = import_layer(root, src, {});
  const std::string gz = t.path() + "/layer.tar.gz";
  export_layer(root, info.id, gz, Compression::kGzip, {});

  // An OCI layout holding one image made of that layer, built by hand.
  const std::string oci = t.path() + "/oci";
  REQUIRE(test::run({"mkdir", "-p", oci + "/blobs/sha256"}).status == 0);
  auto add_blob = [&](const std::string& file) {
    std::string digest = test::sha256sum(file);
    REQUIRE(test::run({"cp", file, oci + "/blobs/sha256/" + digest.substr(7)}).status == 0);
    return std::make_pair(digest, static_cast<int64_t>(test::slurp(file).size()));
  };
  auto [layer_digest, layer_size] = add_blob(gz);
  json config = {{"architecture", "amd64"},
                 {"os", "linux"},
                 {"config", json::object()},
                 {"rootfs", {{"type", "layers"}, {"diff_ids", {info.id}}}}};
  test::spit(t.path() + "/config.json", config.dump());
  auto [config_digest, config_size] = add_blob(t.path() + "/config.json");
  json manifest = {{"schemaVersion", 2},
                   {"mediaType", "application/vnd.oci.image.manifest.v1+json"},
                   {"config",
                    {{"mediaType", "application/vnd.oci.image.config.v1+json"},
                     {"digest", config_digest},
                     {"size", config_size}}},
                   {"layers",
                    {{{"mediaType", "application/vnd.oci.image.layer.v1.tar+gzip"},
                      {"digest", layer_digest},
                      {"size", layer_size}}}}};
  test::spit(t.path() + "/manifest.json", manifest.dump());
  auto [manifest_digest, manifest_size] = add_blob(t.path() + "/manifest.json");
  json index = {{"schemaVersion", 2},
                {"manifests",
                 {{{"mediaType", "application/vnd.oci.image.manifest.v1+json"},
                   {"digest", manifest_digest},
                   {"size", manifest_size},
                   {"annotations", {{"org.opencontainers.image.ref.name", "layer"}}}}}}};
  test::spit(oci + "/index.json", index.dump());
  test::spit(oci + "/oci-layout", R"({"imageLayoutVersion":"1.0.0"})");

  const std::string out = t.path() + "/rootfs";
  test::Run r = test::run({"umoci", "raw", "unpack", "--image", oci + ":layer", out});
  REQUIRE_MESSAGE(r.status == 0, r.err);
  // umoci applies the whiteouts (there is nothing below to hide) rather than
  // keeping them: compare everything else.
  auto expected = test::snapshot(tree_of(root, info.id));
  for (auto it = expected.begin(); it != expected.end();) {
    it = it->first.find(".wh.") != std::string::npos ? expected.erase(it) : std::next(it);
  }
  auto got = test::snapshot(out);
  CHECK_MESSAGE(got == expected, "layer tree:\n", test::describe(expected), "umoci:\n",
                test::describe(got));
}

}  // namespace
}  // namespace layerfs::ctl
