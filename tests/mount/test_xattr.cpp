// Mounted tests: extended attributes in the user, trusted and security namespaces: set, get,
// list and remove on new objects and on lower objects (which copies them up and leaves the lower
// alone), with the errors a local file system gives, and kept across a remount.
#include <doctest/doctest.h>
#include <sys/xattr.h>

#include "tests/support/scenario.h"

using namespace layerfs::test;

namespace {

int get_err(const std::string& path, const std::string& name) {
  char buf[8192];
  return err_of(::lgetxattr(path.c_str(), name.c_str(), buf, sizeof buf));
}

}  // namespace

TEST_CASE("xattr: set, get, list and remove on new files") {
  Scenario s({.lowers = {{}}});
  write_file(s.mnt("f"), "f");
  write_file(s.ref("f"), "f");
  // ext4 keeps all xattrs of an inode in one 4 KiB block: stay well below it in total.
  const std::string big(1000, 'v');
  const std::string binary("a\0b\xff", 4);
  for (const char* ns : {"user", "trusted", "security"}) {
    const std::string name = std::string(ns) + ".attr";
    CAPTURE(name);
    CHECK(s.both("set", [&](const std::string& r) {
      return sys::setxattr(r + "/f", name, "value");
    }) == 0);
    CHECK(get_xattr(s.mnt("f"), name) == std::optional<std::string>("value"));
    CHECK(s.both("create existing", [&](const std::string& r) {
      return sys::setxattr(r + "/f", name, "x", XATTR_CREATE);
    }) == EEXIST);
    CHECK(s.both("replace", [&](const std::string& r) {
      return sys::setxattr(r + "/f", name, big, XATTR_REPLACE);
    }) == 0);
    CHECK(get_xattr(s.mnt("f"), name) == std::optional<std::string>(big));
    CHECK(s.both("replace missing", [&](const std::string& r) {
      return sys::setxattr(r + "/f", name + "2", "x", XATTR_REPLACE);
    }) == ENODATA);
  }
  CHECK(s.both("binary value", [&](const std::string& r) {
    return sys::setxattr(r + "/f", "user.bin", binary);
  }) == 0);
  CHECK(get_xattr(s.mnt("f"), "user.bin") == std::optional<std::string>(binary));
  CHECK(s.both("empty value", [&](const std::string& r) {
    return sys::setxattr(r + "/f", "user.empty", "");
  }) == 0);
  CHECK(get_xattr(s.mnt("f"), "user.empty") == std::optional<std::string>(""));
  CHECK(xattr_names(s.mnt("f")) == std::vector<std::string>{"security.attr", "trusted.attr",
                                                            "user.attr", "user.bin", "user.empty"});
  // Size queries and short buffers.
  CHECK(::lgetxattr(s.mnt("f").c_str(), "user.attr", nullptr, 0) == 1000);
  char small[10];
  CHECK(::lgetxattr(s.mnt("f").c_str(), "user.attr", small, sizeof small) == -1);
  CHECK(errno == ERANGE);
  ssize_t list_size = ::llistxattr(s.mnt("f").c_str(), nullptr, 0);
  CHECK(list_size == ::llistxattr(s.ref("f").c_str(), nullptr, 0));
  CHECK(::llistxattr(s.mnt("f").c_str(), small, sizeof small) == -1);
  CHECK(errno == ERANGE);
  CHECK(get_err(s.mnt("f"), "user.missing") == ENODATA);
  CHECK(s.both("remove",
               [](const std::string& r) { return sys::removexattr(r + "/f", "user.attr"); }) == 0);
  CHECK(s.both("remove missing", [](const std::string& r) {
    return sys::removexattr(r + "/f", "user.attr");
  }) == ENODATA);
  CHECK(get_err(s.mnt("f"), "user.attr") == ENODATA);
  s.check_tree();
  s.remount();
  s.check_tree({}, "after remount");
}

TEST_CASE("xattr: changes on lower objects copy them up and leave the lowers alone") {
  Scenario s(
      {.lowers = {
           {file("f", "f").xattr("user.keep", "k").xattr("user.drop", "d").xattr("trusted.t", "t"),
            dir("d").xattr("user.dir", "dv"), file("d/in", "i"),
            sym("l", "f").xattr("trusted.link", "lv")},
           {file("low", "l").xattr("security.s", "sv")}}});
  CHECK(list_xattrs(s.mnt("f")) == std::map<std::string, std::string>{
                                       {"trusted.t", "t"}, {"user.drop", "d"}, {"user.keep", "k"}});
  CHECK(get_xattr(s.mnt("low"), "security.s") == std::optional<std::string>("sv"));
  s.both("replace on lower file",
         [](const std::string& r) { return sys::setxattr(r + "/f", "user.keep", "changed"); });
  s.both("remove on lower file",
         [](const std::string& r) { return sys::removexattr(r + "/f", "user.drop"); });
  s.both("set on lower dir",
         [](const std::string& r) { return sys::setxattr(r + "/d", "user.added", "a"); });
  s.both("set on lower symlink",
         [](const std::string& r) { return sys::setxattr(r + "/l", "trusted.added", "a"); });
  CHECK(s.both("user xattr on a symlink", [](const std::string& r) {
    return sys::setxattr(r + "/l", "user.no", "x");
  }) == EPERM);
  s.both("remove on second lower",
         [](const std::string& r) { return sys::removexattr(r + "/low", "security.s"); });
  CHECK(get_xattr(s.mnt("f"), "user.keep") == std::optional<std::string>("changed"));
  CHECK(get_err(s.mnt("f"), "user.drop") == ENODATA);
  CHECK(get_err(s.mnt("low"), "security.s") == ENODATA);
  CHECK(get_xattr(s.upper("f"), "user.keep") == std::optional<std::string>("changed"));
  CHECK(get_xattr(s.lower(0, "f"), "user.keep") == std::optional<std::string>("k"));
  s.check_tree();
  s.check_lowers_unchanged();
  s.remount();
  s.check_tree({}, "after remount");
}

TEST_CASE("xattr: errors on missing objects") {
  Scenario s({.lowers = {{file("f", "f")}}});
  CHECK(s.both("set on missing", [](const std::string& r) {
    return sys::setxattr(r + "/missing", "user.a", "x");
  }) == ENOENT);
  CHECK(get_err(s.mnt("missing"), "user.a") == ENOENT);
  CHECK(s.both("remove on missing", [](const std::string& r) {
    return sys::removexattr(r + "/missing", "user.a");
  }) == ENOENT);
  CHECK(s.both("unknown namespace", [](const std::string& r) {
    return sys::setxattr(r + "/f", "bogus.a", "x");
  }) == EOPNOTSUPP);
}
