// Mounted tests for layers imported by layerctl: a layer tree is a layerfs
// lower as it is, so two imported layers mounted together show the merge OCI
// defines, their `.wh.` whiteouts and opaque markers honoured and never shown.
#include <doctest/doctest.h>

#include "tests/support/mount.h"
#include "tests/support/tmptree.h"

using namespace layerfs::test;

namespace {

std::string layerctl_import(const std::string& root, const std::string& path) {
  CmdResult r = run_command({LAYERCTL_BINARY, "--root", root, "layer", "import", path});
  REQUIRE_MESSAGE(r.exit_code == 0, r.describe());
  REQUIRE(r.out.rfind("sha256:", 0) == 0);
  return r.out.substr(7, 64);
}

// A tar of `dir` as GNU tar writes one, entries in name order.
void make_tar(const std::string& dir, const std::string& out) {
  CmdResult r =
      run_command({"/usr/bin/tar", "--numeric-owner", "--sort=name", "-C", dir, "-cf", out, "."});
  REQUIRE_MESSAGE(r.exit_code == 0, r.describe());
}

}  // namespace

TEST_CASE("layerctl layers: two imported layers mounted as lowers merge as OCI says") {
  TempDir t;
  const std::string root = t / "store";

  // Bottom layer.
  build(t.mkdir("bottom"), {file("a", "a"), file("b", "b"), file("d/x", "x"), file("d/y", "y"),
                            file("o/old", "old"), file("gone/deep/f", "f")});
  // Top layer, in OCI form: .wh.NAME whiteouts and an opaque directory.
  build(t.mkdir("top"), {wh_file("a"), wh_file("d/x"), wh_file("gone"), file("d/z", "z"),
                         opaque("o", OpaqueForm::kWhFile), file("o/new", "new"), file("b", "b2")});
  make_tar(t / "bottom", t / "bottom.tar");
  make_tar(t / "top", t / "top.tar");
  const std::string bottom = layerctl_import(root, t / "bottom.tar");
  const std::string top = layerctl_import(root, t / "top.tar");
  const std::string bottom_tree = root + "/layers/" + bottom + "/tree";
  const std::string top_tree = root + "/layers/" + top + "/tree";
  // The markers are in the layer tree as the empty files they are in the tar.
  CHECK(exists(top_tree + "/.wh.a"));
  CHECK(exists(top_tree + "/o/.wh..wh..opq"));

  Mount m(t.mkdir("mnt"), MountSpec{.lowers = {top_tree, bottom_tree}});
  CHECK(list_tree(m.path()) == std::vector<std::string>{"b", "d", "d/y", "d/z", "o", "o/new"});
  CHECK(read_file(m / "b") == "b2");
  CHECK(read_file(m / "d/y") == "y");
  CHECK(read_file(m / "o/new") == "new");
  CHECK(sys::lstat(m / "a") == ENOENT);
  CHECK(sys::lstat(m / "o/old") == ENOENT);
  CHECK(sys::lstat(m / "gone") == ENOENT);
  CHECK(sys::lstat(m / ".wh.a") == ENOENT);
  CHECK(m.unmount());
}

TEST_CASE("layerctl layers: an exported and re-imported layer mounts to the same view") {
  TempDir t;
  const std::string root = t / "store";
  build(t.mkdir("src"),
        {file("f", "data"), sym("l", "f"), hardlink("h", "f"), dir("e"), wh_file("w")});
  const std::string id = layerctl_import(root, t / "src");
  CmdResult r =
      run_command({LAYERCTL_BINARY, "--root", root, "layer", "export", id, "-o", t / "x.tar.gz"});
  REQUIRE_MESSAGE(r.exit_code == 0, r.describe());
  const std::string root2 = t / "store2";
  CHECK(layerctl_import(root2, t / "x.tar.gz") == id);

  Mount a(t.mkdir("mnt1"), MountSpec{.lowers = {root + "/layers/" + id + "/tree"}});
  Mount b(t.mkdir("mnt2"), MountSpec{.lowers = {root2 + "/layers/" + id + "/tree"}});
  CHECK(list_tree(a.path()) == std::vector<std::string>{"e", "f", "h", "l"});
  CHECK(list_tree(b.path()) == list_tree(a.path()));
  CHECK(read_file(b / "h") == "data");
  CHECK(read_link(b / "l") == "f");
  CHECK(lstat_path(b / "h").st_ino == lstat_path(b / "f").st_ino);
  CHECK(a.unmount());
  CHECK(b.unmount());
}
