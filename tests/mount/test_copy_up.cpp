// Mounted tests: copy-up. The first write, truncate, chmod, chown, utimes, setxattr or link of a
// lower file puts a full copy in the upper (data, xattrs, owner, mode, times), creating missing
// parent directories with the lower attributes; holes stay holes; an O_TRUNC open copies no
// data; lowers are never modified.
#include <doctest/doctest.h>
#include <fcntl.h>
#include <sys/inotify.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#include <fstream>
#include <functional>
#include <thread>

#include "tests/support/scenario.h"

using namespace layerfs::test;

namespace {

constexpr time_t kT1 = 1000000000;
constexpr time_t kT2 = 1100000000;
constexpr time_t kT3 = 1200000000;

// A snapshot with the union-private xattrs taken out (kernel overlayfs keeps its metadata in the
// upper as xattrs; layerfs must not, which check_upper_clean() verifies separately).
Snapshot scan_public(const std::string& root) {
  Snapshot s = scan_tree(root);
  for (auto& [path, n] : s) {
    for (auto it = n.xattrs.begin(); it != n.xattrs.end();) {
      it = is_union_private_xattr(it->first) ? n.xattrs.erase(it) : std::next(it);
    }
  }
  return s;
}

// Only the given paths of a snapshot.
Snapshot only(const Snapshot& s, const std::vector<std::string>& paths) {
  Snapshot out;
  for (const auto& p : paths) {
    auto it = s.find(p);
    if (it != s.end()) out[p] = it->second;
  }
  return out;
}

std::vector<Entry> deep_lower() {
  return {dir("a", 0750).owner(1000, 1001).times(kT1).xattr("user.dir_a", "A"),
          dir("a/b", 0711).owner(1002, 1003).times(kT2).xattr("trusted.dir_b", "B"),
          file("a/b/f", pattern(100000, 7), 0640)
              .owner(1234, 5678)
              .times(kT3)
              .xattr("user.one", "1")
              .xattr("trusted.two", "2")
              .xattr("security.three", "3"),
          file("a/b/other", "untouched"), file("top", "t")};
}

struct Trigger {
  const char* name;
  std::function<int(const std::string&)> op;
  bool changes_file_mtime;  // the operation itself sets f's mtime to now
  bool creates_in_parent;   // the operation adds a name to a/b (its mtime becomes now)
};

const std::vector<Trigger>& triggers() {
  static const std::vector<Trigger> t = {
      {"write",
       [](const std::string& r) {
         int fd = ::open((r + "/a/b/f").c_str(), O_WRONLY | O_CLOEXEC);
         if (fd < 0) return errno;
         int e = err_of(::pwrite(fd, "WRITTEN", 7, 5000));
         ::close(fd);
         return e;
       },
       true, false},
      {"truncate", [](const std::string& r) { return sys::truncate(r + "/a/b/f", 4321); }, true,
       false},
      {"chmod", [](const std::string& r) { return sys::chmod(r + "/a/b/f", 0604); }, false, false},
      {"chown", [](const std::string& r) { return sys::lchown(r + "/a/b/f", 42, 43); }, false,
       false},
      {"utimes",
       [](const std::string& r) {
         return sys::utimens(r + "/a/b/f", {1300000000, 5}, {1300000001, 7});
       },
       false, false},
      {"setxattr",
       [](const std::string& r) { return sys::setxattr(r + "/a/b/f", "user.added", "new"); }, false,
       false},
      {"removexattr",
       [](const std::string& r) { return sys::removexattr(r + "/a/b/f", "user.one"); }, false,
       false},
      {"link", [](const std::string& r) { return sys::link(r + "/a/b/f", r + "/a/b/g"); }, false,
       true},
  };
  return t;
}

}  // namespace

TEST_CASE("copy-up: every trigger copies data, xattrs, owner, mode, times and the parents") {
  for (const Trigger& t : triggers()) {
    const std::string trigger = t.name;
    CAPTURE(trigger);
    Scenario s({.lowers = {deep_lower()}});
    REQUIRE(s.both(t.name, t.op) == 0);
    // The upper holds the file and its parents, with the same attributes the reference shows.
    Snapshot up = scan_public(s.upper());
    Snapshot ref = scan_public(s.ref());
    std::vector<std::string> paths = {"a", "a/b", "a/b/f"};
    for (const auto& p : paths) CHECK_MESSAGE(up.count(p) == 1, p << " is not in the upper");
    CHECK_MESSAGE(up.count("a/b/other") == 0, "an untouched sibling was copied up");
    CHECK_MESSAGE(up.count("top") == 0, "an untouched file was copied up");
    CompareOptions o;
    o.links = false;
    o.root = false;
    o.mtimes = true;
    if (t.changes_file_mtime) o.ignore.push_back("a/b/f");
    if (t.creates_in_parent) o.ignore.push_back("a/b");
    std::string diff = diff_trees(only(ref, paths), only(up, paths), o, "reference", "upper");
    CHECK_MESSAGE(diff.empty(), "the upper copy differs from the expected object:\n" << diff);
    if (t.changes_file_mtime) {
      // Everything but the times still has to match.
      CompareOptions o2;
      o2.links = false;
      o2.root = false;
      diff = diff_trees(only(ref, {"a/b/f"}), only(up, {"a/b/f"}), o2, "reference", "upper");
      CHECK_MESSAGE(diff.empty(), "the upper copy differs:\n" << diff);
    }
    CompareOptions mo;
    mo.mtimes = true;
    mo.root = false;
    if (t.changes_file_mtime) mo.ignore.push_back("a/b/f");
    if (t.creates_in_parent) {
      mo.ignore.push_back("a/b");
      mo.ignore.push_back("a/b/f");
      mo.ignore.push_back("a/b/g");
    }
    s.check_tree(mo);
    s.remount();
    s.check_tree(mo, "after remount");
  }
}

TEST_CASE("copy-up: holes of a sparse lower file stay holes") {
  constexpr off_t kSize = off_t(1) << 30;
  Scenario s({.lowers = {{file("sparse", "head")
                              .sparse(kSize)
                              .data_at(kSize / 2, "middle")
                              .data_at(kSize - 4096, "tail")}}});
  struct stat lower_st = lstat_path(s.lower(0, "sparse"));
  REQUIRE(lower_st.st_blocks * 512 < 1 << 20);
  SUBCASE("copied up by chmod") {
    REQUIRE(s.both("chmod", [](const std::string& r) { return sys::chmod(r + "/sparse", 0600); }) ==
            0);
  }
  SUBCASE("copied up by a write in the middle") {
    REQUIRE(s.both("pwrite", [](const std::string& r) {
      int fd = ::open((r + "/sparse").c_str(), O_WRONLY | O_CLOEXEC);
      if (fd < 0) return errno;
      int e = err_of(::pwrite(fd, "x", 1, 300 << 20));
      ::close(fd);
      return e;
    }) == 0);
  }
  struct stat up = lstat_path(s.upper("sparse"));
  CHECK(up.st_size == kSize);
  CHECK_MESSAGE(up.st_blocks * 512 < 16 << 20,
                "the upper copy allocates " << up.st_blocks * 512 << " bytes for a sparse file");
  struct stat mnt = lstat_path(s.mnt("sparse"));
  CHECK(mnt.st_size == kSize);
  CHECK_MESSAGE(mnt.st_blocks * 512 < 16 << 20,
                "the mount reports " << mnt.st_blocks * 512 << " allocated bytes");
  s.check_tree();
}

TEST_CASE("copy-up: an O_TRUNC open copies no data") {
  // How much the copy-up read is measured from the outside: with layerfs as the bytes the daemon
  // read (/proc/PID/io rchar counts read, pread, splice, sendfile and copy_file_range), with
  // kernel overlayfs as inotify IN_ACCESS events on the lower file. A normal copy-up of a file of
  // the same size is the control that shows the measure works.
  const std::string data = pattern(8 << 20, 3);
  Scenario s({.lowers = {{file("trunc", data), file("control", data)}}});
  int in = ::inotify_init1(IN_NONBLOCK | IN_CLOEXEC);
  REQUIRE(in >= 0);
  Fd inotify(in);
  REQUIRE(::inotify_add_watch(in, s.lower(0, "trunc").c_str(), IN_ACCESS) >= 0);
  REQUIRE(::inotify_add_watch(in, s.lower(0, "control").c_str(), IN_ACCESS) >= 0);
  const pid_t daemon = s.mount().daemon_pid();
  auto measure = [&]() -> long long {
    if (daemon > 0) {
      std::ifstream io("/proc/" + std::to_string(daemon) + "/io");
      std::string key;
      long long value = 0;
      while (io >> key >> value) {
        if (key == "rchar:") return value;
      }
      return -1;
    }
    long long count = 0;
    alignas(inotify_event) char buf[4096];
    for (;;) {
      ssize_t n = ::read(in, buf, sizeof buf);
      if (n <= 0) break;
      for (char* p = buf; p < buf + n;) {
        auto* ev = reinterpret_cast<inotify_event*>(p);
        ++count;
        p += sizeof(inotify_event) + ev->len;
      }
    }
    return count;
  };
  long long m0 = measure();
  REQUIRE(s.both("write control", [](const std::string& r) {
    return sys::write(r + "/control", "c", O_WRONLY);
  }) == 0);
  long long m1 = measure();
  REQUIRE(s.both("O_TRUNC open", [](const std::string& r) {
    return sys::write(r + "/trunc", "t", O_WRONLY | O_TRUNC);
  }) == 0);
  long long m2 = measure();
  CHECK(read_file(s.mnt("trunc")) == "t");
  CHECK(lstat_path(s.upper("trunc")).st_size == 1);
  const long long control = m1 - m0, trunc = m2 - m1;
  // rchar also counts the FUSE requests themselves: allow far less than the file size.
  const long long limit = daemon > 0 ? (1 << 20) : 0;
  if (control <= limit) {
    MESSAGE("inconclusive: a normal copy-up measured " << control << " here");
  } else {
    CHECK_MESSAGE(trunc <= limit, "an O_TRUNC open read the lower file (measured "
                                      << trunc << "; a full copy-up measured " << control << ")");
  }
  s.check_tree();
}

TEST_CASE("copy-up: lower layers are never modified") {
  Scenario s({.lowers = {{file("f", "data").xattr("user.x", "1"), dir("d"), file("d/g", "g"),
                          sym("l", "f"), fifo("p"), file("h", "h")},
                         {file("low", "low"), dir("d"), file("d/k", "k")}}});
  // Every kind of change, applied to lower objects.
  CHECK(sys::write(s.mnt("f"), "more", O_WRONLY | O_APPEND) == 0);
  CHECK(sys::truncate(s.mnt("h"), 0) == 0);
  CHECK(sys::chmod(s.mnt("d/g"), 0600) == 0);
  CHECK(sys::lchown(s.mnt("l"), 5, 6) == 0);
  CHECK(sys::utimens(s.mnt("low"), {1, 0}, {2, 0}) == 0);
  CHECK(sys::setxattr(s.mnt("d/k"), "user.y", "2") == 0);
  CHECK(sys::removexattr(s.mnt("f"), "user.x") == 0);
  CHECK(sys::chmod(s.mnt("p"), 0600) == 0);
  CHECK(sys::rename(s.mnt("d/g"), s.mnt("moved")) == 0);
  CHECK(sys::unlink(s.mnt("d/k")) == 0);
  CHECK(sys::rmdir(s.mnt("d")) == 0);
  CHECK(sys::link(s.mnt("low"), s.mnt("low2")) == 0);
  // While mounted and again (in the destructor) after unmounting.
  s.check_lowers_unchanged();
}

TEST_CASE("copy-up: symlinks, fifos, sockets and devices keep their type") {
  Scenario s({.lowers = {{sym("l", "some/target"), fifo("p"), chardev("c", 1, 3),
                          blockdev("b", 7, 0), socket("s")}}});
  s.both("lchown l", [](const std::string& r) { return sys::lchown(r + "/l", 7, 8); });
  s.both("chmod p", [](const std::string& r) { return sys::chmod(r + "/p", 0600); });
  s.both("chown c", [](const std::string& r) { return sys::lchown(r + "/c", 9, 9); });
  s.both("chmod b", [](const std::string& r) { return sys::chmod(r + "/b", 0640); });
  s.both("chmod s", [](const std::string& r) { return sys::chmod(r + "/s", 0700); });
  CHECK(read_link(s.upper("l")) == "some/target");
  CHECK(S_ISFIFO(lstat_path(s.upper("p")).st_mode));
  CHECK(S_ISCHR(lstat_path(s.upper("c")).st_mode));
  CHECK(lstat_path(s.upper("c")).st_rdev == makedev(1, 3));
  CHECK(S_ISBLK(lstat_path(s.upper("b")).st_mode));
  CHECK(S_ISSOCK(lstat_path(s.upper("s")).st_mode));
  s.check_tree();
  s.remount();
  s.check_tree({}, "after remount");
}

TEST_CASE("copy-up: a large file keeps every byte") {
  Scenario s({.lowers = {{file("big", pattern(24 << 20, 11))}}});
  s.both("write in the middle", [](const std::string& r) {
    int fd = ::open((r + "/big").c_str(), O_RDWR | O_CLOEXEC);
    if (fd < 0) return errno;
    int e = err_of(::pwrite(fd, "0123456789", 10, 13 << 20));
    ::close(fd);
    return e;
  });
  CHECK(read_file(s.mnt("big")) == read_file(s.ref("big")));
  CHECK(read_file(s.upper("big")) == read_file(s.ref("big")));
}

TEST_CASE("copy-up: concurrent writers to one lower file") {
  constexpr int kThreads = 4;
  constexpr int kBlocks = 64;
  Scenario s({.lowers = {{file("shared", pattern(kBlocks * 4096, 5))}}});
  auto run = [](const std::string& path, bool parallel) {
    auto worker = [&path](int t) {
      int fd = ::open(path.c_str(), O_WRONLY | O_CLOEXEC);
      if (fd < 0) return;
      std::string block(4096, static_cast<char>('A' + t));
      for (int b = t; b < kBlocks; b += kThreads) {
        if (::pwrite(fd, block.data(), block.size(), off_t(b) * 4096) != 4096) break;
      }
      ::close(fd);
    };
    if (parallel) {
      std::vector<std::thread> threads;
      for (int t = 0; t < kThreads; ++t) threads.emplace_back(worker, t);
      for (auto& th : threads) th.join();
    } else {
      for (int t = 0; t < kThreads; ++t) worker(t);
    }
  };
  run(s.mnt("shared"), true);
  run(s.ref("shared"), false);
  std::string got = read_file(s.mnt("shared"));
  CHECK(got.size() == size_t(kBlocks) * 4096);
  CHECK(got == read_file(s.ref("shared")));
  s.remount();
  CHECK(read_file(s.mnt("shared")) == read_file(s.ref("shared")));
}

TEST_CASE("copy-up: creating in a lower directory copies the directory with its attributes") {
  Scenario s({.lowers = {{dir("d", 0751).owner(300, 301).xattr("user.d", "dx").times(kT1),
                          file("d/old", "o")}}});
  s.both("create", [](const std::string& r) { return sys::write(r + "/d/new", "n"); });
  struct stat up = lstat_path(s.upper("d"));
  CHECK((up.st_mode & 07777) == 0751);
  CHECK(up.st_uid == 300);
  CHECK(up.st_gid == 301);
  CHECK(get_xattr(s.upper("d"), "user.d") == std::optional<std::string>("dx"));
  CHECK_FALSE(exists(s.upper("d/old")));
  s.check_tree();
}

TEST_CASE("copy-up: a file opened read-only before the copy-up reads the new data") {
  const std::string data = pattern(1 << 20, 21);
  Scenario s({.lowers = {{file("trunc", data), file("patch", data)}}});
  {
    // The read-only descriptor exists before anything is written.
    Fd ro = open_fd(s.mnt("trunc"), O_RDONLY);
    Fd rw = open_fd(s.mnt("trunc"), O_RDWR);
    REQUIRE(::ftruncate(rw.get(), 0) == 0);
    REQUIRE(::pwrite(rw.get(), "fresh", 5, 0) == 5);
    char buf[64] = {};
    CHECK(::pread(ro.get(), buf, sizeof buf, 0) == 5);
    CHECK(std::string(buf, 5) == "fresh");
    struct stat st;
    REQUIRE(::fstat(ro.get(), &st) == 0);
    CHECK(st.st_size == 5);
  }
  {
    Fd ro = open_fd(s.mnt("patch"), O_RDONLY);
    Fd rw = open_fd(s.mnt("patch"), O_WRONLY);
    REQUIRE(::pwrite(rw.get(), "PATCH", 5, 700000) == 5);
    std::string got(1 << 20, '\0');
    CHECK(::pread(ro.get(), got.data(), got.size(), 0) == static_cast<ssize_t>(got.size()));
    std::string expect = data;
    expect.replace(700000, 5, "PATCH");
    CHECK(got == expect);
  }
}

TEST_CASE("copy-up: a parent's attributes after a copy-up into it are those a remount shows") {
  LAYERFS_ONLY("the merged view's ctime of a parent of a copy-up");
  Scenario s(
      {.lowers = {{dir("d"), file("d/a", "a"), dir("e"), file("e/f", "f")}}, .reference = false});
  struct stat before;
  REQUIRE(::lstat(s.mnt().c_str(), &before) == 0);  // cached by the kernel from here on
  ::usleep(20000);
  // A directory copied up into the root (a new name in it), and a file
  // copied up into e.
  REQUIRE(sys::write(s.mnt("d/b"), "b") == 0);
  REQUIRE(sys::write(s.mnt("e/f"), "+", O_WRONLY | O_APPEND) == 0);
  struct stat root, e;
  REQUIRE(::lstat(s.mnt().c_str(), &root) == 0);
  REQUIRE(::lstat(s.mnt("e").c_str(), &e) == 0);
  s.remount();
  struct stat root2, e2;
  REQUIRE(::lstat(s.mnt().c_str(), &root2) == 0);
  REQUIRE(::lstat(s.mnt("e").c_str(), &e2) == 0);
  CHECK(root.st_ctim.tv_sec == root2.st_ctim.tv_sec);
  CHECK(root.st_ctim.tv_nsec == root2.st_ctim.tv_nsec);
  CHECK(root.st_mtim.tv_nsec == root2.st_mtim.tv_nsec);
  CHECK(e.st_ctim.tv_sec == e2.st_ctim.tv_sec);
  CHECK(e.st_ctim.tv_nsec == e2.st_ctim.tv_nsec);
  // The copy-ups did not change what the merged root says it was modified.
  CHECK(root2.st_mtim.tv_sec == before.st_mtim.tv_sec);
  CHECK(root2.st_mtim.tv_nsec == before.st_mtim.tv_nsec);
}
