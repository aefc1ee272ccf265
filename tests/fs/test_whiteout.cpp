// Tests for fs/whiteout.cpp: lower-format whiteouts written by other tools
// (character device 0/0, ".wh.NAME", opaque directories by trusted/user
// overlay xattr or ".wh..wh..opq"), which hide only the layers below their
// own and never show; and layerfs's own whiteouts, which live only in the
// index.
#include <fcntl.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#include "tests/fs/core_fixture.h"

namespace layerfs {
namespace {

using namespace coretest;

using Names = std::vector<std::string>;

TEST_CASE("a char 0/0 whiteout hides the name in the layers below") {
  Stack s(3);
  make_whiteout(s.L(1, "f"));
  write_file(s.L(2, "f"), "hidden");
  write_file(s.L(3, "f"), "hidden too");
  make_whiteout(s.L(1, "d"));
  write_file(s.L(2, "d/x"), "hidden");
  write_file(s.L(1, "keep"), "k");
  s.open();
  CHECK(s.lookup_error("f") == ENOENT);
  CHECK(s.lookup_error("d") == ENOENT);
  CHECK(s.names("") == Names{"keep"});
  CHECK_FALSE(MUST(s.fs().lower_has(s.root(), "f")));
  CHECK(MUST(s.fs().lower_has(s.root(), "keep")));
}

TEST_CASE("a char 0/0 whiteout does not hide the name in layers above it") {
  Stack s(3);
  write_file(s.L(1, "f"), "top");
  make_whiteout(s.L(2, "f"));
  write_file(s.L(3, "f"), "bottom");
  make_whiteout(s.L(3, "g"));
  write_file(s.L(2, "g"), "middle");
  s.open();
  CHECK(s.read("f") == "top");
  CHECK(s.read("g") == "middle");
  CHECK(s.names("") == Names{"f", "g"});
  CHECK(S_ISREG(s.attr("f").st_mode));
}

TEST_CASE("a char 0/0 whiteout in the middle hides only the bottom") {
  Stack s(3);
  make_whiteout(s.L(2, "f"));
  write_file(s.L(3, "f"), "bottom");
  write_file(s.L(3, "g"), "g");
  s.open();
  CHECK(s.lookup_error("f") == ENOENT);
  CHECK(s.names("") == Names{"g"});
}

TEST_CASE("a real character device that is not 0/0 is not a whiteout" * doctest::skip(needs_root())) {
  Stack s(2);
  make_node(s.L(1, "null"), S_IFCHR | 0666, makedev(1, 3));
  write_file(s.L(2, "null"), "below");
  s.open();
  CHECK(S_ISCHR(s.get("null")->type));
  CHECK(s.names("") == Names{"null"});
}

TEST_CASE(".wh.NAME hides NAME in the layers below and never shows") {
  Stack s(3);
  write_file(s.L(1, ".wh.f"), "");
  write_file(s.L(2, "f"), "hidden");
  write_file(s.L(3, "f"), "hidden");
  write_file(s.L(2, ".wh.g"), "");
  write_file(s.L(3, "g"), "hidden");
  write_file(s.L(1, ".wh.d"), "");
  write_file(s.L(3, "d/x"), "hidden");
  write_file(s.L(1, "visible"), "v");
  s.open();
  CHECK(s.lookup_error("f") == ENOENT);
  CHECK(s.lookup_error("g") == ENOENT);
  CHECK(s.lookup_error("d") == ENOENT);
  CHECK(s.lookup_error(".wh.f") == ENOENT);
  CHECK(s.names("") == Names{"visible"});
  CHECK_FALSE(MUST(s.fs().lower_has(s.root(), "f")));
  CHECK_FALSE(MUST(s.fs().lower_has(s.root(), ".wh.f")));
}

TEST_CASE(".wh.NAME does not hide NAME in its own layer or above") {
  Stack s(3);
  // Same layer: the entry shows (a whiteout applies to the layers below).
  write_file(s.L(1, "same"), "same layer");
  write_file(s.L(1, ".wh.same"), "");
  // Above.
  write_file(s.L(1, "above"), "above");
  write_file(s.L(2, ".wh.above"), "");
  write_file(s.L(3, "above"), "below");
  s.open();
  CHECK(s.read("same") == "same layer");
  CHECK(s.read("above") == "above");
  CHECK(s.names("") == Names{"above", "same"});
}

// A layer holding both d and .wh.d ends the merge of d: the lower layers' d
// must not merge into the new one.
TEST_CASE(".wh.NAME next to a new NAME in the same layer hides the lower NAME's content") {
  // An OCI layer that deletes a directory and creates a new one of the same
  // name holds both; the old content below must not show through the new one.
  Stack s(2);
  write_file(s.L(1, ".wh.d"), "");
  write_file(s.L(1, "d/new"), "new");
  write_file(s.L(2, "d/old"), "old");
  s.open();
  CHECK(s.read("d/new") == "new");
  CHECK(s.lookup_error("d/old") == ENOENT);
  CHECK(s.names("d") == Names{"new"});
}

TEST_CASE("whiteouts inside subdirectories apply only there") {
  Stack s(2);
  write_file(s.L(2, "d/f"), "hidden");
  write_file(s.L(2, "f"), "root f");
  make_whiteout(s.L(1, "d/f"));
  write_file(s.L(2, "e/g"), "hidden");
  write_file(s.L(1, "e/.wh.g"), "");
  write_file(s.L(1, "e/h"), "h");
  s.open();
  CHECK(s.lookup_error("d/f") == ENOENT);
  CHECK(s.read("f") == "root f");
  CHECK(s.names("d").empty());
  CHECK(s.lookup_error("e/g") == ENOENT);
  CHECK(s.names("e") == Names{"h"});
}

TEST_CASE("opaque lower directories hide the layers below theirs" * doctest::skip(needs_root())) {
  Stack s(3);
  const char* kForms[] = {"trusted", "user", "marker"};
  for (const char* form : kForms) {
    std::string d = std::string("d_") + form;
    write_file(s.L(1, d + "/top"), "t");
    write_file(s.L(2, d + "/mid"), "m");
    write_file(s.L(3, d + "/bottom"), "b");
    std::string marked = s.L(2, d);  // the middle layer's copy is opaque
    if (std::string(form) == "trusted") set_xattr(marked, "trusted.overlay.opaque", "y");
    if (std::string(form) == "user") set_xattr(marked, "user.overlay.opaque", "y");
    if (std::string(form) == "marker") write_file(marked + "/.wh..wh..opq", "");
  }
  s.open();
  for (const char* form : kForms) {
    CAPTURE(form);
    std::string d = std::string("d_") + form;
    CHECK(s.names(d) == Names{"mid", "top"});
    CHECK(s.read(d + "/top") == "t");
    CHECK(s.read(d + "/mid") == "m");
    CHECK(s.lookup_error(d + "/bottom") == ENOENT);
    CHECK(s.lookup_error(d + "/.wh..wh..opq") == ENOENT);
    CHECK(s.get(d)->lowers.size() == 2);
  }
}

TEST_CASE("an opaque mark of value other than 'y' is not opaque" * doctest::skip(needs_root())) {
  Stack s(2);
  write_file(s.L(1, "d/top"), "t");
  write_file(s.L(2, "d/bottom"), "b");
  set_xattr(s.L(1, "d"), "trusted.overlay.opaque", "n");
  s.open();
  CHECK(s.names("d") == Names{"bottom", "top"});
}

TEST_CASE("an opaque directory in the top lower hides everything below") {
  Stack s(2);
  write_file(s.L(1, "d/.wh..wh..opq"), "");
  write_file(s.L(2, "d/old"), "old");
  write_file(s.L(1, "d/new"), "new");
  s.open();
  CHECK(s.names("d") == Names{"new"});
  CHECK(s.lookup_error("d/old") == ENOENT);
  // Not an entry of its own either.
  CHECK(s.lookup_error("d/.wh..wh..opq") == ENOENT);
}

TEST_CASE("opaque xattrs of lower directories are private: not shown, not copied up" * doctest::skip(needs_root())) {
  Stack s(2);
  write_file(s.L(1, "d/top"), "t");
  write_file(s.L(2, "d/bottom"), "b");
  set_xattr(s.L(1, "d"), "trusted.overlay.opaque", "y");
  set_xattr(s.L(1, "d"), "user.overlay.opaque", "y");
  set_xattr(s.L(1, "d"), "user.visible", "1");
  s.open();
  InodePtr d = s.get("d");
  CHECK(MUST(s.fs().listxattr(d)) == std::vector<std::string>{"user.visible"});
  CHECK(s.fs().getxattr(d, "trusted.overlay.opaque").error() == ENODATA);
  // Copy it up (by creating inside it); the upper copy carries no marks and
  // the merge keeps hiding the bottom layer, also after reopening.
  auto c = MUST(s.fs().create(d, "new", 0644, O_WRONLY, kRoot));
  c = {};
  d.reset();
  CHECK(disk_xattr_names(s.U("d")) == std::vector<std::string>{"user.visible"});
  CHECK(s.names("d") == Names{"new", "top"});
  s.reopen();
  CHECK(s.names("d") == Names{"new", "top"});
  CHECK(s.lookup_error("d/bottom") == ENOENT);
}

TEST_CASE("an opaque lower directory stays opaque when renamed") {
  Stack s(2);
  write_file(s.L(1, "d/.wh..wh..opq"), "");
  write_file(s.L(1, "d/top"), "");
  write_file(s.L(2, "d/bottom"), "");
  s.open();
  MUST(s.fs().rename(s.root(), "d", s.root(), "e", 0));
  CHECK(s.names("e") == Names{"top"});
  s.reopen();
  CHECK(s.names("e") == Names{"top"});
  CHECK(s.lookup_error("e/bottom") == ENOENT);
}

TEST_CASE("layerfs's own whiteouts live in the index, not in the upper") {
  Stack s(2);
  write_file(s.L(1, "f"), "f");
  write_file(s.L(2, "d/g"), "g");
  write_file(s.L(2, "d/h"), "h");
  s.open();
  MUST(s.fs().unlink(s.root(), "f"));
  MUST(s.fs().unlink(s.get("d"), "g"));
  CHECK(s.lookup_error("f") == ENOENT);
  CHECK(s.lookup_error("d/g") == ENOENT);
  CHECK(s.whiteouts("") == Names{"f"});
  CHECK(s.whiteouts("d") == Names{"g"});
  // Nothing of it in the upper: no device, no .wh. file, no xattr.
  CHECK(disk_tree(s.U()) == Names{"d"});
  CHECK(disk_xattr_names(s.U("d")).empty());
  CHECK(disk_xattr_names(s.U()).empty());
  CHECK(s.names("") == Names{"d"});
  CHECK(s.names("d") == Names{"h"});
  CHECK_FALSE(MUST(s.fs().lower_has(s.root(), "f")));
  CHECK(MUST(s.fs().lower_has(s.get("d"), "h")));
  s.reopen();
  CHECK(s.lookup_error("f") == ENOENT);
  CHECK(s.lookup_error("d/g") == ENOENT);
  CHECK(s.names("d") == Names{"h"});
}

TEST_CASE("whiteouts in an upper directory that had no index record yet") {
  Stack s(1);
  write_file(s.U("d/mine"), "m");  // the upper directory existed before any record
  write_file(s.L(1, "d/theirs"), "t");
  write_file(s.L(1, "d/kept"), "k");
  s.open();
  CHECK(s.names("d") == Names{"kept", "mine", "theirs"});
  MUST(s.fs().unlink(s.get("d"), "theirs"));
  CHECK(s.whiteouts("d") == Names{"theirs"});
  REQUIRE(s.record("d").has_value());
  CHECK_FALSE(s.record("d")->opaque);
  CHECK_FALSE(s.record("d")->origin.has_value());
  s.reopen();
  CHECK(s.names("d") == Names{"kept", "mine"});
  CHECK(s.lookup_error("d/theirs") == ENOENT);
  CHECK(s.get("d")->ino == ino_at(0, s.U("d")));
}

TEST_CASE("a whiteout-only removal updates the parent's mtime") {
  Stack s(1);
  write_file(s.L(1, "f"), "");
  write_file(s.L(1, "d/g"), "");
  make_dir(s.L(1, "d/e"));
  set_times(s.L(1, "d"), 1000000000, 1000000000);
  set_times(s.U(), 1000000000, 1000000000);
  s.open();
  struct timespec t0;
  clock_gettime(CLOCK_REALTIME, &t0);
  MUST(s.fs().unlink(s.root(), "f"));
  CHECK(s.attr("").st_mtim.tv_sec >= t0.tv_sec - 1);
  MUST(s.fs().unlink(s.get("d"), "g"));
  CHECK(s.attr("d").st_mtim.tv_sec >= t0.tv_sec - 1);
  set_times(s.U("d"), 1000000000, 1000000000);
  MUST(s.fs().rmdir(s.get("d"), "e"));
  CHECK(s.attr("d").st_mtim.tv_sec >= t0.tv_sec - 1);
}

TEST_CASE("a name recreated over an index whiteout shows the new object only") {
  Stack s(1);
  write_file(s.L(1, "f"), "old");
  s.open();
  MUST(s.fs().unlink(s.root(), "f"));
  {
    auto c = MUST(s.fs().create(s.root(), "f", 0600, O_WRONLY, kRoot));
    write_handle(s.fs(), *c.handle, "new");
  }
  CHECK(s.read("f") == "new");
  CHECK(s.names("") == Names{"f"});
  s.reopen();
  CHECK(s.read("f") == "new");
  // Removing it again leaves the name deleted, not the old lower file.
  MUST(s.fs().unlink(s.root(), "f"));
  CHECK(s.lookup_error("f") == ENOENT);
  CHECK(s.names("").empty());
  s.reopen();
  CHECK(s.lookup_error("f") == ENOENT);
  CHECK(disk_names(s.U()).empty());
}

TEST_CASE("lower_has: visible lower entries only") {
  Stack s(2);
  write_file(s.L(2, "low"), "x");
  write_file(s.U("up"), "x");
  make_whiteout(s.L(1, "gone"));
  write_file(s.L(2, "gone"), "x");
  s.open();
  CHECK(MUST(s.fs().lower_has(s.root(), "low")));
  CHECK_FALSE(MUST(s.fs().lower_has(s.root(), "up")));
  CHECK_FALSE(MUST(s.fs().lower_has(s.root(), "gone")));
  CHECK_FALSE(MUST(s.fs().lower_has(s.root(), "absent")));
  MUST(s.fs().unlink(s.root(), "low"));
  CHECK_FALSE(MUST(s.fs().lower_has(s.root(), "low")));
}

}  // namespace
}  // namespace layerfs
