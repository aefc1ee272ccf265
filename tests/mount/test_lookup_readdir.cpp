// Mounted tests: lookup resolves top-down (higher entries hide lower ones, a non-directory hides
// everything below it, directories merge) and readdir shows the merged, de-duplicated names with
// d_ino equal to st_ino and nothing internal.
#include <dirent.h>
#include <doctest/doctest.h>
#include <sys/stat.h>

#include <algorithm>
#include <map>
#include <set>

#include "tests/support/scenario.h"

using namespace layerfs::test;

namespace {

std::string names_str(const std::vector<std::string>& v) {
  std::string out;
  for (const auto& s : v) out += (out.empty() ? "" : " ") + s;
  return "[" + out + "]";
}

}  // namespace

TEST_CASE("lookup: higher layers hide lower entries and directories merge") {
  Scenario s({.lowers =
                  {
                      {file("a", "top a"), dir("d"), file("d/x", "x top"), file("only0", "0")},
                      {file("a", "middle a"), file("d/y", "y"), file("d/x", "x middle"),
                       dir("d/sub"), file("d/sub/m", "m"), file("only1", "1")},
                      {file("a", "bottom a"), file("d/z", "z"), file("d/sub/b", "b"),
                       file("only2", "2"), sym("link", "only2")},
                  },
              .upper = {file("up", "upper file"), file("d/u", "u")}});
  s.check_tree();
  CHECK(read_file(s.mnt("a")) == "top a");
  CHECK(read_file(s.mnt("d/x")) == "x top");
  CHECK(read_file(s.mnt("d/z")) == "z");
  CHECK(read_file(s.mnt("d/sub/b")) == "b");
  CHECK(read_file(s.mnt("link")) == "2");
  CHECK(list_dir(s.mnt("d")) == std::vector<std::string>{"sub", "u", "x", "y", "z"});
  CHECK(list_dir(s.mnt()) ==
        std::vector<std::string>{"a", "d", "link", "only0", "only1", "only2", "up"});
}

TEST_CASE("lookup: a non-directory hides everything below it") {
  Scenario s({.lowers = {
                  {file("x", "file on top"), dir("y"), file("y/a", "a")},
                  {dir("x"), file("x/inner", "hidden"), file("y", "file in the middle")},
                  {dir("y"), file("y/b", "below the file: hidden")},
              }});
  s.check_tree();
  struct stat st = lstat_path(s.mnt("x"));
  CHECK(S_ISREG(st.st_mode));
  CHECK(read_file(s.mnt("x")) == "file on top");
  CHECK(sys::lstat(s.mnt("x/inner")) == ENOTDIR);
  CHECK(S_ISDIR(lstat_path(s.mnt("y")).st_mode));
  CHECK(list_dir(s.mnt("y")) == std::vector<std::string>{"a"});
  CHECK(sys::lstat(s.mnt("y/b")) == ENOENT);
}

TEST_CASE("lookup: missing names and paths through files") {
  Scenario s({.lowers = {{file("f", "f"), dir("d")}, {file("d/g", "g")}}});
  CHECK(sys::lstat(s.mnt("nothing")) == ENOENT);
  CHECK(sys::lstat(s.mnt("d/nothing")) == ENOENT);
  CHECK(sys::lstat(s.mnt("nothing/deeper")) == ENOENT);
  CHECK(sys::lstat(s.mnt("f/child")) == ENOTDIR);
  CHECK(sys::open_close(s.mnt("d/g/x"), O_RDONLY) == ENOTDIR);
  // A name looked up while missing appears once created (negative entries must not stick).
  CHECK(sys::lstat(s.mnt("d/later")) == ENOENT);
  write_file(s.mnt("d/later"), "now");
  CHECK(read_file(s.mnt("d/later")) == "now");
}

TEST_CASE("lookup: deep merged paths across many layers") {
  std::vector<std::vector<Entry>> lowers;
  for (int i = 0; i < 6; ++i) {
    lowers.push_back({file("a/b/c/d/f" + std::to_string(i), "layer " + std::to_string(i)),
                      file("a/b/common", "common from " + std::to_string(i)),
                      dir("a/b/c/d/e" + std::to_string(i))});
  }
  Scenario s({.lowers = lowers});
  s.check_tree();
  CHECK(read_file(s.mnt("a/b/common")) == "common from 0");
  CHECK(list_dir(s.mnt("a/b/c/d")).size() == 12);
  for (int i = 0; i < 6; ++i) {
    CHECK(read_file(s.mnt("a/b/c/d/f" + std::to_string(i))) == "layer " + std::to_string(i));
  }
}

TEST_CASE("readdir: merges and de-duplicates names across layers") {
  std::vector<Entry> l0, l1, l2;
  for (int i = 0; i < 300; ++i) {
    std::string n = "n" + std::to_string(i);
    if (i % 2 == 0) l0.push_back(file("d/" + n, "0"));
    if (i % 3 == 0) l1.push_back(file("d/" + n, "1"));
    l2.push_back(file("d/" + n, "2"));
  }
  l1.push_back(dir("d/sub"));
  l2.push_back(dir("d/sub"));
  Scenario s({.lowers = {l0, l1, l2}, .upper = {file("d/n0", "upper"), file("d/extra", "e")}});
  auto raw = read_dir_raw(s.mnt("d"));
  std::map<std::string, int> count;
  for (const auto& [name, ino] : raw) count[name]++;
  std::string dups;
  for (const auto& [name, n] : count) {
    if (n != 1) dups += " " + name + "x" + std::to_string(n);
  }
  CHECK_MESSAGE(dups.empty(), "names listed more than once:" << dups);
  CHECK(count.count(".") == 1);
  CHECK(count.count("..") == 1);
  CHECK(count.size() == 300 + 2 + 2);
  s.check_tree();
}

TEST_CASE("readdir: d_ino equals st_ino for every entry") {
  Scenario s({.lowers = {{file("d/a", "a"), dir("d/sub"), sym("d/l", "a")},
                         {file("d/b", "b"), file("d/a", "lower a"), fifo("d/p")},
                         {dir("d/sub"), file("d/sub/z", "z"), file("d/c", "c")}},
              .upper = {file("d/u", "u")}});
  write_file(s.mnt("d/new"), "new");
  write_file(s.mnt("d/b"), "copied up");  // copy-up must not change what readdir reports
  std::string bad;
  for (const auto& [name, d_ino] : read_dir_raw(s.mnt("d"))) {
    if (name == "." || name == "..") continue;
    ino_t st_ino = lstat_path(s.mnt("d/" + name)).st_ino;
    if (st_ino != d_ino) {
      bad += " " + name + " (d_ino " + std::to_string(d_ino) + ", st_ino " +
             std::to_string(st_ino) + ")";
    }
  }
  CHECK_MESSAGE(bad.empty(), "d_ino differs from st_ino for:" << bad);
  ino_t dot = 0;
  for (const auto& [name, d_ino] : read_dir_raw(s.mnt("d"))) {
    if (name == ".") dot = d_ino;
  }
  if (!overlay_mode()) CHECK(dot == lstat_path(s.mnt("d")).st_ino);
}

TEST_CASE("readdir: telldir/seekdir resume at the same place in a merged directory") {
  std::vector<Entry> l0, l1;
  for (int i = 0; i < 500; ++i) {
    (i % 2 ? l0 : l1).push_back(file("d/f" + std::to_string(i), ""));
  }
  Scenario s({.lowers = {l0, l1}});
  DIR* d = ::opendir(s.mnt("d").c_str());
  REQUIRE(d != nullptr);
  std::vector<std::string> first;
  long pos = -1;
  int n = 0;
  while (dirent* de = ::readdir(d)) {
    if (++n == 123) pos = ::telldir(d);
    if (n > 123) first.emplace_back(de->d_name);
  }
  REQUIRE(pos != -1);
  ::seekdir(d, pos);
  std::vector<std::string> again;
  while (dirent* de = ::readdir(d)) again.emplace_back(de->d_name);
  ::rewinddir(d);
  int total = 0;
  while (::readdir(d)) ++total;
  ::closedir(d);
  CHECK(again == first);
  CHECK(total == 502);
}

TEST_CASE("readdir: rewinddir shows entries created while the directory was open") {
  Scenario s({.lowers = {{file("d/a", "a")}, {file("d/b", "b")}}});
  DIR* d = ::opendir(s.mnt("d").c_str());
  REQUIRE(d != nullptr);
  std::set<std::string> before, after;
  while (dirent* de = ::readdir(d)) before.insert(de->d_name);
  write_file(s.mnt("d/c"), "c");
  REQUIRE(sys::unlink(s.mnt("d/a")) == 0);
  ::rewinddir(d);
  while (dirent* de = ::readdir(d)) after.insert(de->d_name);
  ::closedir(d);
  CHECK(before == std::set<std::string>{".", "..", "a", "b"});
  CHECK(after == std::set<std::string>{".", "..", "b", "c"});
}

TEST_CASE("readdir: nothing internal shows after changes") {
  Scenario s({.lowers = {{file("a", "a"), dir("d"), file("d/x", "x")},
                         {file("b", "b"), file("d/y", "y"), dir("e"), file("e/z", "z")}}});
  // Changes that make layerfs record whiteouts, opaque directories and redirects.
  s.both("unlink a", [](const std::string& r) { return sys::unlink(r + "/a"); });
  s.both("unlink d/y", [](const std::string& r) { return sys::unlink(r + "/d/y"); });
  s.both("rm e/z", [](const std::string& r) { return sys::unlink(r + "/e/z"); });
  s.both("rmdir e", [](const std::string& r) { return sys::rmdir(r + "/e"); });
  s.both("mkdir e", [](const std::string& r) { return sys::mkdir(r + "/e"); });
  s.both("rename d", [](const std::string& r) { return sys::rename(r + "/d", r + "/d2"); });
  s.both("write b", [](const std::string& r) { return sys::write(r + "/b", "new b"); });
  CHECK_MESSAGE((list_dir(s.mnt()) == std::vector<std::string>{"b", "d2", "e"}),
                "root lists " << names_str(list_dir(s.mnt())));
  CHECK(list_dir(s.mnt("e")).empty());
  CHECK(list_dir(s.mnt("d2")) == std::vector<std::string>{"x"});
  s.check_tree();
  s.remount();
  CHECK_MESSAGE((list_dir(s.mnt()) == std::vector<std::string>{"b", "d2", "e"}),
                "after remount root lists " << names_str(list_dir(s.mnt())));
  s.check_tree({}, "after remount");
}

TEST_CASE("readdir: an empty upper over empty lowers lists only . and ..") {
  Scenario s({.lowers = {{}, {}}});
  auto raw = read_dir_raw(s.mnt());
  std::set<std::string> names;
  for (auto& [n, i] : raw) names.insert(n);
  CHECK(names == std::set<std::string>{".", ".."});
  s.check_tree();
}

TEST_CASE("lookup: names at the length limit and beyond") {
  const std::string max(255, 'n');
  const std::string too_long(256, 'n');
  Scenario s({.lowers = {{file(std::string(255, 'l'), "lower long"), dir("d")}}});
  CHECK(read_file(s.mnt(std::string(255, 'l'))) == "lower long");
  CHECK(s.both("create 255",
               [&](const std::string& r) { return sys::write(r + "/d/" + max, "x"); }) == 0);
  CHECK(s.both("create 256", [&](const std::string& r) {
    return sys::write(r + "/d/" + too_long, "x");
  }) == ENAMETOOLONG);
  CHECK(s.both("rename to 255", [&](const std::string& r) {
    return sys::rename(r + "/" + std::string(255, 'l'), r + "/" + std::string(255, 'm'));
  }) == 0);
  CHECK(s.both("unlink 255", [&](const std::string& r) { return sys::unlink(r + "/d/" + max); }) ==
        0);
  s.check_tree();
  s.remount();
  s.check_tree({}, "after remount");
}

TEST_CASE("lookup: unusual names survive every operation and a remount") {
  const std::vector<std::string> names = {"with space",
                                          "new\nline",
                                          "\xc3\xbc"
                                          "tf-8 \xe2\x9c\x93",
                                          "back\\slash",
                                          "colon:comma,",
                                          ".hidden",
                                          "-dash",
                                          "star*question?",
                                          "tab\there",
                                          "%percent%",
                                          "..."};
  std::vector<Entry> lower;
  for (const auto& n : names) {
    lower.push_back(file("lower/" + n, n));
    lower.push_back(file("gone/" + n, n));
    lower.push_back(dir("dirs/" + n));
    lower.push_back(file("dirs/" + n + "/inner", n));
  }
  Scenario s({.lowers = {lower}});
  for (const auto& n : names) {
    CAPTURE(n);
    s.both("create", [&](const std::string& r) { return sys::write(r + "/lower/new " + n, n); });
    s.both("unlink", [&](const std::string& r) { return sys::unlink(r + "/gone/" + n); });
    s.both("rename dir", [&](const std::string& r) {
      return sys::rename(r + "/dirs/" + n, r + "/dirs/" + n + " renamed");
    });
    s.both("xattr",
           [&](const std::string& r) { return sys::setxattr(r + "/lower/" + n, "user.name", n); });
  }
  CHECK(list_dir(s.mnt("gone")).empty());
  s.check_tree();
  s.remount();
  CHECK(list_dir(s.mnt("gone")).empty());
  s.check_tree({}, "after remount");
}

TEST_CASE("lookup: a deep lower path copied up at the bottom") {
  std::string path;
  for (int i = 0; i < 60; ++i)
    path += (path.empty() ? "" : "/") + std::string("level") + std::to_string(i);
  Scenario s({.lowers = {{file(path + "/leaf", "deep")}, {file(path + "/other", "o")}}});
  CHECK(read_file(s.mnt(path + "/leaf")) == "deep");
  s.both("write at the bottom",
         [&](const std::string& r) { return sys::write(r + "/" + path + "/leaf", "changed"); });
  s.both("create at the bottom",
         [&](const std::string& r) { return sys::write(r + "/" + path + "/new", "n"); });
  s.check_tree();
  s.remount();
  CHECK(read_file(s.mnt(path + "/leaf")) == "changed");
  s.check_tree({}, "after remount");
}

TEST_CASE("readdir: a directory with 6000 entries over two layers") {
  std::vector<Entry> l0, l1;
  for (int i = 0; i < 6000; ++i) {
    (i % 3 ? l1 : l0).push_back(file("big/entry_" + std::to_string(i), ""));
  }
  Scenario s({.lowers = {l0, l1}, .check_lowers = false, .reference = false});
  auto names = list_dir(s.mnt("big"));
  CHECK(names.size() == 6000);
  CHECK(std::adjacent_find(names.begin(), names.end()) == names.end());
  write_file(s.mnt("big/extra"), "e");
  CHECK(sys::unlink(s.mnt("big/entry_0")) == 0);
  CHECK(sys::unlink(s.mnt("big/entry_1")) == 0);
  CHECK(list_dir(s.mnt("big")).size() == 5999);
}
