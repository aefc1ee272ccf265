// Tests for fs/copy_data.cpp: contents, sparseness, prefixes, a source that
// shrinks mid-copy, and the fallback when source and destination are on
// different filesystems (a tmpfs mounted for the test, and /tmp).
#include <doctest/doctest.h>
#include <fcntl.h>
#include <linux/magic.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstring>
#include <filesystem>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "fs/copy_data.h"
#include "tests/support/temp_dir.h"
#include "fs/unique_fd.h"

namespace layerfs {
namespace {

using test::needs_root;

using test::TempDir;
using test::TmpfsMount;

constexpr uint64_t kMiB = uint64_t{1} << 20;

UniqueFd open_or_fail(const std::string& path, int flags) {
  UniqueFd fd(::open(path.c_str(), flags | O_CLOEXEC, 0644));
  REQUIRE_MESSAGE(fd.valid(), "open ", path, ": ", std::string(std::strerror(errno)));
  return fd;
}

std::string random_bytes(size_t n, uint64_t seed) {
  std::mt19937_64 gen(seed);
  std::string s(n, '\0');
  for (size_t i = 0; i < n; i += 8) {
    uint64_t v = gen();
    std::memcpy(&s[i], &v, std::min<size_t>(8, n - i));
  }
  return s;
}

void write_at(int fd, uint64_t off, const std::string& data) {
  size_t done = 0;
  while (done < data.size()) {
    ssize_t n = ::pwrite(fd, data.data() + done, data.size() - done, off + done);
    REQUIRE(n > 0);
    done += static_cast<size_t>(n);
  }
}

struct stat stat_fd(int fd) {
  struct stat st;
  REQUIRE(::fstat(fd, &st) == 0);
  return st;
}

// Reads [off, off+n) fully; short only at EOF.
std::string read_at(int fd, uint64_t off, size_t n) {
  std::string s(n, '\0');
  size_t done = 0;
  while (done < n) {
    ssize_t r = ::pread(fd, &s[done], n - done, off + done);
    REQUIRE(r >= 0);
    if (r == 0) break;
    done += static_cast<size_t>(r);
  }
  s.resize(done);
  return s;
}

// True when the first `n` bytes of the two files are identical.
bool same_prefix(int a, int b, uint64_t n) {
  for (uint64_t off = 0; off < n; off += 4 * kMiB) {
    size_t chunk = static_cast<size_t>(std::min<uint64_t>(4 * kMiB, n - off));
    std::string x = read_at(a, off, chunk);
    std::string y = read_at(b, off, chunk);
    if (x.size() != chunk || x != y) return false;
  }
  return true;
}

bool all_zero(const std::string& s) {
  return std::all_of(s.begin(), s.end(), [](char c) { return c == 0; });
}

// Filesystems where FICLONE is known to be refused, so copy_file_range is
// the rung that finishes a same-filesystem copy.
bool has_no_reflink(const std::string& path) {
  struct statfs sf;
  REQUIRE(::statfs(path.c_str(), &sf) == 0);
  return sf.f_type == EXT4_SUPER_MAGIC || sf.f_type == TMPFS_MAGIC;
}

CopyStats copy_ok(int src, int dst, uint64_t length) {
  Result<CopyStats> r = copy_file_data(src, dst, length);
  REQUIRE_MESSAGE(r.ok(), "copy_file_data: ", std::string(std::strerror(r.error())));
  return *r;
}

// A file of data and hole segments, each {offset, length} of random data;
// the file is then extended to `size` (a trailing hole when larger).
void make_sparse(int fd, const std::vector<std::pair<uint64_t, uint64_t>>& data, uint64_t size) {
  uint64_t seed = 1;
  for (auto [off, len] : data) write_at(fd, off, random_bytes(len, seed++));
  REQUIRE(::ftruncate(fd, static_cast<off_t>(size)) == 0);
}

}  // namespace

TEST_CASE("copy_file_data: empty file") {
  TempDir tmp("copy");
  UniqueFd src = open_or_fail(tmp.path() + "/src", O_RDWR | O_CREAT);
  UniqueFd dst = open_or_fail(tmp.path() + "/dst", O_RDWR | O_CREAT);
  CopyStats stats = copy_ok(src.get(), dst.get(), 0);
  CHECK(stats.bytes_copied == 0);
  CHECK(stat_fd(dst.get()).st_size == 0);
  CHECK(stats.method != CopyMethod::kNone);
  if (has_no_reflink(tmp.path())) CHECK(stats.method == CopyMethod::kCopyFileRange);
}

TEST_CASE("copy_file_data: small file with binary content") {
  TempDir tmp("copy");
  UniqueFd src = open_or_fail(tmp.path() + "/src", O_RDWR | O_CREAT);
  UniqueFd dst = open_or_fail(tmp.path() + "/dst", O_RDWR | O_CREAT);
  const std::string content("hello\0world\n\xff\x01", 15);
  write_at(src.get(), 0, content);
  CopyStats stats = copy_ok(src.get(), dst.get(), content.size());
  CHECK(stats.bytes_copied == content.size());
  CHECK(stat_fd(dst.get()).st_size == static_cast<off_t>(content.size()));
  CHECK(read_at(dst.get(), 0, 100) == content);
  if (has_no_reflink(tmp.path())) CHECK(stats.method == CopyMethod::kCopyFileRange);
}

TEST_CASE("copy_file_data: a file that is all hole stays a hole") {
  TempDir tmp("copy");
  UniqueFd src = open_or_fail(tmp.path() + "/src", O_RDWR | O_CREAT);
  UniqueFd dst = open_or_fail(tmp.path() + "/dst", O_RDWR | O_CREAT);
  REQUIRE(::ftruncate(src.get(), 100 * kMiB) == 0);
  CopyStats stats = copy_ok(src.get(), dst.get(), 100 * kMiB);
  struct stat st = stat_fd(dst.get());
  CHECK(st.st_size == static_cast<off_t>(100 * kMiB));
  CHECK(st.st_blocks <= 8);
  if (stats.method != CopyMethod::kClone) CHECK(stats.bytes_copied == 0);
  CHECK(all_zero(read_at(dst.get(), 50 * kMiB, 64 * 1024)));
}

TEST_CASE("copy_file_data: data and hole layouts keep content and holes") {
  struct Layout {
    const char* name;
    std::vector<std::pair<uint64_t, uint64_t>> data;
    uint64_t size;
  };
  const std::vector<Layout> layouts = {
      {"data-hole-data-hole", {{0, kMiB}, {9 * kMiB, kMiB / 2}}, 20 * kMiB},
      {"hole-data-hole-data", {{3 * kMiB, 256 * 1024}, {7 * kMiB, 2 * kMiB}}, 9 * kMiB},
      {"unaligned data", {{100, 5000}, {4 * kMiB + 17, 70000}}, 6 * kMiB + 3},
  };
  for (const Layout& layout : layouts) {
    CAPTURE(layout.name);
    TempDir tmp("copy");
    UniqueFd src = open_or_fail(tmp.path() + "/src", O_RDWR | O_CREAT);
    UniqueFd dst = open_or_fail(tmp.path() + "/dst", O_RDWR | O_CREAT);
    make_sparse(src.get(), layout.data, layout.size);
    REQUIRE(fsync_fd(src.get()).ok());
    CopyStats stats = copy_ok(src.get(), dst.get(), layout.size);
    REQUIRE(fsync_fd(dst.get()).ok());
    struct stat s = stat_fd(src.get());
    struct stat d = stat_fd(dst.get());
    CHECK(d.st_size == static_cast<off_t>(layout.size));
    CHECK(same_prefix(src.get(), dst.get(), layout.size));
    // 64 sectors of slack for a differently placed extent-tree block.
    CHECK(d.st_blocks <= s.st_blocks + 64);
    uint64_t data_bytes = 0;
    for (auto [off, len] : layout.data) data_bytes += len;
    // Data segments are whole filesystem blocks, so the count is at least the
    // data and far below the file size.
    CHECK(stats.bytes_copied >= data_bytes);
    CHECK(stats.bytes_copied <= data_bytes + 4 * 65536);
    if (has_no_reflink(tmp.path())) CHECK(stats.method == CopyMethod::kCopyFileRange);
  }
}

TEST_CASE("copy_file_data: 64 MiB of random data") {
  TempDir tmp("copy");
  UniqueFd src = open_or_fail(tmp.path() + "/src", O_RDWR | O_CREAT);
  UniqueFd dst = open_or_fail(tmp.path() + "/dst", O_RDWR | O_CREAT);
  const uint64_t size = 64 * kMiB;
  for (uint64_t off = 0; off < size; off += 8 * kMiB)
    write_at(src.get(), off, random_bytes(8 * kMiB, off + 7));
  CopyStats stats = copy_ok(src.get(), dst.get(), size);
  CHECK(stats.bytes_copied == size);
  CHECK(stat_fd(dst.get()).st_size == static_cast<off_t>(size));
  CHECK(same_prefix(src.get(), dst.get(), size));
  if (has_no_reflink(tmp.path())) CHECK(stats.method == CopyMethod::kCopyFileRange);
}

TEST_CASE("copy_file_data: a shorter length copies only that prefix") {
  TempDir tmp("copy");
  UniqueFd src = open_or_fail(tmp.path() + "/src", O_RDWR | O_CREAT);
  UniqueFd dst = open_or_fail(tmp.path() + "/dst", O_RDWR | O_CREAT);
  write_at(src.get(), 0, random_bytes(kMiB + 123, 42));
  const uint64_t length = 300001;
  CopyStats stats = copy_ok(src.get(), dst.get(), length);
  CHECK(stats.bytes_copied == length);
  CHECK(stat_fd(dst.get()).st_size == static_cast<off_t>(length));
  CHECK(same_prefix(src.get(), dst.get(), length));
}

TEST_CASE("copy_file_data: a source shorter than length ends in a hole") {
  TempDir tmp("copy");
  UniqueFd src = open_or_fail(tmp.path() + "/src", O_RDWR | O_CREAT);
  UniqueFd dst = open_or_fail(tmp.path() + "/dst", O_RDWR | O_CREAT);
  const std::string content = random_bytes(5000, 3);
  write_at(src.get(), 0, content);
  CopyStats stats = copy_ok(src.get(), dst.get(), 2 * kMiB);
  CHECK(stats.bytes_copied == content.size());
  CHECK(stat_fd(dst.get()).st_size == static_cast<off_t>(2 * kMiB));
  CHECK(read_at(dst.get(), 0, content.size()) == content);
  CHECK(all_zero(read_at(dst.get(), content.size(), 2 * kMiB - content.size())));
}

TEST_CASE("copy_file_data: a source that shrinks during the copy" * doctest::skip(needs_root())) {
  TempDir tmp("copy");
  TmpfsMount other(tmp.path() + "/mnt");
  // Same filesystem (copy_file_range) and tmpfs to /tmp (pread/pwrite).
  for (const std::string& src_dir : {tmp.path(), other.path()}) {
    CAPTURE(src_dir);
    UniqueFd src = open_or_fail(src_dir + "/src", O_RDWR | O_CREAT | O_TRUNC);
    UniqueFd dst = open_or_fail(tmp.path() + "/dst", O_RDWR | O_CREAT | O_TRUNC);
    const uint64_t size = 64 * kMiB;
    const std::string block = random_bytes(8 * kMiB, 5);
    for (uint64_t off = 0; off < size; off += block.size()) write_at(src.get(), off, block);
    std::atomic<bool> started{false};
    std::thread shrinker([&] {
      while (!started.load()) std::this_thread::yield();
      std::this_thread::sleep_for(std::chrono::microseconds(500));
      int rc = ::ftruncate(src.get(), static_cast<off_t>(kMiB));
      CHECK(rc == 0);
    });
    started = true;
    Result<CopyStats> r = copy_file_data(src.get(), dst.get(), size);
    shrinker.join();
    REQUIRE(r.ok());
    CHECK(r->bytes_copied <= size);
    CHECK(stat_fd(dst.get()).st_size == static_cast<off_t>(size));
    // Whatever the timing, the first MiB was never cut away.
    CHECK(read_at(dst.get(), 0, kMiB) == block.substr(0, kMiB));
  }
}

TEST_CASE("copy_file_data: across filesystems falls back and keeps holes" * doctest::skip(needs_root())) {
  TempDir tmp("copy");
  TmpfsMount other(tmp.path() + "/mnt");
  struct Direction {
    std::string src;
    std::string dst;
  };
  const std::vector<Direction> directions = {
      {other.path() + "/src", tmp.path() + "/dst"},
      {tmp.path() + "/src2", other.path() + "/dst2"},
  };
  for (const Direction& dir : directions) {
    CAPTURE(dir.src);
    UniqueFd src = open_or_fail(dir.src, O_RDWR | O_CREAT);
    UniqueFd dst = open_or_fail(dir.dst, O_RDWR | O_CREAT);
    const uint64_t size = 24 * kMiB;
    make_sparse(src.get(), {{0, 3 * kMiB + 4096}, {12 * kMiB, kMiB}}, size);
    CopyStats stats = copy_ok(src.get(), dst.get(), size);
    CHECK(stats.method == CopyMethod::kReadWrite);
    CHECK(stats.bytes_copied == 4 * kMiB + 4096);
    REQUIRE(fsync_fd(dst.get()).ok());
    struct stat s = stat_fd(src.get());
    struct stat d = stat_fd(dst.get());
    CHECK(d.st_size == static_cast<off_t>(size));
    CHECK(d.st_blocks <= s.st_blocks + 64);
    CHECK(same_prefix(src.get(), dst.get(), size));
  }

  // A prefix, through the fallback as well.
  UniqueFd src = open_or_fail(other.path() + "/prefix", O_RDWR | O_CREAT);
  UniqueFd dst = open_or_fail(tmp.path() + "/prefix", O_RDWR | O_CREAT);
  write_at(src.get(), 0, random_bytes(3 * kMiB, 9));
  CopyStats stats = copy_ok(src.get(), dst.get(), 2 * kMiB + 1);
  CHECK(stats.method == CopyMethod::kReadWrite);
  CHECK(stats.bytes_copied == 2 * kMiB + 1);
  CHECK(stat_fd(dst.get()).st_size == static_cast<off_t>(2 * kMiB + 1));
  CHECK(same_prefix(src.get(), dst.get(), 2 * kMiB + 1));
}

TEST_CASE("copy_file_data: refuses an O_APPEND destination and reports errors" * doctest::skip(needs_root())) {
  TempDir tmp("copy");
  // Across filesystems, where pwrite would otherwise append in the wrong place.
  TmpfsMount other(tmp.path() + "/mnt");
  UniqueFd src = open_or_fail(other.path() + "/src", O_RDWR | O_CREAT);
  write_at(src.get(), 0, "data");
  REQUIRE(::ftruncate(src.get(), 3 * kMiB) == 0);
  write_at(src.get(), 2 * kMiB, "more");
  UniqueFd dst = open_or_fail(tmp.path() + "/dst", O_WRONLY | O_CREAT | O_APPEND);
  Result<CopyStats> r = copy_file_data(src.get(), dst.get(), 3 * kMiB);
  REQUIRE_FALSE(r.ok());
  CHECK(r.error() == EBADF);
  CHECK(stat_fd(dst.get()).st_size == 0);

  // A destination opened read-only cannot be written by any rung.
  UniqueFd ro = open_or_fail(tmp.path() + "/ro", O_RDONLY | O_CREAT);
  Result<CopyStats> r2 = copy_file_data(src.get(), ro.get(), 4);
  REQUIRE_FALSE(r2.ok());
  CHECK(r2.error() == EBADF);
}

TEST_CASE("fsync_fd") {
  TempDir tmp("copy");
  UniqueFd fd = open_or_fail(tmp.path() + "/f", O_RDWR | O_CREAT);
  CHECK(fsync_fd(fd.get()).ok());
  CHECK(fsync_fd(-1).error() == EBADF);
}

}  // namespace layerfs

namespace layerfs {

// The hints copy-up passes (fs/copy_data.h): the same content, size and holes
// as without them, and a clone refusal remembered for the filesystem.
TEST_CASE("copy_file_data with hints: small dense, small sparse, prefix, clone refusal") {
  TempDir tmp("copy");
  std::atomic<bool> clone_possible{true};
  auto hinted = [&](int src, int dst, uint64_t length) {
    struct stat st = stat_fd(src);
    CopyHints hints;
    hints.dst_fresh = true;
    hints.src_stat = &st;
    hints.clone_possible = &clone_possible;
    Result<CopyStats> r = copy_file_data(src, dst, length, hints);
    REQUIRE_MESSAGE(r.ok(), "copy_file_data: ", std::string(std::strerror(r.error())));
    return *r;
  };
  int n = 0;
  auto fresh = [&] { return open_or_fail(tmp.path() + "/dst" + std::to_string(n++), O_RDWR | O_CREAT | O_EXCL); };

  SUBCASE("a small file without holes") {
    UniqueFd src = open_or_fail(tmp.path() + "/src", O_RDWR | O_CREAT);
    const std::string content = random_bytes(10000, 7);
    write_at(src.get(), 0, content);
    REQUIRE(::fsync(src.get()) == 0);
    UniqueFd dst = fresh();
    hinted(src.get(), dst.get(), content.size());
    CHECK(stat_fd(dst.get()).st_size == static_cast<off_t>(content.size()));
    CHECK(read_at(dst.get(), 0, 20000) == content);
    // A prefix of it.
    UniqueFd dst2 = fresh();
    hinted(src.get(), dst2.get(), 4097);
    CHECK(stat_fd(dst2.get()).st_size == 4097);
    CHECK(read_at(dst2.get(), 0, 20000) == content.substr(0, 4097));
  }
  SUBCASE("a small file with a hole keeps it") {
    UniqueFd src = open_or_fail(tmp.path() + "/src", O_RDWR | O_CREAT);
    make_sparse(src.get(), {{0, 4096}, {48 * 1024, 4096}}, 60 * 1024);
    REQUIRE(::fsync(src.get()) == 0);
    UniqueFd dst = fresh();
    hinted(src.get(), dst.get(), 60 * 1024);
    CHECK(stat_fd(dst.get()).st_size == 60 * 1024);
    CHECK(same_prefix(src.get(), dst.get(), 60 * 1024));
    CHECK(stat_fd(dst.get()).st_blocks <= stat_fd(src.get()).st_blocks);
  }
  SUBCASE("a trailing hole still gives the full size") {
    UniqueFd src = open_or_fail(tmp.path() + "/src", O_RDWR | O_CREAT);
    make_sparse(src.get(), {{0, 100}}, 3 * kMiB);
    UniqueFd dst = fresh();
    hinted(src.get(), dst.get(), 3 * kMiB);
    CHECK(stat_fd(dst.get()).st_size == static_cast<off_t>(3 * kMiB));
    CHECK(same_prefix(src.get(), dst.get(), 3 * kMiB));
  }
  if (has_no_reflink(tmp.path())) {
    // The first copy learnt that this filesystem cannot clone.
    CHECK_FALSE(clone_possible.load());
  }
}

}  // namespace layerfs
