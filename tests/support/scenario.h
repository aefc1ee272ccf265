// Test support: one mounted-test scenario. It lays out fresh layers, an upper, a workdir, a
// mountpoint and the reference merge in a temporary directory, mounts the union, lets a test
// apply the same operation to the mount and to the reference, and compares the two trees.
//
// It also holds layerfs to two promises in every test, after the final unmount: the lower
// layers were not modified (content, modes, owners, times, xattrs, inodes), and the upper is a
// plain tree (no whiteout devices, no .wh.* files, no overlay xattrs).
#pragma once

#include <functional>
#include <memory>
#include <optional>
#include <ostream>
#include <string>
#include <string_view>
#include <vector>

#include "tests/support/doctest_print.h"
#include "tests/support/mount.h"
#include "tests/support/tmptree.h"
#include "tests/support/tree.h"

namespace layerfs::test {

// Skips the rest of a test case in overlay mode, saying why.
#define LAYERFS_ONLY(why)                                                         \
  do {                                                                            \
    if (::layerfs::test::overlay_mode()) {                                        \
      MESSAGE("skipped with kernel overlayfs (layerfs-only promise): " << (why)); \
      return;                                                                     \
    }                                                                             \
  } while (0)

struct ScenarioConfig {
  std::vector<std::vector<Entry>> lowers;  // top-most first; each may be empty
  std::vector<Entry> upper;                // initial upper content (plain entries only)
  bool writable = true;                    // false: no upperdir/workdir (read-only union)
  std::vector<std::string> options;        // extra -o options
  bool mount = true;                       // mount in the constructor
  bool tmpfs_lowers = false;               // each lower on its own fresh tmpfs
  bool check_lowers = true;                // snapshot lowers and compare at the end
  bool reference = true;                   // build the reference merge
  // When set, the upper and the workdir live on a fresh tmpfs mounted with these options
  // (e.g. "size=4m"), so that tests can fill it up; unmounted in the destructor.
  std::string upper_tmpfs;
};

class Scenario {
 public:
  explicit Scenario(ScenarioConfig cfg);
  ~Scenario();
  Scenario(const Scenario&) = delete;
  Scenario& operator=(const Scenario&) = delete;

  TempDir& tmp() { return tmp_; }
  std::string mnt(std::string_view rel = "") const { return join(mnt_, rel); }
  std::string ref(std::string_view rel = "") const { return join(ref_, rel); }
  std::string upper(std::string_view rel = "") const { return join(upper_, rel); }
  std::string work() const { return work_; }
  // The directory holding upper/ and work/ (a tmpfs with ScenarioConfig::upper_tmpfs).
  std::string rw_root() const { return rw_root_; }
  std::string lower(size_t i, std::string_view rel = "") const { return join(lowers_.at(i), rel); }
  const std::vector<std::string>& lowers() const { return lowers_; }
  const std::string& mountpoint() const { return mnt_; }

  MountSpec spec() const;
  Mount& mount();  // the current mount; throws when not mounted
  bool mounted() const { return mount_ != nullptr; }
  void do_mount();
  // Unmounts; CHECKs that it went cleanly.
  void unmount();
  // Kills the daemon with SIGKILL (a crash) and removes the dead mount; mount again with
  // do_mount(). layerfs only.
  void crash();
  void remount() {
    unmount();
    do_mount();
  }

  // Runs `op` (returning 0 or an errno) on the mount and on the reference; CHECKs that both
  // give the same result and returns the mount's.
  int both(const std::string& what, const std::function<int(const std::string& root)>& op);

  // CHECKs that the mount shows exactly the reference tree; returns whether it did.
  bool check_tree(const CompareOptions& opts = {}, const std::string& when = "");
  // CHECKs that no lower changed since the scenario was built.
  bool check_lowers_unchanged();
  // CHECKs that the upper holds no whiteout device, .wh.* name or overlay xattr (layerfs only;
  // call it unmounted or mounted).
  bool check_upper_clean();

  Snapshot snapshot_mount(const ScanOptions& o = {}) const { return scan_tree(mnt_, o); }
  Snapshot snapshot_ref(const ScanOptions& o = {}) const { return scan_tree(ref_, o); }

 private:
  static std::string join(const std::string& base, std::string_view rel) {
    return rel.empty() ? base : base + "/" + std::string(rel);
  }

  ScenarioConfig cfg_;
  TempDir tmp_;  // declared first: destroyed after the mount
  std::vector<std::string> lowers_;
  std::string upper_, work_, mnt_, ref_, rw_root_;
  bool rw_tmpfs_ = false;
  std::vector<Snapshot> lower_snapshots_;
  std::unique_ptr<Mount> mount_;
  bool ever_mounted_ = false;
  std::string last_log_;  // daemon output of the previous mount
  // Adds the daemon's output to the message of every assertion that fails while the scenario
  // lives. Declared last: it goes first, while everything it reads still exists.
  doctest::detail::ContextScope<std::function<void(std::ostream*)>> log_context_;
};

}  // namespace layerfs::test
