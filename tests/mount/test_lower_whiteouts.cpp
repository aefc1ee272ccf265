// Mounted tests: lowers made by other tools carry whiteouts and opaque markers in their own forms
// (char device 0/0, `.wh.NAME`, trusted/user.overlay.opaque="y", `.wh..wh..opq`). layerfs must
// honour each form exactly as the independent reference merge does, and never show the markers.
#include <doctest/doctest.h>
#include <sys/stat.h>
#include <sys/xattr.h>

#include "tests/support/scenario.h"

using namespace layerfs::test;

namespace {

bool kernel_supports(OpaqueForm form) {
  return form == OpaqueForm::kTrustedXattr;
}

const char* form_name(OpaqueForm f) {
  switch (f) {
    case OpaqueForm::kTrustedXattr:
      return "trusted.overlay.opaque";
    case OpaqueForm::kUserXattr:
      return "user.overlay.opaque";
    case OpaqueForm::kWhFile:
      return ".wh..wh..opq";
  }
  return "?";
}

std::string private_names(const std::string& path) {
  std::string out;
  for (const auto& n : xattr_names(path)) {
    if (is_union_private_xattr(n)) out += " " + n;
  }
  return out;
}

}  // namespace

TEST_CASE("lower whiteouts: char device 0/0 hides lower files and directories") {
  Scenario s({.lowers = {
                  {whiteout("gone"), whiteout("d/x"), whiteout("tree"), file("d/keep", "k")},
                  {file("gone", "hidden"), file("d/x", "hidden"), file("d/y", "y"), dir("tree"),
                   file("tree/deep/f", "hidden")},
              }});
  s.check_tree();
  CHECK(sys::lstat(s.mnt("gone")) == ENOENT);
  CHECK(sys::lstat(s.mnt("d/x")) == ENOENT);
  CHECK(sys::lstat(s.mnt("tree")) == ENOENT);
  CHECK(sys::lstat(s.mnt("tree/deep/f")) == ENOENT);
  CHECK(list_dir(s.mnt("d")) == std::vector<std::string>{"keep", "y"});
  CHECK(list_dir(s.mnt()) == std::vector<std::string>{"d"});
}

TEST_CASE("lower whiteouts: .wh.NAME files hide lower names and never show") {
  LAYERFS_ONLY("kernel overlayfs does not read .wh.* whiteouts");
  Scenario s({.lowers = {
                  {wh_file("gone"), wh_file("d/x"), wh_file("tree"), file("d/keep", "k")},
                  {file("gone", "hidden"), file("d/x", "hidden"), file("d/y", "y"), dir("tree"),
                   file("tree/f", "hidden")},
              }});
  s.check_tree();
  CHECK(list_dir(s.mnt()) == std::vector<std::string>{"d"});
  CHECK(list_dir(s.mnt("d")) == std::vector<std::string>{"keep", "y"});
  CHECK(sys::lstat(s.mnt(".wh.gone")) == ENOENT);
  CHECK(sys::lstat(s.mnt("d/.wh.x")) == ENOENT);
  CHECK(sys::lstat(s.mnt("tree")) == ENOENT);
}

TEST_CASE("lower whiteouts: a whiteout hides only the layers below it") {
  Scenario s({.lowers = {
                  {file("above", "from the top")},
                  {whiteout("above"), whiteout("below"), whiteout("d")},
                  {file("above", "hidden"), file("below", "hidden"), file("d/f", "hidden")},
              }});
  s.check_tree();
  CHECK(read_file(s.mnt("above")) == "from the top");
  CHECK(sys::lstat(s.mnt("below")) == ENOENT);
  CHECK(sys::lstat(s.mnt("d")) == ENOENT);
}

TEST_CASE("lower whiteouts: opaque directories hide lower content in every form") {
  for (OpaqueForm form : {OpaqueForm::kTrustedXattr, OpaqueForm::kUserXattr, OpaqueForm::kWhFile}) {
    const std::string name = form_name(form);
    CAPTURE(name);
    if (overlay_mode() && !kernel_supports(form)) {
      MESSAGE("skipped with kernel overlayfs (layerfs-only promise): form " << name);
      continue;
    }
    Scenario s({.lowers = {
                    {file("d/top", "t")},
                    {opaque("d", form), file("d/mid", "m"), dir("d/sub"), file("d/sub/s", "s")},
                    {file("d/low", "hidden"), file("d/sub/low", "hidden"), file("other", "o")},
                }});
    s.check_tree();
    CHECK(list_dir(s.mnt("d")) == std::vector<std::string>{"mid", "sub", "top"});
    CHECK(list_dir(s.mnt("d/sub")) == std::vector<std::string>{"s"});
    CHECK(sys::lstat(s.mnt("d/low")) == ENOENT);
    CHECK(sys::lstat(s.mnt("d/.wh..wh..opq")) == ENOENT);
    CHECK(read_file(s.mnt("other")) == "o");
    std::string priv = private_names(s.mnt("d"));
    CHECK_MESSAGE(priv.empty(), "private xattrs listed on d:" << priv);
  }
}

TEST_CASE("lower whiteouts: private xattrs are never listed through the mount") {
  Scenario s({.lowers = {
                  {opaque("d"), file("d/a", "a").xattr("user.keep", "1"),
                   file("f", "f").xattr("trusted.overlay.origin", "x").xattr("user.mine", "2")},
                  {file("d/b", "b")},
              }});
  std::string priv = private_names(s.mnt("d")) + private_names(s.mnt("f"));
  CHECK_MESSAGE(priv.empty(), "private xattrs listed:" << priv);
  CHECK(list_xattrs(s.mnt("d/a")) == std::map<std::string, std::string>{{"user.keep", "1"}});
  CHECK(list_xattrs(s.mnt("f")) == std::map<std::string, std::string>{{"user.mine", "2"}});
  char buf[16];
  CHECK(::lgetxattr(s.mnt("d").c_str(), "trusted.overlay.opaque", buf, sizeof buf) < 0);
  // Copy-up carries the ordinary xattrs, never the private ones.
  s.both("chmod f", [](const std::string& r) { return sys::chmod(r + "/f", 0600); });
  CHECK(list_xattrs(s.mnt("f")) == std::map<std::string, std::string>{{"user.mine", "2"}});
  s.check_tree();
}

TEST_CASE("lower whiteouts: every form mixed across several layers") {
  LAYERFS_ONLY("kernel overlayfs reads neither .wh.* files nor user.overlay.opaque by default");
  Scenario s({.lowers = {
                  {wh_file("a"), opaque("o1", OpaqueForm::kWhFile), file("o1/new", "n")},
                  {whiteout("b"), opaque("o2", OpaqueForm::kUserXattr), file("o2/new", "n"),
                   file("a", "hidden by .wh.a above")},
                  {opaque("o3", OpaqueForm::kTrustedXattr), file("o3/new", "n"), wh_file("c"),
                   file("keep", "k")},
                  {file("a", "a"), file("b", "b"), file("c", "c"), file("o1/old", "o"),
                   file("o2/old", "o"), file("o3/old", "o"), file("d", "d")},
              }});
  s.check_tree();
  CHECK(list_dir(s.mnt()) == std::vector<std::string>{"d", "keep", "o1", "o2", "o3"});
  for (const char* d : {"o1", "o2", "o3"}) {
    CHECK(list_dir(s.mnt(d)) == std::vector<std::string>{"new"});
  }
}

TEST_CASE("lower whiteouts: names hidden by a lower whiteout can be created again") {
  Scenario s({.lowers = {{whiteout("f"), whiteout("d")},
                         {file("f", "old"), dir("d"), file("d/old", "old")}}});
  s.both("create f", [](const std::string& r) { return sys::write(r + "/f", "new"); });
  s.both("mkdir d", [](const std::string& r) { return sys::mkdir(r + "/d"); });
  CHECK(read_file(s.mnt("f")) == "new");
  CHECK(list_dir(s.mnt("d")).empty());
  s.check_tree();
  s.both("unlink f", [](const std::string& r) { return sys::unlink(r + "/f"); });
  s.both("rmdir d", [](const std::string& r) { return sys::rmdir(r + "/d"); });
  s.check_tree();
  s.remount();
  s.check_tree({}, "after remount");
  CHECK(list_dir(s.mnt()).empty());
}

TEST_CASE("lower whiteouts: a copied-up opaque directory stays opaque") {
  Scenario s({.lowers = {{opaque("d"), file("d/a", "a")}, {file("d/b", "hidden")}}});
  s.both("create in d", [](const std::string& r) { return sys::write(r + "/d/c", "c"); });
  s.both("chmod d", [](const std::string& r) { return sys::chmod(r + "/d", 0700); });
  CHECK(list_dir(s.mnt("d")) == std::vector<std::string>{"a", "c"});
  s.check_tree();
  s.remount();
  CHECK(list_dir(s.mnt("d")) == std::vector<std::string>{"a", "c"});
  s.check_tree({}, "after remount");
}
