// Test support: whether this process may mount layerfs (root and a usable
// /dev/fuse), for the test programs that mount. Header-only, so that programs
// which do not link the rest of tests/support can use it too.
//
// Without them a test program is skipped (ctest's SKIP_RETURN_CODE 77),
// except under CI=true, where a skip would hide a broken CI job: then it fails.
#pragma once

#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>

namespace layerfs::test {

// 0 when this process can mount; else prints why on stderr, prefixed with
// `program`, and returns the exit code to leave with (77: skipped, 1: CI=true).
// `need_fuse`: false for a run that mounts kernel overlayfs instead.
inline int check_can_mount(const char* program, bool need_fuse = true) {
  std::string why;
  if (::geteuid() != 0) {
    why = "must run as root (it mounts, kills daemons and switches users)";
  } else if (need_fuse && ::access("/dev/fuse", R_OK | W_OK) != 0) {
    why = "/dev/fuse is missing or not usable";
  }
  if (why.empty()) return 0;
  const char* ci = std::getenv("CI");
  if (ci && std::strcmp(ci, "true") == 0) {
    std::fprintf(stderr,
                 "%s: ERROR: %s. CI=true, so this fails instead of skipping: give the CI job "
                 "root and /dev/fuse.\n",
                 program, why.c_str());
    return 1;
  }
  std::fprintf(stderr, "%s: skipped: %s.\n", program, why.c_str());
  return 77;
}

}  // namespace layerfs::test
