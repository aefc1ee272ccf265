// layerfs_difftest: the differential random-operation tester as its own command, for long runs
// (a million operations, many seeds) and for replaying a failure found in CI. See README.md.
//
// The engine runs inside one doctest test case so that the mount harness it shares with the
// mounted tests (tests/support) reports its own problems (a daemon that had to be killed at
// unmount, say) as it does there.
#define DOCTEST_CONFIG_IMPLEMENT
#include <doctest/doctest.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <iostream>
#include <string>
#include <vector>

#include "tests/difftest/engine.h"

namespace {

layerfs::difftest::Config g_config;
uint64_t g_runs = 1;

void usage(FILE* to) {
  std::fprintf(to,
               "usage: layerfs_difftest [--seed N] [--ops N] [--runs N] [--remount-every N]\n"
               "                        [--check-every N] [--hidden-link-names]\n"
               "                        [--as-user UID:GID] [--verbose]\n"
               "  --seed N           first seed (default: from the clock; always printed)\n"
               "  --ops N            operations per seed (default 2000); with the seed of a\n"
               "                     failure and N = its operation index + 1 it replays it\n"
               "  --runs N           seeds N in a row: seed, seed+1, ... (default 1)\n"
               "  --remount-every N  remount at random points, once every N operations on\n"
               "                     average (default 0: never); does not change the operations\n"
               "  --check-every N    compare whole trees every N operations (default 100)\n"
               "  --hidden-link-names  also make lower hard-link groups with names hidden in\n"
               "                     the merged view (layerfs miscounts their st_nlink)\n"
               "  --as-user UID:GID  apply the operations as this user (no supplementary\n"
               "                     groups) on both trees; the lowers get set-id files and\n"
               "                     sticky directories too\n"
               "  --verbose          print every operation and its result\n"
               "Needs root and /dev/fuse. LAYERFS_BIN selects the layerfs binary to test.\n");
}

bool parse_u64(const char* s, uint64_t& out) {
  char* end = nullptr;
  errno = 0;
  unsigned long long v = std::strtoull(s, &end, 10);
  if (errno != 0 || !end || *end != '\0' || *s == '\0' || *s == '-') return false;
  out = v;
  return true;
}

}  // namespace

TEST_CASE("difftest") {
  std::vector<uint64_t> failed;  // every seed runs, so that one failure does not hide others
  for (uint64_t run = 0; run < g_runs; ++run) {
    layerfs::difftest::Config cfg = g_config;
    cfg.seed = g_config.seed + run;
    std::printf("seed %llu: %llu operations, remount every %llu, check every %llu\n",
                static_cast<unsigned long long>(cfg.seed), static_cast<unsigned long long>(cfg.ops),
                static_cast<unsigned long long>(cfg.remount_every),
                static_cast<unsigned long long>(cfg.check_every));
    std::fflush(stdout);
    auto start = std::chrono::steady_clock::now();
    layerfs::difftest::Result r = layerfs::difftest::run(cfg);
    double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    std::printf("seed %llu: %s: %llu operations, %llu remounts, %llu tree checks in %.1f s\n",
                static_cast<unsigned long long>(cfg.seed), r.ok ? "ok" : "FAILED",
                static_cast<unsigned long long>(r.ops_run),
                static_cast<unsigned long long>(r.remounts),
                static_cast<unsigned long long>(r.checks), secs);
    std::fflush(stdout);
    CHECK_MESSAGE(r.ok, "seed " << cfg.seed << ", " << r.failure
                                << "\nreplay: " << layerfs::difftest::replay_command(cfg, r));
    if (!r.ok) failed.push_back(cfg.seed);
  }
  if (g_runs > 1) {
    std::printf("%llu of %llu seeds failed", static_cast<unsigned long long>(failed.size()),
                static_cast<unsigned long long>(g_runs));
    for (uint64_t s : failed) std::printf(" %llu", static_cast<unsigned long long>(s));
    std::printf("\n");
  }
}

int main(int argc, char** argv) {
  g_config.seed = static_cast<uint64_t>(
      std::chrono::system_clock::now().time_since_epoch().count() % 1000000007);
  g_config.log = &std::cout;
  g_config.tmp_prefix = "layerfs-difftest";
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    auto value = [&](uint64_t& out) {
      if (i + 1 >= argc || !parse_u64(argv[i + 1], out)) {
        std::fprintf(stderr, "layerfs_difftest: %s needs a non-negative number\n", a.c_str());
        std::exit(2);
      }
      ++i;
    };
    if (a == "--seed") {
      value(g_config.seed);
    } else if (a == "--ops") {
      value(g_config.ops);
    } else if (a == "--runs") {
      value(g_runs);
    } else if (a == "--remount-every") {
      value(g_config.remount_every);
    } else if (a == "--check-every") {
      value(g_config.check_every);
    } else if (a == "--hidden-link-names") {
      g_config.hidden_lower_links = true;
    } else if (a == "--as-user") {
      uint64_t uid = 0, gid = 0;
      std::string v = i + 1 < argc ? argv[i + 1] : "";
      auto colon = v.find(':');
      if (colon == std::string::npos || !parse_u64(v.substr(0, colon).c_str(), uid) ||
          !parse_u64(v.substr(colon + 1).c_str(), gid) || uid == 0 || uid > 0xfffffffe ||
          gid > 0xfffffffe) {
        std::fprintf(stderr, "layerfs_difftest: --as-user needs UID:GID with a non-zero UID\n");
        std::exit(2);
      }
      ++i;
      g_config.as_user = true;
      g_config.user_uid = static_cast<uid_t>(uid);
      g_config.user_gid = static_cast<gid_t>(gid);
    } else if (a == "--verbose" || a == "-v") {
      g_config.verbose = true;
    } else if (a == "--help" || a == "-h") {
      usage(stdout);
      return 0;
    } else {
      std::fprintf(stderr, "layerfs_difftest: unknown argument %s\n", a.c_str());
      usage(stderr);
      return 2;
    }
  }
  if (::geteuid() != 0 || ::access("/dev/fuse", R_OK | W_OK) != 0) {
    std::fprintf(stderr, "layerfs_difftest: needs root and a usable /dev/fuse\n");
    return 2;
  }
  doctest::Context ctx;
  ctx.setOption("no-path-filenames", true);
  return ctx.run();
}
