// Mounted tests: read-only unions. Without an upper, or with -o ro, every change fails with
// EROFS while reading works, and nothing reaches the upper.
#include <doctest/doctest.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <sys/xattr.h>

#include "tests/support/scenario.h"

using namespace layerfs::test;

namespace {

std::vector<std::vector<Entry>> ro_lowers() {
  return {{file("f", "top f").xattr("user.a", "1"), dir("d"), file("d/x", "x"), sym("l", "f"),
           dir("empty")},
          {file("g", "g"), file("d/y", "y"), whiteout("gone"), dir("e")},
          {file("gone", "hidden"), file("e/z", "z")}};
}

void expect_all_erofs(Scenario& s) {
  struct Op {
    const char* what;
    std::function<int(const std::string&)> fn;
  };
  const std::vector<Op> ops = {
      {"create",
       [](const std::string& r) { return sys::open_close(r + "/new", O_WRONLY | O_CREAT); }},
      {"open for writing",
       [](const std::string& r) { return sys::open_close(r + "/f", O_WRONLY); }},
      {"open read-write", [](const std::string& r) { return sys::open_close(r + "/d/y", O_RDWR); }},
      {"open with O_TRUNC",
       [](const std::string& r) { return sys::open_close(r + "/g", O_RDONLY | O_TRUNC); }},
      {"mkdir", [](const std::string& r) { return sys::mkdir(r + "/nd"); }},
      {"unlink", [](const std::string& r) { return sys::unlink(r + "/f"); }},
      {"rmdir", [](const std::string& r) { return sys::rmdir(r + "/empty"); }},
      {"rename", [](const std::string& r) { return sys::rename(r + "/g", r + "/g2"); }},
      {"rename dir", [](const std::string& r) { return sys::rename(r + "/d", r + "/d2"); }},
      {"link", [](const std::string& r) { return sys::link(r + "/g", r + "/g3"); }},
      {"symlink", [](const std::string& r) { return sys::symlink("f", r + "/l2"); }},
      {"mkfifo", [](const std::string& r) { return sys::mknod(r + "/p", S_IFIFO | 0644); }},
      {"chmod", [](const std::string& r) { return sys::chmod(r + "/f", 0600); }},
      {"chown", [](const std::string& r) { return sys::lchown(r + "/f", 1, 1); }},
      {"utimens",
       [](const std::string& r) {
         return sys::utimens(r + "/f", {1, 0}, {1, 0});
       }},
      {"truncate", [](const std::string& r) { return sys::truncate(r + "/f", 0); }},
      {"setxattr", [](const std::string& r) { return sys::setxattr(r + "/f", "user.b", "2"); }},
      {"removexattr", [](const std::string& r) { return sys::removexattr(r + "/f", "user.a"); }},
  };
  for (const auto& op : ops) {
    CAPTURE(op.what);
    CHECK(errno_name(op.fn(s.mnt())) == errno_name(EROFS));
  }
  // Reading still works and shows the merged layers.
  CHECK(read_file(s.mnt("f")) == "top f");
  CHECK(read_file(s.mnt("e/z")) == "z");
  CHECK(read_link(s.mnt("l")) == "f");
  CHECK(get_xattr(s.mnt("f"), "user.a") == std::optional<std::string>("1"));
  CHECK(sys::lstat(s.mnt("gone")) == ENOENT);
  s.check_tree();
}

}  // namespace

TEST_CASE("readonly: without an upper every change fails with EROFS") {
  Scenario s({.lowers = ro_lowers(), .writable = false});
  expect_all_erofs(s);
  s.remount();
  s.check_tree({}, "after remount");
}

TEST_CASE("readonly: -o ro with an upper refuses changes and leaves the upper alone") {
  Scenario s({.lowers = ro_lowers(), .upper = {file("up", "upper")}, .options = {"ro"}});
  expect_all_erofs(s);
  CHECK(list_tree(s.upper()) == std::vector<std::string>{"up"});
  // The same directories mounted read-write afterwards work normally.
  s.unmount();
  {
    Mount rw(s.mountpoint(), MountSpec{.lowers = s.lowers(), .upper = s.upper(), .work = s.work()});
    write_file(rw / "written", "w");
    CHECK(read_file(s.upper("written")) == "w");
    CHECK_MESSAGE(rw.unmount(), rw.problem());
  }
  CHECK(read_file(s.upper("written")) == "w");
}
