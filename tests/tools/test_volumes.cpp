// Tests for tools/volumes.cpp through the library: create (names, anonymous
// volumes, options, idempotence, leftovers of a crash), ls filters, inspect,
// rm (in use, force, mounted), prune (anonymous only, all, label filters,
// reclaimed bytes), the mount source of each kind, and that a volume's data
// outlives the stacks that used it.
#include <doctest/doctest.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <map>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "tests/support/temp_dir.h"
#include "tools/volumes.h"

namespace layerfs::ctl {
namespace {

bool is_dir(const std::string& p) {
  struct stat st;
  return ::lstat(p.c_str(), &st) == 0 && S_ISDIR(st.st_mode);
}

void write_file(const std::string& path, size_t bytes) {
  std::ofstream(path, std::ios::binary) << std::string(bytes, 'x');
}

std::string read_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), {});
}

std::string make(const std::string& root, std::optional<std::string> name,
                 std::map<std::string, std::string> labels = {},
                 std::map<std::string, std::string> options = {}) {
  VolumeCreate spec;
  spec.name = std::move(name);
  spec.labels = std::move(labels);
  spec.options = std::move(options);
  return create_volume(root, spec);
}

// The message of the Error `f` throws ("" when it throws none).
template <typename F>
std::string error_of(F&& f) {
  try {
    f();
  } catch (const Error& e) {
    return e.what();
  }
  return "";
}

// A stack record that uses `volumes`, as the stacks code writes it.
void write_stack(const std::string& root, const std::string& name,
                 const std::vector<std::string>& volumes) {
  auto s = Store::open(root, Access::kWrite);
  s->write({{"stack/" + name, json{{"name", name},
                                   {"layers", json::array()},
                                   {"created", now_rfc3339()},
                                   {"volumes", volumes},
                                   {"anonymous_volumes", json::array()}}}});
}

void drop_stack(const std::string& root, const std::string& name) {
  auto s = Store::open(root, Access::kWrite);
  s->write({{"stack/" + name, std::nullopt}});
}

std::vector<std::string> names_of(const std::string& root, std::vector<std::string> filters = {}) {
  auto s = Store::open(root, Access::kRead);
  std::vector<std::string> out;
  for (const auto& v : list_volumes(*s, VolumeFilter{std::move(filters)})) out.push_back(v.name());
  return out;
}

std::set<std::string> as_set(const std::vector<std::string>& v) {
  return std::set<std::string>(v.begin(), v.end());
}

std::optional<json> record(const std::string& root, const std::string& name) {
  auto s = Store::open(root, Access::kRead);
  return s->get("volume/" + name);
}

TEST_CASE("a named volume gets its record and a 0755 _data directory") {
  test::TempDir t("vol");
  CHECK(make(t.path(), "web") == "web");
  auto rec = record(t.path(), "web");
  REQUIRE(rec.has_value());
  CHECK((*rec)["Name"] == "web");
  CHECK((*rec)["Driver"] == "local");
  CHECK((*rec)["Scope"] == "local");
  CHECK((*rec)["Labels"].is_null());
  CHECK((*rec)["Options"].is_null());
  CHECK((*rec)["Mountpoint"] == t.path() + "/volumes/web/_data");
  const std::string created = (*rec)["CreatedAt"];
  CHECK(created.size() == 20);
  CHECK(created.back() == 'Z');
  struct stat st;
  REQUIRE(::stat((t.path() + "/volumes/web/_data").c_str(), &st) == 0);
  CHECK(S_ISDIR(st.st_mode));
  CHECK((st.st_mode & 07777) == 0755);
  // Nothing of the work is left behind.
  std::set<std::string> tmp;
  for (const auto& e : std::filesystem::directory_iterator(t.path() + "/tmp")) {
    tmp.insert(e.path().filename());
  }
  CHECK(tmp.empty());
}

TEST_CASE("volume names follow Docker's rule and its messages") {
  test::TempDir t("vol");
  for (const char* ok : {"ab", "a.b_c-d", "0x", "Web2", "a--"}) {
    CAPTURE(ok);
    CHECK(make(t.path(), ok) == ok);
  }
  CHECK(error_of([&] { make(t.path(), "a"); }) ==
        "create a: volume name is too short, names should be at least two alphanumeric "
        "characters");
  for (const char* bad : {"a b", "-x", "_x", ".x", "x/y", "../up", "tab\there", "é1"}) {
    CAPTURE(bad);
    std::string expect_name = bad;
    std::string quoted = "\"" + expect_name + "\"";
    if (expect_name == "tab\there") quoted = "\"tab\\there\"";
    CHECK(error_of([&] { make(t.path(), bad); }) ==
          "create " + expect_name + ": " + quoted +
              " includes invalid characters for a local volume name, only "
              "\"[a-zA-Z0-9][a-zA-Z0-9_.-]\" are allowed. If you intended to pass a host "
              "directory, use absolute path");
    CHECK_FALSE(record(t.path(), bad).has_value());
  }
  CHECK(names_of(t.path()) == std::vector<std::string>{"0x", "Web2", "a--", "a.b_c-d", "ab"});
  CHECK_FALSE(is_dir(t.path() + "/up"));
}

TEST_CASE("a volume without a name is anonymous: 64 hex digits and Docker's label") {
  test::TempDir t("vol");
  std::string a = make(t.path(), std::nullopt);
  std::string b = make(t.path(), std::string(""));
  for (const auto& n : {a, b}) {
    CAPTURE(n);
    CHECK(n.size() == 64);
    CHECK(n.find_first_not_of("0123456789abcdef") == std::string::npos);
    auto rec = record(t.path(), n);
    REQUIRE(rec.has_value());
    CHECK((*rec)["Labels"] == json{{"com.docker.volume.anonymous", ""}});
    CHECK(is_dir(t.path() + "/volumes/" + n + "/_data"));
  }
  CHECK(a != b);
  // A named volume marked anonymous (a stack's `-v /path` names it itself).
  VolumeCreate spec;
  spec.name = "named-anon";
  spec.anonymous = true;
  spec.labels = {{"team", "x"}};
  CHECK(create_volume(t.path(), spec) == "named-anon");
  CHECK((*record(t.path(), "named-anon"))["Labels"] ==
        json{{"com.docker.volume.anonymous", ""}, {"team", "x"}});
}

TEST_CASE("creating an existing name returns it unchanged, data included") {
  test::TempDir t("vol");
  make(t.path(), "data", {{"v", "1"}});
  auto first = record(t.path(), "data");
  write_file(t.path() + "/volumes/data/_data/keep", 5);
  // Other labels and even bad options are ignored for an existing volume, as
  // Docker returns the existing one before looking at them.
  CHECK(make(t.path(), "data", {{"v", "2"}}, {{"bogus", "1"}}) == "data");
  CHECK(*record(t.path(), "data") == *first);
  CHECK(read_file(t.path() + "/volumes/data/_data/keep") == "xxxxx");
}

TEST_CASE("only the local driver exists") {
  test::TempDir t("vol");
  VolumeCreate spec;
  spec.name = "nfsvol";
  spec.driver = "nfs";
  CHECK(error_of([&] { create_volume(t.path(), spec); }) ==
        "create nfsvol: error looking up volume plugin nfs: plugin \"nfs\" not found");
  CHECK_FALSE(record(t.path(), "nfsvol").has_value());
}

TEST_CASE(
    "driver options are checked as Docker's local driver does, and nothing is left on error") {
  test::TempDir t("vol");
  using M = std::map<std::string, std::string>;
  struct Case {
    M opts;
    std::string message;
  };
  const std::vector<Case> cases = {
      {{{"foo", "1"}}, "create v1: invalid option: \"foo\""},
      {{{"type", "tmpfs"}}, "create v1: missing required option: \"device\""},
      {{{"device", "tmpfs"}}, "create v1: missing required option: \"type\""},
      {{{"o", "size=1m"}}, "create v1: missing required option: \"device\""},
      {{{"o", "size=1m"}, {"device", "tmpfs"}}, "create v1: missing required option: \"type\""},
      {{{"size", "10m"}}, "create v1: quota size requested but no quota support"},
      {{{"size", "lots"}}, "create v1: invalid size: 'lots'"},
      {{{"type", "nfs"}, {"device", ":/x"}, {"o", "addr=1.2.3.4"}},
       "create v1: layerctl mounts only type=tmpfs volumes and type=none volumes with o=bind"},
      {{{"type", "none"}, {"device", "/"}, {"o", "ro"}},
       "create v1: layerctl mounts only type=tmpfs volumes and type=none volumes with o=bind"},
      {{{"type", "none"}, {"device", t.path() + "/missing"}, {"o", "bind"}},
       "create v1: bind device \"" + t.path() +
           "/missing\" must be an absolute path to an existing directory"},
      {{{"type", "none"}, {"device", "relative/dir"}, {"o", "bind"}},
       "create v1: bind device \"relative/dir\" must be an absolute path to an existing "
       "directory"},
  };
  for (const auto& c : cases) {
    CAPTURE(c.message);
    CHECK(error_of([&] { make(t.path(), "v1", {}, c.opts); }) == c.message);
    CHECK_FALSE(record(t.path(), "v1").has_value());
    CHECK_FALSE(is_dir(t.path() + "/volumes/v1"));
  }
  CHECK(make(t.path(), "tv", {}, {{"type", "tmpfs"}, {"device", "tmpfs"}, {"o", "size=64m"}}) ==
        "tv");
  REQUIRE(::mkdir((t.path() + "/host").c_str(), 0755) == 0);
  CHECK(make(t.path(), "bv", {},
             {{"type", "none"}, {"device", t.path() + "/host"}, {"o", "bind"}}) == "bv");
  CHECK(make(t.path(), "zero", {}, {{"size", "0"}}) == "zero");
  CHECK((*record(t.path(), "tv"))["Options"] ==
        json{{"type", "tmpfs"}, {"device", "tmpfs"}, {"o", "size=64m"}});
}

TEST_CASE("the mount source of each kind of volume, and sizes") {
  test::TempDir t("vol");
  make(t.path(), "plain");
  make(t.path(), "tv", {}, {{"type", "tmpfs"}, {"device", "tmpfs"}, {"o", "size=64m,mode=1777"}});
  REQUIRE(::mkdir((t.path() + "/host").c_str(), 0755) == 0);
  make(t.path(), "bv", {}, {{"type", "none"}, {"device", t.path() + "/host"}, {"o", "rbind,ro"}});
  write_file(t.path() + "/volumes/plain/_data/f", 1234);
  auto s = Store::open(t.path(), Access::kRead);
  auto plain = volume_mount_source(*s, "plain");
  CHECK(plain.kind == VolumeMountSource::Kind::kDirectory);
  CHECK(plain.path == t.path() + "/volumes/plain/_data");
  auto tv = volume_mount_source(*s, "tv");
  CHECK(tv.kind == VolumeMountSource::Kind::kTmpfs);
  CHECK(tv.options == "size=64m,mode=1777");
  auto bv = volume_mount_source(*s, "bv");
  CHECK(bv.kind == VolumeMountSource::Kind::kBind);
  CHECK(bv.path == t.path() + "/host");
  CHECK(error_of([&] { volume_mount_source(*s, "nope"); }) == "get nope: no such volume");
  CHECK(volume_size(*s, "plain") == 1234);
  CHECK(volume_size(*s, "tv") == -1);
  CHECK(volume_size(*s, "bv") == -1);
  CHECK(volume_size(*s, "nope") == -1);
}

TEST_CASE("ls: Docker's filters, natural name order") {
  test::TempDir t("vol");
  make(t.path(), "v10", {{"env", "prod"}, {"tier", "db"}});
  make(t.path(), "v2", {{"env", "dev"}});
  make(t.path(), "v1", {{"env", "prod"}});
  make(t.path(), "other", {{"tier", ""}});
  write_stack(t.path(), "app", {"v1", "other"});
  write_stack(t.path(), "job", {"v1"});
  CHECK(names_of(t.path()) == std::vector<std::string>{"other", "v1", "v2", "v10"});
  CHECK(names_of(t.path(), {"dangling=true"}) == std::vector<std::string>{"v2", "v10"});
  CHECK(names_of(t.path(), {"dangling=1"}) == std::vector<std::string>{"v2", "v10"});
  CHECK(names_of(t.path(), {"dangling=false"}) == std::vector<std::string>{"other", "v1"});
  CHECK(names_of(t.path(), {"dangling=0"}) == std::vector<std::string>{"other", "v1"});
  CHECK(names_of(t.path(), {"label=env"}) == std::vector<std::string>{"v1", "v2", "v10"});
  CHECK(names_of(t.path(), {"label=env=prod"}) == std::vector<std::string>{"v1", "v10"});
  CHECK(names_of(t.path(), {"label=env=prod", "label=tier"}) == std::vector<std::string>{"v10"});
  CHECK(names_of(t.path(), {"label=tier="}) == std::vector<std::string>{"other"});
  CHECK(names_of(t.path(), {"name=1"}) == std::vector<std::string>{"v1", "v10"});
  CHECK(names_of(t.path(), {"name=oth", "name=v2"}) == std::vector<std::string>{"other", "v2"});
  CHECK(names_of(t.path(), {"driver=local", "name=v"}) ==
        std::vector<std::string>{"v1", "v2", "v10"});
  CHECK(names_of(t.path(), {"driver=nfs"}).empty());
  CHECK(names_of(t.path(), {" Label = env=dev "}) == std::vector<std::string>{"v2"});
  auto s = Store::open(t.path(), Access::kRead);
  auto all = list_volumes(*s, {});
  REQUIRE(all.size() == 4);
  CHECK(all[0].links == 1);  // other
  CHECK(all[1].links == 2);  // v1
  CHECK(all[2].links == 0);
  CHECK(error_of([&] { list_volumes(*s, {{"color=red"}}); }) == "invalid filter 'color'");
  CHECK(error_of([&] { list_volumes(*s, {{"label!=env"}}); }) == "invalid filter 'label!'");
  CHECK(error_of([&] { list_volumes(*s, {{"dangling=maybe"}}); }) ==
        "invalid filter 'dangling=maybe'");
  try {
    list_volumes(*s, {{"dangling"}});
    FAIL("no error for a filter without '='");
  } catch (const Error& e) {
    CHECK(std::string(e.what()) == "bad format of filter (expected name=value)");
    CHECK(e.exit_code() == 125);
  }
}

TEST_CASE("inspect: Docker's shape, missing names collected") {
  test::TempDir t("vol");
  make(t.path(), "one", {{"k", "<v&>"}});
  make(t.path(), "two");
  auto s = Store::open(t.path(), Access::kRead);
  std::vector<std::string> missing;
  auto recs = inspect_volumes(*s, {"two", "nope", "one", "", "zz"}, &missing);
  CHECK(missing == std::vector<std::string>{"nope", "", "zz"});
  REQUIRE(recs.size() == 2);
  const std::string c1 = recs[1]["CreatedAt"], c2 = recs[0]["CreatedAt"];
  const std::string expected =
      "[\n"
      "    {\n"
      "        \"CreatedAt\": \"" +
      c2 +
      "\",\n"
      "        \"Driver\": \"local\",\n"
      "        \"Labels\": null,\n"
      "        \"Mountpoint\": \"" +
      t.path() +
      "/volumes/two/_data\",\n"
      "        \"Name\": \"two\",\n"
      "        \"Options\": null,\n"
      "        \"Scope\": \"local\"\n"
      "    },\n"
      "    {\n"
      "        \"CreatedAt\": \"" +
      c1 +
      "\",\n"
      "        \"Driver\": \"local\",\n"
      "        \"Labels\": {\n"
      "            \"k\": \"\\u003cv\\u0026\\u003e\"\n"
      "        },\n"
      "        \"Mountpoint\": \"" +
      t.path() +
      "/volumes/one/_data\",\n"
      "        \"Name\": \"one\",\n"
      "        \"Options\": null,\n"
      "        \"Scope\": \"local\"\n"
      "    }\n"
      "]";
  CHECK(render_volume_inspect(recs) == expected);
  CHECK(render_volume_inspect({}) == "[]");
}

TEST_CASE("rm: in use never, force only silences missing names") {
  test::TempDir t("vol");
  make(t.path(), "used");
  make(t.path(), "free");
  write_file(t.path() + "/volumes/used/_data/f", 10);
  write_stack(t.path(), "web", {"used"});
  write_stack(t.path(), "api", {"used"});
  for (bool force : {false, true}) {
    CAPTURE(force);
    std::vector<std::string> errors;
    auto removed = remove_volumes(t.path(), {"used"}, force, &errors);
    CHECK(removed.empty());
    CHECK(errors == std::vector<std::string>{"remove used: volume is in use - [api, web]"});
    CHECK(record(t.path(), "used").has_value());
    CHECK(read_file(t.path() + "/volumes/used/_data/f") == std::string(10, 'x'));
  }
  std::vector<std::string> errors;
  auto removed = remove_volumes(t.path(), {"ghost", "free", "used"}, false, &errors);
  CHECK(removed == std::vector<std::string>{"free"});
  CHECK(errors == std::vector<std::string>{"get ghost: no such volume",
                                           "remove used: volume is in use - [api, web]"});
  CHECK_FALSE(record(t.path(), "free").has_value());
  CHECK_FALSE(is_dir(t.path() + "/volumes/free"));
  errors.clear();
  // Docker's CLI prints every name whose removal did not fail.
  CHECK(remove_volumes(t.path(), {"ghost"}, true, &errors) == std::vector<std::string>{"ghost"});
  CHECK(errors.empty());
}

TEST_CASE("a volume's data outlives the stack that used it") {
  test::TempDir t("vol");
  make(t.path(), "keep");
  write_file(t.path() + "/volumes/keep/_data/db", 77);
  write_stack(t.path(), "app", {"keep"});
  CHECK(names_of(t.path(), {"dangling=true"}).empty());
  drop_stack(t.path(), "app");
  CHECK(read_file(t.path() + "/volumes/keep/_data/db") == std::string(77, 'x'));
  CHECK(names_of(t.path(), {"dangling=true"}) == std::vector<std::string>{"keep"});
  // A named volume survives the default prune, too.
  auto r = prune_volumes(t.path(), false, {});
  CHECK(r.removed.empty());
  CHECK(read_file(t.path() + "/volumes/keep/_data/db") == std::string(77, 'x'));
  std::vector<std::string> errors;
  CHECK(remove_volumes(t.path(), {"keep"}, false, &errors) == std::vector<std::string>{"keep"});
  CHECK_FALSE(is_dir(t.path() + "/volumes/keep"));
}

TEST_CASE("prune: anonymous unused local volumes without options, unless all") {
  test::TempDir t("vol");
  const std::string anon1 = make(t.path(), std::nullopt);
  const std::string anon2 = make(t.path(), std::nullopt, {{"team", "a"}});
  const std::string anon_used = make(t.path(), std::nullopt);
  VolumeCreate tmpfs_anon;
  tmpfs_anon.options = {{"type", "tmpfs"}, {"device", "tmpfs"}};
  const std::string anon_opts = create_volume(t.path(), tmpfs_anon);
  make(t.path(), "named", {{"team", "a"}});
  make(t.path(), "named2");
  write_stack(t.path(), "app", {anon_used});

  // Sizes by Docker's rule, computed here: 1000 + 2345 (its hard link once) +
  // 1 (a symlink to "a") + 0 (an empty file).
  const std::string d1 = t.path() + "/volumes/" + anon1 + "/_data";
  write_file(d1 + "/a", 1000);
  REQUIRE(::mkdir((d1 + "/sub").c_str(), 0755) == 0);
  write_file(d1 + "/sub/b", 2345);
  REQUIRE(::link((d1 + "/sub/b").c_str(), (d1 + "/sub/b2").c_str()) == 0);
  REQUIRE(::symlink("a", (d1 + "/l").c_str()) == 0);
  write_file(d1 + "/empty", 0);
  write_file(t.path() + "/volumes/" + anon2 + "/_data/c", 500);

  SUBCASE("default: anonymous ones only") {
    auto r = prune_volumes(t.path(), false, {});
    CHECK(as_set(r.removed) == std::set<std::string>{anon1, anon2});
    CHECK(r.reclaimed == 1000 + 2345 + 1 + 500);
    CHECK_FALSE(is_dir(d1));
    auto left = names_of(t.path());
    CHECK(std::set<std::string>(left.begin(), left.end()) ==
          std::set<std::string>{anon_used, anon_opts, "named", "named2"});
  }
  SUBCASE("all") {
    auto r = prune_volumes(t.path(), true, {});
    CHECK(as_set(r.removed) == std::set<std::string>{anon1, anon2, "named", "named2"});
    CHECK(r.reclaimed == 3846);
    auto left = names_of(t.path());
    CHECK(std::set<std::string>(left.begin(), left.end()) ==
          std::set<std::string>{anon_used, anon_opts});
  }
  SUBCASE("the filter all=true is --all") {
    auto r = prune_volumes(t.path(), false, {"all=1"});
    CHECK(r.removed.size() == 4);
  }
  SUBCASE("label filters narrow it") {
    auto r = prune_volumes(t.path(), true, {"label=team=a"});
    CHECK(as_set(r.removed) == std::set<std::string>{anon2, "named"});
    CHECK(r.reclaimed == 500);
    auto r2 = prune_volumes(t.path(), false, {"label!=team"});
    CHECK(r2.removed == std::vector<std::string>{anon1});
    CHECK(r2.reclaimed == 3346);
    CHECK(names_of(t.path(), {"name=named"}) == std::vector<std::string>{"named2"});
  }
  SUBCASE("bad filters change nothing") {
    CHECK(error_of([&] { prune_volumes(t.path(), false, {"dangling=true"}); }) ==
          "invalid filter 'dangling'");
    CHECK(error_of([&] { prune_volumes(t.path(), false, {"all=maybe"}); }) ==
          "invalid filter 'all': strconv.ParseBool: parsing \"maybe\": invalid syntax");
    CHECK(error_of([&] {
            prune_volumes(t.path(), false, {"all=1", "all=0"});
          }) == "invalid filter 'all=[1 0]': only one value is expected");
    CHECK(names_of(t.path()).size() == 6);
  }
}

TEST_CASE("a directory left without a record by a crash is not a volume") {
  test::TempDir t("vol");
  make(t.path(), "real");
  // What a create or rm cut short leaves: a directory with no record.
  const std::string ghost = t.path() + "/volumes/ghost";
  REQUIRE(::mkdir(ghost.c_str(), 0755) == 0);
  REQUIRE(::mkdir((ghost + "/_data").c_str(), 0755) == 0);
  write_file(ghost + "/_data/stale", 9);
  REQUIRE(::mkdir((t.path() + "/volumes/other-ghost").c_str(), 0755) == 0);
  CHECK(names_of(t.path()) == std::vector<std::string>{"real"});
  // Creating that name starts empty: removed data never resurfaces.
  CHECK(make(t.path(), "ghost") == "ghost");
  CHECK(is_dir(ghost + "/_data"));
  CHECK_FALSE(std::filesystem::exists(ghost + "/_data/stale"));
  // Prune removes the others, and reports only volumes.
  auto r = prune_volumes(t.path(), false, {});
  CHECK(r.removed.empty());
  CHECK(r.reclaimed == 0);
  CHECK_FALSE(is_dir(t.path() + "/volumes/other-ghost"));
  CHECK(is_dir(t.path() + "/volumes/real/_data"));
  CHECK(is_dir(ghost + "/_data"));
}

TEST_CASE("concurrent creates of one name make one volume") {
  test::TempDir t("vol");
  constexpr int kProcs = 6;
  std::vector<pid_t> pids;
  for (int i = 0; i < kProcs; ++i) {
    pid_t pid = ::fork();
    REQUIRE(pid >= 0);
    if (pid == 0) {
      int code = 0;
      try {
        VolumeCreate spec;
        spec.name = "shared";
        spec.labels = {{"by", std::to_string(i)}};
        code = create_volume(t.path(), spec) == "shared" ? 0 : 1;
      } catch (...) {
        code = 2;
      }
      _exit(code);
    }
    pids.push_back(pid);
  }
  for (pid_t pid : pids) {
    int status = 0;
    REQUIRE(::waitpid(pid, &status, 0) == pid);
    CHECK((WIFEXITED(status) && WEXITSTATUS(status) == 0));
  }
  CHECK(names_of(t.path()) == std::vector<std::string>{"shared"});
  auto rec = record(t.path(), "shared");
  REQUIRE(rec.has_value());
  CHECK((*rec)["Labels"].size() == 1);  // one creator won, the others found it
  CHECK(is_dir(t.path() + "/volumes/shared/_data"));
  size_t entries = 0;
  for (const auto& e : std::filesystem::directory_iterator(t.path() + "/volumes")) {
    (void)e;
    ++entries;
  }
  CHECK(entries == 1);
}

TEST_CASE("a volume with something mounted on it is neither removed nor pruned" *
          doctest::skip(test::needs_root())) {
  test::TempDir t("vol");
  const std::string name = make(t.path(), std::nullopt);
  const std::string data = t.path() + "/volumes/" + name + "/_data";
  REQUIRE(::rmdir(data.c_str()) == 0);  // TmpfsMount makes the directory
  {
    test::TmpfsMount m(data, "size=1m");
    write_file(data + "/precious", 3);
    auto r = prune_volumes(t.path(), true, {});
    CHECK(r.removed.empty());
    std::vector<std::string> errors;
    CHECK(remove_volumes(t.path(), {name}, true, &errors).empty());
    CHECK(errors == std::vector<std::string>{"remove " + name + ": " + data + " is still mounted"});
    CHECK(read_file(data + "/precious") == "xxx");
  }
  std::vector<std::string> errors;
  CHECK(remove_volumes(t.path(), {name}, false, &errors) == std::vector<std::string>{name});
  CHECK(errors.empty());
}

}  // namespace
}  // namespace layerfs::ctl
