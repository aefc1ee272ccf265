// Mounted tests: st_ino. Unique across the whole mount even when layers on different filesystems
// use the same inode numbers; unchanged by copy-up and rename; the same after unmount + mount;
// one st_dev for the whole mount.
#include <doctest/doctest.h>
#include <fcntl.h>

#include <map>
#include <set>

#include "tests/support/scenario.h"

using namespace layerfs::test;

namespace {

std::vector<Entry> same_shape(const std::string& tag) {
  return {file("f1", tag + "1"),       file("f2", tag + "2"),   dir("d"),
          file("d/g", tag + "g"),      sym("l", "f1"),          dir("e" + tag),
          file("e" + tag + "/h", tag), file("only_" + tag, tag)};
}

std::map<std::string, ino_t> inodes(const std::string& root) {
  std::map<std::string, ino_t> out;
  for (const auto& [path, n] : scan_tree(root, {.content = false, .xattrs = false})) {
    out[path] = n.ino;
  }
  return out;
}

}  // namespace

TEST_CASE("inode: st_ino is unique across layers whose inode numbers collide") {
  Scenario s({.lowers = {same_shape("a"), same_shape("b"), same_shape("c")}, .tmpfs_lowers = true});
  // The layers really do reuse inode numbers.
  REQUIRE(lstat_path(s.lower(0, "f2")).st_ino == lstat_path(s.lower(1, "f2")).st_ino);
  REQUIRE(lstat_path(s.lower(0, "ea")).st_ino == lstat_path(s.lower(1, "eb")).st_ino);
  for (int i = 0; i < 20; ++i) {
    const std::string name = "/new" + std::to_string(i);
    s.both("create", [&](const std::string& r) { return sys::write(r + name, "n"); });
  }
  s.both("mkdir", [](const std::string& r) { return sys::mkdir(r + "/newdir"); });
  Snapshot m = s.snapshot_mount({.content = false, .xattrs = false});
  std::map<ino_t, std::vector<std::string>> by_ino;
  std::set<dev_t> devs;
  for (const auto& [path, n] : m) {
    by_ino[n.ino].push_back(path);
    devs.insert(n.dev);
  }
  std::string shared;
  for (const auto& [ino, paths] : by_ino) {
    if (paths.size() < 2) continue;
    shared += " " + std::to_string(ino) + ":";
    for (const auto& p : paths) shared += " " + p;
  }
  CHECK_MESSAGE(shared.empty(), "distinct objects share an st_ino:" << shared);
  if (!overlay_mode()) CHECK(devs.size() == 1);
  s.check_tree();
}

TEST_CASE("inode: st_ino does not change on copy-up") {
  Scenario s({.lowers = {{file("f", "data"), dir("d"), file("d/x", "x"), sym("l", "f"), fifo("p")},
                         {file("g", "g"), dir("d"), file("d/y", "y")}}});
  auto before = inodes(s.mnt());
  s.both("write f", [](const std::string& r) { return sys::write(r + "/f", "more", O_WRONLY); });
  s.both("truncate g", [](const std::string& r) { return sys::truncate(r + "/g", 0); });
  s.both("chmod d/y", [](const std::string& r) { return sys::chmod(r + "/d/y", 0600); });
  s.both("lchown l", [](const std::string& r) { return sys::lchown(r + "/l", 1, 1); });
  s.both("chmod p", [](const std::string& r) { return sys::chmod(r + "/p", 0600); });
  s.both("create in d", [](const std::string& r) { return sys::write(r + "/d/new", "n"); });
  auto after = inodes(s.mnt());
  for (const auto& [path, ino] : before) {
    CAPTURE(path);
    CHECK(after.at(path) == ino);
  }
}

TEST_CASE("inode: st_ino is the same after unmount and mount") {
  Scenario s(
      {.lowers = {{file("lower_only", "l"), file("to_copy", "c"), dir("dir"), file("dir/in", "i"),
                   file("to_rename", "r"), dir("dir_to_rename"), file("dir_to_rename/z", "z")},
                  {file("dir/deeper", "d"), file("second", "s")}}});
  s.both("copy up", [](const std::string& r) { return sys::write(r + "/to_copy", "x"); });
  s.both("copy up in dir", [](const std::string& r) { return sys::chmod(r + "/dir/in", 0600); });
  s.both("new file", [](const std::string& r) { return sys::write(r + "/new", "n"); });
  s.both("new dir", [](const std::string& r) { return sys::mkdir(r + "/newdir"); });
  s.both("rename file",
         [](const std::string& r) { return sys::rename(r + "/to_rename", r + "/renamed"); });
  s.both("rename dir", [](const std::string& r) {
    return sys::rename(r + "/dir_to_rename", r + "/dir_renamed");
  });
  auto before = inodes(s.mnt());
  s.remount();
  auto after = inodes(s.mnt());
  CHECK(after.size() == before.size());
  for (const auto& [path, ino] : before) {
    CAPTURE(path);
    REQUIRE(after.count(path) == 1);
    CHECK(after.at(path) == ino);
  }
  s.check_tree();
}

TEST_CASE("inode: st_ino persists across remount for layers on other filesystems") {
  LAYERFS_ONLY("kernel overlayfs persists st_ino across filesystems only with xino");
  Scenario s({.lowers = {same_shape("a"), same_shape("b")}, .tmpfs_lowers = true});
  s.both("copy up", [](const std::string& r) { return sys::write(r + "/f2", "x"); });
  s.both("rename", [](const std::string& r) { return sys::rename(r + "/d", r + "/d2"); });
  auto before = inodes(s.mnt());
  s.remount();
  auto after = inodes(s.mnt());
  for (const auto& [path, ino] : before) {
    CAPTURE(path);
    REQUIRE(after.count(path) == 1);
    CHECK(after.at(path) == ino);
  }
}

TEST_CASE("inode: rename keeps st_ino") {
  Scenario s({.lowers = {{file("f", "f"), dir("d"), file("d/x", "x")}, {file("d/y", "y")}}});
  ino_t f = lstat_path(s.mnt("f")).st_ino;
  ino_t d = lstat_path(s.mnt("d")).st_ino;
  ino_t x = lstat_path(s.mnt("d/x")).st_ino;
  REQUIRE(sys::rename(s.mnt("f"), s.mnt("f2")) == 0);
  REQUIRE(sys::rename(s.mnt("d"), s.mnt("d2")) == 0);
  CHECK(lstat_path(s.mnt("f2")).st_ino == f);
  CHECK(lstat_path(s.mnt("d2")).st_ino == d);
  CHECK(lstat_path(s.mnt("d2/x")).st_ino == x);
  s.remount();
  CHECK(lstat_path(s.mnt("f2")).st_ino == f);
  CHECK(lstat_path(s.mnt("d2")).st_ino == d);
  CHECK(lstat_path(s.mnt("d2/x")).st_ino == x);
}

TEST_CASE("inode: fstat of an open file and stat of its name agree through copy-up") {
  Scenario s({.lowers = {{file("f", "data")}}});
  Fd ro = open_fd(s.mnt("f"), O_RDONLY);
  struct stat a;
  REQUIRE(::fstat(ro.get(), &a) == 0);
  Fd rw = open_fd(s.mnt("f"), O_WRONLY);
  REQUIRE(::pwrite(rw.get(), "X", 1, 0) == 1);
  struct stat b, c;
  REQUIRE(::fstat(rw.get(), &b) == 0);
  REQUIRE(::fstat(ro.get(), &c) == 0);
  CHECK(a.st_ino == b.st_ino);
  CHECK(c.st_ino == b.st_ino);
  CHECK(lstat_path(s.mnt("f")).st_ino == a.st_ino);
}
