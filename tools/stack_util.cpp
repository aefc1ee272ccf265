// The stack code's plumbing (tools/stack_internal.h): mountinfo, finding and
// running the layerfs daemon, and unmounting a stack with everything below it.
#include <fcntl.h>
#include <limits.h>
#include <sys/file.h>
#include <sys/mman.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <thread>

#include "fs/daemon_path.h"
#include "tools/stack_internal.h"

namespace layerfs::ctl::stack_detail {
namespace {

std::string trim(std::string s) {
  while (!s.empty() && (s.back() == '\n' || s.back() == ' ' || s.back() == '\r')) s.pop_back();
  return s;
}

}  // namespace

std::string mount_source(const std::string& root, const std::string& name) {
  return "layerctl:" + name + "@" + root;
}
std::string commit_mount_source(const std::string& root, const std::string& name) {
  return "layerctl-commit:" + name + "@" + root;
}
std::string base_mount_source(const std::string& root, const std::string& name) {
  return "layerctl-base:" + name + "@" + root;
}

std::optional<std::string> stack_of_source(const std::string& source, const std::string& root) {
  const std::string prefix = "layerctl:";
  if (source.rfind(prefix, 0) != 0) return std::nullopt;
  const size_t at = source.find('@', prefix.size());  // names have no '@'
  if (at == std::string::npos || source.substr(at + 1) != root) return std::nullopt;
  return source.substr(prefix.size(), at - prefix.size());
}

std::optional<std::string> stack_mountpoint(const std::vector<MountLine>& mounts,
                                            const std::string& root, const std::string& name,
                                            bool any_use) {
  std::optional<std::string> found;
  for (const auto& m : mounts) {
    if (m.fstype != "fuse.layerfs") continue;
    if (m.source == mount_source(root, name) ||
        (any_use && (m.source == commit_mount_source(root, name) ||
                     m.source == base_mount_source(root, name)))) {
      found = m.mountpoint;  // the last one: mounts are listed in the order they were made
    }
  }
  return found;
}

json get_stack_record(const Store& store, const std::string& name) {
  auto rec = store.get("stack/" + name);
  if (!rec) throw Error("No such stack: " + name);
  return *rec;
}

std::string escape_option_path(const std::string& path) {
  std::string out;
  for (char c : path) {
    if (c == ',' || c == ':' || c == '\\') out += '\\';
    out += c;
  }
  return out;
}

std::string layerfs_options(const std::vector<std::string>& lowers_top_first,
                            const std::string& upper, const std::string& work,
                            const std::vector<std::string>& extra) {
  std::string o = "lowerdir=";
  for (size_t i = 0; i < lowers_top_first.size(); ++i) {
    if (i) o += ':';
    o += escape_option_path(lowers_top_first[i]);
  }
  if (!upper.empty()) o += ",upperdir=" + escape_option_path(upper);
  if (!work.empty()) o += ",workdir=" + escape_option_path(work);
  for (const auto& e : extra) o += "," + e;
  return o;
}

void run_layerfs(const std::string& source, const std::string& mountpoint,
                 const std::string& options) {
  const std::string binary = daemon_path();
  if (!is_executable(binary)) {
    throw Error("cannot find layerfs (looked for " + binary + ")");
  }
  // Its messages go to a memory file rather than a pipe: the daemon it leaves
  // behind must not hold anything of ours open.
  int err_fd = ::memfd_create("layerfs-stderr", MFD_CLOEXEC);
  if (err_fd < 0) throw Error(std::string("memfd_create: ") + std::strerror(errno));
  std::vector<std::string> args = {binary, source, mountpoint, "-o", options};
  std::vector<char*> argv;
  for (auto& a : args) argv.push_back(a.data());
  argv.push_back(nullptr);
  pid_t pid = ::fork();
  if (pid < 0) {
    int e = errno;
    ::close(err_fd);
    throw Error(std::string("fork: ") + std::strerror(e));
  }
  if (pid == 0) {
    int devnull = ::open("/dev/null", O_RDWR);
    if (devnull >= 0) {
      ::dup2(devnull, 0);
      ::dup2(devnull, 1);
    }
    ::dup2(err_fd, 2);
    // Nothing of layerctl's (the store's lock, its database) may live on in
    // the daemon.
    ::syscall(SYS_close_range, 3U, ~0U, 0U);
    ::execv(binary.c_str(), argv.data());
    std::fprintf(stderr, "cannot run %s: %s\n", binary.c_str(), std::strerror(errno));
    _exit(127);
  }
  int status = 0;
  while (::waitpid(pid, &status, 0) < 0 && errno == EINTR) {
  }
  std::string msg;
  ::lseek(err_fd, 0, SEEK_SET);
  char buf[4096];
  ssize_t n;
  while ((n = ::read(err_fd, buf, sizeof buf)) > 0) msg.append(buf, static_cast<size_t>(n));
  ::close(err_fd);
  if (WIFEXITED(status) && WEXITSTATUS(status) == 0) return;
  msg = trim(msg);
  if (msg.empty()) {
    msg = WIFSIGNALED(status) ? "layerfs was killed by signal " + std::to_string(WTERMSIG(status))
                              : "layerfs failed with status " + std::to_string(WEXITSTATUS(status));
  }
  throw Error("cannot mount at " + mountpoint + ": " + msg);
}

void unmount_tree(const std::string& mountpoint) {
  const std::string prefix = mountpoint == "/" ? "/" : mountpoint + "/";
  std::vector<MountLine> below;
  for (auto& m : read_mountinfo()) {
    if (m.mountpoint.size() > prefix.size() &&
        m.mountpoint.compare(0, prefix.size(), prefix) == 0) {
      below.push_back(m);
    }
  }
  // Deepest first; of mounts on one path, the latest first.
  std::sort(below.begin(), below.end(), [](const MountLine& a, const MountLine& b) {
    auto depth = [](const std::string& p) { return std::count(p.begin(), p.end(), '/'); };
    if (depth(a.mountpoint) != depth(b.mountpoint))
      return depth(a.mountpoint) > depth(b.mountpoint);
    return a.id > b.id;
  });
  struct stat st;
  bool dead = ::stat(mountpoint.c_str(), &st) != 0 && errno == ENOTCONN;
  for (const auto& m : below) {
    if (dead) break;
    if (::umount2(m.mountpoint.c_str(), UMOUNT_NOFOLLOW) == 0) continue;
    int e = errno;
    if (e == EBUSY) throw Error("cannot unmount " + m.mountpoint + ": target is busy");
    if (e == ENOTCONN) {
      dead = true;  // behind a dead daemon: only detaching the whole tree works
    } else if (e != EINVAL && e != ENOENT) {
      throw Error("cannot unmount " + m.mountpoint + ": " + std::strerror(e));
    }
  }
  if (!dead) {
    if (::umount2(mountpoint.c_str(), UMOUNT_NOFOLLOW) == 0) return;
    int e = errno;
    if (e == EBUSY) throw Error("cannot unmount " + mountpoint + ": target is busy");
    if (e == EINVAL) return;  // not mounted (any more)
    if (e != ENOTCONN) throw Error("cannot unmount " + mountpoint + ": " + std::strerror(e));
  }
  if (::umount2(mountpoint.c_str(), MNT_DETACH | UMOUNT_NOFOLLOW) != 0 && errno != EINVAL) {
    throw Error("cannot unmount " + mountpoint + ": " + std::strerror(errno));
  }
}

bool wait_workdir_free(const std::string& work, std::chrono::milliseconds timeout) {
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  for (;;) {
    int fd = ::open(work.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0) return true;
    bool free = ::flock(fd, LOCK_EX | LOCK_NB) == 0;
    ::close(fd);
    if (free) return true;
    if (std::chrono::steady_clock::now() > deadline) return false;
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
}

std::string canonical_path(const std::string& path) {
  char* real = ::realpath(path.c_str(), nullptr);
  if (real) {
    std::string out = real;
    std::free(real);
    return out;
  }
  std::string out = std::filesystem::absolute(path).lexically_normal().string();
  while (out.size() > 1 && out.back() == '/') out.pop_back();
  return out;
}

}  // namespace layerfs::ctl::stack_detail
