// Mounted tests: the data path. fallocate (also punching holes), fsync/fdatasync, statfs,
// SEEK_DATA/SEEK_HOLE on sparse files, O_DIRECT, truncate, O_APPEND, copy_file_range and
// timestamps, on new files and on lower files.
#include <doctest/doctest.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <unistd.h>

#include <cstdlib>
#include <cstring>
#include <memory>

#include "tests/support/scenario.h"

using namespace layerfs::test;

namespace {

struct FreeDeleter {
  void operator()(void* p) const { std::free(p); }
};

std::unique_ptr<char, FreeDeleter> aligned(size_t size) {
  void* p = nullptr;
  if (::posix_memalign(&p, 4096, size) != 0) return nullptr;
  return std::unique_ptr<char, FreeDeleter>(static_cast<char*>(p));
}

}  // namespace

TEST_CASE("data: fallocate allocates, keeps the size when asked and punches holes") {
  Scenario s({.lowers = {{file("lower", pattern(256 * 1024, 2))}}});
  auto ops = [](const std::string& r) {
    int fd = ::open((r + "/new").c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0644);
    if (fd < 0) return errno;
    Fd a(fd);
    if (::fallocate(fd, 0, 0, 1 << 20) != 0) return errno;
    if (::fallocate(fd, FALLOC_FL_KEEP_SIZE, 1 << 20, 1 << 20) != 0) return errno;
    if (::pwrite(fd, "data", 4, 8192) != 4) return errno;
    fd = ::open((r + "/lower").c_str(), O_RDWR | O_CLOEXEC);
    if (fd < 0) return errno;
    Fd b(fd);
    return err_of(::fallocate(fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, 65536, 131072));
  };
  REQUIRE(s.both("fallocate", ops) == 0);
  struct stat n = lstat_path(s.mnt("new"));
  CHECK(n.st_size == 1 << 20);
  CHECK(n.st_blocks * 512 >= 1 << 20);
  struct stat l = lstat_path(s.mnt("lower"));
  CHECK(l.st_size == 256 * 1024);
  std::string content = read_file(s.mnt("lower"));
  CHECK(content.substr(65536, 131072) == std::string(131072, '\0'));
  CHECK(content.substr(0, 65536) == pattern(256 * 1024, 2).substr(0, 65536));
  CHECK(lstat_path(s.upper("lower")).st_blocks * 512 <= 256 * 1024 - 131072 + 65536);
  s.check_tree();
}

TEST_CASE("data: fsync and fdatasync succeed on every kind of file") {
  Scenario s({.lowers = {{file("lower", "l"), dir("d")}}});
  write_file(s.mnt("new"), "n");
  Fd n = open_fd(s.mnt("new"), O_RDWR);
  CHECK(::write(n.get(), "x", 1) == 1);
  CHECK(err_of(::fsync(n.get())) == 0);
  CHECK(err_of(::fdatasync(n.get())) == 0);
  Fd lw = open_fd(s.mnt("lower"), O_WRONLY | O_APPEND);
  CHECK(::write(lw.get(), "y", 1) == 1);
  CHECK(err_of(::fsync(lw.get())) == 0);
  CHECK(err_of(::fdatasync(lw.get())) == 0);
  Fd lr = open_fd(s.mnt("d"), O_RDONLY | O_DIRECTORY);
  CHECK(err_of(::fsync(lr.get())) == 0);
  Fd root = open_fd(s.mnt(), O_RDONLY | O_DIRECTORY);
  CHECK(err_of(::fsync(root.get())) == 0);
  CHECK(err_of(::syncfs(root.get())) == 0);
  CHECK(read_file(s.mnt("lower")) == "ly");
}

TEST_CASE("data: statfs describes the upper file system") {
  Scenario s({.lowers = {{file("f", "f")}}});
  struct statvfs m, u;
  REQUIRE(::statvfs(s.mnt().c_str(), &m) == 0);
  REQUIRE(::statvfs(s.upper().c_str(), &u) == 0);
  CHECK(m.f_bsize > 0);
  CHECK(m.f_frsize > 0);
  CHECK(m.f_namemax >= 255);
  CHECK(m.f_blocks > 0);
  CHECK(m.f_blocks * m.f_frsize == u.f_blocks * u.f_frsize);
  CHECK(m.f_bavail <= m.f_bfree);
  CHECK(m.f_bfree <= m.f_blocks);
  // Free space moves by less than 1 GiB between the two calls (other tests run concurrently).
  long long diff = static_cast<long long>(m.f_bfree * m.f_frsize) -
                   static_cast<long long>(u.f_bfree * u.f_frsize);
  CHECK(std::llabs(diff) < (1ll << 30));
}

TEST_CASE("data: SEEK_DATA and SEEK_HOLE on sparse files") {
  constexpr off_t kMiB = 1 << 20;
  Scenario s({.lowers = {{file("lower_sparse", std::string(4096, 'a'))
                              .sparse(4 * kMiB)
                              .data_at(2 * kMiB, std::string(4096, 'b'))}}});
  {
    Fd fd = open_fd(s.mnt("new_sparse"), O_RDWR | O_CREAT, 0644);
    REQUIRE(::pwrite(fd.get(), std::string(4096, 'a').data(), 4096, 0) == 4096);
    REQUIRE(::pwrite(fd.get(), std::string(4096, 'b').data(), 4096, 2 * kMiB) == 4096);
    REQUIRE(::ftruncate(fd.get(), 4 * kMiB) == 0);
    REQUIRE(::fsync(fd.get()) == 0);
  }
  for (const char* name : {"new_sparse", "lower_sparse"}) {
    CAPTURE(name);
    Fd fd = open_fd(s.mnt(name), O_RDONLY);
    CHECK(::lseek(fd.get(), 0, SEEK_DATA) == 0);
    off_t hole = ::lseek(fd.get(), 0, SEEK_HOLE);
    CHECK(hole >= 4096);
    CHECK(hole < 2 * kMiB);
    CHECK(::lseek(fd.get(), hole, SEEK_DATA) == 2 * kMiB);
    off_t hole2 = ::lseek(fd.get(), 2 * kMiB, SEEK_HOLE);
    CHECK(hole2 >= 2 * kMiB + 4096);
    CHECK(hole2 < 4 * kMiB);
    CHECK(::lseek(fd.get(), 3 * kMiB, SEEK_DATA) == -1);
    CHECK(errno == ENXIO);
    CHECK(::lseek(fd.get(), 4 * kMiB + 1, SEEK_HOLE) == -1);
    CHECK(errno == ENXIO);
  }
  s.check_lowers_unchanged();
}

TEST_CASE("data: O_DIRECT aligned writes and reads round-trip") {
  constexpr size_t kLen = 64 * 1024;
  Scenario s({.lowers = {{file("lower", pattern(4 * kLen, 8))}}});
  auto wbuf = aligned(kLen), rbuf = aligned(kLen);
  REQUIRE(wbuf);
  REQUIRE(rbuf);
  const std::string data = pattern(kLen, 12);
  std::memcpy(wbuf.get(), data.data(), kLen);
  {
    int raw = ::open(s.mnt("direct").c_str(), O_RDWR | O_CREAT | O_DIRECT | O_CLOEXEC, 0644);
    REQUIRE_MESSAGE(raw >= 0, "O_DIRECT open failed: " << errno_name(errno));
    Fd fd(raw);
    CHECK(::pwrite(fd.get(), wbuf.get(), kLen, 0) == static_cast<ssize_t>(kLen));
    CHECK(::pwrite(fd.get(), wbuf.get(), kLen, 2 * kLen) == static_cast<ssize_t>(kLen));
    std::memset(rbuf.get(), 0, kLen);
    CHECK(::pread(fd.get(), rbuf.get(), kLen, 2 * kLen) == static_cast<ssize_t>(kLen));
    CHECK(std::memcmp(rbuf.get(), data.data(), kLen) == 0);
  }
  std::string expect = data + std::string(kLen, '\0') + data;
  CHECK(read_file(s.mnt("direct")) == expect);
  {
    int raw = ::open(s.mnt("lower").c_str(), O_RDONLY | O_DIRECT | O_CLOEXEC);
    REQUIRE_MESSAGE(raw >= 0, "O_DIRECT open of a lower file failed: " << errno_name(errno));
    Fd fd(raw);
    CHECK(::pread(fd.get(), rbuf.get(), kLen, kLen) == static_cast<ssize_t>(kLen));
    CHECK(std::memcmp(rbuf.get(), pattern(4 * kLen, 8).data() + kLen, kLen) == 0);
  }
  s.remount();
  CHECK(read_file(s.mnt("direct")) == expect);
}

TEST_CASE("data: truncate, writes past the end and O_APPEND") {
  Scenario s({.lowers = {{file("shrink", pattern(10000, 1)), file("grow", "abc"),
                          file("append", "start:")}}});
  s.both("shrink", [](const std::string& r) { return sys::truncate(r + "/shrink", 1234); });
  s.both("grow", [](const std::string& r) { return sys::truncate(r + "/grow", 100000); });
  s.both("write past the end", [](const std::string& r) {
    int fd = ::open((r + "/gap").c_str(), O_WRONLY | O_CREAT | O_CLOEXEC, 0644);
    if (fd < 0) return errno;
    int e = err_of(::pwrite(fd, "tail", 4, 50000));
    ::close(fd);
    return e;
  });
  s.both("interleaved appends", [](const std::string& r) {
    int a = ::open((r + "/append").c_str(), O_WRONLY | O_APPEND | O_CLOEXEC);
    int b = ::open((r + "/append").c_str(), O_WRONLY | O_APPEND | O_CLOEXEC);
    if (a < 0 || b < 0) return EIO;
    bool ok = ::write(a, "1", 1) == 1 && ::write(b, "22", 2) == 2 && ::write(a, "333", 3) == 3;
    ::close(a);
    ::close(b);
    return ok ? 0 : EIO;
  });
  CHECK(read_file(s.mnt("append")) == "start:122333");
  CHECK(read_file(s.mnt("grow")) == "abc" + std::string(100000 - 3, '\0'));
  s.check_tree();
  s.remount();
  s.check_tree({}, "after remount");
}

TEST_CASE("data: copy_file_range between files of the mount") {
  const std::string data = pattern(300000, 6);
  Scenario s({.lowers = {{file("src", data)}}});
  s.both("copy_file_range", [&](const std::string& r) {
    int in = ::open((r + "/src").c_str(), O_RDONLY | O_CLOEXEC);
    int out = ::open((r + "/dst").c_str(), O_WRONLY | O_CREAT | O_CLOEXEC, 0644);
    if (in < 0 || out < 0) return EIO;
    off_t off_in = 1000, off_out = 0;
    size_t left = 200000;
    int e = 0;
    while (left > 0) {
      ssize_t n = ::copy_file_range(in, &off_in, out, &off_out, left, 0);
      if (n <= 0) {
        e = n < 0 ? errno : EIO;
        break;
      }
      left -= static_cast<size_t>(n);
    }
    ::close(in);
    ::close(out);
    return e;
  });
  CHECK(read_file(s.mnt("dst")) == data.substr(1000, 200000));
  s.check_tree();
}

TEST_CASE("data: timestamps follow utimensat and writes") {
  Scenario s({.lowers = {{file("f", "f").times(1000000000), file("g", "g").times(1000000000)}}});
  CHECK(s.both("utimensat", [](const std::string& r) {
    return sys::utimens(r + "/f", {1234567890, 123456789}, {1300000000, 987654321});
  }) == 0);
  struct stat st = lstat_path(s.mnt("f"));
  CHECK(st.st_atim.tv_sec == 1234567890);
  CHECK(st.st_atim.tv_nsec == 123456789);
  CHECK(st.st_mtim.tv_sec == 1300000000);
  CHECK(st.st_mtim.tv_nsec == 987654321);
  CHECK(s.both("UTIME_OMIT", [](const std::string& r) {
    return sys::utimens(r + "/f", {0, UTIME_OMIT}, {1400000000, 0});
  }) == 0);
  st = lstat_path(s.mnt("f"));
  CHECK(st.st_atim.tv_sec == 1234567890);
  CHECK(st.st_mtim.tv_sec == 1400000000);
  time_t now = ::time(nullptr);
  s.both("write g", [](const std::string& r) { return sys::write(r + "/g", "x", O_WRONLY); });
  st = lstat_path(s.mnt("g"));
  CHECK(st.st_mtim.tv_sec >= now - 5);
  CHECK(st.st_ctim.tv_sec >= now - 5);
  CompareOptions o;
  o.mtimes = true;
  o.atimes = false;
  o.ignore = {"g"};
  o.root = false;
  s.check_tree(o);
  s.remount();
  s.check_tree(o, "after remount");
}
