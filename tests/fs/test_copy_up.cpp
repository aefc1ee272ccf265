// Tests for fs/copy_up.cpp: copies of regular files (content, holes, prefix
// and no-data copies), directories, symlinks, fifos and device nodes with
// their owner, mode, times and xattrs (private ones neither copied nor shown),
// ancestors copied first with their attributes, lowers untouched, no staging
// leftovers, the origin record in the index, lower hard-link groups copied
// once into WORK/links, orphan copies and concurrent copy-ups.
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

uint64_t stamp_of(const std::string& path) {
  struct statx sx;
  REQUIRE(::statx(AT_FDCWD, path.c_str(), AT_SYMLINK_NOFOLLOW, STATX_BTIME, &sx) == 0);
  if (!(sx.stx_mask & STATX_BTIME)) return 0;
  uint64_t s = static_cast<uint64_t>(sx.stx_btime.tv_sec) * 1000000000ull + sx.stx_btime.tv_nsec;
  return s == 0 ? 1 : s;
}

// The attributes a copy must keep.
void check_same_attrs(const std::string& lower, const std::string& upper, bool times = true) {
  CAPTURE(upper);
  struct stat l = lstat_of(lower);
  struct stat u = lstat_of(upper);
  CHECK(u.st_mode == l.st_mode);
  CHECK(u.st_uid == l.st_uid);
  CHECK(u.st_gid == l.st_gid);
  CHECK(u.st_rdev == l.st_rdev);
  if (S_ISREG(l.st_mode) || S_ISLNK(l.st_mode)) CHECK(u.st_size == l.st_size);
  if (times) {
    CHECK(u.st_mtim.tv_sec == l.st_mtim.tv_sec);
    CHECK(u.st_mtim.tv_nsec == l.st_mtim.tv_nsec);
  }
}

TEST_CASE("copy-up of a regular file keeps content, owner, mode, times and xattrs" *
          doctest::skip(needs_root())) {
  Stack s(2);
  std::string content;
  for (int i = 0; i < 100000; ++i) content += static_cast<char>('a' + i % 26);
  write_file(s.L(2, "f"), content, 0640);
  set_owner(s.L(2, "f"), 1234, 5678);
  set_xattr(s.L(2, "f"), "user.one", "1");
  set_xattr(s.L(2, "f"), "user.empty", "");
  set_xattr(s.L(2, "f"), "trusted.two", std::string("2\0two", 5));
  set_xattr(s.L(2, "f"), "trusted.overlay.origin", "private");
  set_xattr(s.L(2, "f"), "user.overlay.redirect", "private");
  set_xattr(s.L(2, "f"), "trusted.layerfs.x", "private");
  set_xattr(s.L(2, "f"), "user.fuseoverlayfs.x", "private");
  set_times(s.L(2, "f"), 1000000000, 1100000000);
  auto lower_before = snapshot(s.L(2));  // reads f, which may move its atime
  const struct stat lower_st = lstat_of(s.L(2, "f"));
  s.open();
  InodePtr f = s.get("f");
  struct stat before = MUST(s.fs().getattr(f));
  MUST(s.fs().copy_up(f));
  CHECK(f->has_upper());

  // Before anything reads the copy (which may update its atime).
  struct stat u = lstat_of(s.U("f"));
  CHECK(u.st_atim.tv_sec == lower_st.st_atim.tv_sec);
  CHECK(u.st_atim.tv_nsec == lower_st.st_atim.tv_nsec);
  CHECK(read_file(s.U("f")) == content);
  check_same_attrs(s.L(2, "f"), s.U("f"));
  CHECK(disk_xattr_names(s.U("f")) == Names{"trusted.two", "user.empty", "user.one"});
  CHECK(disk_xattr(s.U("f"), "trusted.two") == std::string("2\0two", 5));
  CHECK(disk_xattr(s.U("f"), "user.empty") == std::string());
  CHECK(sorted(MUST(s.fs().listxattr(f))) == Names{"trusted.two", "user.empty", "user.one"});

  // What the mount presents did not change.
  struct stat after = MUST(s.fs().getattr(f));
  CHECK(after.st_ino == before.st_ino);
  CHECK(after.st_mode == before.st_mode);
  CHECK(after.st_uid == before.st_uid);
  CHECK(after.st_size == before.st_size);
  CHECK(after.st_mtim.tv_nsec == before.st_mtim.tv_nsec);
  CHECK(fs_read(s.fs(), f) == content);

  // The index knows where it came from; nothing is left in staging.
  auto rec = s.record("f");
  REQUIRE(rec.has_value());
  CHECK(rec->origin == f->ino);
  CHECK(rec->stamp == stamp_of(s.U("f")));
  CHECK(s.staging().empty());
  CHECK(snapshot(s.L(2)) == lower_before);
  CHECK(disk_tree(s.U()) == Names{"f"});
}

TEST_CASE("copy-up keeps holes") {
  Stack s(1);
  const off_t kSize = 64 << 20;
  {
    write_file(s.L(1, "sparse"), "");
    UniqueFd fd(::open(s.L(1, "sparse").c_str(), O_WRONLY | O_CLOEXEC));
    REQUIRE(fd.valid());
    REQUIRE(::pwrite(fd.get(), "head", 4, 0) == 4);
    REQUIRE(::pwrite(fd.get(), "middle", 6, 32 << 20) == 6);
    REQUIRE(::pwrite(fd.get(), "tail", 4, kSize - 4) == 4);
  }
  REQUIRE(lstat_of(s.L(1, "sparse")).st_blocks * 512 < (1 << 20));
  s.open();
  MUST(s.fs().copy_up(s.get("sparse")));
  struct stat u = lstat_of(s.U("sparse"));
  CHECK(u.st_size == kSize);
  CHECK(u.st_blocks * 512 < (1 << 20));
  std::string data = s.read("sparse");
  REQUIRE(data.size() == static_cast<size_t>(kSize));
  CHECK(data.compare(0, 4, "head") == 0);
  CHECK(data.compare(32 << 20, 6, "middle") == 0);
  CHECK(data.compare(kSize - 4, 4, "tail") == 0);
  CHECK(data[1 << 20] == '\0');
  CHECK(s.staging().empty());
}

TEST_CASE("copy-up without data or with a prefix only") {
  Stack s(1);
  write_file(s.L(1, "a"), "0123456789", 0604);
  write_file(s.L(1, "b"), "0123456789");
  write_file(s.L(1, "c"), "0123456789");
  s.open();
  MUST(s.fs().copy_up(s.get("a"), Filesystem::CopyData::kNone));
  CHECK(lstat_of(s.U("a")).st_size == 0);
  CHECK((lstat_of(s.U("a")).st_mode & 07777) == 0604);
  MUST(s.fs().copy_up(s.get("b"), Filesystem::CopyData::kPrefix, 4));
  CHECK(read_file(s.U("b")) == "0123");
  MUST(s.fs().copy_up(s.get("c"), Filesystem::CopyData::kPrefix, 100));
  CHECK(read_file(s.U("c")) == "0123456789");
  CHECK(read_file(s.L(1, "a")) == "0123456789");
  CHECK(s.staging().empty());
}

TEST_CASE("copy-up of an object that already has an upper copy does nothing") {
  Stack s(1);
  write_file(s.L(1, "f"), "lower");
  write_file(s.U("u"), "upper");
  s.open();
  InodePtr f = s.get("f");
  MUST(s.fs().copy_up(f));
  uint64_t uino = s.upper_ino("f");
  fs_write(s.fs(), f, "LOWER");
  MUST(s.fs().copy_up(f));
  CHECK(s.upper_ino("f") == uino);
  CHECK(read_file(s.U("f")) == "LOWER");
  MUST(s.fs().copy_up(s.get("u")));
  CHECK(read_file(s.U("u")) == "upper");
  CHECK_FALSE(s.record("u").has_value());
  MUST(s.fs().copy_up(s.root()));
}

TEST_CASE("copy-up of a directory copies the directory only, with its attributes" *
          doctest::skip(needs_root())) {
  Stack s(2);
  make_dir(s.L(1, "d"), 02751);
  write_file(s.L(1, "d/child"), "c");
  write_file(s.L(2, "d/below"), "b");
  set_owner(s.L(1, "d"), 1111, 2222);
  set_xattr(s.L(1, "d"), "user.dir", "yes");
  set_xattr(s.L(1, "d"), "trusted.overlay.redirect", "private");
  set_times(s.L(1, "d"), 1200000000, 1300000000);
  auto lowers_before = snapshot(s.dir() + "/lower1");
  s.open();
  InodePtr d = s.get("d");
  const uint64_t ino = d->ino;
  MUST(s.fs().copy_up(d));
  CHECK(d->has_upper());
  check_same_attrs(s.L(1, "d"), s.U("d"));
  CHECK(disk_xattr_names(s.U("d")) == Names{"user.dir"});
  CHECK(disk_names(s.U("d")).empty());
  // Still merged with the lowers, same identity.
  CHECK(s.names("d") == Names{"below", "child"});
  CHECK(s.get("d")->ino == ino);
  CHECK(s.record("d")->origin == ino);
  CHECK(s.staging().empty());
  CHECK(snapshot(s.dir() + "/lower1") == lowers_before);
  d.reset();
  s.reopen();
  CHECK(s.names("d") == Names{"below", "child"});
  CHECK(s.get("d")->ino == ino);
}

TEST_CASE("copy-up copies missing ancestors first, with their attributes" *
          doctest::skip(needs_root())) {
  Stack s(2);
  write_file(s.L(2, "a/b/c/file"), "deep", 0600);
  SYS(::chmod(s.L(2, "a").c_str(), 0711));
  SYS(::chmod(s.L(2, "a/b").c_str(), 0750));
  set_owner(s.L(2, "a/b"), 42, 43);
  set_xattr(s.L(2, "a/b"), "user.b", "b");
  write_file(s.L(1, "a/other"), "o");  // a is merged from two layers
  set_times(s.L(2, "a/b/c/file"), 1500000000, 1500000001);
  set_times(s.L(2, "a/b/c"), 1400000000, 1400000001);
  set_times(s.L(2, "a/b"), 1300000000, 1300000001);
  set_times(s.L(1, "a"), 1200000000, 1200000001);
  auto before1 = snapshot(s.L(1));
  auto before2 = snapshot(s.L(2));
  s.open();
  MUST(s.fs().copy_up(s.get("a/b/c/file")));
  CHECK(disk_tree(s.U()) == Names{"a", "a/b", "a/b/c", "a/b/c/file"});
  check_same_attrs(s.L(1, "a"), s.U("a"));  // the top-most copy of a
  check_same_attrs(s.L(2, "a/b"), s.U("a/b"));
  check_same_attrs(s.L(2, "a/b/c"), s.U("a/b/c"));
  check_same_attrs(s.L(2, "a/b/c/file"), s.U("a/b/c/file"));
  CHECK(disk_xattr(s.U("a/b"), "user.b") == "b");
  CHECK(read_file(s.U("a/b/c/file")) == "deep");
  CHECK(s.names("a") == Names{"b", "other"});
  CHECK(s.staging().empty());
  CHECK(snapshot(s.L(1)) == before1);
  CHECK(snapshot(s.L(2)) == before2);
  // Every copied object's record names its origin.
  CHECK(s.record("a")->origin == ino_at(1, s.L(1, "a")));
  CHECK(s.record("a/b")->origin == ino_at(2, s.L(2, "a/b")));
  CHECK(s.record("a/b/c/file")->origin == ino_at(2, s.L(2, "a/b/c/file")));
}

TEST_CASE("copy-up of symlinks, fifos and device nodes" * doctest::skip(needs_root())) {
  Stack s(1);
  make_symlink("../some/target", s.L(1, "d/sym"));
  set_owner(s.L(1, "d/sym"), 7, 8);
  set_xattr(s.L(1, "d/sym"), "trusted.sym", "s");
  set_times(s.L(1, "d/sym"), 1000000000, 1000000500);
  make_node(s.L(1, "d/fifo"), S_IFIFO | 0604);
  set_owner(s.L(1, "d/fifo"), 9, 10);
  set_times(s.L(1, "d/fifo"), 1000000000, 1000000600);
  make_node(s.L(1, "d/null"), S_IFCHR | 0620, makedev(1, 3));
  set_owner(s.L(1, "d/null"), 0, 5);
  make_node(s.L(1, "d/loop"), S_IFBLK | 0660, makedev(7, 0));
  make_node(s.L(1, "d/suid"), S_IFREG | 06755);
  set_owner(s.L(1, "d/suid"), 1000, 1000);
  SYS(::chmod(s.L(1, "d/suid").c_str(), 06755));
  auto before = snapshot(s.L(1));
  s.open();
  for (const char* n : {"sym", "fifo", "null", "loop", "suid"}) {
    CAPTURE(n);
    std::string rel = std::string("d/") + n;
    InodePtr node = s.get(rel);
    const uint64_t ino = node->ino;
    MUST(s.fs().copy_up(node));
    check_same_attrs(s.L(1, rel), s.U(rel));
    CHECK(s.get(rel)->ino == ino);
    CHECK(MUST(s.fs().getattr(node)).st_ino == ino);
  }
  char buf[64];
  ssize_t n = ::readlink(s.U("d/sym").c_str(), buf, sizeof buf);
  CHECK(std::string(buf, n > 0 ? n : 0) == "../some/target");
  CHECK(MUST(s.fs().readlink(s.get("d/sym"))) == "../some/target");
  CHECK(disk_xattr(s.U("d/sym"), "trusted.sym") == "s");
  CHECK((lstat_of(s.U("d/suid")).st_mode & 07777) == 06755);
  CHECK(S_ISBLK(lstat_of(s.U("d/loop")).st_mode));
  CHECK(lstat_of(s.U("d/loop")).st_rdev == makedev(7, 0));
  CHECK(s.staging().empty());
  CHECK(snapshot(s.L(1)) == before);
}

TEST_CASE("copy-up on a read-only stack fails with EROFS") {
  SUBCASE("no upper") {
    Stack s(1, false);
    write_file(s.L(1, "f"), "x");
    s.open();
    CHECK(s.fs().copy_up(s.get("f")).error() == EROFS);
  }
  SUBCASE("read_only option") {
    Stack s(1);
    write_file(s.L(1, "f"), "x");
    s.open(FsOptions{.read_only = true});
    CHECK(s.fs().copy_up(s.get("f")).error() == EROFS);
    CHECK(disk_names(s.U()).empty());
  }
}

TEST_CASE("lower hard-link groups: one copy, one identity, one data, across names") {
  Stack s(2);
  write_file(s.L(1, "a"), "original");
  make_hardlink(s.L(1, "a"), s.L(1, "d/b"));
  const uint64_t lower_ino = lstat_of(s.L(1, "a")).st_ino;
  const uint64_t ino = ino::encode(1, lower_ino);
  const std::string links_name = "1-" + std::to_string(lower_ino);
  auto before = snapshot(s.L(1));
  s.open();
  {
    InodePtr a = s.get("a");
    InodePtr b = s.get("d/b");
    CHECK(a == b);
    CHECK(a->ino == ino);
    CHECK(MUST(s.fs().getattr(a)).st_nlink == 2);
    CHECK(MUST(s.fs().getattr(b)).st_nlink == 2);
  }
  s.write("a", "written via a");
  CHECK(s.read("d/b") == "written via a");
  CHECK(s.attr("a").st_ino == ino);
  CHECK(s.attr("d/b").st_ino == ino);
  CHECK(s.attr("a").st_nlink == 2);
  CHECK(s.attr("d/b").st_nlink == 2);
  // One shared copy in WORK/links, the same inode as the upper name.
  REQUIRE(exists(s.W("links/" + links_name)));
  CHECK(lstat_of(s.W("links/" + links_name)).st_ino == s.upper_ino("a"));
  auto group = MUST(s.index().link_group(1, lower_ino));
  REQUIRE(group.has_value());
  CHECK(group->upper_ino == s.upper_ino("a"));
  CHECK(group->links == 2);
  CHECK(s.staging().empty());
  // readdir agrees on the identity.
  for (const auto& e : MUST(s.fs().list(s.get("d")))) CHECK(e.ino == ino);

  s.reopen();
  CHECK(s.read("d/b") == "written via a");
  CHECK(s.read("a") == "written via a");
  CHECK(s.get("a") == s.get("d/b"));
  CHECK(s.attr("d/b").st_ino == ino);
  CHECK(s.attr("d/b").st_nlink == 2);
  // Writing through the other name after reopening reaches the same data.
  s.write("d/b", "WRITTEN VIA B");
  CHECK(s.read("a") == "WRITTEN VIA B");

  MUST(s.fs().unlink(s.root(), "a"));
  CHECK(s.lookup_error("a") == ENOENT);
  CHECK(s.attr("d/b").st_nlink == 1);
  CHECK(s.read("d/b") == "WRITTEN VIA B");
  s.reopen();
  CHECK(s.attr("d/b").st_nlink == 1);
  CHECK(s.attr("d/b").st_ino == ino);
  CHECK(s.read("d/b") == "WRITTEN VIA B");
  CHECK(snapshot(s.L(1)) == before);
}

TEST_CASE("lower hard-link groups: removing names before any copy-up") {
  Stack s(1);
  write_file(s.L(1, "a"), "data");
  make_hardlink(s.L(1, "a"), s.L(1, "b"));
  make_hardlink(s.L(1, "a"), s.L(1, "c"));
  const uint64_t lower_ino = lstat_of(s.L(1, "a")).st_ino;
  s.open();
  CHECK(s.attr("a").st_nlink == 3);
  MUST(s.fs().unlink(s.root(), "a"));
  CHECK(s.attr("b").st_nlink == 2);
  CHECK(s.attr("c").st_nlink == 2);
  s.reopen();
  CHECK(s.attr("b").st_nlink == 2);
  MUST(s.fs().unlink(s.root(), "b"));
  CHECK(s.attr("c").st_nlink == 1);
  s.write("c", "changed");
  CHECK(s.attr("c").st_nlink == 1);
  s.reopen();
  CHECK(s.attr("c").st_nlink == 1);
  CHECK(s.read("c") == "changed");
  // The last name goes: so do the shared copy and the group record.
  MUST(s.fs().unlink(s.root(), "c"));
  CHECK(s.names("").empty());
  CHECK(disk_names(s.W("links")).empty());
  CHECK_FALSE(MUST(s.index().link_group(1, lower_ino)).has_value());
  s.reopen();
  CHECK(s.names("").empty());
}

TEST_CASE("lower hard-link groups across renamed directories") {
  Stack s(1);
  write_file(s.L(1, "d/a"), "x");
  make_hardlink(s.L(1, "d/a"), s.L(1, "e/b"));
  const uint64_t lower_ino = lstat_of(s.L(1, "d/a")).st_ino;
  s.open();
  MUST(s.fs().rename(s.root(), "d", s.root(), "d2", 0));
  s.write("e/b", "Y");
  s.reopen();
  CHECK(s.read("d2/a") == "Y");
  CHECK(s.get("d2/a") == s.get("e/b"));
  CHECK(s.attr("d2/a").st_nlink == 2);
  MUST(s.fs().unlink(s.get("d2"), "a"));
  CHECK(s.attr("e/b").st_nlink == 1);
  MUST(s.fs().unlink(s.get("e"), "b"));
  CHECK(disk_names(s.W("links")).empty());
  CHECK_FALSE(MUST(s.index().link_group(1, lower_ino)).has_value());
  s.reopen();
  CHECK(s.names("d2").empty());
  CHECK(s.names("e").empty());
}

TEST_CASE("a group member copied up through truncation keeps the group") {
  Stack s(1);
  write_file(s.L(1, "a"), "0123456789");
  make_hardlink(s.L(1, "a"), s.L(1, "b"));
  s.open();
  SetAttr sa;
  sa.size = 4;
  MUST(s.fs().setattr(s.get("b"), sa, nullptr));
  CHECK(s.read("a") == "0123");
  CHECK(s.read("b") == "0123");
  CHECK(s.attr("a").st_size == 4);
  s.reopen();
  CHECK(s.read("a") == "0123");
  CHECK(s.attr("a").st_nlink == 2);
}

TEST_CASE("an orphan (no name left) copied up lives in staging until its Inode dies") {
  Stack s(1);
  write_file(s.L(1, "f"), "0123456789");
  s.open();
  {
    InodePtr f = s.get("f");
    auto fh = MUST(s.fs().open(f, O_RDONLY));
    MUST(s.fs().unlink(s.root(), "f"));
    CHECK(s.lookup_error("f") == ENOENT);
    // ftruncate on the still-open file: the kernel sends setattr with the handle.
    SetAttr sa;
    sa.size = 3;
    struct stat st = MUST(s.fs().setattr(f, sa, fh.get()));
    CHECK(st.st_size == 3);
    CHECK(f->has_upper());
    CHECK(read_handle(s.fs(), *fh) == "012");
    CHECK(s.staging().size() == 1);
    CHECK(disk_names(s.U()).empty());
    CHECK(s.names("").empty());
  }
  CHECK(s.staging().empty());
  CHECK(read_file(s.L(1, "f")) == "0123456789");
}

// chown(2) from userspace always drops security.capability (the kernel adds
// ATTR_KILL_PRIV), and copy-up chowns after copying xattrs: the capability
// must be put back.
TEST_CASE("copy-up keeps file capabilities (security.capability)" * doctest::skip(needs_root())) {
  Stack s(1);
  // VFS_CAP_REVISION_2 with the effective flag, CAP_NET_RAW permitted.
  const unsigned char cap[20] = {0x01, 0x00, 0x00, 0x02, 0x00, 0x20, 0x00, 0x00, 0x00, 0x00,
                                 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00};
  const std::string value(reinterpret_cast<const char*>(cap), sizeof cap);
  write_file(s.L(1, "ping"), "binary", 0755);
  set_xattr(s.L(1, "ping"), "security.capability", value);
  REQUIRE(disk_xattr(s.L(1, "ping"), "security.capability") == value);
  s.open();
  CHECK(MUST(s.fs().getxattr(s.get("ping"), "security.capability")) == value);
  MUST(s.fs().copy_up(s.get("ping")));
  CHECK(disk_xattr(s.U("ping"), "security.capability") == value);
  CHECK(disk_xattr(s.L(1, "ping"), "security.capability") == value);
}

// What a crash leaves when it strikes a hard-link group copy-up after the
// index commit and before the copy was renamed into WORK/links: the staging
// entry and the records naming it (fs/copy_up.cpp, steps 3 and 4). The group
// record then names a copy that never reached WORK/links; the lower file must
// show again and the next change must copy it anew.
TEST_CASE("a crash before a group copy is published leaves the lower file intact") {
  Stack s(1);
  write_file(s.L(1, "a"), "original");
  make_hardlink(s.L(1, "a"), s.L(1, "b"));
  const uint64_t lower_ino = lstat_of(s.L(1, "a")).st_ino;
  s.open();
  s.close();
  write_file(s.W("staging/#0"), "orig");  // half of the data
  const uint64_t staged = lstat_of(s.W("staging/#0")).st_ino;
  {
    std::string why;
    auto idx = MUST(metadata::Index::open(s.W("index"), false, &why));
    metadata::Batch b;
    metadata::ObjectRecord rec;
    rec.stamp = stamp_of(s.W("staging/#0"));
    rec.origin = ino::encode(1, lower_ino);
    b.put_object(staged, rec);
    b.put_link_group(1, lower_ino, metadata::LinkGroup{staged, 2});
    MUST(idx->commit(b, metadata::Durability::kSynced));
  }
  s.open();
  CHECK(s.staging().empty());
  // The mount's clean-up also takes the copy back from the group record, so
  // that nothing in the index names the removed staging entry.
  auto group = MUST(s.index().link_group(1, lower_ino));
  REQUIRE(group.has_value());
  CHECK(group->upper_ino == 0);
  CHECK(group->links == 2);
  CHECK(s.lookup_error("a") == 0);
  CHECK(s.lookup_error("b") == 0);
  if (s.lookup_error("a") == 0 && s.lookup_error("b") == 0) {
    CHECK(s.read("a") == "original");
    CHECK(s.attr("b").st_nlink == 2);
    s.write("a", "ORIGINAL");
    CHECK(s.read("b") == "ORIGINAL");
    s.reopen();
    CHECK(s.read("b") == "ORIGINAL");
  }
}

// The same crash one step later: the shared copy is in WORK/links but not yet
// linked at its name. The copy is complete, so both names must show it.
TEST_CASE("a crash after a group copy reached WORK/links shows the copy under every name") {
  Stack s(1);
  write_file(s.L(1, "a"), "original");
  make_hardlink(s.L(1, "a"), s.L(1, "b"));
  const uint64_t lower_ino = lstat_of(s.L(1, "a")).st_ino;
  s.open();
  s.close();
  const std::string lname = "links/1-" + std::to_string(lower_ino);
  write_file(s.W(lname), "the copy");
  const uint64_t copy = lstat_of(s.W(lname)).st_ino;
  {
    std::string why;
    auto idx = MUST(metadata::Index::open(s.W("index"), false, &why));
    metadata::Batch b;
    metadata::ObjectRecord rec;
    rec.stamp = stamp_of(s.W(lname));
    rec.origin = ino::encode(1, lower_ino);
    b.put_object(copy, rec);
    b.put_link_group(1, lower_ino, metadata::LinkGroup{copy, 2});
    MUST(idx->commit(b, metadata::Durability::kSynced));
  }
  s.open();
  CHECK(s.read("a") == "the copy");
  CHECK(s.read("b") == "the copy");
  CHECK(s.get("a") == s.get("b"));
  CHECK(s.attr("a").st_ino == ino::encode(1, lower_ino));
  CHECK(s.attr("a").st_nlink == 2);
}

TEST_CASE("a group member whose name was removed can still be copied up through a handle") {
  Stack s(1);
  write_file(s.L(1, "a"), "0123456789");
  make_hardlink(s.L(1, "a"), s.L(1, "b"));
  s.open();
  {
    InodePtr a = s.get("a");
    auto fh = MUST(s.fs().open(a, O_RDONLY));
    MUST(s.fs().unlink(s.root(), "a"));
    SetAttr sa;
    sa.size = 5;
    MUST(s.fs().setattr(a, sa, fh.get()));
    CHECK(read_handle(s.fs(), *fh) == "01234");
    CHECK(s.read("b") == "01234");
    CHECK(s.attr("b").st_nlink == 1);
  }
  CHECK(s.staging().empty());
  s.reopen();
  CHECK(s.read("b") == "01234");
  CHECK(s.attr("b").st_nlink == 1);
  CHECK(s.names("") == Names{"b"});
}

TEST_CASE("renaming over a lower hard-link group member drops one name of the group") {
  Stack s(1);
  write_file(s.L(1, "a"), "group");
  make_hardlink(s.L(1, "a"), s.L(1, "b"));
  write_file(s.L(1, "x"), "x");
  s.open();
  MUST(s.fs().rename(s.root(), "x", s.root(), "a", 0));
  CHECK(s.read("a") == "x");
  CHECK(s.attr("b").st_nlink == 1);
  CHECK(s.read("b") == "group");
  s.reopen();
  CHECK(s.attr("b").st_nlink == 1);
  CHECK(s.read("a") == "x");
}

TEST_CASE(
    "directories copied up, and the parent of every copy-up, are reported to the invalidator") {
  // Their ctime (and a merged directory's st_nlink) moved under what the
  // kernel cached.
  Stack s(1);
  write_file(s.L(1, "a/b/f"), "f");
  write_file(s.L(1, "g"), "g");
  s.open();
  std::set<uint64_t> seen;
  s.fs().set_attr_invalidator([&](const InodePtr& n) { seen.insert(n->ino); });
  const uint64_t root = s.root()->ino;
  MUST(s.fs().copy_up(s.get("a/b/f")));
  CHECK(seen == std::set<uint64_t>{root, ino_at(1, s.L(1, "a")), ino_at(1, s.L(1, "a/b"))});
  seen.clear();
  MUST(s.fs().copy_up(s.get("g")));
  CHECK(seen == std::set<uint64_t>{root});
  s.fs().set_attr_invalidator(nullptr);
}

TEST_CASE("a copy-up that cannot be published leaves nothing in staging") {
  Stack s(1);
  write_file(s.L(1, "f"), "lower");
  s.open();
  InodePtr f = s.get("f");
  // Someone else's file appears at the name behind the core's back.
  write_file(s.U("f"), "intruder");
  CHECK_FALSE(s.fs().copy_up(f).ok());
  CHECK_FALSE(f->has_upper());
  CHECK(s.staging().empty());
  CHECK(read_file(s.U("f")) == "intruder");
  CHECK(disk_names(s.W("links")).empty());
}

TEST_CASE("concurrent copy-ups of one file and of siblings") {
  Stack s(1);
  for (int i = 0; i < 8; ++i) {
    write_file(s.L(1, "a/b/c/f" + std::to_string(i)), std::string(10000 + i, 'x'));
  }
  write_file(s.L(1, "a/b/c/shared"), "shared");
  s.open();
  std::vector<InodePtr> nodes;
  for (int i = 0; i < 8; ++i) nodes.push_back(s.get("a/b/c/f" + std::to_string(i)));
  InodePtr shared = s.get("a/b/c/shared");
  Filesystem& fs = s.fs();
  std::vector<int> errors(16, -1);
  std::atomic<bool> go{false};
  std::vector<std::thread> threads;
  for (int t = 0; t < 16; ++t) {
    threads.emplace_back([&, t] {
      while (!go.load()) {
      }
      const InodePtr& n = t < 8 ? nodes[t] : shared;
      errors[t] = fs.copy_up(n).error();
    });
  }
  go = true;
  for (auto& th : threads) th.join();
  for (int t = 0; t < 16; ++t) CHECK(errors[t] == 0);
  for (int i = 0; i < 8; ++i) {
    CHECK(read_file(s.U("a/b/c/f" + std::to_string(i))) == std::string(10000 + i, 'x'));
  }
  CHECK(read_file(s.U("a/b/c/shared")) == "shared");
  CHECK(disk_names(s.U("a/b/c")).size() == 9);
  CHECK(s.staging().empty());
}

}  // namespace
}  // namespace layerfs
