// Mounted tests: POSIX record locks conflict between processes, flock and OFD locks between open
// files, and mmap works, including writable MAP_SHARED mappings whose stores reach read(2), the
// upper and a later mount.
#include <doctest/doctest.h>
#include <fcntl.h>
#include <sys/file.h>
#include <sys/mman.h>
#include <unistd.h>

#include <cstring>

#include "tests/support/scenario.h"
#include "tests/support/user.h"

using namespace layerfs::test;

namespace {

int set_lock(int fd, int cmd, short type, off_t start, off_t len) {
  struct flock fl {};
  fl.l_type = type;
  fl.l_whence = SEEK_SET;
  fl.l_start = start;
  fl.l_len = len;
  return err_of(::fcntl(fd, cmd, &fl));
}

// Maps `len` bytes of `fd` shared and writable, or returns nullptr.
char* map_shared(int fd, size_t len) {
  void* p = ::mmap(nullptr, len, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
  return p == MAP_FAILED ? nullptr : static_cast<char*>(p);
}

}  // namespace

TEST_CASE("locks: fcntl record locks conflict between processes") {
  Scenario s({.lowers = {{file("lower", std::string(4096, 'l'))}}});
  write_file(s.mnt("upper"), std::string(4096, 'u'));
  for (const char* name : {"lower", "upper"}) {
    const std::string path = s.mnt(name);
    CAPTURE(path);
    Fd fd = open_fd(path, O_RDWR);
    REQUIRE(set_lock(fd.get(), F_SETLK, F_WRLCK, 0, 100) == 0);
    const pid_t parent = ::getpid();
    std::string failures = run_child([&](Expect& e) {
      Fd mine = open_fd(path, O_RDWR);
      int err = set_lock(mine.get(), F_SETLK, F_WRLCK, 50, 10);
      e.that(err == EAGAIN || err == EACCES,
             "conflicting F_SETLK gave " + errno_name(err) + " instead of EAGAIN/EACCES");
      e.that(set_lock(mine.get(), F_SETLK, F_RDLCK, 0, 1) != 0, "a read lock was granted");
      struct flock probe {};
      probe.l_type = F_WRLCK;
      probe.l_whence = SEEK_SET;
      probe.l_start = 10;
      probe.l_len = 5;
      e.err(err_of(::fcntl(mine.get(), F_GETLK, &probe)), 0, "F_GETLK");
      e.that(probe.l_type == F_WRLCK, "F_GETLK does not report the write lock");
      e.that(probe.l_pid == parent, "F_GETLK reports pid " + std::to_string(probe.l_pid));
      e.err(set_lock(mine.get(), F_SETLK, F_WRLCK, 200, 100), 0, "lock on a free range");
    });
    CHECK_MESSAGE(failures.empty(), failures);
    REQUIRE(set_lock(fd.get(), F_SETLK, F_UNLCK, 0, 100) == 0);
    failures = run_child([&](Expect& e) {
      Fd mine = open_fd(path, O_RDWR);
      e.err(set_lock(mine.get(), F_SETLK, F_WRLCK, 50, 10), 0, "lock after the unlock");
    });
    CHECK_MESSAGE(failures.empty(), failures);
  }
}

TEST_CASE("locks: flock and OFD locks conflict between open files") {
  Scenario s({.lowers = {{file("f", "data")}}});
  Fd a = open_fd(s.mnt("f"), O_RDWR);
  Fd b = open_fd(s.mnt("f"), O_RDWR);
  REQUIRE(::flock(a.get(), LOCK_EX | LOCK_NB) == 0);
  CHECK(err_of(::flock(b.get(), LOCK_EX | LOCK_NB)) == EWOULDBLOCK);
  CHECK(err_of(::flock(b.get(), LOCK_SH | LOCK_NB)) == EWOULDBLOCK);
  REQUIRE(::flock(a.get(), LOCK_UN) == 0);
  CHECK(err_of(::flock(b.get(), LOCK_SH | LOCK_NB)) == 0);
  CHECK(err_of(::flock(a.get(), LOCK_SH | LOCK_NB)) == 0);
  CHECK(err_of(::flock(a.get(), LOCK_EX | LOCK_NB)) == EWOULDBLOCK);
  REQUIRE(::flock(b.get(), LOCK_UN) == 0);
  REQUIRE(::flock(a.get(), LOCK_UN) == 0);

  CHECK(set_lock(a.get(), F_OFD_SETLK, F_WRLCK, 0, 10) == 0);
  int err = set_lock(b.get(), F_OFD_SETLK, F_WRLCK, 5, 10);
  CHECK((err == EAGAIN || err == EACCES));
  CHECK(set_lock(b.get(), F_OFD_SETLK, F_WRLCK, 10, 10) == 0);
  CHECK(set_lock(a.get(), F_OFD_SETLK, F_UNLCK, 0, 10) == 0);
  CHECK(set_lock(b.get(), F_OFD_SETLK, F_WRLCK, 0, 10) == 0);
}

TEST_CASE("mmap: MAP_SHARED stores reach read(2), the upper and a later mount") {
  const std::string original = pattern(3 * 4096, 9);
  Scenario s({.lowers = {{file("f", original)}}});
  {
    Fd fd = open_fd(s.mnt("f"), O_RDWR);
    char* p = map_shared(fd.get(), original.size());
    REQUIRE(p != nullptr);
    CHECK(std::memcmp(p, original.data(), original.size()) == 0);
    std::memcpy(p + 5000, "written through the map", 23);
    CHECK(::msync(p, original.size(), MS_SYNC) == 0);
    std::string expect = original;
    expect.replace(5000, 23, "written through the map");
    // read(2) on another open file sees the stores at once.
    CHECK(read_file(s.mnt("f")) == expect);
    CHECK(::munmap(p, original.size()) == 0);
    fd = Fd();
    write_file(s.ref("f"), expect);
  }
  CHECK(read_file(s.upper("f")) == read_file(s.ref("f")));
  s.remount();
  CHECK(read_file(s.mnt("f")) == read_file(s.ref("f")));
  s.check_tree();
}

TEST_CASE("mmap: a new file grown with ftruncate and written through a shared map") {
  Scenario s({.lowers = {{}}});
  Fd fd = open_fd(s.mnt("new"), O_RDWR | O_CREAT, 0644);
  REQUIRE(::ftruncate(fd.get(), 8192) == 0);
  char* p = map_shared(fd.get(), 8192);
  REQUIRE(p != nullptr);
  std::memset(p, 'm', 8192);
  std::memcpy(p + 8000, "end", 3);
  CHECK(::msync(p, 8192, MS_SYNC) == 0);
  CHECK(::munmap(p, 8192) == 0);
  fd = Fd();
  std::string expect(8192, 'm');
  expect.replace(8000, 3, "end");
  CHECK(read_file(s.mnt("new")) == expect);
  s.remount();
  CHECK(read_file(s.mnt("new")) == expect);
}

TEST_CASE("mmap: write(2) is seen through an existing shared mapping") {
  Scenario s({.lowers = {{}}});
  write_file(s.mnt("f"), std::string(4096, 'a'));
  Fd fd = open_fd(s.mnt("f"), O_RDONLY);
  void* p = ::mmap(nullptr, 4096, PROT_READ, MAP_SHARED, fd.get(), 0);
  REQUIRE(p != MAP_FAILED);
  const char* c = static_cast<const char*>(p);
  CHECK(c[100] == 'a');
  pwrite_file(s.mnt("f"), 100, "B");
  CHECK(c[100] == 'B');
  ::munmap(p, 4096);
}

TEST_CASE("mmap: MAP_PRIVATE maps of a lower file stay private") {
  const std::string data = pattern(2 * 4096, 4);
  Scenario s({.lowers = {{file("f", data)}}});
  Fd fd = open_fd(s.mnt("f"), O_RDONLY);
  void* p = ::mmap(nullptr, data.size(), PROT_READ | PROT_WRITE, MAP_PRIVATE, fd.get(), 0);
  REQUIRE(p != MAP_FAILED);
  char* c = static_cast<char*>(p);
  CHECK(std::memcmp(c, data.data(), data.size()) == 0);
  std::memset(c, 'p', 100);
  ::munmap(p, data.size());
  CHECK(read_file(s.mnt("f")) == data);
  CHECK_FALSE(exists(s.upper("f")));
  s.check_tree();
}
