// Differential random-operation tester (issue 6): one seeded random sequence of filesystem
// operations applied both to a layerfs mount (two prepared lowers, an upper, a workdir) and to a
// plain directory that starts as the merged view. After every operation the results (errno, and
// data for reads) are compared; at intervals the whole trees are compared (names, types, sizes,
// contents, modes, owners, xattrs, link counts, hard-link structure) and every object's st_ino
// on the mount is checked to stay the same while the object exists, across remounts too.
//
// The engine is used by the CI case (tests/mount/test_difftest.cpp) and by the long-run command
// layerfs_difftest (tests/difftest/main.cpp). Everything it does follows from Config::seed:
// running the same seed with a smaller `ops` replays a prefix of the same sequence.
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <ostream>
#include <string>

namespace layerfs::difftest {

struct Config {
  uint64_t seed = 1;
  uint64_t ops = 2000;
  // Whole-tree comparison every this many operations (0: only after remounts and at the end).
  uint64_t check_every = 100;
  // Remount on average once every this many operations, at random points (0: never). The points
  // come from their own random stream, so this setting does not change the operations.
  uint64_t remount_every = 0;
  // Also make lower hard-link groups with names hidden in the merged view (by whiteouts, opaque
  // directories or higher entries). Off by default: layerfs counts the hidden names in st_nlink
  // (a known bug; see tests/mount/test_difftest.cpp), so every such seed would fail on it.
  bool hidden_lower_links = false;
  // Apply the operations as this unprivileged user (uid, gid; no supplementary groups) instead
  // of root, on both trees; the mount gets allow_other. The lowers then also hold set-id files,
  // sticky and world-writable directories (drawn from the random stream only in this mode, so
  // the sequences of root runs do not change). Everything else (setup, checks) stays root.
  bool as_user = false;
  uid_t user_uid = 1000;
  gid_t user_gid = 1000;
  // Print every operation and its result to `log`.
  bool verbose = false;
  // Progress and failure details; null for none.
  std::ostream* log = nullptr;
  // The trees live in a fresh /tmp/PREFIX.XXXXXX. The mounted tests' cleanup step detaches
  // every mount under /tmp/layerfs-test.*, so the long-run command uses another prefix and can
  // run while the test suite does.
  std::string tmp_prefix = "layerfs-test";
};

struct Result {
  bool ok = true;
  uint64_t ops_run = 0;  // operations applied to both trees
  uint64_t remounts = 0;
  uint64_t checks = 0;  // whole-tree comparisons
  // When !ok: the index of the operation after which the divergence was seen (the failing one
  // for a per-operation mismatch; for a whole-tree mismatch, the last one before the check),
  // or UINT64_MAX when setting up failed.
  uint64_t failed_op = UINT64_MAX;
  std::string failure;  // what differed
};

// Runs the sequence described by `cfg`. Never throws for a divergence or a failed mount (those
// are reported in the Result); every mount is unmounted before it returns.
Result run(const Config& cfg);

// The command line that replays a failure of `r` with each operation printed.
std::string replay_command(const Config& cfg, const Result& r);

}  // namespace layerfs::difftest
