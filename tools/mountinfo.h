// The mounts of this process's mount namespace, from /proc/self/mountinfo:
// what the store's cleanup and the stack code need to know about mounts.
#pragma once

#include <string>
#include <vector>

namespace layerfs::ctl {

// One line of /proc/self/mountinfo, escapes decoded.
struct MountLine {
  int id = -1;
  int parent = -1;
  std::string mountpoint;
  std::string fstype;
  std::string source;
};

// In mount order (a mount comes after the one it is mounted on).
std::vector<MountLine> read_mountinfo();

}  // namespace layerfs::ctl
