// The layerfs daemon: command line -> checks -> layers and index -> mount ->
// request loop.
//
// Without -f the command forks at once; the child does all the work and tells
// the waiting parent, through a pipe, whether the mount is in place. So the
// command returns only once the mount is usable, and every error found before
// that (with its message on the terminal's stderr) gives a non-zero exit with
// nothing mounted. The child does not keep the caller's stdout/stderr open
// afterwards, so `$(layerfs ...)` does not hang.
#include <fcntl.h>
#include <signal.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdio>
#include <cstring>
#include <string>
#include <thread>

#include "fs/fd_cache.h"
#include "fs/filesystem.h"
#include "fs/fuse_ops.h"
#include "fs/layers.h"
#include "fs/log.h"
#include "fs/options.h"
#include "fs/passthrough.h"
#include "fs/request_loop.h"

#ifndef LAYERFS_VERSION
#define LAYERFS_VERSION "0.0.0"
#endif

namespace layerfs {
namespace {

// Escapes ',' and '\' for a libfuse -o string.
std::string escape_option(const std::string& v) {
  std::string out;
  for (char c : v) {
    if (c == ',' || c == '\\') out += '\\';
    out += c;
  }
  return out;
}

// The daemon's descriptors for inodes live in a bounded cache (fs/fd_cache.h)
// sized from RLIMIT_NOFILE, so a higher limit only means fewer reopens; the
// ones it cannot reopen by handle (filesystems without export support) are
// still held for as long as the kernel remembers the inode, so the limit is
// raised as far as allowed: a privileged daemon takes the system's ceiling
// (fs.nr_open), anyone else the hard limit they were given.
void raise_fd_limit() {
  struct rlimit rl;
  if (::getrlimit(RLIMIT_NOFILE, &rl) != 0) return;
  rlim_t ceiling = 0;
  if (FILE* f = std::fopen("/proc/sys/fs/nr_open", "re")) {
    unsigned long long v = 0;
    if (std::fscanf(f, "%llu", &v) == 1) ceiling = static_cast<rlim_t>(v);
    std::fclose(f);
  }
  if (ceiling > rl.rlim_max) {
    struct rlimit wide = {ceiling, ceiling};
    if (::setrlimit(RLIMIT_NOFILE, &wide) == 0) return;
  }
  if (rl.rlim_cur < rl.rlim_max) {
    rl.rlim_cur = rl.rlim_max;
    ::setrlimit(RLIMIT_NOFILE, &rl);
  }
}

// Reports the outcome to the parent waiting in the foreground (if any).
class Launcher {
 public:
  // Returns only in the process that goes on to mount: the child, or the only
  // process with -f. The parent exits with the child's verdict.
  void start(bool foreground) {
    if (foreground) return;
    int p[2];
    if (::pipe2(p, O_CLOEXEC) < 0) {
      perror("layerfs: pipe");
      exit(1);
    }
    pid_t pid = ::fork();
    if (pid < 0) {
      perror("layerfs: fork");
      exit(1);
    }
    if (pid > 0) {
      ::close(p[1]);
      unsigned char status = 1;
      ssize_t n;
      do {
        n = ::read(p[0], &status, 1);
      } while (n < 0 && errno == EINTR);
      if (n != 1) {
        // The child died before reporting.
        int ws = 0;
        ::waitpid(pid, &ws, 0);
        if (WIFSIGNALED(ws)) {
          fprintf(stderr, "layerfs: the daemon was killed by signal %d while mounting\n",
                  WTERMSIG(ws));
        }
        exit(1);
      }
      if (status != 0) ::waitpid(pid, nullptr, 0);
      exit(status);
    }
    ::close(p[0]);
    fd_ = p[1];
    ::setsid();
  }

  // Mounted: release the parent and detach from the terminal.
  void success() {
    if (fd_ < 0) return;
    int devnull = ::open("/dev/null", O_RDWR | O_CLOEXEC);
    if (devnull >= 0) {
      ::dup2(devnull, 0);
      ::dup2(devnull, 1);
      ::dup2(devnull, 2);
      ::close(devnull);
    }
    log_to_syslog();
    unsigned char ok = 0;
    ssize_t n = ::write(fd_, &ok, 1);
    (void)n;
    ::close(fd_);
    fd_ = -1;
  }

  [[noreturn]] void fail(int code) {
    if (fd_ >= 0) {
      unsigned char c = static_cast<unsigned char>(code);
      ssize_t n = ::write(fd_, &c, 1);
      (void)n;
    }
    exit(code);
  }

 private:
  int fd_ = -1;
};

int run(int argc, char** argv) {
  MountConfig cfg;
  CanonicalPaths paths;
  try {
    cfg = parse_command_line(argc, argv);
    if (cfg.show_help) {
      printf("%s", help_text("layerfs").c_str());
      return 0;
    }
    if (cfg.show_version) {
      printf("layerfs %s (libfuse %d.%d)\n", LAYERFS_VERSION, FUSE_MAJOR_VERSION,
             FUSE_MINOR_VERSION);
      return 0;
    }
  } catch (const ConfigError& e) {
    // A malformed command line: the usage line helps.
    std::string usage = usage_text("layerfs");
    if (!usage.empty() && usage.back() != '\n') usage += '\n';
    fprintf(stderr, "layerfs: %s\n%s", e.what(), usage.c_str());
    return 1;
  }
  try {
    paths = check_paths(cfg);
  } catch (const ConfigError& e) {
    fprintf(stderr, "layerfs: %s\n", e.what());
    return 1;
  }

  if (cfg.debug) log_set_level(LogLevel::kDebug);
  ::umask(0);  // modes of created objects are exactly what the caller asked for
  raise_fd_limit();
  {
    struct rlimit rl;
    if (::getrlimit(RLIMIT_NOFILE, &rl) == 0) {
      uint64_t soft = rl.rlim_cur == RLIM_INFINITY ? UINT64_MAX : rl.rlim_cur;
      FdCache::process().set_capacity(fd_budget_for_limit(soft));
      LFS_LOG_DEBUG("fd cache: %zu descriptors (RLIMIT_NOFILE %llu)", FdCache::process().capacity(),
                    static_cast<unsigned long long>(soft));
    }
  }

  Launcher launcher;
  launcher.start(cfg.foreground || cfg.debug);

  std::string why;
  auto layers = LayerStack::open(paths, &why);
  if (!layers.ok()) {
    fprintf(stderr, "layerfs: %s\n", why.c_str());
    launcher.fail(1);
  }
  FsOptions fso;
  fso.read_only = cfg.read_only || !paths.upperdir;
  fso.track_usage = !fso.read_only;
  auto fs = Filesystem::open(std::move(layers).value(), fso, &why);
  if (!fs.ok()) {
    fprintf(stderr, "layerfs: %s\n", why.c_str());
    launcher.fail(1);
  }

  FuseContext context;
  context.fs = fs.value().get();
  context.timeout = cfg.timeout;

  std::string opts = "fsname=" + escape_option(cfg.fsname ? *cfg.fsname
                                                          : (cfg.source ? *cfg.source : "layerfs"));
  opts += ",subtype=layerfs";
  if (cfg.default_permissions) opts += ",default_permissions";
  if (cfg.allow_other) opts += ",allow_other";
  if (fso.read_only) opts += ",ro";
  for (const auto& o : cfg.fuse_options) opts += "," + o;

  std::string prog = "layerfs";
  std::string dash_o = "-o";
  std::string dash_d = "-d";
  std::vector<char*> fargv = {prog.data(), dash_o.data(), opts.data()};
  if (cfg.debug) fargv.push_back(dash_d.data());
  fuse_args args = FUSE_ARGS_INIT(static_cast<int>(fargv.size()), fargv.data());

  fuse_session* se =
      fuse_session_new(&args, &fuse_operations(), sizeof(fuse_lowlevel_ops), &context);
  if (!se) {
    fprintf(stderr, "layerfs: cannot start a FUSE session with options '%s'\n", opts.c_str());
    launcher.fail(1);
  }
  context.session = se;
  install_invalidator(context);
  if (fuse_session_mount(se, paths.mountpoint.c_str()) != 0) {
    fprintf(stderr, "layerfs: cannot mount on %s\n", paths.mountpoint.c_str());
    fuse_session_destroy(se);
    launcher.fail(1);
  }
  passthrough::on_enabled(
      [](int dev_fd, void* arg) { static_cast<Filesystem*>(arg)->enable_passthrough(dev_fd); },
      fs.value().get());
  if (!passthrough::hook(se, cfg.passthrough)) {
    LFS_LOG_WARN("cannot hook the FUSE session's I/O: no passthrough");
  }
  if (fuse_set_signal_handlers(se) != 0) {
    fprintf(stderr, "layerfs: cannot install signal handlers\n");
    fuse_session_unmount(se);
    fuse_session_destroy(se);
    launcher.fail(1);
  }
  launcher.success();

  int rc;
  if (cfg.single_thread) {
    rc = fuse_session_loop(se);
  } else {
    unsigned threads = cfg.max_threads;
    if (threads == 0) threads = std::max(16u, 4 * std::thread::hardware_concurrency());
    rc = run_request_loop(se, threads);
  }
  fuse_session_unmount(se);
  // The mount is gone, but until this process exits it keeps the upper
  // filesystem busy, so an `umount` of that filesystem right after ours would
  // fail. Leave at once: make the index durable, then let the kernel close
  // every descriptor together. Nothing else needs tearing down (the index
  // reopens from its synced write-ahead log, as after any crash).
  auto synced = fs.value()->shutdown();
  if (!synced.ok()) {
    LFS_LOG_ERROR("saving state at unmount: %s", strerror(synced.error()));
    rc = 1;
  }
  ::_exit(rc == 0 ? 0 : 1);
}

}  // namespace
}  // namespace layerfs

int main(int argc, char** argv) { return layerfs::run(argc, argv); }
