// Tests for fs/dir_ops.cpp: create-like operations (ownership, set-group-ID
// parents, opaque directories made over deleted ones), unlink and rmdir of
// lower, upper and merged entries (whiteouts in the index, nothing in the
// upper), rename of files and directories (redirects, nested renames,
// NOREPLACE, EXCHANGE, error cases, two names of one file), link(), and EROFS
// on read-only stacks. Most checks are repeated on a new Filesystem to show
// that what was recorded survives.
#include <fcntl.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#include <atomic>
#include <thread>

#include "tests/fs/core_fixture.h"

namespace layerfs {
namespace {

using namespace coretest;

using Names = std::vector<std::string>;

const Caller kUser{1000, 2000};

void create_file(Stack& s, const std::string& dir, const std::string& name,
                 std::string_view content, mode_t mode = 0644, const Caller& who = kRoot) {
  auto c = MUST(s.fs().create(s.get(dir), name, mode, O_WRONLY, who));
  write_handle(s.fs(), *c.handle, content);
}

// ---------------------------------------------------------------------------
// Creating.

TEST_CASE("create, mkdir, mknod and symlink make upper objects owned by the caller" * doctest::skip(needs_root())) {
  Stack s(1);
  s.open();
  InodePtr root = s.root();
  auto f = MUST(s.fs().create(root, "file", 0640, O_WRONLY, kUser));
  auto d = MUST(s.fs().mkdir(root, "dir", 0750, kUser));
  auto p = MUST(s.fs().mknod(root, "fifo", S_IFIFO | 0604, 0, kUser));
  auto c = MUST(s.fs().mknod(root, "null", S_IFCHR | 0666, makedev(1, 3), kUser));
  auto l = MUST(s.fs().symlink(root, "sym", "file", kUser));

  struct Expect {
    const char* name;
    InodePtr node;
    mode_t mode;
  } expect[] = {{"file", f.node, S_IFREG | 0640},
                {"dir", d, S_IFDIR | 0750},
                {"fifo", p, S_IFIFO | 0604},
                {"null", c, S_IFCHR | 0666},
                {"sym", l, S_IFLNK | 0777}};
  for (const auto& e : expect) {
    CAPTURE(e.name);
    struct stat st = lstat_of(s.U(e.name));
    CHECK(st.st_mode == e.mode);
    CHECK(st.st_uid == 1000);
    CHECK(st.st_gid == 2000);
    CHECK(e.node->ino == ino::encode(0, st.st_ino));
    CHECK(s.get(e.name) == e.node);
    struct stat a = MUST(s.fs().getattr(e.node));
    CHECK(a.st_mode == e.mode);
    CHECK(a.st_uid == 1000);
    CHECK(a.st_ino == e.node->ino);
  }
  CHECK(lstat_of(s.U("null")).st_rdev == makedev(1, 3));
  CHECK(MUST(s.fs().readlink(l)) == "file");
  CHECK(s.names("") == Names{"dir", "fifo", "file", "null", "sym"});
  // Objects made fresh in the upper carry no index record.
  CHECK_FALSE(s.record("file").has_value());
  CHECK_FALSE(s.record("dir").has_value());
}

TEST_CASE("set-id bits requested at creation survive the chown to the caller") {
  Stack s(1);
  s.open();
  auto f = MUST(s.fs().create(s.root(), "suid", 06755, O_WRONLY, kUser));
  CHECK((lstat_of(s.U("suid")).st_mode & 07777) == 06755);
  auto d = MUST(s.fs().mkdir(s.root(), "sticky", 01777, kUser));
  CHECK((lstat_of(s.U("sticky")).st_mode & 07777) == 01777);
}

TEST_CASE("a set-group-ID parent gives new objects its group" * doctest::skip(needs_root())) {
  Stack s(1);
  make_dir(s.L(1, "sg"), 02775);
  set_owner(s.L(1, "sg"), 0, 3000);
  SYS(::chmod(s.L(1, "sg").c_str(), 02775));  // chown cleared the bit
  s.open();
  InodePtr sg = s.get("sg");
  auto f = MUST(s.fs().create(sg, "file", 0644, O_WRONLY, kUser));
  auto d = MUST(s.fs().mkdir(sg, "dir", 0755, kUser));
  auto p = MUST(s.fs().mknod(sg, "fifo", S_IFIFO | 0644, 0, kUser));
  auto l = MUST(s.fs().symlink(sg, "sym", "x", kUser));
  for (const char* n : {"file", "dir", "fifo", "sym"}) {
    CAPTURE(n);
    struct stat st = lstat_of(s.U(std::string("sg/") + n));
    CHECK(st.st_uid == 1000);
    CHECK(st.st_gid == 3000);
  }
  // A directory also inherits the bit itself.
  CHECK((lstat_of(s.U("sg/dir")).st_mode & 07777) == 02755);
  CHECK((lstat_of(s.U("sg/file")).st_mode & 07777) == 0644);
  // The parent was copied up with its bit and group.
  CHECK((lstat_of(s.U("sg")).st_mode & 07777) == 02775);
  CHECK(lstat_of(s.U("sg")).st_gid == 3000);
  // Without the bit the caller's group applies.
  auto g = MUST(s.fs().create(s.root(), "plain", 0644, O_WRONLY, kUser));
  CHECK(lstat_of(s.U("plain")).st_gid == 2000);
}

TEST_CASE("creating inside a lower directory copies up only the parents") {
  Stack s(2);
  write_file(s.L(2, "a/b/sibling"), "s");
  write_file(s.L(1, "a/other"), "o");
  auto before1 = snapshot(s.L(1));
  auto before2 = snapshot(s.L(2));
  s.open();
  create_file(s, "a/b", "new", "new data");
  auto d = MUST(s.fs().mkdir(s.get("a/b"), "newdir", 0700, kRoot));
  d.reset();
  CHECK(disk_tree(s.U()) == Names{"a", "a/b", "a/b/new", "a/b/newdir"});
  CHECK(s.names("a/b") == Names{"new", "newdir", "sibling"});
  CHECK(s.names("a") == Names{"b", "other"});
  CHECK(s.read("a/b/new") == "new data");
  CHECK(snapshot(s.L(1)) == before1);
  CHECK(snapshot(s.L(2)) == before2);
  CHECK(s.staging().empty());
}

TEST_CASE("creating over an existing upper name fails with EEXIST") {
  Stack s(1);
  write_file(s.U("f"), "x");
  make_dir(s.U("d"));
  s.open();
  CHECK(s.fs().create(s.root(), "f", 0644, O_WRONLY, kRoot).error() == EEXIST);
  CHECK(s.fs().mkdir(s.root(), "f", 0755, kRoot).error() == EEXIST);
  CHECK(s.fs().mkdir(s.root(), "d", 0755, kRoot).error() == EEXIST);
  CHECK(s.fs().symlink(s.root(), "d", "t", kRoot).error() == EEXIST);
  CHECK(s.fs().mknod(s.root(), "f", S_IFIFO | 0644, 0, kRoot).error() == EEXIST);
  CHECK(read_file(s.U("f")) == "x");
}

// ---------------------------------------------------------------------------
// unlink and rmdir.

TEST_CASE("unlink of a lower file records a whiteout and leaves the upper empty") {
  Stack s(2);
  write_file(s.L(2, "f"), "f");
  write_file(s.L(2, "d/e/g"), "g");
  write_file(s.L(1, "d/e/h"), "h");
  auto before = snapshot(s.L(2));
  s.open();
  MUST(s.fs().unlink(s.root(), "f"));
  MUST(s.fs().unlink(s.get("d/e"), "g"));
  CHECK(s.lookup_error("f") == ENOENT);
  CHECK(s.lookup_error("d/e/g") == ENOENT);
  CHECK(s.whiteouts("") == Names{"f"});
  CHECK(s.whiteouts("d/e") == Names{"g"});
  CHECK(disk_tree(s.U()) == Names{"d", "d/e"});
  CHECK(s.names("") == Names{"d"});
  CHECK(s.names("d/e") == Names{"h"});
  CHECK(snapshot(s.L(2)) == before);
  s.reopen();
  CHECK(s.lookup_error("f") == ENOENT);
  CHECK(s.lookup_error("d/e/g") == ENOENT);
  CHECK(s.names("d/e") == Names{"h"});
}

TEST_CASE("unlink of an upper-only file needs no whiteout") {
  Stack s(1);
  write_file(s.U("u"), "u");
  s.open();
  MUST(s.fs().unlink(s.root(), "u"));
  CHECK_FALSE(exists(s.U("u")));
  CHECK(s.lookup_error("u") == ENOENT);
  CHECK(s.whiteouts("").empty());
}

TEST_CASE("unlink of a copied-up file removes the copy, its record, and hides the lower") {
  Stack s(1);
  write_file(s.L(1, "f"), "lower");
  s.open();
  s.write("f", "upper");
  const uint64_t uino = s.upper_ino("f");
  REQUIRE(s.record("f").has_value());
  MUST(s.fs().unlink(s.root(), "f"));
  CHECK_FALSE(exists(s.U("f")));
  CHECK(s.lookup_error("f") == ENOENT);
  CHECK(s.whiteouts("") == Names{"f"});
  CHECK_FALSE(MUST(s.index().object(uino)).has_value());
  s.reopen();
  CHECK(s.lookup_error("f") == ENOENT);
}

TEST_CASE("unlink errors") {
  Stack s(1);
  make_dir(s.L(1, "d"));
  write_file(s.L(1, "f"), "");
  s.open();
  CHECK(s.fs().unlink(s.root(), "d").error() == EISDIR);
  CHECK(s.fs().unlink(s.root(), "missing").error() == ENOENT);
  CHECK(s.fs().unlink(s.get("f"), "x").error() == ENOTDIR);
  CHECK(s.names("") == Names{"d", "f"});
  CHECK(disk_names(s.U()).empty());
}

TEST_CASE("rmdir of lower, upper and merged directories") {
  Stack s(2);
  make_dir(s.L(2, "lower_empty"));
  make_dir(s.U("upper_empty"));
  make_dir(s.L(1, "merged"));
  make_dir(s.U("merged"));
  make_dir(s.L(2, "merged"));
  s.open();
  MUST(s.fs().rmdir(s.root(), "lower_empty"));
  MUST(s.fs().rmdir(s.root(), "upper_empty"));
  MUST(s.fs().rmdir(s.root(), "merged"));
  CHECK(s.names("").empty());
  CHECK(disk_names(s.U()).empty());
  CHECK(s.whiteouts("") == Names{"lower_empty", "merged"});
  s.reopen();
  CHECK(s.names("").empty());
  CHECK(s.lookup_error("merged") == ENOENT);
}

TEST_CASE("rmdir needs the merged view empty") {
  Stack s(3);
  write_file(s.L(1, "a/f"), "");
  write_file(s.U("b/f"), "");
  make_dir(s.L(1, "c"));
  make_dir(s.L(2, "c"));
  write_file(s.L(3, "c/deep"), "");  // only the bottom layer has content
  make_dir(s.L(1, "e/sub"));
  s.open();
  CHECK(s.fs().rmdir(s.root(), "a").error() == ENOTEMPTY);
  CHECK(s.fs().rmdir(s.root(), "b").error() == ENOTEMPTY);
  CHECK(s.fs().rmdir(s.root(), "c").error() == ENOTEMPTY);
  CHECK(s.fs().rmdir(s.root(), "e").error() == ENOTEMPTY);
  CHECK(s.names("") == Names{"a", "b", "c", "e"});
  CHECK(s.whiteouts("").empty());
}

TEST_CASE("rmdir of a directory emptied by whiteouts (merged-empty)") {
  Stack s(2);
  write_file(s.L(1, "d/a"), "");
  write_file(s.L(2, "d/b"), "");
  write_file(s.L(2, "d/sub/x"), "");
  s.open();
  CHECK(s.fs().rmdir(s.root(), "d").error() == ENOTEMPTY);
  MUST(s.fs().unlink(s.get("d"), "a"));
  MUST(s.fs().unlink(s.get("d"), "b"));
  CHECK(s.fs().rmdir(s.root(), "d").error() == ENOTEMPTY);
  MUST(s.fs().unlink(s.get("d/sub"), "x"));
  MUST(s.fs().rmdir(s.get("d"), "sub"));
  CHECK(s.names("d").empty());
  const uint64_t d_upper = s.upper_ino("d");
  MUST(s.fs().rmdir(s.root(), "d"));
  CHECK(s.lookup_error("d") == ENOENT);
  CHECK(disk_names(s.U()).empty());
  CHECK(s.whiteouts("") == Names{"d"});
  // The removed directory's records went with it.
  CHECK_FALSE(MUST(s.index().object(d_upper)).has_value());
  CHECK(MUST(s.index().whiteouts(d_upper)).empty());
  s.reopen();
  CHECK(s.lookup_error("d") == ENOENT);
  CHECK(s.names("").empty());
}

TEST_CASE("rmdir errors") {
  Stack s(1);
  write_file(s.L(1, "f"), "");
  s.open();
  CHECK(s.fs().rmdir(s.root(), "f").error() == ENOTDIR);
  CHECK(s.fs().rmdir(s.root(), "missing").error() == ENOENT);
  CHECK(s.fs().rmdir(s.get("f"), "x").error() == ENOTDIR);
}

// ---------------------------------------------------------------------------
// A directory made where one was deleted.

TEST_CASE("mkdir over a deleted lower directory makes an opaque directory") {
  Stack s(2);
  write_file(s.L(1, "d/x"), "x");
  write_file(s.L(2, "d/y"), "y");
  s.open();
  MUST(s.fs().unlink(s.get("d"), "x"));
  MUST(s.fs().unlink(s.get("d"), "y"));
  MUST(s.fs().rmdir(s.root(), "d"));
  {
    auto d = MUST(s.fs().mkdir(s.root(), "d", 0755, kRoot));
    CHECK(MUST(s.fs().list(d)).empty());
  }
  CHECK(s.names("d").empty());
  CHECK(s.lookup_error("d/x") == ENOENT);
  CHECK(s.lookup_error("d/y") == ENOENT);
  REQUIRE(s.record("d").has_value());
  CHECK(s.record("d")->opaque);
  create_file(s, "d", "new", "n");
  CHECK(s.names("d") == Names{"new"});
  s.reopen();
  CHECK(s.names("d") == Names{"new"});
  CHECK(s.lookup_error("d/x") == ENOENT);
  CHECK(s.names("") == Names{"d"});
  // Removing the new one still leaves the old one deleted.
  MUST(s.fs().unlink(s.get("d"), "new"));
  MUST(s.fs().rmdir(s.root(), "d"));
  CHECK(s.lookup_error("d") == ENOENT);
  s.reopen();
  CHECK(s.lookup_error("d") == ENOENT);
}

TEST_CASE("mkdir where a lower file was deleted hides a lower directory further down") {
  Stack s(2);
  write_file(s.L(1, "d"), "a file on top");
  write_file(s.L(2, "d/old"), "under the file");
  s.open();
  MUST(s.fs().unlink(s.root(), "d"));
  auto d = MUST(s.fs().mkdir(s.root(), "d", 0755, kRoot));
  d.reset();
  CHECK(s.names("d").empty());
  s.reopen();
  CHECK(s.names("d").empty());
  CHECK(s.lookup_error("d/old") == ENOENT);
}

TEST_CASE("mkdir of a fresh name makes a plain directory") {
  Stack s(1);
  write_file(s.L(1, "other/x"), "");
  s.open();
  auto d = MUST(s.fs().mkdir(s.root(), "fresh", 0755, kRoot));
  CHECK(d->lowers.empty());
  auto rec = s.record("fresh");
  CHECK((!rec || !rec->opaque));
}

// ---------------------------------------------------------------------------
// rename.

TEST_CASE("rename of a lower file") {
  Stack s(2);
  write_file(s.L(2, "f"), "content");
  make_dir(s.L(1, "d"));
  auto before = snapshot(s.L(2));
  s.open();
  const uint64_t ino = s.get("f")->ino;
  MUST(s.fs().rename(s.root(), "f", s.root(), "g", 0));
  CHECK(s.lookup_error("f") == ENOENT);
  CHECK(s.read("g") == "content");
  CHECK(s.get("g")->ino == ino);
  CHECK(s.whiteouts("") == Names{"f"});
  CHECK(disk_tree(s.U()) == Names{"g"});
  // And on into a lower directory.
  MUST(s.fs().rename(s.root(), "g", s.get("d"), "h", 0));
  CHECK(s.lookup_error("g") == ENOENT);
  CHECK(s.read("d/h") == "content");
  CHECK(s.get("d/h")->ino == ino);
  CHECK(disk_tree(s.U()) == Names{"d", "d/h"});
  CHECK(s.names("") == Names{"d"});
  CHECK(snapshot(s.L(2)) == before);
  s.reopen();
  CHECK(s.names("") == Names{"d"});
  CHECK(s.read("d/h") == "content");
  CHECK(s.get("d/h")->ino == ino);
  CHECK(s.lookup_error("f") == ENOENT);
}

TEST_CASE("rename over an existing file replaces it") {
  Stack s(1);
  write_file(s.L(1, "lower_src"), "lower src");
  write_file(s.L(1, "lower_dst"), "lower dst");
  write_file(s.U("upper_src"), "upper src");
  write_file(s.L(1, "lower_dst2"), "lower dst 2");
  write_file(s.U("upper_dst"), "upper dst");
  s.open();
  const uint64_t ls = s.get("lower_src")->ino;
  const uint64_t us = s.get("upper_src")->ino;
  SUBCASE("upper over lower") {
    MUST(s.fs().rename(s.root(), "upper_src", s.root(), "lower_dst", 0));
    CHECK(s.read("lower_dst") == "upper src");
    CHECK(s.get("lower_dst")->ino == us);
    CHECK(s.lookup_error("upper_src") == ENOENT);
    s.reopen();
    CHECK(s.read("lower_dst") == "upper src");
    // Removing it does not bring back the lower file.
    MUST(s.fs().unlink(s.root(), "lower_dst"));
    CHECK(s.lookup_error("lower_dst") == ENOENT);
    s.reopen();
    CHECK(s.lookup_error("lower_dst") == ENOENT);
  }
  SUBCASE("lower over lower") {
    MUST(s.fs().rename(s.root(), "lower_src", s.root(), "lower_dst2", 0));
    CHECK(s.read("lower_dst2") == "lower src");
    CHECK(s.get("lower_dst2")->ino == ls);
    CHECK(s.lookup_error("lower_src") == ENOENT);
    s.reopen();
    CHECK(s.read("lower_dst2") == "lower src");
    CHECK(s.lookup_error("lower_src") == ENOENT);
  }
  SUBCASE("lower over upper") {
    MUST(s.fs().rename(s.root(), "lower_src", s.root(), "upper_dst", 0));
    CHECK(s.read("upper_dst") == "lower src");
    CHECK(s.get("upper_dst")->ino == ls);
    CHECK(s.lookup_error("lower_src") == ENOENT);
    s.reopen();
    CHECK(s.read("upper_dst") == "lower src");
    CHECK(s.get("upper_dst")->ino == ls);
  }
}

TEST_CASE("rename of a lower directory copies only the directory and records a redirect") {
  Stack s(2);
  write_file(s.L(2, "d/x/y/file"), "deep");
  write_file(s.L(2, "d/z"), "z");
  write_file(s.L(1, "d/w"), "w");
  auto before1 = snapshot(s.L(1));
  auto before2 = snapshot(s.L(2));
  s.open();
  const uint64_t d_ino = s.get("d")->ino;
  const uint64_t x_ino = s.get("d/x")->ino;
  const uint64_t file_ino = s.get("d/x/y/file")->ino;
  MUST(s.fs().rename(s.root(), "d", s.root(), "e", 0));

  auto check_view = [&] {
    CHECK(s.lookup_error("d") == ENOENT);
    CHECK(s.names("") == Names{"e"});
    CHECK(s.names("e") == Names{"w", "x", "z"});
    CHECK(s.read("e/x/y/file") == "deep");
    CHECK(s.read("e/w") == "w");
    CHECK(s.get("e")->ino == d_ino);
    CHECK(s.get("e/x")->ino == x_ino);
    CHECK(s.get("e/x/y/file")->ino == file_ino);
    // The upper holds just the directory.
    CHECK(disk_tree(s.U()) == Names{"e"});
    auto rec = s.record("e");
    REQUIRE(rec.has_value());
    CHECK(rec->redirect == std::optional<std::string>("/d"));
    CHECK(rec->origin == d_ino);
    CHECK(s.whiteouts("") == Names{"d"});
  };
  check_view();
  s.reopen();
  check_view();
  CHECK(snapshot(s.L(1)) == before1);
  CHECK(snapshot(s.L(2)) == before2);
  CHECK(s.staging().empty());
}

TEST_CASE("renames inside renamed directories compose") {
  Stack s(2);
  write_file(s.L(2, "a/c/f"), "f");
  write_file(s.L(2, "a/c/g"), "g");
  write_file(s.L(1, "a/c/h"), "h");
  write_file(s.L(2, "a/k/deep/m"), "m");
  s.open();
  MUST(s.fs().rename(s.root(), "a", s.root(), "b", 0));
  MUST(s.fs().rename(s.get("b"), "c", s.get("b"), "c2", 0));
  CHECK(s.names("b") == Names{"c2", "k"});
  CHECK(s.names("b/c2") == Names{"f", "g", "h"});
  CHECK(s.read("b/c2/f") == "f");
  // A file out of the doubly moved directory.
  MUST(s.fs().rename(s.get("b/c2"), "g", s.root(), "g", 0));
  // The outer one moves again; its inner redirect still works.
  MUST(s.fs().rename(s.root(), "b", s.root(), "z", 0));
  // A directory from inside the moved one moves out of it.
  MUST(s.fs().rename(s.get("z/k"), "deep", s.root(), "deep", 0));

  auto check_view = [&] {
    CHECK(s.names("") == Names{"deep", "g", "z"});
    CHECK(s.names("z") == Names{"c2", "k"});
    CHECK(s.names("z/c2") == Names{"f", "h"});
    CHECK(s.names("z/k").empty());
    CHECK(s.read("z/c2/f") == "f");
    CHECK(s.read("z/c2/h") == "h");
    CHECK(s.read("g") == "g");
    CHECK(s.read("deep/m") == "m");
    CHECK(s.lookup_error("a") == ENOENT);
    CHECK(s.lookup_error("b") == ENOENT);
    CHECK(s.lookup_error("z/c") == ENOENT);
    CHECK(s.lookup_error("z/c2/g") == ENOENT);
  };
  check_view();
  s.reopen();
  check_view();
  CHECK(disk_tree(s.U()) == Names{"deep", "g", "z", "z/c2", "z/k"});
}

TEST_CASE("a renamed directory carries its whiteouts and takes copy-ups inside it") {
  Stack s(2);
  write_file(s.L(2, "d/gone"), "");
  write_file(s.L(2, "d/kept"), "k");
  write_file(s.L(1, "d/sub/deep/file"), "deep");
  s.open();
  MUST(s.fs().unlink(s.get("d"), "gone"));
  MUST(s.fs().rename(s.root(), "d", s.root(), "e", 0));
  CHECK(s.names("e") == Names{"kept", "sub"});
  s.reopen();
  CHECK(s.names("e") == Names{"kept", "sub"});
  CHECK(s.lookup_error("e/gone") == ENOENT);
  // Copy-ups below the moved directory, in a new Filesystem.
  s.write("e/sub/deep/file", "DEEP");
  create_file(s, "e/sub", "new", "n");
  MUST(s.fs().unlink(s.get("e"), "kept"));
  s.reopen();
  CHECK(s.names("e") == Names{"sub"});
  CHECK(s.names("e/sub") == Names{"deep", "new"});
  CHECK(s.read("e/sub/deep/file") == "DEEP");
  CHECK(s.get("e/sub/deep/file")->ino == ino_at(1, s.L(1, "d/sub/deep/file")));
  CHECK(disk_tree(s.U()) == Names{"e", "e/sub", "e/sub/deep", "e/sub/deep/file", "e/sub/new"});
  // A new directory at the old name is a new, empty one.
  {
    auto d = MUST(s.fs().mkdir(s.root(), "d", 0755, kRoot));
    CHECK(MUST(s.fs().list(d)).empty());
  }
  s.reopen();
  CHECK(s.names("d").empty());
  CHECK(s.names("") == Names{"d", "e"});
}

TEST_CASE("a directory renamed away and back shows its content") {
  Stack s(1);
  write_file(s.L(1, "d/f"), "f");
  s.open();
  const uint64_t ino = s.get("d")->ino;
  MUST(s.fs().rename(s.root(), "d", s.root(), "e", 0));
  MUST(s.fs().rename(s.root(), "e", s.root(), "d", 0));
  CHECK(s.names("") == Names{"d"});
  CHECK(s.read("d/f") == "f");
  CHECK(s.get("d")->ino == ino);
  s.reopen();
  CHECK(s.names("") == Names{"d"});
  CHECK(s.read("d/f") == "f");
  CHECK(s.get("d")->ino == ino);
}

TEST_CASE("a renamed directory emptied and removed stays removed") {
  Stack s(1);
  write_file(s.L(1, "d/f"), "f");
  make_dir(s.L(1, "e"));
  s.open();
  MUST(s.fs().rename(s.root(), "d", s.root(), "e", 0));
  CHECK(s.fs().rmdir(s.root(), "e").error() == ENOTEMPTY);
  MUST(s.fs().unlink(s.get("e"), "f"));
  MUST(s.fs().rmdir(s.root(), "e"));
  CHECK(s.names("").empty());
  s.reopen();
  CHECK(s.names("").empty());
  CHECK(s.lookup_error("e") == ENOENT);
  CHECK(s.lookup_error("d") == ENOENT);
}

TEST_CASE("RENAME_EXCHANGE of a lower directory and a directory made in the upper") {
  Stack s(1);
  write_file(s.L(1, "low/f"), "f");
  write_file(s.L(1, "other/x"), "x");
  s.open();
  MUST(s.fs().unlink(s.get("other"), "x"));
  MUST(s.fs().rmdir(s.root(), "other"));
  { auto u = MUST(s.fs().mkdir(s.root(), "other", 0755, kRoot)); }
  create_file(s, "other", "mine", "m");
  MUST(s.fs().rename(s.root(), "low", s.root(), "other", RENAME_EXCHANGE));
  auto check_view = [&] {
    CHECK(s.names("low") == Names{"mine"});
    CHECK(s.names("other") == Names{"f"});
    CHECK(s.lookup_error("low/f") == ENOENT);
    CHECK(s.lookup_error("other/x") == ENOENT);
  };
  check_view();
  s.reopen();
  check_view();
}

TEST_CASE("files renamed or linked into a renamed directory, and a group member inside it") {
  Stack s(2);
  write_file(s.L(2, "d/a"), "group");
  make_hardlink(s.L(2, "d/a"), s.L(2, "top"));
  write_file(s.L(1, "f"), "f");
  write_file(s.L(1, "l"), "l");
  s.open();
  const uint64_t group = s.get("top")->ino;
  MUST(s.fs().rename(s.root(), "d", s.root(), "e", 0));
  MUST(s.fs().rename(s.root(), "f", s.get("e"), "f", 0));
  MUST(s.fs().link(s.get("l"), s.get("e"), "l2"));
  s.write("top", "GROUP");
  auto check_view = [&] {
    CHECK(s.names("e") == Names{"a", "f", "l2"});
    CHECK(s.names("") == Names{"e", "l", "top"});
    CHECK(s.read("e/f") == "f");
    CHECK(s.get("e/l2") == s.get("l"));
    CHECK(s.get("e/a") == s.get("top"));
    CHECK(s.get("e/a")->ino == group);
    CHECK(s.read("e/a") == "GROUP");
    CHECK(s.attr("e/a").st_nlink == 2);
  };
  check_view();
  s.reopen();
  check_view();
}

TEST_CASE("rmdir of lower directories holding only whiteouts or markers") {
  Stack s(2);
  write_file(s.L(1, "a/.wh.x"), "");
  write_file(s.L(2, "a/x"), "");
  write_file(s.L(1, "b/.wh..wh..opq"), "");
  write_file(s.L(2, "b/y"), "");
  make_whiteout(s.L(1, "c/z"));
  write_file(s.L(2, "c/z"), "");
  s.open();
  for (const char* n : {"a", "b", "c"}) {
    CAPTURE(n);
    CHECK(s.names(n).empty());
    MUST(s.fs().rmdir(s.root(), n));
  }
  CHECK(s.names("").empty());
  s.reopen();
  CHECK(s.names("").empty());
}

TEST_CASE("rmdir of an upper directory over a lower file leaves the name deleted") {
  Stack s(1);
  make_dir(s.U("d"));
  write_file(s.L(1, "d"), "a lower file under an upper directory");
  s.open();
  CHECK(s.names("d").empty());
  MUST(s.fs().rmdir(s.root(), "d"));
  CHECK(s.lookup_error("d") == ENOENT);
  s.reopen();
  CHECK(s.lookup_error("d") == ENOENT);
  CHECK(s.names("").empty());
}

TEST_CASE("a directory moved out of its parent, then the parent moved") {
  Stack s(2);
  write_file(s.L(2, "a/b/f"), "f");
  write_file(s.L(1, "a/c"), "c");
  write_file(s.L(2, "p/q/r"), "r");
  s.open();
  MUST(s.fs().rename(s.get("a"), "b", s.root(), "x", 0));
  MUST(s.fs().rename(s.root(), "a", s.root(), "y", 0));
  MUST(s.fs().rename(s.root(), "x", s.get("p/q"), "x", 0));
  auto check_view = [&] {
    CHECK(s.names("") == Names{"p", "y"});
    CHECK(s.names("y") == Names{"c"});
    CHECK(s.names("p/q") == Names{"r", "x"});
    CHECK(s.read("p/q/x/f") == "f");
    CHECK(s.lookup_error("y/b") == ENOENT);
  };
  check_view();
  s.reopen();
  check_view();
  MUST(s.fs().unlink(s.get("p/q/x"), "f"));
  MUST(s.fs().rmdir(s.get("p/q"), "x"));
  MUST(s.fs().unlink(s.get("y"), "c"));
  MUST(s.fs().rmdir(s.root(), "y"));
  s.reopen();
  CHECK(s.names("") == Names{"p"});
  CHECK(s.names("p/q") == Names{"r"});
}

TEST_CASE("RENAME_EXCHANGE across directories") {
  Stack s(2);
  write_file(s.L(2, "d1/f"), "lower f");
  make_dir(s.L(1, "d2"));
  s.open();
  { auto u = MUST(s.fs().mkdir(s.get("d2"), "u", 0755, kRoot)); }
  create_file(s, "d2/u", "in", "");
  MUST(s.fs().rename(s.get("d1"), "f", s.get("d2"), "u", RENAME_EXCHANGE));
  auto check_view = [&] {
    CHECK(s.names("d1/f") == Names{"in"});
    CHECK(s.read("d2/u") == "lower f");
  };
  check_view();
  s.reopen();
  check_view();
}

TEST_CASE("a directory replaced by rename takes its records with it") {
  Stack s(2);
  write_file(s.L(2, "t/x"), "");
  write_file(s.L(1, "src/y"), "");
  s.open();
  MUST(s.fs().unlink(s.get("t"), "x"));
  const uint64_t t_upper = s.upper_ino("t");
  REQUIRE(MUST(s.index().whiteouts(t_upper)) == Names{"x"});
  MUST(s.fs().rename(s.root(), "src", s.root(), "t", 0));
  CHECK(MUST(s.index().whiteouts(t_upper)).empty());
  CHECK_FALSE(MUST(s.index().object(t_upper)).has_value());
  s.reopen();
  CHECK(s.names("t") == Names{"y"});
}

TEST_CASE("lookups, listings and reads run in parallel with renames and copy-ups") {
  Stack s(2);
  for (int i = 0; i < 20; ++i) {
    write_file(s.L(2, "d/f" + std::to_string(i)), "data" + std::to_string(i));
  }
  write_file(s.L(1, "d/sub/x"), "x");
  s.open();
  Filesystem& fs = s.fs();
  InodePtr root = s.root();
  std::atomic<bool> stop{false};
  std::atomic<int> unexpected{0};
  // Readers may see either name, or neither for a moment; nothing else.
  auto tolerate = [&](int e) {
    if (e != 0 && e != ENOENT) ++unexpected;
  };
  std::vector<std::thread> readers;
  for (int t = 0; t < 3; ++t) {
    readers.emplace_back([&, t] {
      while (!stop.load()) {
        auto d = fs.lookup(root, (t % 2) ? "d" : "e");
        if (!d.ok()) {
          tolerate(d.error());
          continue;
        }
        auto l = fs.list(d.value());
        if (!l.ok()) {
          tolerate(l.error());
          continue;
        }
        for (auto& e : l.value()) {
          auto n = fs.lookup(d.value(), e.name);
          if (!n.ok()) {
            tolerate(n.error());
            continue;
          }
          tolerate(fs.getattr(n.value()).error());
          if (n.value()->is_dir()) continue;
          auto h = fs.open(n.value(), O_RDONLY);
          if (!h.ok()) {
            tolerate(h.error());
            continue;
          }
          if (!fs.read_fd(*h.value()).ok()) ++unexpected;
        }
      }
    });
  }
  std::vector<int> errors;
  for (int round = 0; round < 100; ++round) {
    errors.push_back(fs.rename(root, "d", root, "e", 0).error());
    auto e = fs.lookup(root, "e");
    errors.push_back(e.error());
    if (e.ok()) {
      auto f = fs.lookup(e.value(), "f" + std::to_string(round % 20));
      errors.push_back(f.error());
      if (f.ok()) errors.push_back(fs.open(f.value(), O_WRONLY).error());
    }
    errors.push_back(fs.rename(root, "e", root, "d", 0).error());
  }
  stop = true;
  for (auto& th : readers) th.join();
  CHECK(std::count(errors.begin(), errors.end(), 0) == static_cast<long>(errors.size()));
  CHECK(unexpected.load() == 0);
  root.reset();
  CHECK(s.names("d").size() == 21);
  CHECK(s.staging().empty());
  s.reopen();
  CHECK(s.names("d").size() == 21);
  CHECK(s.read("d/f7") == "data7");
}

TEST_CASE("rename of a directory made in the upper keeps lowers at its new name out") {
  Stack s(1);
  write_file(s.L(1, "d/old"), "old");
  s.open();
  MUST(s.fs().unlink(s.get("d"), "old"));
  MUST(s.fs().rmdir(s.root(), "d"));
  { auto u = MUST(s.fs().mkdir(s.root(), "u", 0755, kRoot)); }
  create_file(s, "u", "f", "f");
  MUST(s.fs().rename(s.root(), "u", s.root(), "d", 0));
  CHECK(s.names("d") == Names{"f"});
  s.reopen();
  CHECK(s.names("d") == Names{"f"});
  CHECK(s.lookup_error("d/old") == ENOENT);
}

TEST_CASE("rename of a directory over an empty one") {
  Stack s(2);
  write_file(s.L(1, "src/a"), "a");
  make_dir(s.L(2, "empty"));
  write_file(s.L(2, "emptied/gone"), "");
  s.open();
  SUBCASE("over an empty lower directory") {
    MUST(s.fs().rename(s.root(), "src", s.root(), "empty", 0));
    CHECK(s.names("") == Names{"emptied", "empty"});
    CHECK(s.names("empty") == Names{"a"});
    s.reopen();
    CHECK(s.names("empty") == Names{"a"});
  }
  SUBCASE("over a directory emptied by whiteouts") {
    MUST(s.fs().unlink(s.get("emptied"), "gone"));
    MUST(s.fs().rename(s.root(), "src", s.root(), "emptied", 0));
    CHECK(s.names("emptied") == Names{"a"});
    CHECK(s.lookup_error("emptied/gone") == ENOENT);
    s.reopen();
    CHECK(s.names("emptied") == Names{"a"});
    CHECK(s.lookup_error("emptied/gone") == ENOENT);
    CHECK(s.lookup_error("src") == ENOENT);
  }
}

TEST_CASE("RENAME_NOREPLACE") {
  Stack s(1);
  write_file(s.L(1, "a"), "a");
  write_file(s.L(1, "b"), "b");
  s.open();
  CHECK(s.fs().rename(s.root(), "a", s.root(), "b", RENAME_NOREPLACE).error() == EEXIST);
  CHECK(s.read("a") == "a");
  CHECK(s.read("b") == "b");
  MUST(s.fs().rename(s.root(), "a", s.root(), "c", RENAME_NOREPLACE));
  CHECK(s.names("") == Names{"b", "c"});
  CHECK(s.read("c") == "a");
}

TEST_CASE("RENAME_EXCHANGE") {
  Stack s(2);
  write_file(s.L(1, "lf"), "lower file");
  write_file(s.U("uf"), "upper file");
  write_file(s.L(2, "d/inside"), "inside");
  write_file(s.L(2, "f"), "plain");
  s.open();
  const uint64_t lf = s.get("lf")->ino;
  const uint64_t uf = s.get("uf")->ino;
  const uint64_t d = s.get("d")->ino;
  const uint64_t f = s.get("f")->ino;
  SUBCASE("two files") {
    MUST(s.fs().rename(s.root(), "lf", s.root(), "uf", RENAME_EXCHANGE));
    CHECK(s.read("lf") == "upper file");
    CHECK(s.read("uf") == "lower file");
    CHECK(s.get("lf")->ino == uf);
    CHECK(s.get("uf")->ino == lf);
    s.reopen();
    CHECK(s.read("lf") == "upper file");
    CHECK(s.read("uf") == "lower file");
    CHECK(s.get("uf")->ino == lf);
  }
  SUBCASE("a directory and a file") {
    MUST(s.fs().rename(s.root(), "d", s.root(), "f", RENAME_EXCHANGE));
    CHECK(s.read("d") == "plain");
    CHECK(s.names("f") == Names{"inside"});
    CHECK(s.get("f")->ino == d);
    CHECK(s.get("d")->ino == f);
    s.reopen();
    CHECK(s.read("d") == "plain");
    CHECK(s.names("f") == Names{"inside"});
    CHECK(s.read("f/inside") == "inside");
    CHECK(s.names("") == Names{"d", "f", "lf", "uf"});
  }
  SUBCASE("with a missing name") {
    CHECK(s.fs().rename(s.root(), "lf", s.root(), "none", RENAME_EXCHANGE).error() == ENOENT);
    CHECK(s.read("lf") == "lower file");
  }
  SUBCASE("both flags") {
    CHECK(
        s.fs().rename(s.root(), "lf", s.root(), "uf", RENAME_EXCHANGE | RENAME_NOREPLACE).error() ==
        EINVAL);
  }
}

TEST_CASE("rename errors") {
  Stack s(2);
  write_file(s.L(1, "file"), "f");
  make_dir(s.L(1, "dir"));
  make_dir(s.L(1, "full"));
  write_file(s.L(2, "full/x"), "");
  make_dir(s.L(1, "dir2"));
  s.open();
  CHECK(s.fs().rename(s.root(), "file", s.root(), "dir", 0).error() == EISDIR);
  CHECK(s.fs().rename(s.root(), "dir", s.root(), "file", 0).error() == ENOTDIR);
  CHECK(s.fs().rename(s.root(), "dir", s.root(), "full", 0).error() == ENOTEMPTY);
  CHECK(s.fs().rename(s.root(), "missing", s.root(), "x", 0).error() == ENOENT);
  CHECK(s.fs().rename(s.root(), "file", s.root(), "y", 0x100).error() == EINVAL);
  CHECK(s.names("") == Names{"dir", "dir2", "file", "full"});
  CHECK(s.names("full") == Names{"x"});
  // None of the failures changed the upper or the index.
  CHECK(disk_names(s.U()).empty());
  CHECK(s.whiteouts("").empty());
  // A name onto itself is a no-op.
  MUST(s.fs().rename(s.root(), "file", s.root(), "file", 0));
  CHECK(s.read("file") == "f");
}

TEST_CASE("rename onto another name of the same file does nothing") {
  Stack s(1);
  write_file(s.L(1, "la"), "lower group");
  make_hardlink(s.L(1, "la"), s.L(1, "lb"));
  s.open();
  create_file(s, "", "ua", "upper");
  MUST(s.fs().link(s.get("ua"), s.root(), "ub"));
  MUST(s.fs().rename(s.root(), "ua", s.root(), "ub", 0));
  MUST(s.fs().rename(s.root(), "la", s.root(), "lb", 0));
  CHECK(s.names("") == Names{"la", "lb", "ua", "ub"});
  CHECK(s.attr("ua").st_nlink == 2);
  CHECK(s.attr("la").st_nlink == 2);
  CHECK(s.read("lb") == "lower group");
  s.reopen();
  CHECK(s.names("") == Names{"la", "lb", "ua", "ub"});
  CHECK(s.attr("lb").st_nlink == 2);
}

TEST_CASE("rename of a lower hard-link group member keeps the group") {
  Stack s(1);
  write_file(s.L(1, "a"), "data");
  make_hardlink(s.L(1, "a"), s.L(1, "b"));
  s.open();
  const uint64_t ino = s.get("a")->ino;
  MUST(s.fs().rename(s.root(), "a", s.root(), "c", 0));
  CHECK(s.names("") == Names{"b", "c"});
  CHECK(s.get("c") == s.get("b"));
  CHECK(s.attr("c").st_nlink == 2);
  s.write("c", "DATA");
  CHECK(s.read("b") == "DATA");
  s.reopen();
  CHECK(s.get("c")->ino == ino);
  CHECK(s.get("b")->ino == ino);
  CHECK(s.read("b") == "DATA");
  CHECK(s.attr("b").st_nlink == 2);
}

// ---------------------------------------------------------------------------
// link().

TEST_CASE("link of a lower file and of an upper file") {
  Stack s(1);
  write_file(s.L(1, "lower"), "lower");
  make_dir(s.L(1, "d"));
  write_file(s.U("upper"), "upper");
  s.open();
  for (const char* n : {"lower", "upper"}) {
    CAPTURE(n);
    InodePtr node = s.get(n);
    const uint64_t ino = node->ino;
    std::string other = std::string(n) + "2";
    InodePtr linked = MUST(s.fs().link(node, s.get("d"), other));
    CHECK(linked == node);
    CHECK(s.get("d/" + other) == node);
    CHECK(MUST(s.fs().getattr(node)).st_nlink == 2);
    CHECK(lstat_of(s.U(n)).st_ino == lstat_of(s.U("d/" + other)).st_ino);
    s.write("d/" + other, std::string("via link ") + n);
    CHECK(s.read(n) == std::string("via link ") + n);
    CHECK(s.get(n)->ino == ino);
  }
  for (const auto& e : MUST(s.fs().list(s.get("d")))) {
    CHECK(e.ino == s.get(e.name == "lower2" ? "lower" : "upper")->ino);
  }
  s.reopen();
  CHECK(s.get("lower") == s.get("d/lower2"));
  CHECK(s.get("upper") == s.get("d/upper2"));
  CHECK(s.attr("lower").st_nlink == 2);
  CHECK(s.read("d/lower2") == "via link lower");
  MUST(s.fs().unlink(s.root(), "lower"));
  CHECK(s.attr("d/lower2").st_nlink == 1);
  CHECK(s.read("d/lower2") == "via link lower");
}

TEST_CASE("link of a lower hard-link group member counts the new name") {
  Stack s(1);
  write_file(s.L(1, "a"), "data");
  make_hardlink(s.L(1, "a"), s.L(1, "b"));
  s.open();
  MUST(s.fs().link(s.get("a"), s.root(), "c"));
  CHECK(s.attr("a").st_nlink == 3);
  CHECK(s.attr("b").st_nlink == 3);
  CHECK(s.get("c") == s.get("b"));
  s.reopen();
  CHECK(s.attr("b").st_nlink == 3);
  CHECK(s.attr("c").st_nlink == 3);
  CHECK(s.get("c") == s.get("b"));
}

// The kernel refuses a name that a lookup finds before it asks the
// filesystem, so only names present in the upper are checked here.
TEST_CASE("link errors") {
  Stack s(1);
  make_dir(s.L(1, "d"));
  write_file(s.L(1, "f"), "");
  write_file(s.U("g"), "");
  s.open();
  CHECK(s.fs().link(s.get("d"), s.root(), "d2").error() == EPERM);
  CHECK(s.fs().link(s.get("f"), s.root(), "g").error() == EEXIST);
}

// ---------------------------------------------------------------------------
// Read-only stacks.

void check_all_changes_refused(Stack& s) {
  InodePtr root = s.root();
  InodePtr f = s.get("f");
  InodePtr d = s.get("d");
  Filesystem& fs = s.fs();
  CHECK(fs.create(root, "new", 0644, O_WRONLY, kRoot).error() == EROFS);
  CHECK(fs.mkdir(root, "new", 0755, kRoot).error() == EROFS);
  CHECK(fs.mknod(root, "new", S_IFIFO | 0644, 0, kRoot).error() == EROFS);
  CHECK(fs.symlink(root, "new", "t", kRoot).error() == EROFS);
  CHECK(fs.link(f, root, "new").error() == EROFS);
  CHECK(fs.unlink(root, "f").error() == EROFS);
  CHECK(fs.rmdir(root, "d").error() == EROFS);
  CHECK(fs.rename(root, "f", root, "g", 0).error() == EROFS);
  CHECK(fs.rename(root, "f", d, "g", RENAME_NOREPLACE).error() == EROFS);
  SetAttr mode;
  mode.mode = 0600;
  CHECK(fs.setattr(f, mode, nullptr).error() == EROFS);
  SetAttr size;
  size.size = 0;
  CHECK(fs.setattr(f, size, nullptr).error() == EROFS);
  SetAttr times;
  times.mtime = timespec{0, UTIME_NOW};
  CHECK(fs.setattr(d, times, nullptr).error() == EROFS);
  CHECK(fs.setxattr(f, "user.x", "v", 0).error() == EROFS);
  CHECK(fs.removexattr(f, "user.present").error() == EROFS);
  CHECK(fs.open(f, O_WRONLY).error() == EROFS);
  CHECK(fs.open(f, O_RDWR).error() == EROFS);
  CHECK(fs.open(f, O_RDONLY | O_TRUNC).error() == EROFS);
  CHECK(fs.copy_up(f).error() == EROFS);
  // Reading still works.
  CHECK(s.read("f") == "data");
  CHECK(s.names("") == Names{"d", "f"});
  CHECK(MUST(fs.getxattr(f, "user.present")) == "1");
  CHECK(MUST(fs.statfs()).f_bsize > 0);
}

TEST_CASE("a stack without upper refuses every change with EROFS") {
  Stack s(1, false);
  write_file(s.L(1, "f"), "data");
  set_xattr(s.L(1, "f"), "user.present", "1");
  make_dir(s.L(1, "d"));
  auto before = snapshot(s.L(1));
  s.open();
  check_all_changes_refused(s);
  CHECK(snapshot(s.L(1)) == before);
}

TEST_CASE("the read_only option refuses every change with EROFS") {
  Stack s(1);
  write_file(s.L(1, "f"), "data");
  set_xattr(s.L(1, "f"), "user.present", "1");
  make_dir(s.L(1, "d"));
  auto before = snapshot(s.L(1));
  s.open(FsOptions{.read_only = true});
  check_all_changes_refused(s);
  CHECK(snapshot(s.L(1)) == before);
  CHECK(disk_names(s.U()).empty());
}

}  // namespace
}  // namespace layerfs
