#include "tools/size.h"

#include <dirent.h>
#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdio>
#include <fstream>
#include <set>
#include <sstream>
#include <utility>

#include "tools/store.h"

namespace layerfs::ctl {
namespace {

using InodeSet = std::set<std::pair<dev_t, ino_t>>;

// Adds the sizes below directory fd `dfd` (owned) to *total.
void walk(int dfd, dev_t dev, InodeSet* seen, int64_t* total) {
  DIR* d = ::fdopendir(dfd);
  if (!d) {
    ::close(dfd);
    return;
  }
  while (struct dirent* e = ::readdir(d)) {
    std::string n = e->d_name;
    if (n == "." || n == "..") continue;
    struct stat st;
    if (::fstatat(::dirfd(d), n.c_str(), &st, AT_SYMLINK_NOFOLLOW) != 0) continue;
    if (S_ISDIR(st.st_mode)) {
      if (st.st_dev != dev) continue;  // another filesystem mounted inside
      int sub = ::openat(::dirfd(d), n.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
      if (sub >= 0) walk(sub, dev, seen, total);
      continue;
    }
    if (st.st_size <= 0) continue;
    if (st.st_nlink > 1 && !seen->insert({st.st_dev, st.st_ino}).second) continue;
    *total += st.st_size;
  }
  ::closedir(d);
}

int64_t walk_paths(const std::vector<std::string>& dirs) {
  InodeSet seen;
  int64_t total = 0;
  for (const auto& dir : dirs) {
    int fd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0) continue;
    struct stat st;
    if (::fstat(fd, &st) != 0) {
      ::close(fd);
      continue;
    }
    walk(fd, st.st_dev, &seen, &total);
  }
  return total;
}

struct Usage {
  int64_t bytes = -1;
  std::string state;  // "live" (a daemon keeps it) or "final"
};

Usage read_usage(const std::string& work) {
  Usage u;
  std::ifstream in(work + "/usage");
  std::string line;
  while (std::getline(in, line)) {
    auto eq = line.find('=');
    if (eq == std::string::npos) continue;
    std::string k = line.substr(0, eq), v = line.substr(eq + 1);
    if (k == "bytes") {
      try {
        u.bytes = std::stoll(v);
      } catch (...) {
        u.bytes = -1;
      }
    } else if (k == "state") {
      u.state = v;
    }
  }
  return u;
}

void write_final_usage(const std::string& work, int64_t bytes) {
  const std::string tmp = work + "/usage.layerctl-tmp";
  {
    std::ofstream out(tmp, std::ios::trunc);
    out << "bytes=" << bytes << "\nstate=final\n";
    if (!out) return;
  }
  if (::rename(tmp.c_str(), (work + "/usage").c_str()) != 0) ::unlink(tmp.c_str());
}

}  // namespace

int64_t tree_size(const std::string& dir) { return walk_paths({dir}); }

int64_t writable_size(const std::string& upper, const std::string& work) {
  Usage u = read_usage(work);
  if (u.state == "final" && u.bytes >= 0) return u.bytes;
  // A daemon using this workdir holds an exclusive flock on it.
  int fd = ::open(work.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  bool daemon_running = false;
  if (fd >= 0) {
    if (::flock(fd, LOCK_EX | LOCK_NB) != 0) daemon_running = (errno == EWOULDBLOCK);
  }
  if (daemon_running && u.state == "live" && u.bytes >= 0) {
    ::close(fd);
    return u.bytes;
  }
  // No count to trust: count, and leave the result when nobody else writes it.
  int64_t bytes = walk_paths({upper, work + "/links"});
  if (fd >= 0 && !daemon_running) write_final_usage(work, bytes);
  if (fd >= 0) ::close(fd);
  return bytes;
}

}  // namespace layerfs::ctl
