// Mounted tests: the differential random-operation tester (tests/difftest) in its short CI form —
// a few fixed seeds of a couple of thousand random operations each, with remounts at random
// points, every result and the whole trees compared with a plain directory. Longer runs:
// layerfs_difftest (tests/difftest/README.md).
#include <doctest/doctest.h>
#include <fcntl.h>

#include "tests/difftest/engine.h"
#include "tests/support/mount.h"
#include "tests/support/scenario.h"
#include "tests/support/user.h"

using namespace layerfs;
using namespace layerfs::test;

TEST_CASE("difftest: random operations agree with a plain directory (3 seeds, remounts)") {
  // The generated lowers use OCI .wh.* whiteouts, which kernel overlayfs shows as files, and the
  // trees are held to layerfs's d_ino == st_ino, which overlayfs does not keep after a copy-up.
  LAYERFS_ONLY("the differential tester checks promises kernel overlayfs does not make");
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

TEST_CASE("difftest: random operations as an unprivileged user agree (2 seeds, remounts)") {
  LAYERFS_ONLY("the differential tester checks promises kernel overlayfs does not make");
  // User 1000 owns some of the generated lower files and directories; others belong to root
  // and to 7:8. Modes that deny, set-id files and sticky directories are in the lowers.
  for (uint64_t seed : {11, 12}) {
    difftest::Config cfg;
    cfg.seed = seed;
    cfg.ops = 1500;
    cfg.check_every = 100;
    cfg.remount_every = 500;
    cfg.as_user = true;
    cfg.user_uid = 1000;
    cfg.user_gid = 1000;
    difftest::Result r = difftest::run(cfg);
    INFO("seed " << seed << ": " << r.ops_run << " operations as 1000:1000, " << r.remounts
                 << " remounts, " << r.checks << " tree checks");
    CHECK_MESSAGE(r.ok, "seed " << seed << ", " << r.failure
                                << "\nreplay: " << difftest::replay_command(cfg, r));
    CHECK(r.ops_run == cfg.ops);
  }
}

// ---- Findings of the differential tester, as minimal cases ------------------------------------

// Found by layerfs_difftest (seeds 105, 109 and 115 of `--seed 100 --runs 40 --ops 10000`, before
// the generator learnt to avoid it; now `layerfs_difftest --seed 29 --ops 0
// --hidden-link-names` shows it right after mounting): a lower hard-link
// group one of whose names is hidden in the merged view (here by a whiteout in a higher lower)
// reports the lower's st_nlink, counting the hidden name, and the group record created at
// copy-up starts from that count, so the error stays after writes, links and unlinks and
// across remounts. fs/DESIGN.md promises the count of names in the merged view. Not fixed:
// knowing which names of a group are visible needs every name of the lower inode, i.e. a scan
// of the lower layer (kernel overlayfs shows the lower count too).
TEST_CASE(
    "difftest finding: st_nlink of a lower hard-link group counts only names in the merged "
    "view" *
    doctest::may_fail()) {
  Scenario s({.lowers = {{whiteout("h2")}, {file("h1", "hi"), hardlink("h2", "h1")}}});
  CompareOptions o;
  o.nlink = true;
  CHECK(lstat_path(s.mnt("h1")).st_nlink == 1);
  s.check_tree(o, "before any change");
  s.both("append h1",
         [](const std::string& r) { return sys::write(r + "/h1", "+", O_WRONLY | O_APPEND); });
  s.both("link h1 h3", [](const std::string& r) { return sys::link(r + "/h1", r + "/h3"); });
  s.both("unlink h1", [](const std::string& r) { return sys::unlink(r + "/h1"); });
  s.check_tree(o, "after append, link and unlink");
  s.remount();
  s.check_tree(o, "after a remount");
}

// Found by layerfs_difftest (`--seed 202 --ops 53`: open a lower file, unlink it, fstat the open
// descriptor): the daemon answered with the lower file's st_nlink (1) for an object that had no
// name left in the merged view; a plain directory says 0. Fixed in Filesystem::getattr.
TEST_CASE("difftest finding: fstat of an open file whose last name went reports st_nlink 0") {
  Scenario s({.lowers = {{file("f", "lower"), dir("d"), file("d/x", "x")},
                         {file("g", "g"), hardlink("g2", "g"), dir("d"), file("d/y", "y")}}});
  // A lower file, a lower hard-link group (both names), a merged directory, an upper file.
  s.both("create u", [](const std::string& r) { return sys::write(r + "/u", "upper"); });
  for (const char* rel : {"f", "g", "u"}) {
    Fd m = open_fd(s.mnt(rel), O_RDONLY);
    Fd r = open_fd(s.ref(rel), O_RDONLY);
    s.both(std::string("unlink ") + rel, [&](const std::string& root) {
      int e = sys::unlink(root + "/" + rel);
      return e || std::string(rel) != "g" ? e : sys::unlink(root + "/g2");
    });
    struct stat sm {
    }, sr{};
    REQUIRE(::fstat(m.get(), &sm) == 0);
    REQUIRE(::fstat(r.get(), &sr) == 0);
    CHECK_MESSAGE(sm.st_nlink == sr.st_nlink,
                  rel << ": mount " << sm.st_nlink << ", reference " << sr.st_nlink);
    CHECK(read_file("/proc/self/fd/" + std::to_string(m.get())) ==
          read_file("/proc/self/fd/" + std::to_string(r.get())));
  }
  Fd m = open_fd(s.mnt("d"), O_RDONLY | O_DIRECTORY);
  Fd r = open_fd(s.ref("d"), O_RDONLY | O_DIRECTORY);
  s.both("empty and remove d", [](const std::string& root) {
    int e = sys::unlink(root + "/d/x");
    e = e ? e : sys::unlink(root + "/d/y");
    return e ? e : sys::rmdir(root + "/d");
  });
  struct stat sm {
  }, sr{};
  REQUIRE(::fstat(m.get(), &sm) == 0);
  REQUIRE(::fstat(r.get(), &sr) == 0);
  CHECK_MESSAGE(sm.st_nlink == sr.st_nlink,
                "removed directory: mount " << sm.st_nlink << ", reference " << sr.st_nlink);
  s.check_tree();
}

// Found by layerfs_difftest (`--seed 700 --ops 1` with LAYERFS_TEST_EXTRA_OPTIONS=timeout=0,
// which keeps the kernel from hiding it behind cached attributes): copying up a member of a
// lower hard-link group changed its parent's mtime (the copy's name was linked into the parent
// without putting the parent's times back, as every other copy-up does). Fixed in copy_up.cpp.
TEST_CASE("difftest finding: copy-up of a hard-link group member keeps the parent's mtime") {
  Scenario s({.lowers = {{dir("d"), file("d/h1", "h"), hardlink("d/h2", "d/h1")}}});
  const timespec stamp{1000000000, 0};
  s.both("stamp d", [&](const std::string& r) { return sys::utimens(r + "/d", stamp, stamp); });
  s.both("append d/h1",
         [](const std::string& r) { return sys::write(r + "/d/h1", "+", O_WRONLY | O_APPEND); });
  s.remount();  // past the kernel's attribute cache
  CHECK(lstat_path(s.mnt("d")).st_mtime == stamp.tv_sec);
  CHECK(lstat_path(s.ref("d")).st_mtime == stamp.tv_sec);
  CompareOptions o;
  o.nlink = true;
  s.check_tree(o);
}

// Found by layerfs_difftest --as-user 1000:1000 (seeds 126, 127, 138 of `--seed 100 --runs 40
// --ops 3000`): open(O_TRUNC) of a set-user-ID file by its unprivileged owner kept the bit on
// the mount, where a plain directory clears it (the kernel truncates through the FUSE open
// with atomic O_TRUNC, so it sends no setattr that would clear it). Fixed in op_open.
TEST_CASE("difftest finding: open(O_TRUNC) by an unprivileged owner clears set-id bits") {
  Scenario s({.lowers = {{file("suid", "x", 04755).owner(kUserUid, kUserGid),
                          file("sgid", "x", 02775).owner(kUserUid, kUserGid),
                          file("sgid_nox", "x", 02664).owner(kUserUid, kUserGid),
                          file("root_suid", "x", 04777)}},
              .options = {"allow_other"}});
  std::string failures = run_as(kUserUid, kUserGid, [&](Expect& e) {
    for (const char* rel : {"suid", "sgid", "sgid_nox", "root_suid"}) {
      for (const std::string& root : {s.mnt(), s.ref()}) {
        e.err(sys::open_close(root + "/" + rel, O_WRONLY | O_TRUNC), 0,
              std::string("O_TRUNC ") + rel + " in " + root);
      }
    }
  });
  CHECK_MESSAGE(failures.empty(), failures);
  for (const char* rel : {"suid", "sgid", "sgid_nox", "root_suid"}) {
    CHECK_MESSAGE(lstat_path(s.mnt(rel)).st_mode == lstat_path(s.ref(rel)).st_mode,
                  rel << ": mount " << std::oct << lstat_path(s.mnt(rel)).st_mode << ", reference "
                      << lstat_path(s.ref(rel)).st_mode);
  }
  // Root keeps the bits, as on a plain directory.
  s.both("chmod suid back", [](const std::string& r) { return sys::chmod(r + "/suid", 04755); });
  s.both("O_TRUNC as root",
         [](const std::string& r) { return sys::open_close(r + "/suid", O_WRONLY | O_TRUNC); });
  s.check_tree();
}
