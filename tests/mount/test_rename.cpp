// Mounted tests: rename of files and directories that come from the lowers, within and across
// directories, over existing targets, with RENAME_NOREPLACE and RENAME_EXCHANGE. Never EXDEV;
// renaming a big lower directory puts only the directory itself in the upper.
#include <doctest/doctest.h>
#include <fcntl.h>
#include <linux/fs.h>
#include <stdio.h>

#include "tests/support/scenario.h"

using namespace layerfs::test;

namespace {

std::function<int(const std::string&)> mv(std::string from, std::string to, unsigned flags = 0) {
  return [from, to, flags](const std::string& r) {
    return flags ? sys::renameat2(r + "/" + from, r + "/" + to, flags)
                 : sys::rename(r + "/" + from, r + "/" + to);
  };
}

}  // namespace

TEST_CASE("rename: lower files within and across directories") {
  Scenario s(
      {.lowers = {{file("a", "a"), file("d/x", "x"), dir("e")},
                  {file("d/y", "y"), dir("d/sub"), file("d/sub/z", "z"), file("far", "f")}}});
  CHECK(s.both("a -> b", mv("a", "b")) == 0);
  CHECK(s.both("d/x -> e/x", mv("d/x", "e/x")) == 0);
  CHECK(s.both("d/y -> d/sub/y2", mv("d/y", "d/sub/y2")) == 0);
  CHECK(s.both("far -> d/sub/far", mv("far", "d/sub/far")) == 0);
  CHECK(s.both("d/sub/z -> z", mv("d/sub/z", "z")) == 0);
  CHECK(read_file(s.mnt("b")) == "a");
  CHECK(sys::lstat(s.mnt("a")) == ENOENT);
  s.check_tree();
  s.remount();
  s.check_tree({}, "after remount");
}

TEST_CASE("rename: over existing targets") {
  Scenario s(
      {.lowers = {{file("f1", "one"), file("f2", "two"), dir("empty"), dir("full"),
                   file("full/x", "x"), dir("src"), file("src/s", "s"), file("plain", "p")},
                  {file("up_target", "lower"), dir("merged_empty"), file("merged_empty/w", "w"),
                   dir("src2"), file("src2/t", "t"), dir("lowfull"), file("lowfull/deep", "d")}},
       .upper = {file("up", "from upper"), dir("lowfull")}});
  SUBCASE("file over file") {
    CHECK(s.both("f1 -> f2", mv("f1", "f2")) == 0);
    CHECK(s.both("up -> up_target", mv("up", "up_target")) == 0);
    CHECK(s.both("f2 -> up_target", mv("f2", "up_target")) == 0);
    CHECK(read_file(s.mnt("up_target")) == "one");
  }
  SUBCASE("directory over empty directory") {
    CHECK(s.both("src -> empty", mv("src", "empty")) == 0);
    CHECK(list_dir(s.mnt("empty")) == std::vector<std::string>{"s"});
    // Empty only in the merged view.
    s.both("unlink merged_empty/w",
           [](const std::string& r) { return sys::unlink(r + "/merged_empty/w"); });
    CHECK(s.both("src2 -> merged_empty", mv("src2", "merged_empty")) == 0);
    CHECK(list_dir(s.mnt("merged_empty")) == std::vector<std::string>{"t"});
  }
  SUBCASE("error cases") {
    CHECK(s.both("dir over non-empty dir", mv("src", "full")) == ENOTEMPTY);
    CHECK(s.both("dir over dir non-empty in a lower", mv("src", "lowfull")) == ENOTEMPTY);
    CHECK(s.both("file over dir", mv("plain", "empty")) == EISDIR);
    CHECK(s.both("dir over file", mv("src", "plain")) == ENOTDIR);
    CHECK(s.both("dir into itself", mv("src", "src/inside")) == EINVAL);
    CHECK(s.both("missing source", mv("missing", "x")) == ENOENT);
    CHECK(s.both("into a missing dir", mv("plain", "nodir/x")) == ENOENT);
    CHECK(s.both("through a file", mv("plain", "f1/x")) == ENOTDIR);
  }
  SUBCASE("rename to the same name") {
    CHECK(s.both("f1 -> f1", mv("f1", "f1")) == 0);
    CHECK(s.both("src -> src", mv("src", "src")) == 0);
  }
  s.check_tree();
  s.remount();
  s.check_tree({}, "after remount");
}

TEST_CASE("rename: hard links of one lower file renamed onto each other") {
  Scenario s({.lowers = {{file("a", "data"), hardlink("b", "a")}}});
  CHECK(s.both("a -> b (same inode)", mv("a", "b")) == 0);
  CHECK(list_dir(s.mnt()) == std::vector<std::string>{"a", "b"});
  s.check_tree();
}

TEST_CASE("rename: RENAME_NOREPLACE") {
  Scenario s({.lowers = {{file("a", "a"), dir("d"), file("d/in", "i")},
                         {file("lower_only", "l"), dir("ld"), file("gone", "g")}}});
  CHECK(s.both("onto a lower file", mv("a", "lower_only", RENAME_NOREPLACE)) == EEXIST);
  CHECK(s.both("onto a lower dir", mv("d", "ld", RENAME_NOREPLACE)) == EEXIST);
  s.both("unlink gone", [](const std::string& r) { return sys::unlink(r + "/gone"); });
  CHECK(s.both("onto a deleted name", mv("a", "gone", RENAME_NOREPLACE)) == 0);
  CHECK(s.both("dir to a new name", mv("d", "d2", RENAME_NOREPLACE)) == 0);
  CHECK(read_file(s.mnt("gone")) == "a");
  CHECK(read_file(s.mnt("lower_only")) == "l");
  s.check_tree();
  s.remount();
  s.check_tree({}, "after remount");
}

TEST_CASE("rename: RENAME_EXCHANGE") {
  Scenario s({.lowers = {{file("f1", "one"), dir("d1"), file("d1/x", "x")},
                         {file("f2", "two"), dir("d2"), file("d2/y", "y"), file("d1/z", "z")}},
              .upper = {file("u", "upper")}});
  CHECK(s.both("f1 <-> f2", mv("f1", "f2", RENAME_EXCHANGE)) == 0);
  CHECK(read_file(s.mnt("f1")) == "two");
  CHECK(read_file(s.mnt("f2")) == "one");
  CHECK(s.both("u <-> f1", mv("u", "f1", RENAME_EXCHANGE)) == 0);
  CHECK(s.both("d1 <-> d2", mv("d1", "d2", RENAME_EXCHANGE)) == 0);
  CHECK(list_dir(s.mnt("d1")) == std::vector<std::string>{"y"});
  CHECK(list_dir(s.mnt("d2")) == std::vector<std::string>{"x", "z"});
  CHECK(s.both("file <-> dir", mv("f2", "d1", RENAME_EXCHANGE)) == 0);
  CHECK(s.both("with a missing name", mv("f1", "missing", RENAME_EXCHANGE)) == ENOENT);
  s.check_tree();
  s.remount();
  s.check_tree({}, "after remount");
}

TEST_CASE("rename: a lower directory with 1000 entries moves without copying its content") {
  std::vector<Entry> l0, l1;
  for (int i = 0; i < 1000; ++i) {
    (i % 2 ? l0 : l1).push_back(file("big/f" + std::to_string(i), std::to_string(i)));
  }
  l1.push_back(dir("big/sub"));
  l1.push_back(file("big/sub/deep", "deep"));
  Scenario s({.lowers = {l0, l1}});
  CHECK(s.both("big -> moved", mv("big", "moved")) == 0);
  CHECK(sys::lstat(s.mnt("big")) == ENOENT);
  CHECK(list_dir(s.mnt("moved")).size() == 1001);
  CHECK(read_file(s.mnt("moved/f777")) == "777");
  CHECK(read_file(s.mnt("moved/sub/deep")) == "deep");
  auto upper = list_tree(s.upper());
  if (overlay_mode()) {
    CHECK_MESSAGE(upper.size() <= 2, "upper holds " << upper.size() << " entries");
  } else {
    CHECK(upper == std::vector<std::string>{"moved"});
  }
  s.check_tree();
  s.remount();
  CHECK(sys::lstat(s.mnt("big")) == ENOENT);
  CHECK(list_dir(s.mnt("moved")).size() == 1001);
  s.check_tree({}, "after remount");
}

TEST_CASE("rename: working inside a renamed lower directory") {
  Scenario s({.lowers = {{dir("d"), file("d/a", "a"), dir("d/sub"), file("d/sub/b", "b")},
                         {file("d/c", "c"), file("d/sub/e", "e")}}});
  REQUIRE(s.both("d -> r", mv("d", "r")) == 0);
  s.both("write r/a", [](const std::string& r) { return sys::write(r + "/r/a", "changed"); });
  s.both("unlink r/c", [](const std::string& r) { return sys::unlink(r + "/r/c"); });
  s.both("create r/new", [](const std::string& r) { return sys::write(r + "/r/new", "n"); });
  s.both("rename inside", mv("r/sub/e", "r/e_moved"));
  s.both("rename the subdir", mv("r/sub", "r/sub2"));
  s.check_tree();
  s.remount();
  s.check_tree({}, "after remount");
  s.both("r -> d again", mv("r", "d"));
  s.check_tree({}, "after renaming back");
  s.remount();
  s.check_tree({}, "after renaming back and remount");
}

TEST_CASE("rename: a directory renamed twice and a new one at the old name") {
  Scenario s({.lowers = {{dir("a"), file("a/x", "x")},
                         {file("a/y", "y"), dir("a/s"), file("a/s/z", "z")}}});
  s.both("a -> b", mv("a", "b"));
  s.both("b -> c", mv("b", "c"));
  s.both("mkdir a", [](const std::string& r) { return sys::mkdir(r + "/a"); });
  CHECK(list_dir(s.mnt("a")).empty());
  CHECK(list_dir(s.mnt("c")) == std::vector<std::string>{"s", "x", "y"});
  s.both("c/s -> a/s", mv("c/s", "a/s"));
  CHECK(list_dir(s.mnt("a/s")) == std::vector<std::string>{"z"});
  s.check_tree();
  s.remount();
  CHECK(list_dir(s.mnt("a")) == std::vector<std::string>{"s"});
  s.check_tree({}, "after remount");
}

TEST_CASE("rename: a merged directory and directories into deeper lower directories") {
  Scenario s({.lowers = {{dir("m"), file("m/l", "l"), dir("x/y")}, {file("m/l2", "l2")}},
              .upper = {dir("m"), file("m/u", "u")}});
  CHECK(s.both("m -> x/y/m", mv("m", "x/y/m")) == 0);
  CHECK(list_dir(s.mnt("x/y/m")) == std::vector<std::string>{"l", "l2", "u"});
  CHECK(sys::lstat(s.mnt("m")) == ENOENT);
  CHECK(s.both("x -> top", mv("x", "top")) == 0);
  CHECK(list_dir(s.mnt("top/y/m")) == std::vector<std::string>{"l", "l2", "u"});
  s.check_tree();
  s.remount();
  s.check_tree({}, "after remount");
}

TEST_CASE("rename: the old name stays free after a rename") {
  Scenario s({.lowers = {{file("f", "lower"), dir("d"), file("d/x", "x")}}});
  s.both("f -> g", mv("f", "g"));
  s.both("create f", [](const std::string& r) { return sys::write(r + "/f", "new"); });
  s.both("d -> e", mv("d", "e"));
  s.both("mkdir d", [](const std::string& r) { return sys::mkdir(r + "/d"); });
  CHECK(read_file(s.mnt("f")) == "new");
  CHECK(read_file(s.mnt("g")) == "lower");
  CHECK(list_dir(s.mnt("d")).empty());
  s.check_tree();
  s.remount();
  s.check_tree({}, "after remount");
}

TEST_CASE("rename: open directories and files follow a renamed lower directory") {
  Scenario s({.lowers = {{dir("a/b"), file("a/b/f", "f")}, {file("a/b/g", "g")}}});
  Fd dirfd = open_fd(s.mnt("a/b"), O_RDONLY | O_DIRECTORY);
  Fd f = open_fd(s.mnt("a/b/f"), O_RDWR);
  REQUIRE(s.both("a -> z", mv("a", "z")) == 0);
  // Through descriptors opened under the old name.
  int fd = ::openat(dirfd.get(), "created", O_WRONLY | O_CREAT | O_CLOEXEC, 0644);
  REQUIRE(fd >= 0);
  CHECK(::write(fd, "c", 1) == 1);
  ::close(fd);
  CHECK(::mkdirat(dirfd.get(), "sub", 0755) == 0);
  CHECK(::unlinkat(dirfd.get(), "g", 0) == 0);
  CHECK(::pwrite(f.get(), "F", 1, 0) == 1);
  dirfd = Fd();
  f = Fd();
  write_file(s.ref("z/b/created"), "c");
  REQUIRE(sys::mkdir(s.ref("z/b/sub")) == 0);
  REQUIRE(sys::unlink(s.ref("z/b/g")) == 0);
  write_file(s.ref("z/b/f"), "F");
  CHECK(list_dir(s.mnt("z/b")) == std::vector<std::string>{"created", "f", "sub"});
  s.check_tree();
  s.remount();
  s.check_tree({}, "after remount");
}

TEST_CASE("rename: exchanging a lower directory with a new one") {
  Scenario s({.lowers = {{dir("old"), file("old/x", "x")}, {file("old/y", "y")}}});
  s.both("mkdir new", [](const std::string& r) { return sys::mkdir(r + "/new"); });
  s.both("create new/n", [](const std::string& r) { return sys::write(r + "/new/n", "n"); });
  CHECK(s.both("old <-> new", mv("old", "new", RENAME_EXCHANGE)) == 0);
  CHECK(list_dir(s.mnt("old")) == std::vector<std::string>{"n"});
  CHECK(list_dir(s.mnt("new")) == std::vector<std::string>{"x", "y"});
  s.check_tree();
  s.remount();
  s.check_tree({}, "after remount");
  CHECK(s.both("back again", mv("old", "new", RENAME_EXCHANGE)) == 0);
  s.check_tree({}, "after exchanging back");
  s.remount();
  s.check_tree({}, "after exchanging back and remount");
}

TEST_CASE("rename: a renamed directory emptied and removed, both names reused") {
  Scenario s({.lowers = {{dir("d"), file("d/a", "a")}, {file("d/b", "b")}}});
  s.both("d -> e", mv("d", "e"));
  s.both("unlink e/a", [](const std::string& r) { return sys::unlink(r + "/e/a"); });
  s.both("unlink e/b", [](const std::string& r) { return sys::unlink(r + "/e/b"); });
  CHECK(s.both("rmdir e", [](const std::string& r) { return sys::rmdir(r + "/e"); }) == 0);
  s.both("mkdir d", [](const std::string& r) { return sys::mkdir(r + "/d"); });
  s.both("mkdir e", [](const std::string& r) { return sys::mkdir(r + "/e"); });
  CHECK(list_dir(s.mnt("d")).empty());
  CHECK(list_dir(s.mnt("e")).empty());
  s.check_tree();
  s.remount();
  s.check_tree({}, "after remount");
}

TEST_CASE("rename: moving a subdirectory out and then renaming its old parent") {
  Scenario s({.lowers = {{dir("a/b"), file("a/b/f", "f"), file("a/keep", "k")},
                         {file("a/b/g", "g"), file("a/low", "l")}}});
  s.both("a/b -> c", mv("a/b", "c"));
  s.both("a -> a2", mv("a", "a2"));
  s.both("mkdir a", [](const std::string& r) { return sys::mkdir(r + "/a"); });
  s.both("c -> a/b", mv("c", "a/b"));
  CHECK(list_dir(s.mnt("a/b")) == std::vector<std::string>{"f", "g"});
  CHECK(list_dir(s.mnt("a2")) == std::vector<std::string>{"keep", "low"});
  s.check_tree();
  s.remount();
  s.check_tree({}, "after remount");
}

TEST_CASE("rename: onto whited-out names and into opaque directories") {
  Scenario s({.lowers = {{dir("src"), file("src/f", "f"), dir("opq"), file("opq/new", "n")},
                         {file("gone", "g"), dir("opq"), file("opq/old", "o"), dir("gone_dir"),
                          file("gone_dir/x", "x")}}});
  s.both("unlink gone", [](const std::string& r) { return sys::unlink(r + "/gone"); });
  s.both("rm gone_dir/x", [](const std::string& r) { return sys::unlink(r + "/gone_dir/x"); });
  s.both("rmdir gone_dir", [](const std::string& r) { return sys::rmdir(r + "/gone_dir"); });
  s.both("src/f -> gone", mv("src/f", "gone"));
  s.both("src -> gone_dir", mv("src", "gone_dir"));
  s.both("rm opq/old", [](const std::string& r) { return sys::unlink(r + "/opq/old"); });
  s.both("gone -> opq/old", mv("gone", "opq/old"));
  CHECK(read_file(s.mnt("opq/old")) == "f");
  CHECK(list_dir(s.mnt("gone_dir")).empty());
  s.check_tree();
  s.remount();
  s.check_tree({}, "after remount");
}
