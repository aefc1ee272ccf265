// The doctest main of the mounted tests. Listing tests works anywhere (ctest discovers them at
// build time); running them needs root and /dev/fuse, otherwise the run is skipped (exit 77, the
// ctest SKIP_RETURN_CODE) — or fails loudly under CI=true, where a skip would hide a broken
// setup. `--check-leftover-mounts` is the ctest cleanup step: it fails if any test left a mount
// under /tmp/layerfs-test.TAG.* (TAG: this build's, see tests/mount/CMakeLists.txt) and
// detaches those mounts.
#define DOCTEST_CONFIG_IMPLEMENT
#include <doctest/doctest.h>
#include <sys/mount.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include "tests/support/mount.h"
#include "tests/support/tmptree.h"
#include "tests/support/can_mount.h"

namespace {

using layerfs::test::check_can_mount;
using layerfs::test::overlay_mode;

// Whether the command line only asks doctest for information (list, count, help, version).
bool only_lists(int argc, char** argv) {
  static const char* const kInfo[] = {"ltc",     "list-test-cases",
                                      "lts",     "list-test-suites",
                                      "lr",      "list-reporters",
                                      "c",       "count",
                                      "h",       "?",
                                      "help",    "v",
                                      "version", "nr",
                                      "no-run"};
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    if (a.empty() || a[0] != '-') continue;
    a.erase(0, a.find_first_not_of('-'));
    if (a.rfind("dt-", 0) == 0) a.erase(0, 3);
    std::string value;
    if (auto eq = a.find('='); eq != std::string::npos) {
      value = a.substr(eq + 1);
      a.resize(eq);
    }
    if (value == "false" || value == "0" || value == "no") continue;
    for (const char* name : kInfo) {
      if (a == name) return true;
    }
  }
  return false;
}

int check_leftover_mounts() {
  // This build's tests only (tests/support/tmptree.cpp): another build's tests
  // may be running beside these.
  std::string prefix = "/tmp/layerfs-test.";
#ifdef LAYERFS_TEST_RUN_TAG
  prefix += std::string(LAYERFS_TEST_RUN_TAG) + ".";
#endif
  int left = 0;
  for (const auto& m : layerfs::test::read_mountinfo()) {
    if (m.mountpoint.rfind(prefix, 0) != 0) continue;
    std::fprintf(stderr, "left behind: %s %s %s\n", m.source.c_str(), m.mountpoint.c_str(),
                 m.fstype.c_str());
    ++left;
  }
  if (left == 0) {
    std::printf("no mounts left under %s*\n", prefix.c_str());
    return 0;
  }
  // Deepest first, so nested mounts go before their parents.
  std::vector<std::string> mps;
  for (const auto& m : layerfs::test::read_mountinfo()) {
    if (m.mountpoint.rfind(prefix, 0) == 0) mps.push_back(m.mountpoint);
  }
  std::sort(mps.begin(), mps.end(),
            [](const std::string& a, const std::string& b) { return a.size() > b.size(); });
  for (const auto& mp : mps) ::umount2(mp.c_str(), MNT_DETACH);
  std::fprintf(stderr, "%d mount(s) were left under %s* by the mounted tests (now detached)\n",
               left, prefix.c_str());
  return 1;
}

}  // namespace

int main(int argc, char** argv) {
  for (int i = 1; i < argc; ++i) {
    if (std::strcmp(argv[i], "--check-leftover-mounts") == 0) return check_leftover_mounts();
  }
  doctest::Context ctx;
  ctx.applyCommandLine(argc, argv);
  if (!only_lists(argc, argv)) {
    if (int rc = check_can_mount("mount_tests", !overlay_mode())) return rc;
    if (overlay_mode()) {
      std::fprintf(stderr, "mount_tests: testing kernel overlayfs (LAYERFS_TEST_IMPL=overlay)\n");
    } else {
      std::fprintf(stderr, "mount_tests: testing %s\n", layerfs::test::layerfs_binary().c_str());
    }
  }
  return ctx.run();
}
