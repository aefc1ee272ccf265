// Tests for fs/fd_cache.cpp: the LRU bound on cached fds, pins that keep an
// evicted fd open, reopening by file handle, fds pinned forever, the budget
// derived from RLIMIT_NOFILE, and the merge core running with a tiny cache.
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <thread>

#include "fs/fd_cache.h"
#include "tests/fs/core_fixture.h"

namespace layerfs {
namespace {

using namespace coretest;

bool fd_open(int fd) {
  return ::fcntl(fd, F_GETFD) >= 0;
}

ino_t ino_of(int fd) {
  struct stat st;
  REQUIRE(::fstat(fd, &st) == 0);
  return st.st_ino;
}

// A readable root (open_by_handle_at refuses O_PATH mount fds) and its probe.
struct Root {
  explicit Root(const std::string& path)
      : fd(::open(path.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC)),
        mount(probe_handle_mount(fd.get())) {
    REQUIRE(fd.valid());
  }
  UniqueFd fd;
  HandleMount mount;
};

UniqueFd open_path(const std::string& path, int flags = O_PATH | O_NOFOLLOW) {
  int fd = ::open(path.c_str(), flags | O_CLOEXEC);
  REQUIRE_MESSAGE(fd >= 0, path, ": ", strerror(errno));
  return UniqueFd(fd);
}

TEST_CASE("the budget is half the fd limit minus a reserve, within bounds") {
  CHECK(fd_budget_for_limit(512) == 256 - 64);
  CHECK(fd_budget_for_limit(20000) == 10000 - 64);
  CHECK(fd_budget_for_limit(1 << 20) == 16384);
  CHECK(fd_budget_for_limit(64) == 16);
  CHECK(fd_budget_for_limit(0) == 16);
}

TEST_CASE("handles work on the test filesystem as root") {
  needs_root();
  TempDir d;
  Root r(d.path());
  CHECK(r.mount.usable());
  // An O_PATH fd is refused as the mount fd: probing it reports "unusable".
  UniqueFd opath = open_path(d.path(), O_PATH | O_DIRECTORY);
  CHECK_FALSE(probe_handle_mount(opath.get()).usable());
}

TEST_CASE("the cache keeps at most its capacity and reopens evicted fds by handle") {
  needs_root();
  TempDir d;
  Root r(d.path());
  REQUIRE(r.mount.usable());
  FdCache cache(3);
  std::vector<ReopenableFd> objs;
  std::vector<ino_t> inos;
  for (int i = 0; i < 10; ++i) {
    std::string p = d.path() + "/f" + std::to_string(i);
    write_file(p, std::to_string(i));
    UniqueFd fd = open_path(p);
    inos.push_back(ino_of(fd.get()));
    objs.push_back(ReopenableFd::make(std::move(fd), O_PATH | O_NOFOLLOW, r.mount, &cache));
    CHECK(objs.back().reopenable());
    CHECK(cache.cached() <= 3);
  }
  CHECK(cache.cached() == 3);
  const uint64_t reopens = cache.reopens();
  // Every object is still reachable, as itself.
  for (int i = 0; i < 10; ++i) {
    FdPin p = MUST(objs[i].pin());
    CHECK(ino_of(p.get()) == inos[i]);
    CHECK(cache.cached() <= 3);
  }
  CHECK(cache.reopens() > reopens);
  // The most recently used stay: pinning them again opens nothing.
  const uint64_t after = cache.reopens();
  for (int i = 7; i < 10; ++i) MUST(objs[i].pin());
  CHECK(cache.reopens() == after);
  // Destroying owners empties the cache.
  objs.clear();
  CHECK(cache.cached() == 0);
}

TEST_CASE("a pin keeps its fd open after the cache evicts it") {
  needs_root();
  TempDir d;
  Root r(d.path());
  REQUIRE(r.mount.usable());
  write_file(d.path() + "/a", "a");
  write_file(d.path() + "/b", "b");
  FdCache cache(1);
  auto a = ReopenableFd::make(open_path(d.path() + "/a"), O_PATH | O_NOFOLLOW, r.mount, &cache);
  FdPin pa = MUST(a.pin());
  const int raw = pa.get();
  auto b = ReopenableFd::make(open_path(d.path() + "/b"), O_PATH | O_NOFOLLOW, r.mount, &cache);
  CHECK(cache.cached() == 1);  // a was evicted...
  CHECK(fd_open(raw));         // ...but its fd lives while pinned
  CHECK(ino_of(pa.get()) == lstat_of(d.path() + "/a").st_ino);
  pa = FdPin();
  CHECK_FALSE(fd_open(raw));  // closed with the last reference
}

TEST_CASE("an fd pinned forever is never evicted and survives unlinking") {
  needs_root();
  TempDir d;
  Root r(d.path());
  REQUIRE(r.mount.usable());
  write_file(d.path() + "/keep", "k");
  FdCache cache(1);
  auto keep =
      ReopenableFd::make(open_path(d.path() + "/keep"), O_PATH | O_NOFOLLOW, r.mount, &cache);
  const ino_t ino = lstat_of(d.path() + "/keep").st_ino;
  MUST(keep.pin_forever());
  CHECK(cache.cached() == 0);  // outside the LRU
  REQUIRE(::unlink((d.path() + "/keep").c_str()) == 0);
  std::vector<ReopenableFd> others;
  for (int i = 0; i < 5; ++i) {
    std::string p = d.path() + "/o" + std::to_string(i);
    write_file(p, "o");
    others.push_back(ReopenableFd::make(open_path(p), O_PATH | O_NOFOLLOW, r.mount, &cache));
  }
  FdPin p = MUST(keep.pin());
  CHECK(ino_of(p.get()) == ino);
  struct stat st;
  REQUIRE(::fstat(p.get(), &st) == 0);
  CHECK(st.st_nlink == 0);
}

TEST_CASE("without usable handles the fd is pinned for the owner's life") {
  TempDir d;
  write_file(d.path() + "/f", "x");
  FdCache cache(1);
  UniqueFd fd = open_path(d.path() + "/f");
  const int raw = fd.get();
  {
    auto r = ReopenableFd::make(std::move(fd), O_PATH | O_NOFOLLOW, HandleMount{}, &cache);
    CHECK_FALSE(r.reopenable());
    CHECK(cache.cached() == 0);
    CHECK(MUST(r.pin()).get() == raw);
    CHECK(fd_open(raw));
  }
  CHECK_FALSE(fd_open(raw));
  ReopenableFd empty;
  CHECK(empty.pin().error() == EBADF);
}

TEST_CASE("directories and symlinks reopen by handle too") {
  needs_root();
  TempDir d;
  Root r(d.path());
  REQUIRE(r.mount.usable());
  make_dir(d.path() + "/dir");
  write_file(d.path() + "/dir/x", "x");
  make_symlink("/nowhere", d.path() + "/link");
  FdCache cache(0);  // nothing stays cached: every pin reopens
  auto dir = ReopenableFd::make(open_path(d.path() + "/dir", O_PATH | O_DIRECTORY),
                                O_PATH | O_DIRECTORY, r.mount, &cache);
  auto link =
      ReopenableFd::make(open_path(d.path() + "/link"), O_PATH | O_NOFOLLOW, r.mount, &cache);
  FdPin dp = MUST(dir.pin());
  struct stat st;
  CHECK(::fstatat(dp.get(), "x", &st, AT_SYMLINK_NOFOLLOW) == 0);
  FdPin lp = MUST(link.pin());
  REQUIRE(::fstat(lp.get(), &st) == 0);
  CHECK(S_ISLNK(st.st_mode));
  CHECK(cache.cached() == 0);
}

TEST_CASE("threads pinning, evicting and dropping one cache agree") {
  needs_root();
  TempDir d;
  Root r(d.path());
  REQUIRE(r.mount.usable());
  FdCache cache(4);
  std::vector<ReopenableFd> objs;
  std::vector<ino_t> inos;
  for (int i = 0; i < 32; ++i) {
    std::string p = d.path() + "/f" + std::to_string(i);
    write_file(p, "x");
    inos.push_back(lstat_of(p).st_ino);
    objs.push_back(ReopenableFd::make(open_path(p), O_PATH | O_NOFOLLOW, r.mount, &cache));
  }
  std::atomic<int> wrong{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&, t] {
      for (int k = 0; k < 2000; ++k) {
        size_t i = static_cast<size_t>((k * 7 + t * 13) % 32);
        auto p = objs[i].pin();
        struct stat st;
        if (!p.ok() || ::fstat(p->get(), &st) != 0 || st.st_ino != inos[i]) ++wrong;
      }
    });
  }
  for (auto& th : threads) th.join();
  CHECK(wrong.load() == 0);
  CHECK(cache.cached() <= 4);
}

// The merge core with the process's cache shrunk to a few fds: every Inode's
// upper and lower fds are evicted and reopened all the time.
TEST_CASE("the merge works with a process fd cache of four") {
  needs_root();
  struct Restore {
    size_t old = FdCache::process().capacity();
    ~Restore() { FdCache::process().set_capacity(old); }
  } restore;
  Stack s(2);
  for (int i = 0; i < 20; ++i) {
    write_file(s.L(2, "d" + std::to_string(i) + "/f"), "lower" + std::to_string(i));
    write_file(s.L(1, "d" + std::to_string(i) + "/g"), "top" + std::to_string(i));
  }
  s.open();
  FdCache::process().set_capacity(4);
  for (int i = 0; i < 20; ++i) {
    const std::string d = "d" + std::to_string(i);
    CHECK(s.names(d) == std::vector<std::string>{"f", "g"});
    CHECK(fs_read(s.fs(), s.get(d + "/f")) == "lower" + std::to_string(i));
    s.write(d + "/f", "new" + std::to_string(i));  // copy-up of d and f
    auto created = MUST(s.fs().create(s.get(d), "h", 0644, O_WRONLY, Caller{0, 0}));
    write_handle(s.fs(), *created.handle, "h" + std::to_string(i));
    CHECK(FdCache::process().cached() <= 4);
  }
  for (int i = 0; i < 20; ++i) {
    const std::string d = "d" + std::to_string(i);
    CHECK(s.names(d) == std::vector<std::string>{"f", "g", "h"});
    CHECK(fs_read(s.fs(), s.get(d + "/f")).rfind("new" + std::to_string(i), 0) == 0);
    CHECK(fs_read(s.fs(), s.get(d + "/h")) == "h" + std::to_string(i));
    MUST(s.fs().rename(s.get(d), "h", s.get("d0"), "h" + std::to_string(i), 0));
  }
  // Unlinked while open: the handle and the Inode still reach the object.
  InodePtr victim = s.get("d0/h5");
  auto fh = MUST(s.fs().open(victim, O_RDONLY));
  MUST(s.fs().unlink(s.get("d0"), "h5"));
  for (int i = 0; i < 20; ++i) s.names("d" + std::to_string(i));  // churn the cache
  CHECK(MUST(s.fs().getattr(victim)).st_nlink == 0);
  CHECK(read_handle(s.fs(), *fh) == "h5");
  CHECK(FdCache::process().cached() <= 4);
}

}  // namespace
}  // namespace layerfs
