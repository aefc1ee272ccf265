// Mounted tests: unlink and rmdir of lower entries make the name disappear for good (also after a
// remount) without leaving anything for it in the upper; rmdir follows the merged view
// (ENOTEMPTY only when the merged directory has entries); a directory made where one was
// deleted is opaque.
#include <doctest/doctest.h>
#include <fcntl.h>
#include <unistd.h>

#include "tests/support/scenario.h"

using namespace layerfs::test;

TEST_CASE("unlink: a lower file disappears and leaves nothing in the upper") {
  Scenario s({.lowers = {{file("top", "t"), file("d/in_dir", "x")},
                         {file("low", "l"), file("top", "hidden"), file("d/other", "o")}}});
  CHECK(s.both("unlink top", [](const std::string& r) { return sys::unlink(r + "/top"); }) == 0);
  CHECK(s.both("unlink low", [](const std::string& r) { return sys::unlink(r + "/low"); }) == 0);
  CHECK(s.both("unlink d/in_dir",
               [](const std::string& r) { return sys::unlink(r + "/d/in_dir"); }) == 0);
  CHECK(sys::lstat(s.mnt("top")) == ENOENT);
  CHECK(sys::lstat(s.mnt("low")) == ENOENT);
  CHECK(list_dir(s.mnt()) == std::vector<std::string>{"d"});
  s.check_tree();
  if (!overlay_mode()) {
    CHECK_FALSE(exists(s.upper("top")));
    CHECK_FALSE(exists(s.upper("low")));
    CHECK_FALSE(exists(s.upper("d/in_dir")));
  }
  s.remount();
  CHECK(sys::lstat(s.mnt("top")) == ENOENT);
  CHECK(sys::lstat(s.mnt("low")) == ENOENT);
  s.check_tree({}, "after remount");
}

TEST_CASE("unlink: a copied-up file, a new file and special files") {
  Scenario s({.lowers = {{file("cu", "lower"), sym("l", "cu"), fifo("p"), socket("s"),
                          chardev("c", 1, 3)}}});
  s.both("write cu", [](const std::string& r) { return sys::write(r + "/cu", "upper"); });
  s.both("create new", [](const std::string& r) { return sys::write(r + "/new", "n"); });
  for (const char* n : {"cu", "new", "l", "p", "s", "c"}) {
    const std::string name = n;
    CHECK(s.both("unlink " + name,
                 [&](const std::string& r) { return sys::unlink(r + "/" + name); }) == 0);
  }
  CHECK(list_dir(s.mnt()).empty());
  s.check_tree();
  s.remount();
  CHECK(list_dir(s.mnt()).empty());
  s.check_tree({}, "after remount");
}

TEST_CASE("unlink: a name created again after unlink shows only the new object") {
  Scenario s({.lowers = {{file("f", "lower f"), dir("d"), file("d/x", "x")}}});
  s.both("unlink f", [](const std::string& r) { return sys::unlink(r + "/f"); });
  s.both("create f", [](const std::string& r) { return sys::write(r + "/f", "new"); });
  s.both("unlink f again", [](const std::string& r) { return sys::unlink(r + "/f"); });
  s.both("mkdir f", [](const std::string& r) { return sys::mkdir(r + "/f"); });
  CHECK(S_ISDIR(lstat_path(s.mnt("f")).st_mode));
  s.check_tree();
  s.remount();
  s.check_tree({}, "after remount");
}

TEST_CASE("unlink: errors follow POSIX") {
  Scenario s({.lowers = {{dir("d"), file("d/x", "x"), file("f", "f")}, {dir("e")}}});
  CHECK(s.both("unlink dir", [](const std::string& r) { return sys::unlink(r + "/d"); }) == EISDIR);
  CHECK(s.both("unlink missing",
               [](const std::string& r) { return sys::unlink(r + "/missing"); }) == ENOENT);
  CHECK(s.both("unlink through file",
               [](const std::string& r) { return sys::unlink(r + "/f/x"); }) == ENOTDIR);
  CHECK(s.both("rmdir file", [](const std::string& r) { return sys::rmdir(r + "/f"); }) == ENOTDIR);
  CHECK(s.both("rmdir missing", [](const std::string& r) { return sys::rmdir(r + "/nope"); }) ==
        ENOENT);
  CHECK(s.both("rmdir .", [](const std::string& r) { return sys::rmdir(r + "/e/."); }) == EINVAL);
  s.check_tree();
}

TEST_CASE("unlink: an open file stays readable after its name is gone") {
  Scenario s({.lowers = {{file("lower", "lower data")}}});
  write_file(s.mnt("upper"), "upper data");
  Fd a = open_fd(s.mnt("lower"), O_RDONLY);
  Fd b = open_fd(s.mnt("upper"), O_RDWR);
  REQUIRE(sys::unlink(s.mnt("lower")) == 0);
  REQUIRE(sys::unlink(s.mnt("upper")) == 0);
  char buf[64] = {};
  CHECK(::pread(a.get(), buf, sizeof buf, 0) == 10);
  CHECK(std::string(buf, 10) == "lower data");
  CHECK(::pwrite(b.get(), "UPPER", 5, 0) == 5);
  CHECK(::pread(b.get(), buf, sizeof buf, 0) == 10);
  CHECK(std::string(buf, 10) == "UPPER data");
  CHECK(list_dir(s.mnt()).empty());
}

TEST_CASE("rmdir: a lower directory empty only in the merged view can be removed") {
  Scenario s({.lowers = {{dir("d"), whiteout("d/x"), dir("e"), file("e/a", "a")},
                         {file("d/x", "hidden"), file("e/b", "b"), dir("e/sub")}}});
  CHECK(list_dir(s.mnt("d")).empty());
  CHECK(s.both("rmdir d", [](const std::string& r) { return sys::rmdir(r + "/d"); }) == 0);
  // e empties through the mount: each lower entry whited out one by one.
  CHECK(s.both("rmdir e (full)", [](const std::string& r) { return sys::rmdir(r + "/e"); }) ==
        ENOTEMPTY);
  s.both("unlink e/a", [](const std::string& r) { return sys::unlink(r + "/e/a"); });
  CHECK(s.both("rmdir e (b, sub left)",
               [](const std::string& r) { return sys::rmdir(r + "/e"); }) == ENOTEMPTY);
  s.both("unlink e/b", [](const std::string& r) { return sys::unlink(r + "/e/b"); });
  s.both("rmdir e/sub", [](const std::string& r) { return sys::rmdir(r + "/e/sub"); });
  CHECK(s.both("rmdir e", [](const std::string& r) { return sys::rmdir(r + "/e"); }) == 0);
  CHECK(list_dir(s.mnt()).empty());
  s.check_tree();
  if (!overlay_mode()) CHECK(count_entries(s.upper()) == 0);
  s.remount();
  CHECK(list_dir(s.mnt()).empty());
  s.check_tree({}, "after remount");
}

TEST_CASE("rmdir: ENOTEMPTY when only a lower layer has entries") {
  Scenario s({.lowers = {{dir("d")}, {dir("d"), file("d/deep", "x")}, {dir("d/sub")}}});
  CHECK(s.both("rmdir d", [](const std::string& r) { return sys::rmdir(r + "/d"); }) == ENOTEMPTY);
  CHECK(s.both("rmdir d/sub", [](const std::string& r) { return sys::rmdir(r + "/d/sub"); }) == 0);
  CHECK(s.both("rmdir d", [](const std::string& r) { return sys::rmdir(r + "/d"); }) == ENOTEMPTY);
  s.check_tree();
}

TEST_CASE("rmdir: a directory made where one was deleted is opaque, also after remount") {
  Scenario s({.lowers = {{dir("d"), file("d/a", "a")},
                         {file("d/b", "b"), dir("d/sub"), file("d/sub/c", "c")}}});
  for (const char* p : {"d/a", "d/b", "d/sub/c"}) {
    const std::string path = p;
    s.both("unlink " + path, [&](const std::string& r) { return sys::unlink(r + "/" + path); });
  }
  s.both("rmdir d/sub", [](const std::string& r) { return sys::rmdir(r + "/d/sub"); });
  s.both("rmdir d", [](const std::string& r) { return sys::rmdir(r + "/d"); });
  s.both("mkdir d", [](const std::string& r) { return sys::mkdir(r + "/d", 0700); });
  CHECK(list_dir(s.mnt("d")).empty());
  s.both("create d/new", [](const std::string& r) { return sys::write(r + "/d/new", "n"); });
  CHECK(list_dir(s.mnt("d")) == std::vector<std::string>{"new"});
  CHECK(sys::lstat(s.mnt("d/sub")) == ENOENT);
  s.check_tree();
  s.remount();
  CHECK(list_dir(s.mnt("d")) == std::vector<std::string>{"new"});
  CHECK(sys::lstat(s.mnt("d/b")) == ENOENT);
  s.check_tree({}, "after remount");
}

TEST_CASE("rmdir: a whole lower tree removed bottom-up stays removed") {
  std::vector<Entry> l0, l1;
  for (int i = 0; i < 5; ++i) {
    for (int j = 0; j < 5; ++j) {
      std::string p = "t/d" + std::to_string(i) + "/e" + std::to_string(j);
      (j % 2 ? l0 : l1).push_back(file(p + "/f", p));
      l1.push_back(sym(p + "/l", "f"));
    }
  }
  Scenario s({.lowers = {l0, l1}});
  // Remove depth-first through the mount, like rm -rf.
  std::function<void(const std::string&)> rm = [&](const std::string& rel) {
    for (const auto& name : list_dir(s.mnt(rel))) {
      const std::string child = rel + "/" + name;
      if (S_ISDIR(lstat_path(s.mnt(child)).st_mode)) {
        rm(child);
        CHECK(s.both("rmdir " + child,
                     [&](const std::string& r) { return sys::rmdir(r + "/" + child); }) == 0);
      } else {
        CHECK(s.both("unlink " + child,
                     [&](const std::string& r) { return sys::unlink(r + "/" + child); }) == 0);
      }
    }
  };
  rm("t");
  CHECK(s.both("rmdir t", [](const std::string& r) { return sys::rmdir(r + "/t"); }) == 0);
  CHECK(list_dir(s.mnt()).empty());
  s.check_tree();
  s.remount();
  CHECK(list_dir(s.mnt()).empty());
  s.both("mkdir t", [](const std::string& r) { return sys::mkdir(r + "/t"); });
  CHECK(list_dir(s.mnt("t")).empty());
  s.check_tree({}, "after remount");
}

TEST_CASE("unlink: deleting deep in a lower-only directory copies up only the parents") {
  Scenario s({.lowers = {{dir("a", 0750).owner(10, 20), dir("a/b", 0700), file("a/b/f", "f"),
                          file("a/b/g", "g"), file("a/other", "o")}}});
  s.both("unlink a/b/f", [](const std::string& r) { return sys::unlink(r + "/a/b/f"); });
  s.check_tree();
  // Only what the deletion needs may go up: never the deleted name, never the siblings.
  CHECK_FALSE(exists(s.upper("a/b/g")));
  CHECK_FALSE(exists(s.upper("a/other")));
  if (!overlay_mode()) CHECK_FALSE(exists(s.upper("a/b/f")));
  if (exists(s.upper("a"))) {
    struct stat st = lstat_path(s.upper("a"));
    CHECK((st.st_mode & 07777) == 0750);
    CHECK(st.st_uid == 10);
    CHECK(st.st_gid == 20);
  }
}

TEST_CASE("unlink: many deletions in one lower directory") {
  std::vector<Entry> l0, l1;
  for (int i = 0; i < 2000; ++i) {
    (i % 2 ? l0 : l1).push_back(file("d/f" + std::to_string(i), std::to_string(i)));
  }
  Scenario s({.lowers = {l0, l1}});
  for (int i = 0; i < 1500; ++i) {
    REQUIRE(sys::unlink(s.mnt("d/f" + std::to_string(i))) == 0);
    REQUIRE(sys::unlink(s.ref("d/f" + std::to_string(i))) == 0);
  }
  CHECK(list_dir(s.mnt("d")).size() == 500);
  s.check_tree();
  s.remount();
  CHECK(list_dir(s.mnt("d")).size() == 500);
  CHECK(s.both("rmdir d", [](const std::string& r) { return sys::rmdir(r + "/d"); }) == ENOTEMPTY);
  for (int i = 1500; i < 2000; ++i) {
    REQUIRE(sys::unlink(s.mnt("d/f" + std::to_string(i))) == 0);
    REQUIRE(sys::unlink(s.ref("d/f" + std::to_string(i))) == 0);
  }
  CHECK(s.both("rmdir d", [](const std::string& r) { return sys::rmdir(r + "/d"); }) == 0);
  s.check_tree();
}

TEST_CASE("unlink: O_EXCL creation against lower and deleted names") {
  Scenario s({.lowers = {{file("f", "f"), dir("d"), whiteout("wo"), file("later", "l")},
                         {file("wo", "hidden")}}});
  auto excl = [](const std::string& name) {
    return [name](const std::string& r) {
      return sys::open_close(r + "/" + name, O_WRONLY | O_CREAT | O_EXCL);
    };
  };
  CHECK(s.both("over a lower file", excl("f")) == EEXIST);
  CHECK(s.both("over a lower dir", excl("d")) == EEXIST);
  CHECK(s.both("over a lower whiteout", excl("wo")) == 0);
  s.both("unlink later", [](const std::string& r) { return sys::unlink(r + "/later"); });
  CHECK(s.both("over a deleted name", excl("later")) == 0);
  CHECK(s.both("again", excl("later")) == EEXIST);
  CHECK(read_file(s.mnt("later")).empty());
  s.check_tree();
}
