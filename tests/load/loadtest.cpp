// layerfs_loadtest: many clients racing on one layerfs mount (issue 6, "Load"). See README.md.
//
//   layerfs_loadtest [--clients N] [--seconds S] [--seed N] [--stall-seconds S] [--keep-going]
//
// Mounts layerfs over three lowers holding a few thousand files, then N client threads do mixed
// operations on the same few directories and names for S seconds, so that they race: copy-ups,
// creates and unlinks, renames of files and of lower directories, links, xattrs, truncates and
// fsyncs. It fails when
//  - an operation fails with an errno the race does not explain (each operation has its list:
//    ENOENT when a name went away, EEXIST when one appeared, ENOTEMPTY, ELOOP through symlinks
//    between the racing names); EIO, EBADF, ESTALE, ENOTCONN and the like are failures;
//  - no operation completes for --stall-seconds (default 30): a deadlock. The daemon's thread
//    stacks are dumped (gdb -batch -p PID) and the daemon is killed so that the clients return;
//  - the daemon's open fds or RSS, measured after the kernel has been made to forget its inodes
//    (drop_caches), are not back near the baseline measured the same way before the load;
//  - the unmount is not clean (the daemon must exit with status 0).
//
// It runs inside one doctest case so that the mount harness (tests/support) reports its own
// problems as in the mounted tests.
#define DOCTEST_CONFIG_IMPLEMENT
#include <dirent.h>
#include <doctest/doctest.h>
#include <fcntl.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/xattr.h>
#include <unistd.h>

#include <array>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <map>
#include <memory>
#include <mutex>
#include <random>
#include <set>
#include <sstream>
#include <string>
#include <thread>
#include <type_traits>
#include <vector>

#include "tests/support/mount.h"
#include "tests/support/tmptree.h"
#include "tests/support/tree.h"
#include "tests/support/can_mount.h"

namespace {

using namespace layerfs::test;
using Clock = std::chrono::steady_clock;

struct Config {
  unsigned clients = 8;
  unsigned seconds = 15;
  unsigned warmup_seconds = 2;
  unsigned stall_seconds = 30;
  uint64_t seed = 0;
  bool drop_caches = true;
};
Config g_config;

// ---- The namespace the clients race on ---------------------------------------------------------
//
// Directories d0..d3 exist in every lower and are never removed. In them: files f0..f47 and
// subdirectories s0..s5 (s0..s3 come from the lowers, with files in them), whose files are f0..f47
// again, and e0..e3, directories no file is created in (a rename may still move an s one there). A
// file name only ever names a file or a symlink to a file name of the same directory, and an s name
// only ever a directory, so EISDIR and ENOTDIR are never explained by the race.
constexpr int kDirs = 4;
constexpr int kFileNames = 48;
constexpr int kSubdirNames = 6;
constexpr int kLowerSubdirs = 4;
constexpr int kEmptyDirNames = 4;
constexpr int kBulkFiles = 1500;
constexpr off_t kMaxOffset = 128 * 1024;

enum Op {
  kStat,
  kReaddir,
  kRead,
  kWrite,
  kAppend,
  kCreate,
  kUnlink,
  kRename,
  kMkdir,
  kRmdir,
  kRenameDir,
  kLink,
  kSymlink,
  kSetxattr,
  kGetxattr,
  kTruncate,
  kFsync,
  kChmod,
  kCopyUp,
  kOpCount
};
constexpr std::array<const char*, kOpCount> kOpNames = {
    "stat",     "readdir",  "read",  "write",      "append", "create",  "unlink",
    "rename",   "mkdir",    "rmdir", "rename-dir", "link",   "symlink", "setxattr",
    "getxattr", "truncate", "fsync", "chmod",      "copy-up"};
// How often each operation is picked, relative to the others.
constexpr std::array<int, kOpCount> kWeights = {14, 5, 10, 8, 5, 5, 5, 6, 3, 3,
                                                2,  3, 3,  3, 2, 3, 2, 2, 3};

// The errnos a race between the clients explains, per operation.
bool explained(Op op, int err) {
  switch (op) {
    case kCreate:
    case kSymlink:
    case kMkdir:
    case kLink:
      return err == ENOENT || err == EEXIST;
    case kRmdir:
    case kRenameDir:
      return err == ENOENT || err == ENOTEMPTY || err == EEXIST;
    case kRename:
    case kUnlink:
    case kReaddir:
      return err == ENOENT;
    default:
      // Operations that follow symlinks (stat too, half the time): a symlink's target may be gone
      // or be a symlink back.
      return err == ENOENT || err == ELOOP;
  }
}

struct Stats {
  std::array<uint64_t, kOpCount> ok{};
  std::array<std::map<int, uint64_t>, kOpCount> errors{};  // explained ones
  uint64_t unexpected = 0;
  std::vector<std::string> first_unexpected;  // a few, for the report
};

std::atomic<uint64_t> g_completed{0};
std::atomic<bool> g_stop{false};

class Client {
 public:
  Client(std::string root, uint64_t seed) : root_(std::move(root)), rng_(seed) {
    weight_total_ = 0;
    for (int w : kWeights) weight_total_ += w;
    buf_.resize(16 * 1024);
    for (size_t i = 0; i < buf_.size(); ++i) buf_[i] = static_cast<char>('a' + i % 26);
  }

  void run() {
    while (!g_stop.load(std::memory_order_relaxed)) step();
  }
  const Stats& stats() const { return stats_; }

 private:
  uint64_t pick(uint64_t n) { return std::uniform_int_distribution<uint64_t>(0, n - 1)(rng_); }
  std::string dir() { return "d" + std::to_string(pick(kDirs)); }
  std::string subdir() { return dir() + "/s" + std::to_string(pick(kSubdirNames)); }
  // For mkdir, rmdir and directory renames: mostly e names, which no file is ever created in, so
  // that directories are emptied and removed too, sometimes the s names, which hold files.
  std::string any_subdir() {
    return pick(10) < 7 ? dir() + "/e" + std::to_string(pick(kEmptyDirNames)) : subdir();
  }
  // A directory that holds file names: a top directory, or now and then one of its subdirectories.
  std::string file_dir() { return pick(10) < 3 ? subdir() : dir(); }
  std::string file_name() { return "f" + std::to_string(pick(kFileNames)); }
  std::string file() { return file_dir() + "/" + file_name(); }
  std::string full(const std::string& rel) const { return root_ + "/" + rel; }

  static int err_of(int r) { return r < 0 ? errno : 0; }

  int open_write(const std::string& rel, int flags, std::string* detail) {
    (void)detail;
    int fd = ::open(full(rel).c_str(), flags | O_CLOEXEC, 0644);
    if (fd < 0) return errno;
    return -fd - 1;  // caller decodes: a negative result is an fd
  }

  // Closes fd and returns the errno of the first failure (the step's or close's).
  static int finish(int fd, int err, std::string* detail, const char* step) {
    if (err != 0) *detail = step;
    if (::close(fd) != 0 && err == 0) {
      *detail = "close";
      err = errno;
    }
    return err;
  }

  int do_op(Op op, std::string* what, std::string* detail) {
    switch (op) {
      case kStat: {
        std::string p = pick(10) < 2 ? "bulk/b" + std::to_string(pick(kBulkFiles)) : file();
        *what = p;
        struct stat st;
        return err_of(pick(2) ? ::lstat(full(p).c_str(), &st) : ::stat(full(p).c_str(), &st));
      }
      case kReaddir: {
        std::string p = pick(10) == 0 ? "bulk" : (pick(2) ? dir() : subdir());
        *what = p;
        DIR* d = ::opendir(full(p).c_str());
        if (!d) return errno;
        errno = 0;
        while (::readdir(d) != nullptr) {
        }
        int err = errno;
        if (err) *detail = "readdir";
        ::closedir(d);
        return err;
      }
      case kRead: {
        std::string p = file();
        *what = p;
        int fd = ::open(full(p).c_str(), O_RDONLY | O_CLOEXEC);
        if (fd < 0) return errno;
        ssize_t n;
        while ((n = ::read(fd, buf_.data(), buf_.size())) > 0) {
        }
        return finish(fd, n < 0 ? errno : 0, detail, "read");
      }
      case kWrite:
      case kAppend:
      case kFsync: {
        std::string p = file();
        *what = p;
        int flags = O_WRONLY | O_CREAT | (op == kAppend ? O_APPEND : 0);
        int r = open_write(p, flags, detail);
        if (r >= 0) return r;
        int fd = -r - 1;
        size_t len = 1 + pick(8 * 1024);
        ssize_t n = op == kAppend
                        ? ::write(fd, buf_.data(), len)
                        : ::pwrite(fd, buf_.data(), len, static_cast<off_t>(pick(kMaxOffset)));
        if (n < 0) return finish(fd, errno, detail, "write");
        if (op == kFsync && ::fsync(fd) != 0) return finish(fd, errno, detail, "fsync");
        return finish(fd, 0, detail, "");
      }
      case kCreate: {
        std::string p = file();
        *what = p;
        int r = open_write(p, O_WRONLY | O_CREAT | O_EXCL, detail);
        if (r >= 0) return r;
        int fd = -r - 1;
        ssize_t n = ::write(fd, buf_.data(), 1 + pick(512));
        return finish(fd, n < 0 ? errno : 0, detail, "write");
      }
      case kUnlink: {
        std::string p = file();
        *what = p;
        return err_of(::unlink(full(p).c_str()));
      }
      case kRename: {
        std::string a = file(), b = file();
        *what = a + " -> " + b;
        return err_of(::rename(full(a).c_str(), full(b).c_str()));
      }
      case kMkdir: {
        std::string p = any_subdir();
        *what = p;
        return err_of(::mkdir(full(p).c_str(), 0755));
      }
      case kRmdir: {
        std::string p = any_subdir();
        *what = p;
        // Half the time as `rm -r` does it: the entries first (only files are ever in there).
        if (pick(2) == 0) {
          std::vector<std::string> names;
          if (DIR* d = ::opendir(full(p).c_str())) {
            while (struct dirent* e = ::readdir(d)) {
              if (std::strcmp(e->d_name, ".") != 0 && std::strcmp(e->d_name, "..") != 0) {
                names.push_back(e->d_name);
              }
            }
            ::closedir(d);
          }
          for (const auto& n : names) {
            if (::unlink(full(p + "/" + n).c_str()) != 0 && errno != ENOENT) {
              *detail = "unlink " + n;
              return errno;
            }
          }
        }
        return err_of(::rmdir(full(p).c_str()));
      }
      case kRenameDir: {
        std::string a = any_subdir(), b = any_subdir();
        *what = a + " -> " + b;
        return err_of(::rename(full(a).c_str(), full(b).c_str()));
      }
      case kLink: {
        std::string a = file(), b = file();
        *what = a + " => " + b;
        return err_of(::link(full(a).c_str(), full(b).c_str()));
      }
      case kSymlink: {
        std::string p = file();
        std::string target = file_name();
        *what = p + " -> " + target;
        return err_of(::symlink(target.c_str(), full(p).c_str()));
      }
      case kSetxattr: {
        std::string p = file();
        *what = p;
        std::string v = std::to_string(pick(1000000));
        return err_of(::setxattr(full(p).c_str(), "user.load", v.data(), v.size(), 0));
      }
      case kGetxattr: {
        std::string p = file();
        *what = p;
        char list[256];
        if (::listxattr(full(p).c_str(), list, sizeof list) < 0) return errno;
        char v[64];
        ssize_t n = ::getxattr(full(p).c_str(), "user.load", v, sizeof v);
        // ENODATA: this file has none.
        return n < 0 && errno != ENODATA ? errno : 0;
      }
      case kTruncate: {
        std::string p = file();
        *what = p;
        return err_of(::truncate(full(p).c_str(), static_cast<off_t>(pick(kMaxOffset))));
      }
      case kChmod: {
        std::string p = file();
        *what = p;
        return err_of(::chmod(full(p).c_str(), pick(2) ? 0644 : 0600));
      }
      case kCopyUp: {
        // Opening for writing copies a lower file up, even when nothing is written.
        std::string p = file();
        *what = p;
        int fd = ::open(full(p).c_str(), O_RDWR | O_CLOEXEC);
        if (fd < 0) return errno;
        struct stat st;
        return finish(fd, ::fstat(fd, &st) != 0 ? errno : 0, detail, "fstat");
      }
      case kOpCount:
        break;
    }
    return 0;
  }

  void step() {
    uint64_t r = pick(static_cast<uint64_t>(weight_total_));
    int op = 0;
    while (r >= static_cast<uint64_t>(kWeights[op])) r -= kWeights[op++];
    std::string what, detail;
    int err = do_op(static_cast<Op>(op), &what, &detail);
    g_completed.fetch_add(1, std::memory_order_relaxed);
    if (err == 0) {
      ++stats_.ok[op];
    } else if (detail.empty() && explained(static_cast<Op>(op), err)) {
      ++stats_.errors[op][err];
    } else {
      ++stats_.unexpected;
      if (stats_.first_unexpected.size() < 10) {
        stats_.first_unexpected.push_back(std::string(kOpNames[op]) + " " + what +
                                          (detail.empty() ? "" : " (" + detail + ")") + ": " +
                                          errno_name(err));
      }
    }
  }

  std::string root_;
  std::mt19937_64 rng_;
  int weight_total_;
  std::string buf_;
  Stats stats_;
};

// ---- The daemon's resources --------------------------------------------------------------------

// libfuse's per-worker-thread descriptors: /dev/fuse clones (clone_fd) and splice pipes.
bool per_thread_fd(const std::string& target) {
  return target == "/dev/fuse" || target.rfind("pipe:", 0) == 0;
}

struct Usage {
  unsigned fds = 0;
  unsigned per_thread_fds = 0;                 // of those, per_thread_fd()'s
  std::map<std::string, unsigned> fd_targets;  // readlink of /proc/PID/fd/N, counted
  unsigned long rss_kib = 0;
  unsigned threads = 0;
};

Usage usage_of(pid_t pid) {
  Usage u;
  std::string fd_dir = "/proc/" + std::to_string(pid) + "/fd";
  if (DIR* d = ::opendir(fd_dir.c_str())) {
    while (struct dirent* e = ::readdir(d)) {
      if (e->d_name[0] == '.') continue;
      ++u.fds;
      char target[4096];
      ssize_t n = ::readlinkat(::dirfd(d), e->d_name, target, sizeof target - 1);
      std::string t = n > 0 ? std::string(target, static_cast<size_t>(n)) : "?";
      if (per_thread_fd(t)) ++u.per_thread_fds;
      ++u.fd_targets[t];
    }
    ::closedir(d);
  }
  std::ifstream status("/proc/" + std::to_string(pid) + "/status");
  std::string line;
  while (std::getline(status, line)) {
    if (line.rfind("VmRSS:", 0) == 0) u.rss_kib = std::strtoul(line.c_str() + 6, nullptr, 10);
    if (line.rfind("Threads:", 0) == 0) u.threads = std::strtoul(line.c_str() + 8, nullptr, 10);
  }
  return u;
}

// Makes the kernel forget the mount's inodes (FORGET for each), so the daemon can drop what it
// holds for them, then gives it a moment to do so.
void settle(const std::string& mountpoint) {
  if (g_config.drop_caches) {
    ::sync();
    std::ofstream("/proc/sys/vm/drop_caches") << "2\n";
  }
  (void)mountpoint;
  std::this_thread::sleep_for(std::chrono::seconds(2));
}

std::string describe(const Usage& u) {
  std::ostringstream s;
  s << u.fds << " fds (" << u.per_thread_fds << " per worker thread), RSS " << u.rss_kib / 1024.0
    << " MiB, " << u.threads << " threads";
  return s.str();
}

// ---- The lowers --------------------------------------------------------------------------------

void build_lowers(const TempDir& tmp, std::mt19937_64& rng, std::vector<std::string>* lowers) {
  auto pick = [&](uint64_t n) { return std::uniform_int_distribution<uint64_t>(0, n - 1)(rng); };
  for (int layer = 0; layer < 3; ++layer) {
    std::string root = tmp.mkdir("lower" + std::to_string(layer));
    std::vector<Entry> entries;
    for (int d = 0; d < kDirs; ++d) {
      std::string dir = "d" + std::to_string(d);
      entries.push_back(layerfs::test::dir(dir));
      auto files_in = [&](const std::string& where) {
        for (int f = 0; f < kFileNames; ++f) {
          if (pick(3) == 0) continue;  // each layer has about two thirds of the names
          // Mostly small files; now and then one large enough to make its copy-up take a while.
          size_t size = pick(20) == 0 ? 256 * 1024 + pick(768 * 1024) : pick(16 * 1024);
          entries.push_back(file(where + "/f" + std::to_string(f),
                                 std::string(size, static_cast<char>('A' + layer))));
        }
      };
      files_in(dir);
      for (int s = 0; s < kLowerSubdirs; ++s) {
        std::string sub = dir + "/s" + std::to_string(s);
        entries.push_back(layerfs::test::dir(sub));
        files_in(sub);
      }
    }
    if (layer == 1) {
      // A lower hard-link group and a symlink between names the clients use.
      entries.push_back(file("d2/f40", "linked"));
      entries.push_back(hardlink("d3/f40", "d2/f40"));
      entries.push_back(sym("d0/f45", "f1"));
    }
    if (layer == 2) {
      entries.push_back(layerfs::test::dir("bulk"));
      for (int b = 0; b < kBulkFiles; ++b)
        entries.push_back(file("bulk/b" + std::to_string(b), ""));
    }
    // A name given twice (the hard link's file, say) keeps its last entry: drop earlier ones.
    std::map<std::string, size_t> last;
    for (size_t i = 0; i < entries.size(); ++i) last[entries[i].path()] = i;
    std::vector<Entry> unique;
    for (size_t i = 0; i < entries.size(); ++i) {
      if (last[entries[i].path()] == i) unique.push_back(entries[i]);
    }
    build(root, unique);
    lowers->insert(lowers->begin(), root);  // top-most first: lower2 is on top
  }
}

// ---- The run -----------------------------------------------------------------------------------

void report_stats(const std::vector<Stats>& all, double secs, uint64_t* unexpected) {
  Stats total;
  for (const auto& s : all) {
    for (int op = 0; op < kOpCount; ++op) {
      total.ok[op] += s.ok[op];
      for (auto [e, n] : s.errors[op]) total.errors[op][e] += n;
    }
    total.unexpected += s.unexpected;
    for (const auto& u : s.first_unexpected) {
      if (total.first_unexpected.size() < 20) total.first_unexpected.push_back(u);
    }
  }
  uint64_t ops = 0;
  for (int op = 0; op < kOpCount; ++op) {
    uint64_t n = total.ok[op];
    std::string errs;
    for (auto [e, c] : total.errors[op]) {
      n += c;
      errs += " " + errno_name(e).substr(0, errno_name(e).find(' ')) + "=" + std::to_string(c);
    }
    ops += n;
    std::printf("  %-10s %9llu ok %9llu%s\n", kOpNames[op],
                static_cast<unsigned long long>(total.ok[op]), static_cast<unsigned long long>(n),
                errs.empty() ? "" : ("   explained:" + errs).c_str());
  }
  ops += total.unexpected;
  std::printf("  %llu operations in %.1f s (%.0f/s), %llu unexpected errors\n",
              static_cast<unsigned long long>(ops), secs, ops / (secs > 0 ? secs : 1),
              static_cast<unsigned long long>(total.unexpected));
  for (const auto& u : total.first_unexpected) std::printf("  UNEXPECTED: %s\n", u.c_str());
  *unexpected = total.unexpected;
}

// The full path of `name` found in $PATH, or "" (run_command does not search PATH).
std::string find_in_path(const std::string& name) {
  const char* path = std::getenv("PATH");
  std::stringstream dirs(path ? path : "/usr/bin:/bin");
  std::string dir;
  while (std::getline(dirs, dir, ':')) {
    std::string p = (dir.empty() ? "." : dir) + "/" + name;
    if (::access(p.c_str(), X_OK) == 0) return p;
  }
  return "";
}

// What each of the daemon's threads waits in (the kernel's wchan) and their stacks from gdb.
std::string thread_stacks(pid_t pid) {
  std::string out;
  std::string task_dir = "/proc/" + std::to_string(pid) + "/task";
  if (DIR* d = ::opendir(task_dir.c_str())) {
    while (struct dirent* e = ::readdir(d)) {
      if (e->d_name[0] == '.') continue;
      std::ifstream comm(task_dir + "/" + e->d_name + "/comm"),
          wchan(task_dir + "/" + e->d_name + "/wchan");
      std::string c, w;
      std::getline(comm, c);
      std::getline(wchan, w);
      out += "  thread " + std::string(e->d_name) + " (" + c + ") waits in " +
             (w.empty() ? "?" : w) + "\n";
    }
    ::closedir(d);
  }
  std::string gdb = find_in_path("gdb");
  if (gdb.empty()) return out + "  (gdb is not installed: no user-space stacks)\n";
  CmdResult r =
      run_command({gdb, "-batch", "-p", std::to_string(pid), "-ex", "thread apply all bt"},
                  std::chrono::seconds(120));
  return out + r.out + r.err;
}

// Runs the clients for `seconds`, with the watchdog. Returns false on a stall (a deadlock).
bool run_clients(const Mount& m, unsigned seconds, uint64_t seed, std::vector<Stats>* stats,
                 std::string* stall_report) {
  g_stop = false;
  std::vector<std::unique_ptr<Client>> clients;
  for (unsigned i = 0; i < g_config.clients; ++i) {
    clients.push_back(std::make_unique<Client>(m.path(), seed * 1000003 + i));
  }
  std::vector<std::thread> threads;
  for (auto& c : clients) threads.emplace_back([&c] { c->run(); });

  std::atomic<bool> done{false};
  bool stalled = false;
  std::thread watchdog([&] {
    const auto start = Clock::now();
    auto last_progress = start;
    auto last_print = start;
    uint64_t last = g_completed.load();
    uint64_t printed = last;
    while (!done) {
      std::this_thread::sleep_for(std::chrono::milliseconds(200));
      auto now = Clock::now();
      uint64_t c = g_completed.load();
      if (c != last) {
        last = c;
        last_progress = now;
      }
      if (!g_stop && now - start >= std::chrono::seconds(seconds)) g_stop = true;
      if (now - last_print >= std::chrono::seconds(5)) {
        double dt = std::chrono::duration<double>(now - last_print).count();
        std::printf("  %.0f s: %.0f operations/s\n",
                    std::chrono::duration<double>(now - start).count(), (c - printed) / dt);
        std::fflush(stdout);
        last_print = now;
        printed = c;
      }
      if (now - last_progress >= std::chrono::seconds(g_config.stall_seconds)) {
        stalled = true;
        std::printf("  no operation completed for %u s: deadlock? the daemon's threads:\n",
                    g_config.stall_seconds);
        std::fflush(stdout);
        *stall_report = thread_stacks(m.daemon_pid());
        std::printf("%s\n", stall_report->c_str());
        std::fflush(stdout);
        // Killing the daemon aborts the FUSE connection, so the blocked clients return.
        g_stop = true;
        ::kill(m.daemon_pid(), SIGKILL);
        return;
      }
    }
  });
  for (auto& t : threads) t.join();
  done = true;
  watchdog.join();
  for (auto& c : clients) stats->push_back(c->stats());
  return !stalled;
}

TEST_CASE("load") {
  const Config& cfg = g_config;
  std::printf("layerfs_loadtest: %u clients, %u s (after %u s of warm-up), seed %llu\n",
              cfg.clients, cfg.seconds, cfg.warmup_seconds,
              static_cast<unsigned long long>(cfg.seed));
  std::fflush(stdout);
  TempDir tmp("layerfs-load");
  std::mt19937_64 rng(cfg.seed);
  MountSpec spec;
  build_lowers(tmp, rng, &spec.lowers);
  spec.upper = tmp.mkdir("upper");
  spec.work = tmp.mkdir("work");
  Mount m(tmp.mkdir("mnt"), spec);
  const pid_t pid = m.daemon_pid();

  // Warm-up: the daemon's allocator arenas, thread pool and index caches grow to their working
  // size in the first seconds of load. The baseline is taken after that and after the kernel has
  // forgotten the inodes, so that what is compared is what more work leaves behind.
  std::vector<Stats> warm;
  std::string stall;
  bool ok = run_clients(m, cfg.warmup_seconds, cfg.seed + 1, &warm, &stall);
  REQUIRE_MESSAGE(ok, "the warm-up stalled (deadlock); the daemon's threads:\n" << stall);
  settle(m.path());
  const Usage before = usage_of(pid);
  std::printf("  baseline after warm-up: %s\n", describe(before).c_str());
  std::fflush(stdout);

  std::vector<Stats> stats;
  auto start = Clock::now();
  ok = run_clients(m, cfg.seconds, cfg.seed, &stats, &stall);
  double secs = std::chrono::duration<double>(Clock::now() - start).count();
  uint64_t unexpected = 0;
  report_stats(stats, secs, &unexpected);
  REQUIRE_MESSAGE(ok, "no operation completed for " << cfg.stall_seconds
                                                    << " s (deadlock); the daemon's threads:\n"
                                                    << stall);
  CHECK_MESSAGE(unexpected == 0, unexpected << " operations failed with an errno the race does "
                                               "not explain (seed "
                                            << cfg.seed << "; first ones listed above)");

  const Usage during = usage_of(pid);
  settle(m.path());
  const Usage after = usage_of(pid);
  std::printf("  right after the load: %s\n  after it settled:     %s\n", describe(during).c_str(),
              describe(after).c_str());
  // Tolerances: fds, not counting libfuse's per-worker-thread ones (a /dev/fuse clone and a
  // splice pipe per thread; the pool grows and shrinks with the load), may be 8 more (what the
  // index opens varies by a few between runs); RSS may grow by 16 MiB plus a quarter of the
  // baseline (the allocator keeps some freed memory): a leak of a few hundred bytes per
  // operation exceeds that in a minute of load.
  const unsigned fd_limit = before.fds - before.per_thread_fds + 8;
  const unsigned long rss_limit_kib = before.rss_kib + 16 * 1024 + before.rss_kib / 4;
  std::printf("  limits: %u fds, RSS %.1f MiB\n", fd_limit, rss_limit_kib / 1024.0);
  std::fflush(stdout);
  std::string new_fds;
  unsigned per_thread = 0;
  for (const auto& [target, n] : after.fd_targets) {
    if (per_thread_fd(target)) per_thread += n;
    auto it = before.fd_targets.find(target);
    unsigned had = it == before.fd_targets.end() ? 0 : it->second;
    if (n > had) new_fds += "\n    " + std::to_string(n - had) + " more: " + target;
  }
  CHECK_MESSAGE(after.fds - per_thread <= fd_limit,
                "the daemon holds " << after.fds - per_thread << " fds after the load, "
                                    << before.fds - before.per_thread_fds << " before:" << new_fds);
  CHECK_MESSAGE(after.rss_kib <= rss_limit_kib, "the daemon's RSS is "
                                                    << after.rss_kib << " KiB after the load, "
                                                    << before.rss_kib << " KiB before");

  // The merged view the load left must read back whole (every listed name can be opened) and
  // be the same after a remount: names, types, contents, modes, xattrs, st_ino and link counts.
  const Snapshot left = scan_tree(m.path());
  REQUIRE(m.unmount());
  CHECK_MESSAGE(m.exit_status() == 0, "the daemon exited with status " << m.exit_status() << "\n"
                                                                       << m.log());
  std::printf("  unmounted, daemon exit status %d; %zu names in the merged view\n", m.exit_status(),
              left.size());
  Mount again(m.path(), spec);
  CompareOptions same = strict_compare();
  same.inodes = true;
  same.nlink = true;
  const std::string diff =
      diff_trees(left, scan_tree(again.path()), same, "after the load", "after a remount");
  CHECK_MESSAGE(diff.empty(), "the merged view changed across a remount:\n" << diff);
  REQUIRE(again.unmount());
  CHECK(again.exit_status() == 0);
  std::printf("  remounted: %s\n", diff.empty() ? "the same merged view" : "DIFFERENT");
}

bool parse_u64(const char* s, uint64_t& out) {
  char* end = nullptr;
  errno = 0;
  unsigned long long v = std::strtoull(s, &end, 10);
  if (errno != 0 || !end || *end != '\0' || *s == '\0' || *s == '-') return false;
  out = v;
  return true;
}

void usage(FILE* to) {
  std::fprintf(to,
               "usage: layerfs_loadtest [--clients N] [--seconds S] [--warmup S] [--seed N]\n"
               "                        [--stall-seconds S] [--no-drop-caches]\n"
               "  --clients N        client threads (default 8)\n"
               "  --seconds S        seconds of load (default 15)\n"
               "  --warmup S         seconds of load before the baseline (default 2)\n"
               "  --seed N           seed of the operation mix and the lowers (default: clock)\n"
               "  --stall-seconds S  a deadlock when no operation completes for S s (default 30)\n"
               "  --no-drop-caches   do not write /proc/sys/vm/drop_caches before measuring\n"
               "Needs root and /dev/fuse. LAYERFS_BIN selects the layerfs binary to test.\n");
}

}  // namespace

int main(int argc, char** argv) {
  g_config.seed = static_cast<uint64_t>(
      std::chrono::system_clock::now().time_since_epoch().count() % 1000000007);
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    auto value = [&](auto& out) {
      uint64_t v = 0;
      if (i + 1 >= argc || !parse_u64(argv[i + 1], v) || v > 1000000000) {
        std::fprintf(stderr, "layerfs_loadtest: %s needs a non-negative number\n", a.c_str());
        std::exit(2);
      }
      out = static_cast<std::remove_reference_t<decltype(out)>>(v);
      ++i;
    };
    if (a == "--clients") {
      value(g_config.clients);
    } else if (a == "--seconds") {
      value(g_config.seconds);
    } else if (a == "--warmup") {
      value(g_config.warmup_seconds);
    } else if (a == "--seed") {
      value(g_config.seed);
    } else if (a == "--stall-seconds") {
      value(g_config.stall_seconds);
    } else if (a == "--no-drop-caches") {
      g_config.drop_caches = false;
    } else if (a == "--help" || a == "-h") {
      usage(stdout);
      return 0;
    } else {
      std::fprintf(stderr, "layerfs_loadtest: unknown argument %s\n", a.c_str());
      usage(stderr);
      return 2;
    }
  }
  if (g_config.clients == 0 || g_config.stall_seconds == 0) {
    std::fprintf(stderr, "layerfs_loadtest: --clients and --stall-seconds must be at least 1\n");
    return 2;
  }
  if (int rc = check_can_mount("layerfs_loadtest")) return rc;
  doctest::Context ctx;
  ctx.setOption("no-path-filenames", true);
  return ctx.run();
}
