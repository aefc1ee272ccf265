// Mounted tests: the daemon's open descriptors stay within a budget derived from its
// RLIMIT_NOFILE, however many inodes the kernel remembers (fs/fd_cache.h). The daemon runs with
// a limit of 512 that it cannot raise, while thousands of files and directories are created,
// stat'ed, written, read back, copied up, renamed and walked through the mount.
#include <dirent.h>
#include <doctest/doctest.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>

#include "tests/support/scenario.h"

using namespace layerfs::test;

namespace {

constexpr unsigned long kLimit = 512;
// Half the limit: the daemon's cache takes half minus a reserve; the rest of the reserve covers
// RocksDB, the layers, the FUSE device and requests in flight.
constexpr size_t kBudget = kLimit / 2;

size_t open_fds(pid_t pid) {
  size_t n = 0;
  for ([[maybe_unused]] const auto& e :
       std::filesystem::directory_iterator("/proc/" + std::to_string(pid) + "/fd")) {
    ++n;
  }
  return n;
}

unsigned long soft_nofile(pid_t pid) {
  std::ifstream in("/proc/" + std::to_string(pid) + "/limits");
  std::string line;
  while (std::getline(in, line)) {
    if (line.rfind("Max open files", 0) == 0) {
      return std::stoul(line.substr(std::string("Max open files").size()));
    }
  }
  return 0;
}

// Reads every directory below `root` and lstats every entry; returns the entries seen, or -1
// with *err set at the first failure.
long walk(const std::string& root, std::string* err) {
  long n = 0;
  std::vector<std::string> todo{root};
  while (!todo.empty()) {
    std::string d = todo.back();
    todo.pop_back();
    DIR* dir = ::opendir(d.c_str());
    if (!dir) {
      *err = "opendir " + d + ": " + strerror(errno);
      return -1;
    }
    errno = 0;
    while (struct dirent* e = ::readdir(dir)) {
      std::string name = e->d_name;
      if (name == "." || name == "..") continue;
      std::string p = d + "/" + name;
      struct stat st;
      if (::lstat(p.c_str(), &st) != 0) {
        *err = "lstat " + p + ": " + strerror(errno);
        ::closedir(dir);
        return -1;
      }
      ++n;
      if (S_ISDIR(st.st_mode)) todo.push_back(p);
    }
    if (errno != 0) {
      *err = "readdir " + d + ": " + strerror(errno);
      ::closedir(dir);
      return -1;
    }
    ::closedir(dir);
  }
  return n;
}

}  // namespace

TEST_CASE("fd limit: thousands of files and directories through a daemon limited to 512 fds") {
  LAYERFS_ONLY("the daemon's descriptors");
  Scenario s({.lowers = {{}}, .mount = false, .check_lowers = false, .reference = false});
  // Lower: 30 directories of 50 directories, each with one file (1,530 directories).
  for (int i = 0; i < 30; ++i) {
    for (int j = 0; j < 50; ++j) {
      std::string d = s.lower(0, "t/a" + std::to_string(i) + "/b" + std::to_string(j));
      std::filesystem::create_directories(d);
      REQUIRE(sys::write(d + "/f", "lower " + std::to_string(i) + "/" + std::to_string(j)) == 0);
    }
  }
  MountSpec spec = s.spec();
  spec.nofile = kLimit;
  Mount m(s.mnt(), spec);
  const pid_t pid = m.daemon_pid();
  REQUIRE(soft_nofile(pid) == kLimit);  // the daemon could not raise it
  size_t peak = 0;
  auto check_fds = [&](const char* when) {
    size_t n = open_fds(pid);
    peak = std::max(peak, n);
    CHECK_MESSAGE(n <= kBudget, when, ": the daemon has ", n, " fds open");
  };

  // 3,000 new files: create, stat, write, read back.
  REQUIRE(sys::mkdir(m / "new") == 0);
  for (int i = 0; i < 3000; ++i) {
    std::string p = m / ("new/f" + std::to_string(i));
    int e = sys::write(p, "file " + std::to_string(i));
    REQUIRE_MESSAGE(e == 0, p, ": ", strerror(e));
  }
  check_fds("after creating 3000 files");
  for (int i = 0; i < 3000; ++i) {
    std::string p = m / ("new/f" + std::to_string(i));
    struct stat st;
    REQUIRE_MESSAGE(::lstat(p.c_str(), &st) == 0, p, ": ", strerror(errno));
    CHECK(st.st_size == static_cast<off_t>(("file " + std::to_string(i)).size()));
    int e = sys::write(p, "again " + std::to_string(i), O_WRONLY | O_APPEND);
    REQUIRE_MESSAGE(e == 0, p, ": ", strerror(e));
  }
  for (int i = 0; i < 3000; ++i) {
    std::string p = m / ("new/f" + std::to_string(i));
    CHECK(read_file(p) == "file " + std::to_string(i) + "again " + std::to_string(i));
  }
  check_fds("after re-reading 3000 files");

  // 1,500 directories made through the mount, beside the lower ones.
  for (int i = 0; i < 30; ++i) {
    for (int j = 0; j < 50; ++j) {
      std::string d = m / ("t/a" + std::to_string(i) + "/c" + std::to_string(j));
      REQUIRE_MESSAGE(sys::mkdir(d) == 0, d);
    }
  }
  check_fds("after 1500 mkdirs");

  // Copy-ups, renames and unlinks of lower files all over the tree.
  for (int i = 0; i < 30; ++i) {
    for (int j = 0; j < 50; j += 5) {
      std::string b = m / ("t/a" + std::to_string(i) + "/b" + std::to_string(j));
      REQUIRE(sys::write(b + "/f", "+", O_WRONLY | O_APPEND) == 0);
      REQUIRE(sys::rename(b + "/f", b + "/g") == 0);
    }
    REQUIRE(sys::unlink(m / ("t/a" + std::to_string(i) + "/b1/f")) == 0);
  }

  // Walk everything twice: ~3,000 directories and ~6,000 files.
  for (int round = 0; round < 2; ++round) {
    std::string err;
    long n = walk(m.path(), &err);
    REQUIRE_MESSAGE(n >= 0, err);
    // 1 new + 3000 files, t + 30 a + 1500 b + 1500 c + 1500 files - 30 unlinked.
    CHECK(n == 1 + 3000 + 1 + 30 + 1500 + 1500 + 1500 - 30);
    check_fds("after walking the tree");
  }
  for (int i = 0; i < 30; ++i) {
    std::string b = m / ("t/a" + std::to_string(i) + "/b5");
    CHECK(read_file(b + "/g") == "lower " + std::to_string(i) + "/5+");
  }
  MESSAGE("peak fds of the daemon: ", peak);
  CHECK(m.unmount());

  // Everything landed in the upper layer and is there after a remount.
  Mount again(s.mnt(), s.spec());
  CHECK(read_file(again / "new/f2999") == "file 2999again 2999");
  CHECK(sys::lstat(again / "t/a29/c49") == 0);
  CHECK(sys::lstat(again / "t/a0/b1/f") == ENOENT);
  CHECK(again.unmount());
}
