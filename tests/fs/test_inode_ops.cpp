// Tests for fs/inode_ops.cpp: getattr (top-most copy, presented st_ino and
// st_nlink), setattr (chmod, chown, truncate, utimes: each copies up first
// and leaves the lowers alone; truncate copies only the kept prefix),
// readlink, statfs and the extended attribute calls (private names hidden and
// refused, copy-up before a change, none for a failing removal).
#include <fcntl.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <sys/xattr.h>
#include <unistd.h>

#include <fstream>
#include <sstream>

#include "tests/fs/core_fixture.h"

namespace layerfs {
namespace {

using namespace coretest;

using Names = std::vector<std::string>;

// Bytes this thread has read / written through read-like / write-like
// syscalls (copy_file_range included), from /proc/thread-self/io.
struct IoCounters {
  uint64_t rchar = 0;
  uint64_t wchar = 0;
};
IoCounters thread_io() {
  std::ifstream in("/proc/thread-self/io");
  REQUIRE(in.good());
  IoCounters c;
  std::string key;
  uint64_t value;
  while (in >> key >> value) {
    if (key == "rchar:") c.rchar = value;
    if (key == "wchar:") c.wchar = value;
  }
  return c;
}

std::string pattern(size_t n) {
  std::string s(n, '\0');
  for (size_t i = 0; i < n; ++i) s[i] = static_cast<char>('A' + (i * 7) % 26);
  return s;
}

TEST_CASE("getattr reports the top-most copy with the presented st_ino" * doctest::skip(needs_root())) {
  Stack s(2);
  write_file(s.L(2, "f"), "12345", 0640);
  set_owner(s.L(2, "f"), 5, 6);
  set_times(s.L(2, "f"), 1000000000, 1000000001);
  write_file(s.L(1, "g"), "top");
  write_file(s.L(2, "g"), "bottom bottom");
  s.open();
  struct stat st = s.attr("f");
  struct stat real = lstat_of(s.L(2, "f"));
  CHECK(st.st_ino == ino_at(2, s.L(2, "f")));
  CHECK(st.st_mode == real.st_mode);
  CHECK(st.st_uid == 5);
  CHECK(st.st_gid == 6);
  CHECK(st.st_size == 5);
  CHECK(st.st_mtim.tv_sec == real.st_mtim.tv_sec);
  CHECK(st.st_mtim.tv_nsec == real.st_mtim.tv_nsec);
  CHECK(st.st_nlink == 1);
  CHECK(s.attr("g").st_size == 3);
  s.write("f", "abc");
  st = s.attr("f");
  CHECK(st.st_ino == ino_at(2, s.L(2, "f")));
  CHECK(st.st_size == 5);
  CHECK(st.st_dev == lstat_of(s.U("f")).st_dev);
}

TEST_CASE("st_nlink of directories") {
  Stack s(2);
  make_dir(s.L(1, "merged/a"));
  make_dir(s.L(2, "merged/b"));
  make_dir(s.L(2, "single/x"));
  make_dir(s.L(2, "single/y"));
  make_dir(s.U("upper/z"));
  s.open();
  // Merged from several layers: 1, as kernel overlayfs reports.
  CHECK(s.attr("merged").st_nlink == 1);
  // One layer: the real count.
  CHECK(s.attr("single").st_nlink == lstat_of(s.L(2, "single")).st_nlink);
  CHECK(s.attr("upper").st_nlink == lstat_of(s.U("upper")).st_nlink);
}

TEST_CASE("chmod and chown copy up first and leave the lower alone" * doctest::skip(needs_root())) {
  Stack s(1);
  write_file(s.L(1, "d/f"), "data", 0644);
  make_dir(s.L(1, "d/sub/deeper"));
  auto before = snapshot(s.L(1));
  s.open();
  SetAttr a;
  a.mode = 0600;
  struct stat st = MUST(s.fs().setattr(s.get("d/f"), a, nullptr));
  CHECK((st.st_mode & 07777) == 0600);
  CHECK(S_ISREG(st.st_mode));
  CHECK((lstat_of(s.U("d/f")).st_mode & 07777) == 0600);
  CHECK(read_file(s.U("d/f")) == "data");
  SetAttr o;
  o.uid = 77;
  st = MUST(s.fs().setattr(s.get("d/f"), o, nullptr));
  CHECK(st.st_uid == 77);
  CHECK(st.st_gid == 0);
  SetAttr g;
  g.gid = 88;
  st = MUST(s.fs().setattr(s.get("d/f"), g, nullptr));
  CHECK(st.st_uid == 77);
  CHECK(st.st_gid == 88);
  CHECK(lstat_of(s.U("d/f")).st_uid == 77);
  CHECK(lstat_of(s.U("d/f")).st_gid == 88);
  // A directory: only the directory is copied, not its subtree.
  SetAttr dm;
  dm.mode = 0700;
  st = MUST(s.fs().setattr(s.get("d/sub"), dm, nullptr));
  CHECK((st.st_mode & 07777) == 0700);
  CHECK(S_ISDIR(st.st_mode));
  CHECK(disk_tree(s.U()) == Names{"d", "d/f", "d/sub"});
  CHECK(s.names("d/sub") == Names{"deeper"});
  CHECK(snapshot(s.L(1)) == before);
  CHECK(s.staging().empty());
  // st_ino unchanged by any of it.
  CHECK(s.attr("d/f").st_ino == ino_at(1, s.L(1, "d/f")));
  CHECK(s.attr("d/sub").st_ino == ino_at(1, s.L(1, "d/sub")));
}

TEST_CASE("chown of a symlink changes the link itself, chmod leaves it alone" * doctest::skip(needs_root())) {
  Stack s(1);
  write_file(s.L(1, "target"), "t", 0644);
  make_symlink("target", s.L(1, "sym"));
  s.open();
  SetAttr o;
  o.uid = 12;
  o.gid = 13;
  MUST(s.fs().setattr(s.get("sym"), o, nullptr));
  CHECK(lstat_of(s.U("sym")).st_uid == 12);
  CHECK(S_ISLNK(lstat_of(s.U("sym")).st_mode));
  CHECK_FALSE(exists(s.U("target")));
  CHECK(lstat_of(s.L(1, "target")).st_uid == 0);
  SetAttr m;
  m.mode = 0600;
  MUST(s.fs().setattr(s.get("sym"), m, nullptr));
  CHECK_FALSE(exists(s.U("target")));
  CHECK((lstat_of(s.L(1, "target")).st_mode & 07777) == 0644);
}

TEST_CASE("truncate of a lower file") {
  Stack s(1);
  write_file(s.L(1, "shrink"), "0123456789");
  write_file(s.L(1, "grow"), "0123456789");
  write_file(s.L(1, "zero"), "0123456789");
  s.open();
  SetAttr a;
  a.size = 4;
  struct stat st = MUST(s.fs().setattr(s.get("shrink"), a, nullptr));
  CHECK(st.st_size == 4);
  CHECK(read_file(s.U("shrink")) == "0123");
  a.size = 16;
  st = MUST(s.fs().setattr(s.get("grow"), a, nullptr));
  CHECK(st.st_size == 16);
  CHECK(read_file(s.U("grow")) == std::string("0123456789") + std::string(6, '\0'));
  a.size = 0;
  st = MUST(s.fs().setattr(s.get("zero"), a, nullptr));
  CHECK(st.st_size == 0);
  CHECK(read_file(s.U("zero")).empty());
  for (const char* n : {"shrink", "grow", "zero"}) {
    CHECK(read_file(s.L(1, n)) == "0123456789");
  }
  CHECK(s.read("shrink") == "0123");
  CHECK(s.staging().empty());
}

TEST_CASE("truncate copies only the prefix it keeps, O_TRUNC-like size 0 copies nothing") {
  Stack s(1);
  const size_t kBig = 16 << 20;
  const std::string data = pattern(kBig);
  write_file(s.L(1, "control"), data);
  write_file(s.L(1, "prefix"), data);
  write_file(s.L(1, "zero"), data);
  s.open();
  InodePtr control = s.get("control");
  InodePtr prefix = s.get("prefix");
  InodePtr zero = s.get("zero");

  // The control shows that a whole copy is visible in the counters.
  IoCounters c0 = thread_io();
  MUST(s.fs().copy_up(control));
  IoCounters c1 = thread_io();
  REQUIRE(c1.rchar - c0.rchar >= kBig);

  SetAttr a;
  a.size = 4096;
  MUST(s.fs().setattr(prefix, a, nullptr));
  IoCounters c2 = thread_io();
  CHECK(c2.rchar - c1.rchar < (1u << 20));
  CHECK(c2.wchar - c1.wchar < (1u << 20));
  CHECK(read_file(s.U("prefix")) == data.substr(0, 4096));

  a.size = 0;
  MUST(s.fs().setattr(zero, a, nullptr));
  IoCounters c3 = thread_io();
  CHECK(c3.rchar - c2.rchar < (1u << 20));
  CHECK(lstat_of(s.U("zero")).st_size == 0);
}

TEST_CASE("utimes copies up and sets the times, UTIME_NOW included") {
  Stack s(1);
  write_file(s.L(1, "f"), "x");
  make_dir(s.L(1, "d"));
  make_symlink("f", s.L(1, "sym"));
  set_times(s.L(1, "f"), 1000000000, 1000000000);
  auto before = snapshot(s.L(1));
  s.open();
  SetAttr t;
  t.atime = timespec{1111111111, 111};
  t.mtime = timespec{1222222222, 222};
  struct stat st = MUST(s.fs().setattr(s.get("f"), t, nullptr));
  CHECK(st.st_atim.tv_sec == 1111111111);
  CHECK(st.st_atim.tv_nsec == 111);
  CHECK(st.st_mtim.tv_sec == 1222222222);
  CHECK(st.st_mtim.tv_nsec == 222);
  CHECK(lstat_of(s.U("f")).st_mtim.tv_sec == 1222222222);

  // Only mtime, to "now": atime stays.
  SetAttr now;
  now.mtime = timespec{0, UTIME_NOW};
  struct timespec t0;
  clock_gettime(CLOCK_REALTIME, &t0);
  st = MUST(s.fs().setattr(s.get("d"), now, nullptr));
  CHECK(st.st_mtim.tv_sec >= t0.tv_sec - 1);
  CHECK(st.st_atim.tv_sec == lstat_of(s.L(1, "d")).st_atim.tv_sec);
  CHECK(S_ISDIR(lstat_of(s.U("d")).st_mode));

  // A symlink's own times, not its target's.
  SetAttr ts;
  ts.mtime = timespec{1333333333, 0};
  st = MUST(s.fs().setattr(s.get("sym"), ts, nullptr));
  CHECK(lstat_of(s.U("sym")).st_mtim.tv_sec == 1333333333);
  CHECK(st.st_mtim.tv_sec == 1333333333);
  CHECK(lstat_of(s.U("f")).st_mtim.tv_sec == 1222222222);
  CHECK(snapshot(s.L(1)) == before);
}

TEST_CASE("setattr errors") {
  Stack s(1);
  make_dir(s.L(1, "d"));
  make_symlink("x", s.L(1, "sym"));
  make_node(s.L(1, "fifo"), S_IFIFO | 0644);
  s.open();
  SetAttr a;
  a.size = 0;
  CHECK(s.fs().setattr(s.get("d"), a, nullptr).error() == EISDIR);
  CHECK(s.fs().setattr(s.get("sym"), a, nullptr).error() == EINVAL);
  CHECK(s.fs().setattr(s.get("fifo"), a, nullptr).error() == EINVAL);
  // Nothing was copied for a refused change.
  CHECK(disk_names(s.U()).empty());
}

TEST_CASE("truncate through an open writable handle") {
  Stack s(1);
  write_file(s.L(1, "f"), "0123456789");
  s.open();
  InodePtr f = s.get("f");
  auto fh = MUST(s.fs().open(f, O_RDWR));
  SetAttr a;
  a.size = 2;
  CHECK(MUST(s.fs().setattr(f, a, fh.get())).st_size == 2);
  CHECK(read_handle(s.fs(), *fh) == "01");
  CHECK(read_file(s.U("f")) == "01");
}

TEST_CASE("readlink") {
  Stack s(1);
  make_symlink("lower/target", s.L(1, "lsym"));
  make_symlink(std::string(300, 'x'), s.L(1, "long"));
  write_file(s.L(1, "f"), "");
  s.open();
  auto u = MUST(s.fs().symlink(s.root(), "usym", "upper/target", kRoot));
  CHECK(MUST(s.fs().readlink(s.get("lsym"))) == "lower/target");
  CHECK(MUST(s.fs().readlink(u)) == "upper/target");
  CHECK(MUST(s.fs().readlink(s.get("long"))) == std::string(300, 'x'));
  CHECK(s.fs().readlink(s.get("f")).error() == EINVAL);
  CHECK(s.fs().readlink(s.root()).error() == EINVAL);
  MUST(s.fs().copy_up(s.get("lsym")));
  CHECK(MUST(s.fs().readlink(s.get("lsym"))) == "lower/target");
}

TEST_CASE("statfs reports the upper filesystem, or the top lower without one") {
  SUBCASE("with upper") {
    Stack s(1);
    s.open();
    struct statvfs sv = MUST(s.fs().statfs());
    struct statvfs real;
    REQUIRE(::statvfs(s.U().c_str(), &real) == 0);
    CHECK(sv.f_bsize == real.f_bsize);
    CHECK(sv.f_blocks == real.f_blocks);
    CHECK(sv.f_fsid == real.f_fsid);
  }
  SUBCASE("without upper") {
    Stack s(1, false);
    s.open();
    struct statvfs sv = MUST(s.fs().statfs());
    struct statvfs real;
    REQUIRE(::statvfs(s.L(1).c_str(), &real) == 0);
    CHECK(sv.f_blocks == real.f_blocks);
  }
}

// ---------------------------------------------------------------------------
// Extended attributes.

TEST_CASE("getxattr and listxattr read the top-most copy and hide private names" * doctest::skip(needs_root())) {
  Stack s(2);
  write_file(s.L(2, "f"), "");
  set_xattr(s.L(2, "f"), "user.a", "A");
  set_xattr(s.L(2, "f"), "trusted.b", "B");
  set_xattr(s.L(2, "f"), "trusted.overlay.origin", "x");
  set_xattr(s.L(2, "f"), "user.overlay.impure", "y");
  set_xattr(s.L(2, "f"), "trusted.fuseoverlayfs.z", "z");
  set_xattr(s.L(2, "f"), "user.layerfs.q", "q");
  make_dir(s.L(1, "d"));
  set_xattr(s.L(1, "d"), "user.dir", "D");
  make_symlink("f", s.L(1, "sym"));
  set_xattr(s.L(1, "sym"), "trusted.link", "L");
  s.open();
  InodePtr f = s.get("f");
  CHECK(sorted(MUST(s.fs().listxattr(f))) == Names{"trusted.b", "user.a"});
  CHECK(MUST(s.fs().getxattr(f, "user.a")) == "A");
  CHECK(MUST(s.fs().getxattr(f, "trusted.b")) == "B");
  for (const char* p : {"trusted.overlay.origin", "user.overlay.impure", "trusted.fuseoverlayfs.z",
                        "user.layerfs.q"}) {
    CHECK(s.fs().getxattr(f, p).error() == ENODATA);
  }
  CHECK(s.fs().getxattr(f, "user.none").error() == ENODATA);
  CHECK(MUST(s.fs().getxattr(s.get("d"), "user.dir")) == "D");
  CHECK(MUST(s.fs().listxattr(s.get("d"))) == Names{"user.dir"});
  // A symlink's own attributes, not its target's.
  CHECK(MUST(s.fs().getxattr(s.get("sym"), "trusted.link")) == "L");
  CHECK(MUST(s.fs().listxattr(s.get("sym"))) == Names{"trusted.link"});
  CHECK(disk_names(s.U()).empty());
}

TEST_CASE("setxattr copies up, sets the value and leaves the lower alone" * doctest::skip(needs_root())) {
  Stack s(1);
  write_file(s.L(1, "d/f"), "data");
  set_xattr(s.L(1, "d/f"), "user.old", "old");
  make_symlink("f", s.L(1, "d/sym"));
  auto before = snapshot(s.L(1));
  s.open();
  InodePtr f = s.get("d/f");
  MUST(s.fs().setxattr(f, "user.new", "new", 0));
  CHECK(disk_xattr(s.U("d/f"), "user.new") == "new");
  CHECK(disk_xattr(s.U("d/f"), "user.old") == "old");
  CHECK(read_file(s.U("d/f")) == "data");
  CHECK(MUST(s.fs().getxattr(f, "user.new")) == "new");
  CHECK(sorted(MUST(s.fs().listxattr(f))) == Names{"user.new", "user.old"});
  // Flags are honoured.
  CHECK(s.fs().setxattr(f, "user.new", "again", XATTR_CREATE).error() == EEXIST);
  CHECK(s.fs().setxattr(f, "user.absent", "x", XATTR_REPLACE).error() == ENODATA);
  MUST(s.fs().setxattr(f, "user.new", "replaced", XATTR_REPLACE));
  CHECK(MUST(s.fs().getxattr(f, "user.new")) == "replaced");
  // On a directory and (trusted.*) on a symlink.
  MUST(s.fs().setxattr(s.get("d"), "user.dir", "d", 0));
  CHECK(disk_xattr(s.U("d"), "user.dir") == "d");
  MUST(s.fs().setxattr(s.get("d/sym"), "trusted.sym", "s", 0));
  CHECK(disk_xattr(s.U("d/sym"), "trusted.sym") == "s");
  CHECK(S_ISLNK(lstat_of(s.U("d/sym")).st_mode));
  CHECK(snapshot(s.L(1)) == before);
}

TEST_CASE("private xattr names cannot be set or removed" * doctest::skip(needs_root())) {
  Stack s(1);
  write_file(s.L(1, "f"), "");
  set_xattr(s.L(1, "f"), "trusted.overlay.opaque", "y");
  s.open();
  InodePtr f = s.get("f");
  CHECK(s.fs().setxattr(f, "trusted.overlay.opaque", "y", 0).error() == EPERM);
  CHECK(s.fs().setxattr(f, "user.overlay.redirect", "/x", 0).error() == EPERM);
  CHECK(s.fs().setxattr(f, "trusted.layerfs.anything", "x", 0).error() == EPERM);
  CHECK(s.fs().removexattr(f, "trusted.overlay.opaque").error() == ENODATA);
  // Refusals copy nothing up.
  CHECK(disk_names(s.U()).empty());
  CHECK(disk_xattr(s.L(1, "f"), "trusted.overlay.opaque") == "y");
}

TEST_CASE("removexattr copies up and removes, a missing name fails without copy-up") {
  Stack s(1);
  write_file(s.L(1, "f"), "");
  set_xattr(s.L(1, "f"), "user.a", "A");
  set_xattr(s.L(1, "f"), "user.b", "B");
  write_file(s.L(1, "g"), "");
  s.open();
  CHECK(s.fs().removexattr(s.get("g"), "user.none").error() == ENODATA);
  CHECK_FALSE(exists(s.U("g")));
  MUST(s.fs().removexattr(s.get("f"), "user.a"));
  CHECK(disk_xattr_names(s.U("f")) == Names{"user.b"});
  CHECK(MUST(s.fs().listxattr(s.get("f"))) == Names{"user.b"});
  CHECK(s.fs().getxattr(s.get("f"), "user.a").error() == ENODATA);
  CHECK(disk_xattr(s.L(1, "f"), "user.a") == "A");
  // Once upper, a missing name is still ENODATA.
  CHECK(s.fs().removexattr(s.get("f"), "user.a").error() == ENODATA);
}

}  // namespace
}  // namespace layerfs

namespace layerfs {
namespace {

using namespace coretest;

bool later(const struct timespec& a, const struct timespec& b) {
  return a.tv_sec > b.tv_sec || (a.tv_sec == b.tv_sec && a.tv_nsec > b.tv_nsec);
}

// chown(f, -1, -1) reaches the filesystem as a setattr with no field: the
// change time moves (as on ext4 and through kernel overlayfs), nothing else.
TEST_CASE("a setattr with no field moves only the change time") {
  Stack s(1);
  write_file(s.L(1, "f"), "data", 0640);
  s.open();
  InodePtr f = s.get("f");
  MUST(s.fs().copy_up(f));
  const struct stat before = s.attr("f");
  ::usleep(20000);
  auto after = s.fs().setattr(f, SetAttr{}, nullptr);
  REQUIRE(after.ok());
  CHECK(later(after->st_ctim, before.st_ctim));
  CHECK(after->st_mode == before.st_mode);
  CHECK(after->st_uid == before.st_uid);
  CHECK(after->st_size == before.st_size);
  CHECK(after->st_mtim.tv_sec == before.st_mtim.tv_sec);
  CHECK(after->st_mtim.tv_nsec == before.st_mtim.tv_nsec);
}

// Unlinking a name of a copied-up lower hard-link group that has no upper name
// of its own still changes the link count of the shared copy, so the other
// names see their change time move.
TEST_CASE("unlinking a lower-only name of a copied-up hard-link group moves the change time") {
  Stack s(1);
  write_file(s.L(1, "a"), "shared");
  make_hardlink(s.L(1, "a"), s.L(1, "b"));
  s.open();
  {
    InodePtr a = s.get("a");
    MUST(s.fs().copy_up(a));  // the copy is linked at "a" only
  }
  const struct stat before = s.attr("a");
  ::usleep(20000);
  MUST(s.fs().unlink(s.fs().root(), "b"));
  const struct stat after = s.attr("a");
  CHECK(after.st_nlink == 1);
  CHECK(later(after.st_ctim, before.st_ctim));
}

}  // namespace
}  // namespace layerfs
