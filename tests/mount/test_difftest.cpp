// Mounted tests: the differential random-operation tester (tests/difftest) in its short CI form —
// a few fixed seeds of a couple of thousand random operations each, with remounts at random
// points, every result and the whole trees compared with a plain directory. Longer runs:
// layerfs_difftest (tests/difftest/README.md).
#include <doctest/doctest.h>

#include <sstream>

#include "tests/difftest/engine.h"
#include "tests/support/mount.h"

using namespace layerfs;

TEST_CASE("difftest: random operations agree with a plain directory (3 seeds, remounts)") {
  if (test::overlay_mode()) {
    // The engine mounts layerfs itself (with its remounts and st_ino promises).
    MESSAGE("skipped with kernel overlayfs: the differential tester drives layerfs only");
    return;
  }
  for (uint64_t seed : {1, 2, 3}) {
    difftest::Config cfg;
    cfg.seed = seed;
    cfg.ops = 2000;
    cfg.check_every = 100;
    cfg.remount_every = 500;  // about four remounts per seed, at random points
    difftest::Result r = difftest::run(cfg);
    INFO("seed " << seed << ": " << r.ops_run << " operations, " << r.remounts << " remounts, "
                 << r.checks << " tree checks");
    CHECK_MESSAGE(r.ok, "seed " << seed << ", " << r.failure
                                << "\nreplay: " << difftest::replay_command(cfg, r));
    CHECK(r.ops_run == cfg.ops);
  }
}
