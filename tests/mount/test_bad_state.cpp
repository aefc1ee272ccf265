// Mounted tests: bad state found at mount (fs/DESIGN.md, "Bad state"). A corrupt, lost or
// foreign index in the workdir, and an upper last used with other lowers, are refused with a
// message naming the problem and a non-zero exit, changing nothing; a lower that changed while
// unmounted is mounted and shown as it now is, without errors.
#include <doctest/doctest.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <random>

#include "tests/support/scenario.h"

using namespace layerfs::test;

namespace {

struct Stack {
  TempDir tmp;
  std::vector<std::string> lowers;
  std::string upper, work, mnt;

  explicit Stack(std::vector<std::vector<Entry>> layers) {
    for (size_t i = 0; i < layers.size(); ++i) {
      lowers.push_back(tmp.mkdir("l" + std::to_string(i)));
      build(lowers.back(), layers[i]);
    }
    upper = tmp.mkdir("upper");
    work = tmp.mkdir("work");
    mnt = tmp.mkdir("mnt");
  }
  MountSpec spec() const {
    MountSpec s;
    s.lowers = lowers;
    s.upper = upper;
    s.work = work;
    return s;
  }
};

// Starts layerfs in the background with `spec` and expects it to refuse. Returns its stderr.
std::string expect_refused(const std::string& mnt, const MountSpec& spec, const std::string& what) {
  CmdResult r = run_layerfs(layerfs_args(mnt, spec));
  if (r.exit_code == 0) unmount_path(mnt);
  CHECK_MESSAGE((r.exit_code > 0 && r.exit_code < 128 && !r.timed_out),
                what << ": layerfs should refuse with an error exit; " << r.describe());
  CHECK_MESSAGE(!is_mounted(mnt), what << ": a mount was left");
  return r.err;
}

// A workload that leaves records of every kind in the index.
void make_changes(const std::string& m) {
  REQUIRE(sys::unlink(m + "/gone_by_whiteout") == 0);
  REQUIRE(sys::write(m + "/cu", "changed", O_WRONLY | O_TRUNC) == 0);
  REQUIRE(sys::rename(m + "/rd", m + "/rd2") == 0);
  REQUIRE(sys::rmdir(m + "/od/inner") == 0);
  REQUIRE(sys::rmdir(m + "/od") == 0);
  REQUIRE(sys::mkdir(m + "/od") == 0);
  REQUIRE(sys::write(m + "/new", "new") == 0);
}

std::vector<std::vector<Entry>> base_layers() {
  return {{file("gone_by_whiteout", "w"), file("cu", "lower cu"), dir("rd"), file("rd/x", "x"),
           dir("od"), dir("od/inner"), file("f", "f"), file("todir", "t"), file("vanishes", "v"),
           dir("d"), file("d/y", "y"), file("h1", "h"), hardlink("h2", "h1")},
          {file("below", "b"), file("gone_by_whiteout", "w2"), dir("rd"), file("rd/z", "z")}};
}

// What the mount must show after make_changes (on unchanged lowers).
void check_changes(const std::string& m) {
  CHECK(!exists(m + "/gone_by_whiteout"));
  CHECK(read_file(m + "/cu") == "changed");
  CHECK(!exists(m + "/rd"));
  CHECK(list_dir(m + "/rd2") == std::vector<std::string>{"x", "z"});
  CHECK(list_dir(m + "/od").empty());
  CHECK(read_file(m + "/new") == "new");
  CHECK(read_file(m + "/below") == "b");
}

void corrupt_files(const std::string& dir, const std::function<void(const std::string&)>& fn) {
  for (const auto& name : list_dir(dir)) {
    std::string p = dir + "/" + name;
    if (S_ISREG(lstat_path(p).st_mode)) fn(p);
  }
}

}  // namespace

TEST_CASE("bad state: a damaged, lost or foreign index is refused, and nothing is changed") {
  LAYERFS_ONLY("checks layerfs's workdir");
  Stack st(base_layers());
  {
    Mount m(st.mnt, st.spec());
    make_changes(m.path());
    CHECK(m.unmount());
  }
  const std::string index = st.work + "/index";
  const std::string saved = st.tmp.mkdir("saved");
  REQUIRE(run_command({"/usr/bin/cp", "-a", index, saved + "/index"}).exit_code == 0);
  const Snapshot upper_before = scan_tree(st.upper);
  auto restore = [&] {
    if (try_lstat(index)) remove_tree(index);
    REQUIRE(run_command({"/usr/bin/cp", "-a", saved + "/index", index}).exit_code == 0);
  };
  struct Damage {
    std::string what;
    std::function<void()> apply;
    std::string expect;  // a piece of the message
  };
  std::mt19937 rng(6);
  std::vector<Damage> damages = {
      {"CURRENT truncated", [&] { REQUIRE(::truncate((index + "/CURRENT").c_str(), 0) == 0); },
       index},
      {"every file truncated to half",
       [&] {
         corrupt_files(index, [](const std::string& p) {
           REQUIRE(::truncate(p.c_str(), lstat_path(p).st_size / 2) == 0);
         });
       },
       index},
      {"every file overwritten with random bytes",
       [&] {
         corrupt_files(index, [&](const std::string& p) {
           std::string junk(static_cast<size_t>(lstat_path(p).st_size), '\0');
           for (auto& c : junk) c = static_cast<char>(rng());
           write_file(p, junk);
         });
       },
       index},
      {"every RocksDB file deleted",
       [&] {
         corrupt_files(index, [](const std::string& p) { REQUIRE(::unlink(p.c_str()) == 0); });
       },
       "missing"},
      {"the index directory removed", [&] { remove_tree(index); }, "missing"},
      {"the index replaced by a file",
       [&] {
         remove_tree(index);
         write_file(index, "not an index");
       },
       "not a layerfs index"},
  };
  for (const auto& d : damages) {
    INFO(d.what);
    d.apply();
    const Snapshot work_before = scan_tree(st.work);
    std::string err = expect_refused(st.mnt, st.spec(), d.what);
    CHECK_MESSAGE(err.find(d.expect) != std::string::npos, d.what << ": the message was " << err);
    CHECK_MESSAGE(
        diff_trees(work_before, scan_tree(st.work), strict_compare(), "before", "after").empty(),
        d.what << ": the failed mount changed the workdir");
    CHECK(
        diff_trees(upper_before, scan_tree(st.upper), strict_compare(), "before", "after").empty());
    restore();
  }
  // An index from another stack (another upper): refused too.
  Stack other(base_layers());
  {
    Mount m(other.mnt, other.spec());
    CHECK(sys::write(m / "other", "o") == 0);
    CHECK(m.unmount());
  }
  remove_tree(index);
  REQUIRE(run_command({"/usr/bin/cp", "-a", other.work + "/index", index}).exit_code == 0);
  std::string err = expect_refused(st.mnt, st.spec(), "foreign index");
  CHECK_MESSAGE(err.find("another upper directory") != std::string::npos, err);
  CHECK(err.find(index) != std::string::npos);
  // With its own index back, the stack shows everything it had.
  restore();
  Mount m(st.mnt, st.spec());
  check_changes(m.path());
  CHECK(m.unmount());
}

TEST_CASE("bad state: an upper last used with other lowers is refused") {
  LAYERFS_ONLY("checks layerfs's layer records");
  Stack st(base_layers());
  const std::string third = st.tmp.mkdir("l2");
  build(third, {file("third", "3")});
  {
    Mount m(st.mnt, st.spec());
    make_changes(m.path());
    CHECK(m.unmount());
  }
  const Snapshot upper_before = scan_tree(st.upper);
  struct Variant {
    std::string what;
    std::vector<std::string> lowers;
  };
  for (const Variant& v : {Variant{"swapped order", {st.lowers[1], st.lowers[0]}},
                           Variant{"one lower fewer", {st.lowers[0]}},
                           Variant{"one lower more", {st.lowers[0], st.lowers[1], third}},
                           Variant{"another lower instead", {st.lowers[0], third}}}) {
    MountSpec spec = st.spec();
    spec.lowers = v.lowers;
    std::string err = expect_refused(st.mnt, spec, v.what);
    CHECK_MESSAGE(err.find("other lower layers") != std::string::npos, v.what << ": " << err);
    CHECK_MESSAGE(err.find(st.upper) != std::string::npos, v.what << ": " << err);
  }
  CHECK(diff_trees(upper_before, scan_tree(st.upper), strict_compare(), "before", "after").empty());
  // The same lower directories under new paths (moved, not copied) are the same layers.
  const std::string moved = st.tmp / "moved-l0";
  REQUIRE(sys::rename(st.lowers[0], moved) == 0);
  MountSpec spec = st.spec();
  spec.lowers[0] = moved;
  Mount m(st.mnt, spec);
  check_changes(m.path());
  CHECK(m.unmount());
}

TEST_CASE("bad state: a lower changed while unmounted shows as it now is, without errors") {
  LAYERFS_ONLY("checks layerfs's handling of records whose lower objects went");
  Stack st(base_layers());
  {
    Mount m(st.mnt, st.spec());
    make_changes(m.path());
    CHECK(m.unmount());
  }
  const std::string l0 = st.lowers[0], l1 = st.lowers[1];
  // Added, removed, a file replaced by a directory and a directory by a file, the lower of a
  // copied-up file removed, the origin of a renamed directory removed (in both lowers), the
  // whited-out name removed, one name of a hard-link group removed.
  write_file(l0 + "/added", "added");
  REQUIRE(sys::unlink(l0 + "/vanishes") == 0);
  REQUIRE(sys::unlink(l0 + "/todir") == 0);
  build(l0, {dir("todir"), file("todir/inside", "i")});
  remove_tree(l0 + "/d");
  write_file(l0 + "/d", "now a file");
  REQUIRE(sys::unlink(l0 + "/cu") == 0);
  remove_tree(l0 + "/rd");
  remove_tree(l1 + "/rd");
  REQUIRE(sys::unlink(l0 + "/gone_by_whiteout") == 0);
  REQUIRE(sys::unlink(l0 + "/h2") == 0);

  Mount m(st.mnt, st.spec());
  CHECK(read_file(m / "added") == "added");
  CHECK(!exists(m / "vanishes"));
  CHECK(list_dir(m / "todir") == std::vector<std::string>{"inside"});
  CHECK(read_file(m / "d") == "now a file");
  CHECK(read_file(m / "cu") == "changed");  // the upper copy stands on its own
  CHECK(S_ISDIR(lstat_path(m / "rd2").st_mode));
  CHECK(list_dir(m / "rd2").empty());  // its origin is gone: nothing to merge
  CHECK(!exists(m / "rd"));
  CHECK(!exists(m / "gone_by_whiteout"));  // the lower below is still hidden
  CHECK(read_file(m / "h1") == "h");
  CHECK(!exists(m / "h2"));
  CHECK(read_file(m / "new") == "new");
  // The whole tree can be walked and read without an error.
  Snapshot snap;
  CHECK_NOTHROW(snap = scan_tree(m.path()));
  CHECK(snap.count("todir/inside") == 1);
  // And changed further.
  CHECK(sys::write(m / "rd2/made", "m") == 0);
  CHECK(sys::unlink(m / "rd2/made") == 0);
  CHECK(sys::rmdir(m / "rd2") == 0);
  CHECK(sys::unlink(m / "cu") == 0);
  CHECK(sys::write(m / "todir/inside", "w", O_WRONLY | O_APPEND) == 0);
  CHECK(sys::write(m / "h1", "+", O_WRONLY | O_APPEND) == 0);
  CHECK(read_file(m / "h1") == "h+");
  CHECK(sys::rename(m / "todir", m / "todir2") == 0);
  CHECK(list_dir(m / "todir2") == std::vector<std::string>{"inside"});
  CHECK(m.unmount());
  Mount again(st.mnt, st.spec());
  CHECK(!exists(again / "rd2"));
  CHECK(!exists(again / "cu"));
  CHECK(read_file(again / "todir2/inside") == "iw");
  CHECK(read_file(again / "h1") == "h+");
  CHECK(again.unmount());
}
