// Tests for fs/file_ops.cpp: opening lower and upper files (copy-up only for
// writing, without data for O_TRUNC), handles switching to the upper copy
// when another handle copied the file up, create() with its handle and
// ownership, and the fd-level operations (fsync, fallocate, lseek,
// copy_file_range, fsyncdir).
#include <dirent.h>
#include <fcntl.h>
#include <linux/falloc.h>
#include <sys/inotify.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#include "tests/fs/core_fixture.h"

namespace layerfs {
namespace {

using namespace coretest;

using Names = std::vector<std::string>;

const Caller kUser{1000, 2000};

// Whether inotify reported a read (IN_ACCESS) of the watched file.
bool saw_access(int ifd) {
  alignas(struct inotify_event) char buf[4096];
  bool access = false;
  for (;;) {
    ssize_t n = ::read(ifd, buf, sizeof buf);
    if (n <= 0) break;
    for (ssize_t off = 0; off < n;) {
      auto* ev = reinterpret_cast<struct inotify_event*>(buf + off);
      if (ev->mask & IN_ACCESS) access = true;
      off += static_cast<ssize_t>(sizeof(struct inotify_event) + ev->len);
    }
  }
  return access;
}

TEST_CASE("opening a lower file for reading copies nothing up") {
  Stack s(2);
  write_file(s.L(2, "f"), "lower data");
  s.open();
  InodePtr f = s.get("f");
  auto fh = MUST(s.fs().open(f, O_RDONLY));
  CHECK_FALSE(fh->on_upper);
  CHECK(read_handle(s.fs(), *fh) == "lower data");
  CHECK(s.fs().write_fd(*fh).error() == EBADF);
  MUST(s.fs().fsync(*fh, false));  // nothing of ours to flush
  CHECK(disk_names(s.U()).empty());
  CHECK_FALSE(f->has_upper());
}

TEST_CASE("opening for writing copies up with the data") {
  Stack s(1);
  write_file(s.L(1, "d/f"), "0123456789");
  auto before = snapshot(s.L(1));
  s.open();
  for (int flags : {O_WRONLY, O_RDWR, O_WRONLY | O_APPEND}) {
    CAPTURE(flags);
    InodePtr f = s.get("d/f");
    auto fh = MUST(s.fs().open(f, flags));
    CHECK(fh->on_upper);
    CHECK(f->has_upper());
    CHECK(read_file(s.U("d/f")).substr(0, 10) == "0123456789");
  }
  {
    auto fh = MUST(s.fs().open(s.get("d/f"), O_RDWR));
    write_handle(s.fs(), *fh, "AB", 3);
    CHECK(read_handle(s.fs(), *fh) == "012AB56789");
    MUST(s.fs().fsync(*fh, false));
    MUST(s.fs().fsync(*fh, true));
  }
  CHECK(read_file(s.U("d/f")) == "012AB56789");
  CHECK(snapshot(s.L(1)) == before);
  CHECK(s.staging().empty());
}

TEST_CASE("O_APPEND handles write at the offset they are given") {
  // The kernel sends the offset of the end of the file; the real file must
  // not append on its own.
  Stack s(1);
  write_file(s.L(1, "f"), "0123456789");
  s.open();
  auto fh = MUST(s.fs().open(s.get("f"), O_WRONLY | O_APPEND));
  write_handle(s.fs(), *fh, "X", 2);
  CHECK(read_file(s.U("f")) == "01X3456789");
}

TEST_CASE("O_TRUNC copies no data") {
  Stack s(1);
  const std::string data(4 << 20, 'z');
  write_file(s.L(1, "trunc"), data);
  write_file(s.L(1, "control"), data);
  s.open();
  int ifd = ::inotify_init1(IN_NONBLOCK | IN_CLOEXEC);
  REQUIRE(ifd >= 0);
  UniqueFd inotify(ifd);
  REQUIRE(::inotify_add_watch(ifd, s.L(1, "trunc").c_str(), IN_ACCESS) >= 0);
  REQUIRE(::inotify_add_watch(ifd, s.L(1, "control").c_str(), IN_ACCESS) >= 0);
  saw_access(ifd);  // drain

  // Control: a plain open for writing reads the lower file.
  { auto fh = MUST(s.fs().open(s.get("control"), O_WRONLY)); }
  CHECK(saw_access(ifd));

  {
    auto fh = MUST(s.fs().open(s.get("trunc"), O_WRONLY | O_TRUNC));
    CHECK(fh->on_upper);
    CHECK(lstat_of(s.U("trunc")).st_size == 0);
    write_handle(s.fs(), *fh, "new");
  }
  CHECK_FALSE(saw_access(ifd));
  CHECK(s.read("trunc") == "new");
  CHECK(read_file(s.L(1, "trunc")) == data);
}

TEST_CASE("O_RDONLY|O_TRUNC truncates too") {
  Stack s(1);
  write_file(s.L(1, "f"), "data");
  s.open();
  auto fh = MUST(s.fs().open(s.get("f"), O_RDONLY | O_TRUNC));
  CHECK(lstat_of(s.U("f")).st_size == 0);
  CHECK(read_file(s.L(1, "f")) == "data");
}

TEST_CASE("a read-only handle opened before a copy-up reads what a writer wrote") {
  Stack s(2);
  write_file(s.L(2, "f"), "old content");
  s.open();
  InodePtr f = s.get("f");
  auto reader = MUST(s.fs().open(f, O_RDONLY));
  CHECK(read_handle(s.fs(), *reader) == "old content");
  {
    auto writer = MUST(s.fs().open(f, O_WRONLY));
    write_handle(s.fs(), *writer, "NEW");
  }
  CHECK(read_handle(s.fs(), *reader) == "NEW content");
  CHECK(reader->on_upper);
  // lseek on the reader sees the upper copy too.
  {
    auto writer = MUST(s.fs().open(f, O_WRONLY));
    write_handle(s.fs(), *writer, "+tail", 11);
  }
  CHECK(MUST(s.fs().lseek(*reader, 0, SEEK_END)) == 16);
}

TEST_CASE("a reader follows a copy-up made through another name or a rename") {
  Stack s(1);
  write_file(s.L(1, "a"), "aaaa");
  make_hardlink(s.L(1, "a"), s.L(1, "b"));
  write_file(s.L(1, "r"), "rrrr");
  s.open();
  auto ra = MUST(s.fs().open(s.get("a"), O_RDONLY));
  s.write("b", "BBBB");
  CHECK(read_handle(s.fs(), *ra) == "BBBB");

  auto rr = MUST(s.fs().open(s.get("r"), O_RDONLY));
  MUST(s.fs().rename(s.root(), "r", s.root(), "moved", 0));
  s.write("moved", "MMMM");
  CHECK(read_handle(s.fs(), *rr) == "MMMM");
}

TEST_CASE("a reader follows a copy-up made by setattr") {
  Stack s(1);
  write_file(s.L(1, "f"), "0123456789");
  s.open();
  InodePtr f = s.get("f");
  auto r = MUST(s.fs().open(f, O_RDONLY));
  SetAttr a;
  a.size = 3;
  MUST(s.fs().setattr(f, a, nullptr));
  CHECK(read_handle(s.fs(), *r) == "012");
}

TEST_CASE("create returns a handle on a new upper file" * doctest::skip(needs_root())) {
  Stack s(1);
  write_file(s.L(1, "d/old"), "");
  s.open();
  auto c = MUST(s.fs().create(s.get("d"), "new", 0640, O_RDWR, kUser));
  CHECK(c.handle->on_upper);
  CHECK(c.handle->node == c.node);
  write_handle(s.fs(), *c.handle, "created");
  CHECK(read_handle(s.fs(), *c.handle) == "created");
  struct stat st = lstat_of(s.U("d/new"));
  CHECK(st.st_mode == (S_IFREG | 0640));
  CHECK(st.st_uid == 1000);
  CHECK(st.st_gid == 2000);
  CHECK(c.node->ino == ino::encode(0, st.st_ino));
  CHECK(s.get("d/new") == c.node);
  CHECK(s.names("d") == Names{"new", "old"});
  CHECK(read_file(s.U("d/new")) == "created");
  // A write-only create still hands out a writable handle.
  auto w = MUST(s.fs().create(s.get("d"), "wonly", 0600, O_WRONLY | O_TRUNC, kRoot));
  write_handle(s.fs(), *w.handle, "w");
  CHECK(read_file(s.U("d/wonly")) == "w");
}

TEST_CASE("create in a set-group-ID directory takes the directory's group" * doctest::skip(needs_root())) {
  Stack s(1);
  make_dir(s.L(1, "sg"));
  set_owner(s.L(1, "sg"), 0, 4242);
  SYS(::chmod(s.L(1, "sg").c_str(), 02777));
  s.open();
  auto c = MUST(s.fs().create(s.get("sg"), "f", 0644, O_WRONLY, kUser));
  struct stat st = lstat_of(s.U("sg/f"));
  CHECK(st.st_uid == 1000);
  CHECK(st.st_gid == 4242);
  CHECK(MUST(s.fs().getattr(c.node)).st_gid == 4242);
}

TEST_CASE("open errors") {
  Stack s(1);
  make_dir(s.L(1, "d"));
  s.open();
  CHECK(s.fs().open(s.get("d"), O_RDONLY).error() == EISDIR);
  CHECK(s.fs().open(s.get("d"), O_WRONLY).error() == EISDIR);
  CHECK(disk_names(s.U()).empty());
}

TEST_CASE("fallocate, lseek over holes and copy_file_range") {
  Stack s(1);
  {
    write_file(s.L(1, "sparse"), "");
    UniqueFd fd(::open(s.L(1, "sparse").c_str(), O_WRONLY | O_CLOEXEC));
    REQUIRE(::pwrite(fd.get(), "data", 4, 1 << 20) == 4);
  }
  write_file(s.L(1, "src"), "copy me please");
  s.open();
  // lseek on a lower handle finds the data after the hole.
  auto sp = MUST(s.fs().open(s.get("sparse"), O_RDONLY));
  CHECK(MUST(s.fs().lseek(*sp, 0, SEEK_DATA)) >= 0);
  CHECK(MUST(s.fs().lseek(*sp, 0, SEEK_DATA)) <= (1 << 20));
  CHECK(MUST(s.fs().lseek(*sp, 0, SEEK_HOLE)) == 0);
  CHECK(s.fs().lseek(*sp, (1 << 20) + 4, SEEK_DATA).error() == ENXIO);

  // fallocate needs a writable (upper) handle.
  CHECK(s.fs().fallocate(*sp, 0, 0, 4096).error() == EBADF);
  auto w = MUST(s.fs().open(s.get("sparse"), O_RDWR));
  MUST(s.fs().fallocate(*w, FALLOC_FL_KEEP_SIZE, 0, 8192));
  CHECK(lstat_of(s.U("sparse")).st_size == (1 << 20) + 4);
  MUST(s.fs().fallocate(*w, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, 1 << 20, 4));
  CHECK(read_file(s.U("sparse")).substr(1 << 20) == std::string(4, '\0'));

  // copy_file_range from a lower handle into a created file.
  auto in = MUST(s.fs().open(s.get("src"), O_RDONLY));
  auto out = MUST(s.fs().create(s.root(), "dst", 0644, O_WRONLY, kRoot));
  CHECK(MUST(s.fs().copy_file_range(*in, 5, *out.handle, 0, 9, 0)) == 9);
  CHECK(read_file(s.U("dst")) == "me please");
  // Into a read-only handle: EBADF.
  CHECK(s.fs().copy_file_range(*in, 0, *sp, 0, 4, 0).error() == EBADF);
}

TEST_CASE("fsyncdir on upper and lower directories") {
  Stack s(1);
  make_dir(s.L(1, "lower_dir"));
  s.open();
  MUST(s.fs().fsyncdir(s.root(), false));
  MUST(s.fs().fsyncdir(s.get("lower_dir"), true));
  CHECK(disk_names(s.U()).empty());
}

// fs/DESIGN.md promises that reads of lower files do not update their atime
// (lower layers are never written): reads and copy-ups open them O_NOATIME.
// The lower here is on a relatime filesystem with atime older than mtime, so
// a plain open would move it.
TEST_CASE("reads and copy-ups leave the lower files' atime alone") {
  Stack s(1);
  write_file(s.L(1, "read"), "data");
  write_file(s.L(1, "copied"), "data");
  // atime before mtime: relatime would update it on the next read.
  set_times(s.L(1, "read"), 1000000000, 1100000000);
  set_times(s.L(1, "copied"), 1000000000, 1100000000);
  s.open();
  CHECK(s.read("read") == "data");
  CHECK(lstat_of(s.L(1, "read")).st_atim.tv_sec == 1000000000);
  MUST(s.fs().copy_up(s.get("copied")));
  CHECK(lstat_of(s.L(1, "copied")).st_atim.tv_sec == 1000000000);
  // The copy itself carries the lower's times.
  CHECK(lstat_of(s.U("copied")).st_atim.tv_sec == 1000000000);
}

TEST_CASE("O_DIRECT opens work on lower and upper files") {
  Stack s(1);
  write_file(s.L(1, "f"), "direct data");
  s.open();
  {
    auto fh = MUST(s.fs().open(s.get("f"), O_RDONLY | O_DIRECT));
    CHECK(read_handle(s.fs(), *fh) == "direct data");
  }
  {
    auto fh = MUST(s.fs().open(s.get("f"), O_RDWR | O_DIRECT));
    write_handle(s.fs(), *fh, "DIRECT", 0);
    CHECK(read_handle(s.fs(), *fh) == "DIRECT data");
  }
  auto c = MUST(s.fs().create(s.root(), "g", 0644, O_WRONLY | O_DIRECT, kRoot));
  write_handle(s.fs(), *c.handle, "x");
  CHECK(read_file(s.U("g")) == "x");
}

TEST_CASE("whiteout-looking names made through the mount are plain upper objects") {
  Stack s(1);
  write_file(s.L(1, "x"), "lower x");
  write_file(s.L(1, "y"), "lower y");
  s.open();
  {
    auto c = MUST(s.fs().create(s.root(), ".wh.x", 0644, O_WRONLY, kRoot));
    auto d = MUST(s.fs().mknod(s.root(), "y", S_IFCHR | 0600, makedev(0, 0), kRoot));
  }
  auto check_view = [&] {
    CHECK(s.read("x") == "lower x");
    CHECK(s.lookup_error(".wh.x") == 0);
    CHECK(S_ISCHR(s.attr("y").st_mode));
    CHECK(s.names("") == Names{".wh.x", "x", "y"});
    for (const auto& e : MUST(s.fs().list(s.root()))) {
      CHECK(e.ino == s.get(e.name)->ino);
      if (e.name == "y") CHECK(e.type == DT_CHR);
    }
  };
  check_view();
  s.reopen();
  check_view();
  MUST(s.fs().unlink(s.root(), ".wh.x"));
  CHECK(s.read("x") == "lower x");
  CHECK(s.names("") == Names{"x", "y"});
}

TEST_CASE("reading works on a read-only stack, writing does not") {
  Stack s(2, false);
  write_file(s.L(2, "f"), "ro data");
  s.open();
  auto fh = MUST(s.fs().open(s.get("f"), O_RDONLY));
  CHECK(read_handle(s.fs(), *fh) == "ro data");
  CHECK(s.fs().open(s.get("f"), O_WRONLY).error() == EROFS);
  CHECK(s.fs().create(s.root(), "g", 0644, O_WRONLY, kRoot).error() == EROFS);
  CHECK(s.fs().fallocate(*fh, 0, 0, 10).error() == EROFS);
  MUST(s.fs().fsyncdir(s.root(), false));
}

}  // namespace
}  // namespace layerfs
