// Tests for tools/stacks.cpp that need no mount: stack records, the writable
// layer's directories, removal (with anonymous volumes), listing with sizes
// computed here independently, and the errors for unknown or wrong stacks.
// Mounting, unmounting and commit are in tests/mount/test_layerctl_stacks.cpp.
#include <doctest/doctest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <fstream>
#include <string>

#include "tests/support/temp_dir.h"
#include "tools/stacks.h"
#include "tools/volumes.h"

namespace layerfs::ctl {
namespace {

bool is_dir(const std::string& p) {
  struct stat st;
  return ::lstat(p.c_str(), &st) == 0 && S_ISDIR(st.st_mode);
}

mode_t mode_of(const std::string& p) {
  struct stat st;
  REQUIRE(::lstat(p.c_str(), &st) == 0);
  return st.st_mode & 07777;
}

void write_file(const std::string& path, const std::string& data) {
  std::ofstream out(path, std::ios::binary);
  out << data;
  REQUIRE(out.good());
}

// A layer in the store without importing anything: its record and an empty
// tree, as tools/STORE.md describes them.
std::string fake_layer(const std::string& root, char digit, int64_t size,
                       const std::string& name = "") {
  const std::string hex(64, digit);
  const std::string id = "sha256:" + hex;
  auto store = Store::open(root, Access::kWrite);
  json rec = {{"id", id},
              {"created", now_rfc3339()},
              {"size", size},
              {"tar_size", 1024},
              {"source", "import:/x"}};
  std::vector<std::pair<std::string, std::optional<json>>> changes = {{"layer/" + id, rec}};
  if (!name.empty()) {
    rec["name"] = name;
    changes = {{"layer/" + id, rec}, {"layername/" + name, json{{"id", id}}}};
  }
  store->write(changes);
  REQUIRE(::mkdir(store->layer_dir(id).c_str(), 0700) == 0);
  REQUIRE(::mkdir((store->layer_dir(id) + "/tree").c_str(), 0755) == 0);
  return id;
}

std::string error_of(const std::function<void()>& fn) {
  try {
    fn();
  } catch (const Error& e) {
    return e.what();
  }
  return "(no error)";
}

TEST_CASE("create records the layers bottom-most first and makes upper and work") {
  test::TempDir t("stacks");
  const std::string root = t.path() + "/store";
  const std::string a = fake_layer(root, 'a', 100, "base");
  const std::string b = fake_layer(root, 'b', 20);
  // By name, and by a 12-digit prefix.
  create_stack(root, "web", {"base", std::string(12, 'b')});
  auto store = Store::open(root, Access::kRead);
  auto rec = store->get("stack/web");
  REQUIRE(rec.has_value());
  CHECK((*rec)["name"] == "web");
  CHECK((*rec)["layers"] == json::array({a, b}));
  CHECK((*rec)["volumes"] == json::array());
  CHECK((*rec)["anonymous_volumes"] == json::array());
  CHECK_FALSE(rec->contains("mount"));
  CHECK((*rec)["created"].get<std::string>().size() == 20);  // 2006-01-02T15:04:05Z
  CHECK(is_dir(root + "/stacks/web/upper"));
  CHECK(is_dir(root + "/stacks/web/work"));
  CHECK(mode_of(root + "/stacks/web/upper") == 0755);
  CHECK(mode_of(root + "/stacks/web/work") == 0700);
}

TEST_CASE("create refuses taken names, bad names, missing layers and no layers") {
  test::TempDir t("stacks");
  const std::string root = t.path() + "/store";
  fake_layer(root, 'a', 1, "base");
  create_stack(root, "web", {"base"});
  CHECK(error_of([&] { create_stack(root, "web", {"base"}); }) ==
        "the stack name web is already in use");
  CHECK(error_of([&] { create_stack(root, "-bad", {"base"}); }) ==
        "Invalid stack name (-bad), only [a-zA-Z0-9][a-zA-Z0-9_.-] are allowed");
  CHECK(error_of([&] { create_stack(root, "db", {"base", "nope"}); }) == "No such layer: nope");
  CHECK(error_of([&] { create_stack(root, "db", {}); }) == "a stack needs at least one layer");
  // Nothing of the refused ones was left behind.
  auto store = Store::open(root, Access::kRead);
  CHECK_FALSE(store->get("stack/db").has_value());
  CHECK_FALSE(is_dir(root + "/stacks/db"));
}

TEST_CASE("unknown stacks are reported by every command") {
  test::TempDir t("stacks");
  const std::string root = t.path() + "/store";
  fake_layer(root, 'a', 1, "base");
  CHECK(error_of([&] { remove_stack(root, "ghost", false); }) == "No such stack: ghost");
  CHECK(error_of([&] { mount_stack(root, "ghost", t.path(), {}); }) == "No such stack: ghost");
  CHECK(error_of([&] { umount_stack(root, "ghost"); }) == "No such stack: ghost");
  CHECK(error_of([&] { commit_stack(root, "ghost", std::nullopt); }) == "No such stack: ghost");
  CHECK(error_of([&] { umount_stack(root, t.path()); }) == "no stack is mounted at " + t.path());
  create_stack(root, "web", {"base"});
  CHECK(error_of([&] { umount_stack(root, "web"); }) == "stack web is not mounted");
}

TEST_CASE("mount refuses a mountpoint that is missing, not a directory or not empty") {
  test::TempDir t("stacks");
  const std::string root = t.path() + "/store";
  fake_layer(root, 'a', 1, "base");
  create_stack(root, "web", {"base"});
  CHECK(error_of([&] { mount_stack(root, "web", t.path() + "/none", {}); }) ==
        "cannot use " + t.path() + "/none as the mountpoint: No such file or directory");
  write_file(t.path() + "/file", "x");
  CHECK(error_of([&] { mount_stack(root, "web", t.path() + "/file", {}); }) ==
        "the mountpoint " + t.path() + "/file is not a directory");
  REQUIRE(::mkdir((t.path() + "/full").c_str(), 0755) == 0);
  write_file(t.path() + "/full/x", "x");
  CHECK(error_of([&] { mount_stack(root, "web", t.path() + "/full", {}); }) ==
        "the mountpoint " + t.path() + "/full is not empty");
}

TEST_CASE("rm removes the record and the writable layer, and -v its anonymous volumes") {
  test::TempDir t("stacks");
  const std::string root = t.path() + "/store";
  fake_layer(root, 'a', 1, "base");
  create_stack(root, "web", {"base"});
  create_stack(root, "db", {"base"});
  write_file(root + "/stacks/web/upper/f", "data");
  // Volumes as a mount would have recorded them: one anonymous one of web's,
  // one named, and one anonymous one that db uses too.
  VolumeCreate anon;
  anon.anonymous = true;
  const std::string mine = create_volume(root, anon);
  const std::string shared = create_volume(root, anon);
  VolumeCreate named;
  named.name = "keep";
  create_volume(root, named);
  {
    auto store = Store::open(root, Access::kWrite);
    json web = *store->get("stack/web");
    web["volumes"] = {mine, "keep", shared};
    web["anonymous_volumes"] = {mine, shared};
    json db = *store->get("stack/db");
    db["volumes"] = {shared};
    store->write({{"stack/web", web}, {"stack/db", db}});
  }
  remove_stack(root, "web", true);
  auto store = Store::open(root, Access::kRead);
  CHECK_FALSE(store->get("stack/web").has_value());
  CHECK_FALSE(is_dir(root + "/stacks/web"));
  CHECK_FALSE(store->get("volume/" + mine).has_value());
  CHECK_FALSE(is_dir(root + "/volumes/" + mine));
  CHECK(store->get("volume/keep").has_value());       // named: never removed by rm -v
  CHECK(store->get("volume/" + shared).has_value());  // still used by db
  store.reset();

  // Without -v anonymous volumes stay.
  remove_stack(root, "db", false);
  store = Store::open(root, Access::kRead);
  CHECK_FALSE(store->get("stack/db").has_value());
  CHECK(store->get("volume/" + shared).has_value());
}

TEST_CASE("ps lists mounted stacks, or all with -a, with sizes computed as Docker does") {
  test::TempDir t("stacks");
  const std::string root = t.path() + "/store";
  fake_layer(root, 'a', 7000000, "base");
  fake_layer(root, 'b', 750000, "app");
  create_stack(root, "one", {"base", "app"});
  create_stack(root, "two", {"base"});
  // The writable layer: 5 + 3 bytes, a hard link counted once, a symlink by
  // the length of its target, directories nothing.
  write_file(root + "/stacks/one/upper/out.txt", "hello");
  REQUIRE(::mkdir((root + "/stacks/one/upper/d").c_str(), 0755) == 0);
  write_file(root + "/stacks/one/upper/d/x", "abc");
  REQUIRE(::link((root + "/stacks/one/upper/d/x").c_str(),
                 (root + "/stacks/one/upper/y").c_str()) == 0);
  REQUIRE(::symlink("target", (root + "/stacks/one/upper/l").c_str()) == 0);
  auto store = Store::open(root, Access::kRead);
  CHECK(list_stacks(*store, false, true).empty());
  auto all = list_stacks(*store, true, true);
  REQUIRE(all.size() == 2);
  const StackInfo& one = all[0].name == "one" ? all[0] : all[1];
  const StackInfo& two = all[0].name == "one" ? all[1] : all[0];
  CHECK(one.layers.size() == 2);
  CHECK_FALSE(one.mountpoint.has_value());
  CHECK(one.size_rw == 5 + 3 + 6);
  CHECK(one.size_root_fs == 7000000 + 750000 + 14);
  CHECK(size_cell(one.size_rw, one.size_root_fs) == "14B (virtual 7.75MB)");
  CHECK(two.size_rw == 0);
  CHECK(two.size_root_fs == 7000000);
  CHECK(size_cell(two.size_rw, two.size_root_fs) == "0B (virtual 7MB)");
  // Without sizes nothing is measured.
  auto plain = list_stacks(*store, true, false);
  REQUIRE(plain.size() == 2);
  CHECK(plain[0].size_rw == -1);
}

}  // namespace
}  // namespace layerfs::ctl
