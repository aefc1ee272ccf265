// Mounted tests: symlinks in a lower layer are data to the daemon, never paths it follows. A
// lower holds absolute links (/etc, /etc/passwd, a sentinel directory next to the layers, the
// upper and the workdir), relative links escaping the layer with "..", loops, and symlinked
// directories in the middle of paths; every path a user can take through the mount is tried.
//
// The layout makes a daemon that followed a link visible: the lower is x/l0 and the sentinel
// x/outside, so "../outside" resolved inside the lower is the sentinel, while the mount is
// y1/d/mnt, where the client kernel (which resolves symlinks, as it should) reaches the decoy
// y1/d/outside. The reference directory y2/d/ref has its own decoy y2/d/outside, so the same
// operations on the mount and on the reference act on equal, separate decoys. The sentinel sits
// on its own tmpfs mounted strictatime, so even a read of it would show.
#include <doctest/doctest.h>
#include <fcntl.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/xattr.h>
#include <unistd.h>

#include <set>

#include "tests/support/scenario.h"

using namespace layerfs::test;

namespace {

// The sentinel's content (and each decoy's).
std::vector<Entry> outside_tree() {
  return {file("canary", "canary", 0644).mtime(1100000000).atime(1000000000),
          dir("sub", 0755).mtime(1100000000).atime(1000000000),
          file("sub/x", "x", 0600).mtime(1100000000).atime(1000000000)};
}

// Paths inside the sentinel that are lstat'ed (which changes no atime) to see any access.
const std::vector<std::string> kSentinelPaths = {"", "/canary", "/sub", "/sub/x"};

struct Times {
  timespec atime, mtime, ctime;
  ino_t ino;
};
bool operator==(const timespec& a, const timespec& b) {
  return a.tv_sec == b.tv_sec && a.tv_nsec == b.tv_nsec;
}

class HostileLayout {
 public:
  HostileLayout() {
    x_ = tmp_.mkdir("x");
    lower_ = tmp_.mkdir("x/l0");
    upper_ = tmp_.mkdir("x/upper");
    work_ = tmp_.mkdir("x/work");
    sentinel_ = tmp_.mkdir("x/outside");
    if (::mount("layerfs-test-sentinel", sentinel_.c_str(), "tmpfs", MS_STRICTATIME, "mode=0755") !=
        0) {
      throw_errno("mount tmpfs on " + sentinel_);
    }
    sentinel_mounted_ = true;
    build(sentinel_, outside_tree());
    for (const char* side : {"y1", "y2"}) {
      std::string d = tmp_.mkdir(std::string(side) + "/d");
      build(d, {dir("outside"), dir("upper"), dir("work/index")});
      build(d + "/outside", outside_tree());
    }
    mnt_ = tmp_.mkdir("y1/d/mnt");
    ref_ = tmp_.mkdir("y2/d/ref");
    const std::string up = "../../../../../../../../../../../../..";
    build(lower_, {
                      file("plain", "plain"),
                      file("victim", "victim"),
                      sym("abs_etc", "/etc"),
                      sym("abs_passwd", "/etc/passwd"),
                      sym("abs_sent", sentinel_),
                      sym("abs_canary", sentinel_ + "/canary"),
                      sym("abs_upper", upper_),
                      sym("abs_index", work_ + "/index"),
                      sym("abs_work", work_),
                      sym("rel_out", "../outside"),
                      sym("rel_canary", "../outside/canary"),
                      sym("rel_new", "../outside/newfile"),
                      sym("rel_sub", "../outside/sub"),
                      sym("rel_upper", "../upper"),
                      sym("rel_index", "../work/index"),
                      sym("deep_root", up),
                      sym("deep_passwd", up + "/etc/passwd"),
                      sym("loop_a", "loop_b"),
                      sym("loop_b", "loop_a"),
                      sym("self", "self"),
                      sym("mid", "../outside"),
                      dir("d"),
                      file("d/f", "f"),
                      sym("d/up", ".."),
                      sym("d/upup", "../.."),
                      sym("d/esc", "../../outside/canary"),
                      sym("d/abs", sentinel_ + "/sub"),
                  });
    // lstat only: a full scan reads the files and would itself change the atimes.
    sentinel_scan_ = scan_tree(sentinel_);
    for (const auto& p : kSentinelPaths) sentinel_times_.push_back(times(sentinel_ + p));
    lower_scan_ = scan_tree(lower_);
    passwd_ = read_file("/etc/passwd");
    build_reference({upper_, lower_}, ref_);
  }
  ~HostileLayout() {
    mount_.reset();
    if (sentinel_mounted_) ::umount2(sentinel_.c_str(), MNT_DETACH);
  }

  MountSpec spec() const {
    MountSpec s;
    s.lowers = {lower_};
    s.upper = upper_;
    s.work = work_;
    s.options = {"timeout=0"};  // every lookup and getattr reaches the daemon
    return s;
  }
  void mount() { mount_ = std::make_unique<Mount>(mnt_, spec()); }
  void unmount() {
    CHECK(mount_->unmount());
    mount_.reset();
  }

  // Runs `op` on the mount and on the reference and CHECKs that both give the same errno.
  void both(const std::string& what, const std::function<int(const std::string&)>& op) {
    int m = op(mnt_);
    int r = op(ref_);
    CHECK_MESSAGE(m == r, what << ": the mount gave " << errno_name(m) << ", the reference "
                               << errno_name(r));
  }

  // Everything that must hold at any point: the sentinel untouched (not even read), /etc and
  // the lower unchanged, the decoys equal, the merged view equal to the reference, and the
  // upper holding nothing that the merged view does not show.
  void check(const std::string& when) {
    INFO("checked " << when);
    for (size_t i = 0; i < kSentinelPaths.size(); ++i) {
      Times now = times(sentinel_ + kSentinelPaths[i]);
      const Times& was = sentinel_times_[i];
      CHECK_MESSAGE(
          (now.atime == was.atime && now.mtime == was.mtime && now.ctime == was.ctime &&
           now.ino == was.ino),
          "the sentinel " << sentinel_ << kSentinelPaths[i] << " was accessed or changed");
    }
    CompareOptions strict = strict_compare();
    CHECK_MESSAGE(
        diff_trees(sentinel_scan_, scan_tree(sentinel_), strict, "before", "after").empty(),
        "the sentinel changed");
    // The scan just read the sentinel: take its atimes again.
    for (size_t i = 0; i < kSentinelPaths.size(); ++i) {
      sentinel_times_[i] = times(sentinel_ + kSentinelPaths[i]);
    }
    CHECK(read_file("/etc/passwd") == passwd_);
    std::string lower_diff = diff_trees(lower_scan_, scan_tree(lower_), strict, "before", "after");
    CHECK_MESSAGE(lower_diff.empty(), "the lower changed:\n" << lower_diff);
    CompareOptions loose;
    std::string decoys = diff_trees(scan_tree(tmp_ / "y2/d/outside"),
                                    scan_tree(tmp_ / "y1/d/outside"), loose, "ref", "mnt");
    CHECK_MESSAGE(decoys.empty(), "the decoys differ:\n" << decoys);
    for (const char* d : {"upper", "work"}) {
      CHECK(diff_trees(scan_tree(tmp_ / ("y2/d/" + std::string(d))),
                       scan_tree(tmp_ / ("y1/d/" + std::string(d))), loose, "ref", "mnt")
                .empty());
    }
    if (mount_) {
      std::string view = diff_trees(scan_tree(ref_), scan_tree(mnt_), loose, "reference", "mount");
      CHECK_MESSAGE(view.empty(), "the mount differs from the reference:\n" << view);
      for (const auto& rel : list_tree(upper_)) {
        CHECK_MESSAGE(exists(mnt_ + "/" + rel),
                      "the upper holds " << rel << ", which the merged view does not show");
      }
    }
    CHECK(list_dir(work_ + "/staging").empty());
  }

  const std::string& mnt() const { return mnt_; }
  const std::string& ref() const { return ref_; }
  const std::string& upper() const { return upper_; }
  const std::string& work() const { return work_; }
  const std::string& lower() const { return lower_; }
  const std::string& sentinel() const { return sentinel_; }
  TempDir& tmp() { return tmp_; }

 private:
  static Times times(const std::string& p) {
    struct stat st = lstat_path(p);
    return {st.st_atim, st.st_mtim, st.st_ctim, st.st_ino};
  }

  TempDir tmp_;
  std::string x_, lower_, upper_, work_, sentinel_, mnt_, ref_;
  bool sentinel_mounted_ = false;
  Snapshot sentinel_scan_, lower_scan_;
  std::string passwd_;
  std::vector<Times> sentinel_times_;
  std::unique_ptr<Mount> mount_;
};

// Links that the client may follow in the tests: relative ones (which reach the decoys through
// the mount and the reference) and loops. The absolute ones would reach the real sentinel, the
// real upper or /etc, legitimately, since the client kernel follows them as it would anywhere;
// they get only the operations that do not follow.
const std::vector<std::string> kFollowable = {"rel_out",   "rel_canary", "rel_new", "rel_sub",
                                              "rel_upper", "rel_index",  "loop_a",  "self",
                                              "mid",       "d/up",       "d/upup",  "d/esc"};
const std::vector<std::string> kAllLinks = {
    "abs_etc",   "abs_passwd", "abs_sent",    "abs_canary", "abs_upper", "abs_index",
    "abs_work",  "rel_out",    "rel_canary",  "rel_new",    "rel_sub",   "rel_upper",
    "rel_index", "deep_root",  "deep_passwd", "loop_a",     "loop_b",    "self",
    "mid",       "d/up",       "d/upup",      "d/esc",      "d/abs"};

// Operations that follow the link (in the client kernel).
void following_ops(HostileLayout& h, const std::string& l) {
  auto p = [l](const std::string& r) { return r + "/" + l; };
  h.both("open O_RDONLY " + l,
         [&](const std::string& r) { return sys::open_close(p(r), O_RDONLY); });
  h.both("readdir " + l, [&](const std::string& r) {
    try {
      list_dir(p(r));
      return 0;
    } catch (const std::system_error& e) {
      return e.code().value();
    }
  });
  h.both("open O_WRONLY|O_APPEND " + l,
         [&](const std::string& r) { return sys::write(p(r), "+", O_WRONLY | O_APPEND); });
  h.both("open O_CREAT " + l,
         [&](const std::string& r) { return sys::open_close(p(r), O_WRONLY | O_CREAT, 0600); });
  h.both("open O_CREAT|O_EXCL " + l, [&](const std::string& r) {
    return sys::open_close(p(r), O_WRONLY | O_CREAT | O_EXCL, 0600);
  });
  h.both("open O_TRUNC " + l,
         [&](const std::string& r) { return sys::open_close(p(r), O_WRONLY | O_TRUNC); });
  h.both("truncate " + l, [&](const std::string& r) { return sys::truncate(p(r), 3); });
  h.both("chmod " + l, [&](const std::string& r) { return sys::chmod(p(r), 0640); });
  h.both("chown " + l, [&](const std::string& r) { return err_of(::chown(p(r).c_str(), 5, 6)); });
  h.both("utimes " + l, [&](const std::string& r) {
    timespec ts[2] = {{1200000000, 0}, {1300000000, 0}};
    return err_of(::utimensat(AT_FDCWD, p(r).c_str(), ts, 0));
  });
  h.both("setxattr " + l, [&](const std::string& r) {
    return err_of(::setxattr(p(r).c_str(), "user.follow", "1", 1, 0));
  });
  h.both("removexattr " + l,
         [&](const std::string& r) { return err_of(::removexattr(p(r).c_str(), "user.follow")); });
  h.both("mkdir under " + l, [&](const std::string& r) { return sys::mkdir(p(r) + "/newdir"); });
  h.both("mknod under " + l,
         [&](const std::string& r) { return sys::mknod(p(r) + "/fifo", S_IFIFO | 0600); });
  h.both("create under " + l,
         [&](const std::string& r) { return sys::write(p(r) + "/made", "m"); });
  h.both("symlink under " + l,
         [&](const std::string& r) { return sys::symlink("../canary", p(r) + "/sl"); });
  h.both("rename under " + l,
         [&](const std::string& r) { return sys::rename(p(r) + "/made", p(r) + "/made2"); });
  h.both("unlink under " + l, [&](const std::string& r) { return sys::unlink(p(r) + "/made2"); });
  h.both("rmdir under " + l, [&](const std::string& r) { return sys::rmdir(p(r) + "/newdir"); });
  h.both("open under " + l + "/canary O_RDWR",
         [&](const std::string& r) { return sys::write(p(r) + "/canary", "c", O_RDWR); });
  h.both("open under " + l + "/sub/x",
         [&](const std::string& r) { return sys::open_close(p(r) + "/sub/x", O_RDONLY); });
}

// Operations on the link itself (copy-up of the link, whiteouts of it).
void nofollow_ops(HostileLayout& h, const std::string& l) {
  auto p = [l](const std::string& r) { return r + "/" + l; };
  h.both("lstat " + l, [&](const std::string& r) { return sys::lstat(p(r)); });
  h.both("readlink " + l, [&](const std::string& r) {
    char buf[4096];
    return err_of(::readlink(p(r).c_str(), buf, sizeof buf));
  });
  h.both("open O_NOFOLLOW " + l,
         [&](const std::string& r) { return sys::open_close(p(r), O_RDONLY | O_NOFOLLOW); });
  h.both("open O_PATH|O_NOFOLLOW " + l,
         [&](const std::string& r) { return sys::open_close(p(r), O_PATH | O_NOFOLLOW); });
  h.both("lchown " + l, [&](const std::string& r) { return sys::lchown(p(r), 7, 8); });
  h.both("utimes nofollow " + l, [&](const std::string& r) {
    return sys::utimens(p(r), {1400000000, 0}, {1500000000, 0});
  });
  h.both("lsetxattr trusted " + l,
         [&](const std::string& r) { return sys::setxattr(p(r), "trusted.hostile", "1"); });
  h.both("lsetxattr user " + l,
         [&](const std::string& r) { return sys::setxattr(p(r), "user.hostile", "1"); });
  h.both("lremovexattr trusted " + l,
         [&](const std::string& r) { return sys::removexattr(p(r), "trusted.hostile"); });
  h.both("link " + l, [&](const std::string& r) { return sys::link(p(r), r + "/hl"); });
  h.both("rename " + l + " away",
         [&](const std::string& r) { return sys::rename(p(r), r + "/moved"); });
  h.both("rename back to " + l,
         [&](const std::string& r) { return sys::rename(r + "/moved", p(r)); });
  h.both("unlink hl", [&](const std::string& r) { return sys::unlink(r + "/hl"); });
  h.both("rmdir " + l, [&](const std::string& r) { return sys::rmdir(p(r)); });
  h.both("exchange victim with " + l, [&](const std::string& r) {
    return sys::renameat2(r + "/victim", p(r), RENAME_EXCHANGE);
  });
  h.both("exchange back " + l, [&](const std::string& r) {
    return sys::renameat2(r + "/victim", p(r), RENAME_EXCHANGE);
  });
}

}  // namespace

TEST_CASE("hostile symlinks: no path through the mount makes the daemon follow a lower symlink") {
  LAYERFS_ONLY("checks the layerfs daemon's own accesses");
  HostileLayout h;
  h.mount();
  h.check("right after mounting");
  for (const auto& l : kFollowable) following_ops(h, l);
  h.check("after operations following the links");
  for (const auto& l : kAllLinks) nofollow_ops(h, l);
  h.check("after operations on the links themselves");
  // Read-only use of the absolute links (the client reads /etc, as it would anywhere).
  for (const char* l : {"abs_etc", "abs_passwd", "deep_passwd", "deep_root"}) {
    h.both(std::string("stat ") + l,
           [&](const std::string& r) { return err_of(::access((r + "/" + l).c_str(), R_OK)); });
  }
  // Renaming a lower directory holding escaping links (a redirect), then using them.
  h.both("rename d", [](const std::string& r) { return sys::rename(r + "/d", r + "/d2"); });
  h.both("read d2/esc",
         [](const std::string& r) { return sys::open_close(r + "/d2/esc", O_RDONLY); });
  h.both("create d2/up/new",
         [](const std::string& r) { return sys::write(r + "/d2/up/new", "n"); });
  // Replacing links by renames over them, and removing them.
  h.both("rename plain over abs_passwd",
         [](const std::string& r) { return sys::rename(r + "/plain", r + "/abs_passwd"); });
  h.both("rename rel_out over abs_sent",
         [](const std::string& r) { return sys::rename(r + "/rel_out", r + "/abs_sent"); });
  for (const char* l :
       {"abs_etc", "abs_canary", "abs_upper", "abs_index", "rel_canary", "loop_a", "self", "mid"}) {
    h.both(std::string("unlink ") + l,
           [&](const std::string& r) { return sys::unlink(r + "/" + l); });
  }
  // A symlink made through the mount (in the upper) pointing at the sentinel, used the same ways.
  h.both("symlink evil",
         [&](const std::string& r) { return sys::symlink(h.sentinel() + "/canary", r + "/evil"); });
  nofollow_ops(h, "evil");
  h.check("after renames and removals");
  h.unmount();
  h.check("after unmounting");
  h.mount();
  h.check("after mounting again");
  h.unmount();
}

TEST_CASE("hostile symlinks: a lower, upper or workdir given through a symlink") {
  LAYERFS_ONLY("checks layerfs option handling");
  // Layer options are resolved once, at mount (fs/DESIGN.md "Bad state"): a symlink given as a
  // layer means its target at that moment; retargeting it later does not move the mount.
  HostileLayout h;
  const std::string links = h.tmp().mkdir("x/links");
  REQUIRE(sys::symlink(h.lower(), links + "/lower") == 0);
  REQUIRE(sys::symlink(h.upper(), links + "/upper") == 0);
  REQUIRE(sys::symlink(h.work(), links + "/work") == 0);
  MountSpec spec = h.spec();
  spec.lowers = {links + "/lower"};
  spec.upper = links + "/upper";
  spec.work = links + "/work";
  {
    Mount m(h.mnt(), spec);
    CHECK(read_file(m / "plain") == "plain");
    CHECK(read_link(m / "rel_out") == "../outside");
    // Retarget every link at the sentinel: the mount keeps using the layers it opened.
    for (const char* n : {"lower", "upper", "work"}) {
      REQUIRE(sys::unlink(links + "/" + n) == 0);
      REQUIRE(sys::symlink(h.sentinel(), links + "/" + n) == 0);
    }
    CHECK(sys::write(m / "new", "new") == 0);
    CHECK(read_file(h.upper() + "/new") == "new");
    CHECK(sys::write(m / "plain", "changed", O_WRONLY | O_TRUNC) == 0);
    CHECK(read_file(h.upper() + "/plain") == "changed");
    CHECK(read_file(h.lower() + "/plain") == "plain");
    CHECK(m.unmount());
  }
  // Mounting again through the retargeted links would use the sentinel: it is refused there
  // (the lower would be the sentinel itself, which is fine to read, but upperdir and workdir
  // the same directory is an error), and nothing in it is touched.
  MountSpec bad = spec;
  CmdResult r = run_layerfs(layerfs_args(h.mnt(), bad));
  CHECK(r.exit_code != 0);
  CHECK(!is_mounted(h.mnt()));
  h.check("after the mount through links");
}
