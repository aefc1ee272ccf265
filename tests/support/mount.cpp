// Mounting layerfs (or kernel overlayfs) for the mounted tests, and running the layerfs command
// (see mount.h).
#include "tests/support/mount.h"

#include <doctest/doctest.h>
#include <fcntl.h>
#include <linux/capability.h>
#include <poll.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <climits>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <stdexcept>
#include <thread>

#ifndef LAYERFS_BUILD_BINARY
#define LAYERFS_BUILD_BINARY "layerfs"
#endif

namespace layerfs::test {

using Clock = std::chrono::steady_clock;
using namespace std::chrono_literals;

namespace {

constexpr auto kMountTimeout = 10s;
constexpr auto kBusyRetry = 2s;
constexpr auto kExitTimeout = 10s;
constexpr auto kPoll = 5ms;

std::string escape(const std::string& s, const char* specials) {
  std::string out;
  for (char c : s) {
    if (c == '\\' || std::strchr(specials, c)) out += '\\';
    out += c;
  }
  return out;
}

std::string canonical_or_same(const std::string& p) {
  char buf[PATH_MAX];
  if (::realpath(p.c_str(), buf)) return buf;
  return p;
}

std::string join_args(const std::vector<std::string>& argv) {
  std::string out;
  for (const auto& a : argv) out += (out.empty() ? "" : " ") + a;
  return out;
}

std::string describe_status(int status) {
  if (WIFEXITED(status)) return "exit " + std::to_string(WEXITSTATUS(status));
  if (WIFSIGNALED(status)) {
    return std::string("signal ") + std::to_string(WTERMSIG(status)) + " (" +
           strsignal(WTERMSIG(status)) + ")";
  }
  return "status " + std::to_string(status);
}

int status_code(int status) {
  if (WIFEXITED(status)) return WEXITSTATUS(status);
  if (WIFSIGNALED(status)) return 128 + WTERMSIG(status);
  return -1;
}

std::vector<char*> c_argv(std::vector<std::string>& argv) {
  std::vector<char*> out;
  for (auto& a : argv) out.push_back(a.data());
  out.push_back(nullptr);
  return out;
}

// Drains whatever `fd` has right now (non-blocking) into `out`; returns false at EOF.
bool drain(int fd, std::string& out) {
  char buf[8192];
  for (;;) {
    ssize_t n = ::read(fd, buf, sizeof buf);
    if (n > 0) {
      out.append(buf, static_cast<size_t>(n));
      continue;
    }
    if (n == 0) return false;
    if (errno == EINTR) continue;
    return errno == EAGAIN || errno == EWOULDBLOCK;
  }
}

bool process_gone(pid_t pid) {
  if (::kill(pid, 0) != 0 && errno == ESRCH) return true;
  std::ifstream in("/proc/" + std::to_string(pid) + "/stat");
  std::string line;
  if (!std::getline(in, line)) return true;
  auto close = line.rfind(')');
  return close != std::string::npos && close + 2 < line.size() && line[close + 2] == 'Z';
}

// Mount flags kernel overlayfs understands as flags rather than as filesystem options.
bool overlay_flag(const std::string& opt, unsigned long& flags) {
  struct Flag {
    const char* name;
    unsigned long set, clear;
  };
  static const Flag table[] = {
      {"ro", MS_RDONLY, 0},
      {"rw", 0, MS_RDONLY},
      {"nosuid", MS_NOSUID, 0},
      {"suid", 0, MS_NOSUID},
      {"nodev", MS_NODEV, 0},
      {"dev", 0, MS_NODEV},
      {"noexec", MS_NOEXEC, 0},
      {"exec", 0, MS_NOEXEC},
      {"noatime", MS_NOATIME, 0},
      {"atime", 0, MS_NOATIME},
      {"nodiratime", MS_NODIRATIME, 0},
      {"relatime", MS_RELATIME, 0},
      {"strictatime", MS_STRICTATIME, 0},
      {"sync", MS_SYNCHRONOUS, 0},
      {"async", 0, MS_SYNCHRONOUS},
      {"dirsync", MS_DIRSYNC, 0},
  };
  for (const auto& f : table) {
    if (opt == f.name) {
      flags = (flags | f.set) & ~f.clear;
      return true;
    }
  }
  return false;
}

// Options that only mean something to layerfs / FUSE; overlayfs does without them.
bool layerfs_only_option(const std::string& opt) {
  static const char* names[] = {"allow_other",           "allow_root",   "default_permissions",
                                "nodefault_permissions", "auto_unmount", "debug"};
  for (const char* n : names) {
    if (opt == n) return true;
  }
  for (const char* prefix : {"fsname=", "timeout=", "threads=", "subtype="}) {
    if (opt.rfind(prefix, 0) == 0) return true;
  }
  return false;
}

}  // namespace

Impl impl() {
  static const Impl value = [] {
    const char* v = std::getenv("LAYERFS_TEST_IMPL");
    return v && std::string(v) == "overlay" ? Impl::kOverlay : Impl::kLayerfs;
  }();
  return value;
}

// The type is fixed by the contract; the macro only lets a scratch build point the harness at
// another FUSE union to check the harness itself.
#ifndef LAYERFS_TEST_FSTYPE
#define LAYERFS_TEST_FSTYPE "fuse.layerfs"
#endif

std::string expected_fstype() {
  return overlay_mode() ? "overlay" : LAYERFS_TEST_FSTYPE;
}

std::string layerfs_binary() {
  const char* v = std::getenv("LAYERFS_BIN");
  if (v && *v) return v;
  return LAYERFS_BUILD_BINARY;
}

std::vector<std::string> extra_options() {
  std::vector<std::string> out;
  const char* v = std::getenv("LAYERFS_TEST_EXTRA_OPTIONS");
  std::string s = v ? v : "";
  size_t pos = 0;
  while (pos < s.size()) {
    size_t end = s.find(',', pos);
    if (end == std::string::npos) end = s.size();
    if (end > pos) out.push_back(s.substr(pos, end - pos));
    pos = end + 1;
  }
  return out;
}

std::vector<std::string> layerfs_args(const std::string& mountpoint, const MountSpec& spec) {
  std::vector<std::string> args;
  if (spec.source) args.push_back(*spec.source);
  args.push_back(mountpoint);
  std::string opts = "lowerdir=";
  for (size_t i = 0; i < spec.lowers.size(); ++i) {
    if (i) opts += ':';
    opts += escape(spec.lowers[i], ":,");
  }
  if (spec.upper) opts += ",upperdir=" + escape(*spec.upper, ",");
  if (spec.work) opts += ",workdir=" + escape(*spec.work, ",");
  for (const auto& o : spec.options) opts += "," + o;
  args.push_back("-o");
  args.push_back(opts);
  for (const auto& f : spec.flags) args.push_back(f);
  return args;
}

std::string CmdResult::describe() const {
  std::string s = timed_out ? "timed out" : "exit " + std::to_string(exit_code);
  s += "; stdout: " + (out.empty() ? "(empty)" : out);
  s += "; stderr: " + (err.empty() ? "(empty)" : err);
  return s;
}

CmdResult run_command(const std::vector<std::string>& argv_in, std::chrono::milliseconds timeout) {
  std::vector<std::string> argv = argv_in;
  std::vector<char*> cargv = c_argv(argv);
  int out_pipe[2], err_pipe[2];
  if (::pipe2(out_pipe, O_CLOEXEC) != 0) throw_errno("pipe");
  if (::pipe2(err_pipe, O_CLOEXEC) != 0) throw_errno("pipe");
  const pid_t parent = ::getpid();
  pid_t pid = ::fork();
  if (pid < 0) throw_errno("fork");
  if (pid == 0) {
    ::prctl(PR_SET_PDEATHSIG, SIGTERM);
    if (::getppid() != parent) ::_exit(126);
    int devnull = ::open("/dev/null", O_RDONLY);
    if (devnull >= 0) ::dup2(devnull, 0);
    ::dup2(out_pipe[1], 1);
    ::dup2(err_pipe[1], 2);
    ::execv(cargv[0], cargv.data());
    const char msg[] = "exec failed\n";
    ssize_t ignored = ::write(2, msg, sizeof msg - 1);
    (void)ignored;
    ::_exit(127);
  }
  ::close(out_pipe[1]);
  ::close(err_pipe[1]);
  Fd out_fd(out_pipe[0]), err_fd(err_pipe[0]);
  ::fcntl(out_fd.get(), F_SETFL, O_NONBLOCK);
  ::fcntl(err_fd.get(), F_SETFL, O_NONBLOCK);

  CmdResult r;
  const auto deadline = Clock::now() + timeout;
  bool out_open = true, err_open = true;
  int status = 0;
  for (;;) {
    pollfd fds[2] = {{out_fd.get(), POLLIN, 0}, {err_fd.get(), POLLIN, 0}};
    ::poll(fds, 2, 20);
    if (out_open) out_open = drain(out_fd.get(), r.out);
    if (err_open) err_open = drain(err_fd.get(), r.err);
    pid_t w = ::waitpid(pid, &status, WNOHANG);
    if (w == pid) {
      // A daemon left behind may hold the pipes open: take what is there and stop.
      drain(out_fd.get(), r.out);
      drain(err_fd.get(), r.err);
      r.exit_code = status_code(status);
      return r;
    }
    if (Clock::now() > deadline) {
      ::kill(pid, SIGKILL);
      ::waitpid(pid, &status, 0);
      r.timed_out = true;
      r.exit_code = status_code(status);
      return r;
    }
  }
}

CmdResult run_layerfs(const std::vector<std::string>& args, std::chrono::milliseconds timeout) {
  std::vector<std::string> argv{layerfs_binary()};
  argv.insert(argv.end(), args.begin(), args.end());
  return run_command(argv, timeout);
}

std::optional<MountEntry> find_mount(const std::string& path) {
  const std::string canon = canonical_or_same(path);
  std::optional<MountEntry> found;
  for (auto& m : read_mountinfo()) {
    if (m.mountpoint == canon) found = m;  // later lines are mounted on top
  }
  return found;
}

bool is_mounted(const std::string& path) {
  return find_mount(path).has_value();
}

bool unmount_path(const std::string& path, std::string* problem) {
  const auto deadline = Clock::now() + kBusyRetry;
  for (;;) {
    if (::umount2(path.c_str(), 0) == 0) return true;
    int e = errno;
    if (e == EINVAL || e == ENOENT) return true;  // not (or no longer) a mount point
    if (e != EBUSY || Clock::now() > deadline) {
      if (::umount2(path.c_str(), MNT_DETACH) == 0) {
        if (problem)
          *problem = "umount " + path + " failed with " + errno_name(e) + "; detached it lazily";
      } else if (problem) {
        *problem = "umount " + path + " failed with " + errno_name(e) +
                   ", lazily too: " + errno_name(errno);
      }
      return false;
    }
    std::this_thread::sleep_for(10ms);
  }
}

std::vector<pid_t> find_daemons(const std::string& mountpoint) {
  std::vector<pid_t> out;
  const std::string bin = canonical_or_same(layerfs_binary());
  const std::string canon = canonical_or_same(mountpoint);
  std::error_code ec;
  for (const auto& de : std::filesystem::directory_iterator("/proc", ec)) {
    const std::string name = de.path().filename();
    if (name.empty() || name.find_first_not_of("0123456789") != std::string::npos) continue;
    char exe[PATH_MAX];
    ssize_t n = ::readlink(("/proc/" + name + "/exe").c_str(), exe, sizeof exe - 1);
    if (n <= 0) continue;
    std::string e(exe, static_cast<size_t>(n));
    if (e.rfind(bin, 0) != 0) continue;  // also matches "... (deleted)"
    std::ifstream in("/proc/" + name + "/cmdline", std::ios::binary);
    std::string cmdline((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    size_t pos = 0;
    bool match = false;
    while (pos < cmdline.size()) {
      size_t end = cmdline.find('\0', pos);
      if (end == std::string::npos) end = cmdline.size();
      std::string arg = cmdline.substr(pos, end - pos);
      if (arg == mountpoint || arg == canon) match = true;
      pos = end + 1;
    }
    if (match) out.push_back(static_cast<pid_t>(std::stol(name)));
  }
  return out;
}

// ---- Mount --------------------------------------------------------------------------------

Mount::Mount(std::string mountpoint, MountSpec spec)
    : mountpoint_(canonical_or_same(mountpoint)), spec_(std::move(spec)) {
  if (auto m = find_mount(mountpoint_)) previous_top_ = m->id;
  if (overlay_mode()) {
    start_overlay();
  } else {
    start_layerfs();
  }
  wait_until_mounted();
}

Mount::~Mount() {
  if (!unmount()) {
    if (overlay_mode()) {
      MESSAGE("unmounting " << mountpoint_ << ": " << problem_);
    } else {
      FAIL_CHECK("unmounting " << mountpoint_ << ": " << problem_ << "\ndaemon output:\n" << log());
    }
  } else if (!overlay_mode() && !killed_on_purpose_ && exit_status_ != 0 && exit_status_ != -1) {
    MESSAGE("layerfs daemon for " << mountpoint_ << " exited with status " << exit_status_
                                  << " after unmount; output:\n"
                                  << log());
  }
}

std::string Mount::log() const {
  if (!log_fd_) return {};
  std::string s;
  char buf[8192];
  for (off_t off = 0;;) {
    ssize_t n = ::pread(log_fd_.get(), buf, sizeof buf, off);
    if (n <= 0) break;
    s.append(buf, static_cast<size_t>(n));
    off += n;
  }
  if (s.size() > 16384)
    s = "[... " + std::to_string(s.size() - 16384) + " bytes cut]\n" + s.substr(s.size() - 16384);
  return s;
}

void Mount::start_layerfs() {
  const std::string bin = layerfs_binary();
  if (::access(bin.c_str(), X_OK) != 0) {
    throw std::runtime_error("layerfs binary " + bin +
                             " is missing or not executable (build the 'layerfs' target or set "
                             "LAYERFS_BIN)");
  }
  // The log lives in memory, not in any directory a test looks at.
  int memfd = ::memfd_create("layerfs-daemon-log", MFD_CLOEXEC);
  if (memfd < 0) throw_errno("memfd_create");
  Fd log(memfd);
  std::vector<std::string> argv{bin};
  MountSpec spec = spec_;
  for (auto& o : extra_options()) spec.options.push_back(o);
  for (auto& a : layerfs_args(mountpoint_, spec)) argv.push_back(a);
  if (spec_.foreground) argv.push_back("-f");
  command_ = join_args(argv);
  std::vector<char*> cargv = c_argv(argv);
  const pid_t parent = ::getpid();
  pid_t pid = ::fork();
  if (pid < 0) throw_errno("fork");
  if (pid == 0) {
    // A test that crashes or is killed by ctest still tears its daemon down.
    ::prctl(PR_SET_PDEATHSIG, SIGTERM);
    if (::getppid() != parent) ::_exit(126);
    int devnull = ::open("/dev/null", O_RDONLY);
    if (devnull >= 0) ::dup2(devnull, 0);
    ::dup2(memfd, 1);
    ::dup2(memfd, 2);
    if (spec_.nofile) {
      struct rlimit rl = {*spec_.nofile, *spec_.nofile};
      ::prctl(PR_CAPBSET_DROP, CAP_SYS_RESOURCE, 0, 0, 0);
      if (::setrlimit(RLIMIT_NOFILE, &rl) < 0) ::_exit(125);
    }
    ::execv(cargv[0], cargv.data());
    const char msg[] = "harness: exec of layerfs failed\n";
    ssize_t ignored = ::write(2, msg, sizeof msg - 1);
    (void)ignored;
    ::_exit(127);
  }
  pid_ = pid;
  log_fd_ = std::move(log);
}

void Mount::start_overlay() {
  unsigned long flags = 0;
  std::string data = "lowerdir=";
  for (size_t i = 0; i < spec_.lowers.size(); ++i) {
    if (i) data += ':';
    data += escape(spec_.lowers[i], ":,");
  }
  if (spec_.upper) data += ",upperdir=" + escape(*spec_.upper, ",");
  if (spec_.work) data += ",workdir=" + escape(*spec_.work, ",");
  // What layerfs promises by default needs these overlayfs features.
  if (spec_.upper) data += ",redirect_dir=on,index=on";
  data += ",xino=auto";
  for (const auto& o : spec_.options) {
    if (overlay_flag(o, flags) || layerfs_only_option(o)) continue;
    data += "," + o;
  }
  const std::string source = spec_.source.value_or("overlay");
  command_ = "mount -t overlay -o " + data + " " + source + " " + mountpoint_;
  if (::mount(source.c_str(), mountpoint_.c_str(), "overlay", flags, data.c_str()) != 0) {
    throw_errno("mount -t overlay -o " + data + " " + mountpoint_);
  }
}

void Mount::wait_until_mounted() {
  const auto deadline = Clock::now() + kMountTimeout;
  std::string seen = "nothing";
  for (;;) {
    auto m = find_mount(mountpoint_);
    if (m && m->fstype == expected_fstype()) {
      mounted_ = true;
      struct stat st;
      if (::stat(mountpoint_.c_str(), &st) != 0) {
        int e = errno;
        std::string msg = "mount at " + mountpoint_ + " is not usable: stat failed with " +
                          errno_name(e) + "\ndaemon output:\n" + log();
        unmount();
        throw std::runtime_error(msg);
      }
      return;
    }
    if (m) seen = "fstype " + m->fstype + " source " + m->source;
    if (pid_ > 0) {
      int status = 0;
      if (::waitpid(pid_, &status, WNOHANG) == pid_) {
        pid_ = -1;
        exit_status_ = status_code(status);
        std::string msg = "layerfs exited (" + describe_status(status) + ") before " + mountpoint_ +
                          " was mounted\ncommand: " + command_ + "\ndaemon output:\n" + log();
        unmount();
        throw std::runtime_error(msg);
      }
    }
    if (Clock::now() > deadline) {
      std::string msg = "timed out after " + std::to_string(kMountTimeout.count()) +
                        " s waiting for " + expected_fstype() + " at " + mountpoint_ +
                        " (mountinfo shows " + seen + ")\ncommand: " + command_ +
                        "\ndaemon output:\n" + log();
      unmount();
      throw std::runtime_error(msg);
    }
    std::this_thread::sleep_for(kPoll);
  }
}

bool Mount::reap(std::chrono::milliseconds timeout) {
  const auto deadline = Clock::now() + timeout;
  int status = 0;
  for (;;) {
    pid_t w = ::waitpid(pid_, &status, WNOHANG);
    if (w == pid_) break;
    if (w < 0 && errno == ECHILD) {
      pid_ = -1;
      return true;
    }
    if (Clock::now() > deadline) return false;
    std::this_thread::sleep_for(kPoll);
  }
  pid_ = -1;
  exit_status_ = status_code(status);
  if (WIFSIGNALED(status) && !killed_on_purpose_) {
    if (!problem_.empty()) problem_ += "; ";
    problem_ += "layerfs daemon died of " + describe_status(status);
    return false;
  }
  return true;
}

bool Mount::unmount() {
  bool ok = true;
  if (mounted_ || pid_ > 0) {
    // Whatever got mounted on top since the constructor is ours, whatever its type.
    auto m = find_mount(mountpoint_);
    if (m && m->id != previous_top_) {
      std::string problem;
      if (!unmount_path(mountpoint_, &problem)) {
        ok = false;
        problem_ = problem;
      }
    }
    mounted_ = false;
  }
  if (pid_ > 0) {
    if (!reap(kExitTimeout)) {
      if (pid_ > 0) {
        ::kill(pid_, SIGKILL);
        int status = 0;
        ::waitpid(pid_, &status, 0);
        pid_ = -1;
        if (!problem_.empty()) problem_ += "; ";
        problem_ += "layerfs daemon did not exit within " + std::to_string(kExitTimeout.count()) +
                    " s of the unmount; killed it";
      }
      ok = false;
    }
    // A daemon that exits while its mount is still there leaves a dead mount: remove it.
    auto m = find_mount(mountpoint_);
    if (m && m->id != previous_top_) unmount_path(mountpoint_);
  }
  return ok && problem_.empty();
}

bool Mount::kill_daemon(int sig) {
  if (pid_ <= 0) return false;
  killed_on_purpose_ = true;
  ::kill(pid_, sig);
  bool died = reap(kExitTimeout);
  if (!died && pid_ > 0) {
    ::kill(pid_, SIGKILL);
    ::waitpid(pid_, nullptr, 0);
    pid_ = -1;
  }
  auto m = find_mount(mountpoint_);
  if (m && m->id != previous_top_) unmount_path(mountpoint_);
  mounted_ = false;
  return died;
}

// ---- BackgroundMount ----------------------------------------------------------------------

BackgroundMount::BackgroundMount(std::string mountpoint, MountSpec spec)
    : mountpoint_(canonical_or_same(mountpoint)) {
  cmd_ = run_layerfs(layerfs_args(mountpoint_, spec));
  auto m = find_mount(mountpoint_);
  mounted_on_return_ = m && m->fstype == expected_fstype();
  auto pids = find_daemons(mountpoint_);
  if (!pids.empty()) daemon_ = pids.front();
}

BackgroundMount::~BackgroundMount() {
  if (!unmount()) FAIL_CHECK("background layerfs at " << mountpoint_ << ": " << problem_);
}

bool BackgroundMount::unmount() {
  if (done_) return problem_.empty();
  done_ = true;
  // The mount may have appeared after the command returned (a bug the test reports); the
  // harness must still remove it.
  auto m = find_mount(mountpoint_);
  if (m && m->fstype == expected_fstype()) {
    std::string problem;
    if (!unmount_path(mountpoint_, &problem)) problem_ = problem;
  }
  if (daemon_ < 0) {
    auto pids = find_daemons(mountpoint_);
    if (!pids.empty()) daemon_ = pids.front();
  }
  if (daemon_ > 0) {
    const auto deadline = Clock::now() + kExitTimeout;
    while (!process_gone(daemon_)) {
      if (Clock::now() > deadline) {
        ::kill(daemon_, SIGKILL);
        if (!problem_.empty()) problem_ += "; ";
        problem_ += "layerfs daemon " + std::to_string(daemon_) +
                    " did not exit after the unmount; killed it";
        break;
      }
      std::this_thread::sleep_for(kPoll);
    }
  }
  return problem_.empty();
}

}  // namespace layerfs::test
