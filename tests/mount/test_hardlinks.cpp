// Mounted tests: hard links. link() works on lower and upper files with correct link counts, and
// names that are one file in a lower stay one file after any of them is written or changed
// (same content through every name, same st_ino, nlink unchanged), before and after a remount.
#include <doctest/doctest.h>
#include <fcntl.h>
#include <unistd.h>

#include "tests/support/scenario.h"

using namespace layerfs::test;

namespace {

// Checks that `names` (mount paths) are one file: same st_ino, nlink == `nlink`, same content.
void check_one_file(const Scenario& s, const std::vector<std::string>& names, nlink_t nlink,
                    const std::string& content, const std::string& when) {
  CAPTURE(when);
  struct stat first = lstat_path(s.mnt(names.front()));
  for (const auto& n : names) {
    CAPTURE(n);
    struct stat st = lstat_path(s.mnt(n));
    CHECK(st.st_ino == first.st_ino);
    CHECK(st.st_nlink == nlink);
    CHECK(st.st_mode == first.st_mode);
    CHECK(read_file(s.mnt(n)) == content);
  }
}

}  // namespace

TEST_CASE("hardlinks: link() of a lower file") {
  Scenario s({.lowers = {{file("f", "lower data"), dir("d")}}});
  CHECK(s.both("link f d/g",
               [](const std::string& r) { return sys::link(r + "/f", r + "/d/g"); }) == 0);
  check_one_file(s, {"f", "d/g"}, 2, "lower data", "after link");
  s.both("write through d/g", [](const std::string& r) {
    return sys::write(r + "/d/g", "written", O_WRONLY | O_TRUNC);
  });
  check_one_file(s, {"f", "d/g"}, 2, "written", "after the write");
  s.check_tree();
  s.remount();
  check_one_file(s, {"f", "d/g"}, 2, "written", "after remount");
  s.both("unlink f", [](const std::string& r) { return sys::unlink(r + "/f"); });
  CHECK(lstat_path(s.mnt("d/g")).st_nlink == 1);
  s.check_tree({}, "after unlink");
}

TEST_CASE("hardlinks: names linked in a lower stay one file after a write") {
  Scenario s({.lowers = {{file("d/a", "original", 0640), hardlink("e/b", "d/a"),
                          hardlink("c", "d/a"), file("other", "o")}}});
  check_one_file(s, {"d/a", "e/b", "c"}, 3, "original", "before any change");
  Fd fd = open_fd(s.mnt("d/a"), O_WRONLY);
  REQUIRE(::pwrite(fd.get(), "CHANGED", 7, 0) == 7);
  fd = Fd();
  check_one_file(s, {"d/a", "e/b", "c"}, 3, "CHANGEDl", "after a write through d/a");
  REQUIRE(sys::chmod(s.mnt("e/b"), 0600) == 0);
  CHECK((lstat_path(s.mnt("d/a")).st_mode & 07777) == 0600);
  check_one_file(s, {"d/a", "e/b", "c"}, 3, "CHANGEDl", "after chmod through e/b");
  ino_t ino = lstat_path(s.mnt("c")).st_ino;
  s.remount();
  check_one_file(s, {"d/a", "e/b", "c"}, 3, "CHANGEDl", "after remount");
  CHECK(lstat_path(s.mnt("c")).st_ino == ino);
  write_file(s.mnt("c"), "through c");
  check_one_file(s, {"d/a", "e/b", "c"}, 3, "through c", "after a write through c");
  s.remount();
  check_one_file(s, {"d/a", "e/b", "c"}, 3, "through c", "after a second remount");
}

TEST_CASE("hardlinks: link counts follow unlink, link and rename of lower names") {
  Scenario s({.lowers = {{file("a", "data"), hardlink("b", "a"), hardlink("c", "a")}}});
  s.both("unlink a", [](const std::string& r) { return sys::unlink(r + "/a"); });
  check_one_file(s, {"b", "c"}, 2, "data", "after unlinking a");
  s.both("link b z", [](const std::string& r) { return sys::link(r + "/b", r + "/z"); });
  check_one_file(s, {"b", "c", "z"}, 3, "data", "after linking z");
  s.both("rename c y", [](const std::string& r) { return sys::rename(r + "/c", r + "/y"); });
  check_one_file(s, {"b", "y", "z"}, 3, "data", "after renaming c");
  s.both("write y", [](const std::string& r) { return sys::write(r + "/y", "new", O_WRONLY); });
  check_one_file(s, {"b", "y", "z"}, 3, "newa", "after writing y");
  CompareOptions o;
  o.nlink = true;
  s.check_tree(o);
  s.remount();
  check_one_file(s, {"b", "y", "z"}, 3, "newa", "after remount");
  s.check_tree(o, "after remount");
}

TEST_CASE("hardlinks: links among new files") {
  Scenario s({.lowers = {{dir("d")}}});
  write_file(s.mnt("n"), "new");
  REQUIRE(sys::link(s.mnt("n"), s.mnt("d/n2")) == 0);
  REQUIRE(sys::link(s.mnt("d/n2"), s.mnt("n3")) == 0);
  check_one_file(s, {"n", "d/n2", "n3"}, 3, "new", "after two links");
  REQUIRE(sys::unlink(s.mnt("n")) == 0);
  check_one_file(s, {"d/n2", "n3"}, 2, "new", "after unlink");
  s.remount();
  check_one_file(s, {"d/n2", "n3"}, 2, "new", "after remount");
}

TEST_CASE("hardlinks: link() errors follow POSIX") {
  Scenario s({.lowers = {{file("f", "f"), dir("d"), file("g", "g")}}});
  CHECK(s.both("link a dir", [](const std::string& r) { return sys::link(r + "/d", r + "/d2"); }) ==
        EPERM);
  CHECK(s.both("onto an existing name",
               [](const std::string& r) { return sys::link(r + "/f", r + "/g"); }) == EEXIST);
  CHECK(s.both("missing source",
               [](const std::string& r) { return sys::link(r + "/missing", r + "/x"); }) == ENOENT);
  CHECK(s.both("into a missing dir",
               [](const std::string& r) { return sys::link(r + "/f", r + "/nodir/x"); }) == ENOENT);
  s.check_tree();
}

TEST_CASE("hardlinks: link structure of a whole tree matches the reference") {
  Scenario s({.lowers = {{file("x/1", "one"), hardlink("y/1", "x/1"), file("x/2", "two"),
                          hardlink("x/2b", "x/2")},
                         {file("z/3", "three"), hardlink("z/3b", "z/3"), hardlink("w", "z/3")}}});
  CompareOptions o;
  o.nlink = true;
  s.check_tree(o);
  s.both("write x/2", [](const std::string& r) { return sys::write(r + "/x/2", "TWO"); });
  s.both("link z/3 x/3", [](const std::string& r) { return sys::link(r + "/z/3", r + "/x/3"); });
  s.check_tree(o, "after changes");
  s.remount();
  s.check_tree(o, "after remount");
}

TEST_CASE("hardlinks: lower hard links inside a renamed directory stay one file") {
  Scenario s({.lowers = {{file("d/a", "data"), hardlink("e/b", "d/a"), hardlink("d/c", "d/a")}}});
  REQUIRE(s.both("d -> moved",
                 [](const std::string& r) { return sys::rename(r + "/d", r + "/moved"); }) == 0);
  check_one_file(s, {"moved/a", "e/b", "moved/c"}, 3, "data", "after the rename");
  s.both("write moved/a",
         [](const std::string& r) { return sys::write(r + "/moved/a", "DATA", O_WRONLY); });
  check_one_file(s, {"moved/a", "e/b", "moved/c"}, 3, "DATA", "after a write");
  s.remount();
  check_one_file(s, {"moved/a", "e/b", "moved/c"}, 3, "DATA", "after remount");
  CompareOptions o;
  o.nlink = true;
  s.check_tree(o);
}
