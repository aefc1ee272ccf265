// Finding the layerfs daemon (fs/daemon_path.h).
#include "fs/daemon_path.h"

#include <limits.h>
#include <sys/stat.h>
#include <unistd.h>

#ifndef LAYERFS_BINDIR
#error "LAYERFS_BINDIR must name the directory layerfs is installed in"
#endif

namespace layerfs {

bool is_executable(const std::string& path) {
  struct stat st;
  return ::stat(path.c_str(), &st) == 0 && S_ISREG(st.st_mode) && ::access(path.c_str(), X_OK) == 0;
}

std::string daemon_path() {
  char self[PATH_MAX];
  ssize_t n = ::readlink("/proc/self/exe", self, sizeof self - 1);
  if (n > 0) {
    self[n] = '\0';
    std::string dir(self);
    dir.resize(dir.rfind('/') + 1);
    if (is_executable(dir + "layerfs")) return dir + "layerfs";
  }
  return std::string(LAYERFS_BINDIR) + "/layerfs";
}

}  // namespace layerfs
