// Mounted tests: faults of the upper filesystem reach the caller as errors and leave nothing
// half-done behind. ENOSPC: the upper and the workdir on a small tmpfs, filled up through the
// mount (32 MiB: RocksDB preallocates about 13 MiB for its WAL and MANIFEST in the workdir). EIO:
// the upper and the workdir on a loop-mounted ext4 that is then shut down (EXT4_IOC_SHUTDOWN),
// after which every operation on it fails with EIO, as a dying disk would.
#include <doctest/doctest.h>
#include <fcntl.h>
#include <signal.h>
#include <sys/ioctl.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <sys/xattr.h>
#include <unistd.h>

#include <set>

#include "tests/support/scenario.h"

using namespace layerfs::test;

namespace {

constexpr size_t kBigSize = 3u << 20;     // larger than what is left on the full upper
constexpr size_t kSmallSize = 64u << 10;  // more than a page, so its copy needs new blocks

std::vector<Entry> fault_lower() {
  return {file("big", pattern(kBigSize, 7)),
          file("small", pattern(kSmallSize, 8)),
          dir("d"),
          file("d/f", pattern(kSmallSize, 9)),
          dir("ld"),
          file("ld/inner", "inner")};
}

// Writes `path` in 64 KiB pieces until the filesystem is full. Returns the errno that stopped it
// (0 if `limit` bytes went in first).
int fill(const std::string& path, size_t limit) {
  int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0) return errno;
  std::string chunk(64u << 10, 'F');
  int err = 0;
  for (size_t done = 0; done < limit && err == 0;) {
    ssize_t n = ::write(fd, chunk.data(), chunk.size());
    if (n < 0)
      err = errno;
    else
      done += static_cast<size_t>(n);
  }
  // The last pages: byte by byte would be slow; a page at a time is enough for tmpfs.
  std::string page(4096, 'f');
  while (err == ENOSPC && ::write(fd, page.data(), page.size()) > 0) {
  }
  if (err == 0 && ::fsync(fd) != 0) err = errno;
  ::close(fd);
  return err;
}

// One operation on the full upper: it must fail with one of `allowed` (checked by the caller's
// message) and leave the merged view as it was.
struct FullOp {
  std::string what;
  std::function<int(const std::string& root)> op;
};

std::vector<FullOp> ops_needing_space() {
  return {{"open big for writing (copy-up of a file larger than the free space)",
           [](const std::string& r) { return sys::open_close(r + "/big", O_WRONLY); }},
          {"append to small (copy-up)",
           [](const std::string& r) { return sys::write(r + "/small", "+", O_WRONLY | O_APPEND); }},
          {"truncate d/f to half (copy-up of the kept prefix)",
           [](const std::string& r) { return sys::truncate(r + "/d/f", kSmallSize / 2); }},
          {"setxattr on big (copy-up)",
           [](const std::string& r) { return sys::setxattr(r + "/big", "user.x", "1"); }},
          {"chmod small (copy-up)",
           [](const std::string& r) { return sys::chmod(r + "/small", 0600); }},
          {"rename small to renamed (copy-up)",
           [](const std::string& r) { return sys::rename(r + "/small", r + "/renamed"); }},
          {"link big to big2 (copy-up)",
           [](const std::string& r) { return sys::link(r + "/big", r + "/big2"); }},
          {"write 1 MiB to a new file", [](const std::string& r) {
             return sys::write(r + "/newfile", std::string(1u << 20, 'n'));
           }}};
}

std::vector<std::string> staging_entries(const Scenario& s) {
  return list_dir(s.work() + "/staging");
}

}  // namespace

TEST_CASE("upper faults: ENOSPC reaches the caller, leaves no partial copy, and passes") {
  LAYERFS_ONLY("checks the layerfs workdir");
  Scenario s({.lowers = {fault_lower()}, .upper_tmpfs = "size=32m"});
  // A file made through the mount before the upper fills up: it must stay intact.
  s.both("create kept", [](const std::string& r) { return sys::write(r + "/kept", "kept"); });

  int e = fill(s.mnt("filler"), 64u << 20);
  CHECK_MESSAGE(e == ENOSPC, "filling the upper through the mount ended with " << errno_name(e));
  const std::string view_before = read_file(s.mnt("big"));

  for (const auto& op : ops_needing_space()) {
    int got = op.op(s.mnt());
    CHECK_MESSAGE((got == ENOSPC || got == EDQUOT || got == EFBIG),
                  op.what << " on the full upper gave " << errno_name(got));
    CHECK_MESSAGE(staging_entries(s).empty(), op.what << ": staging not empty");
  }
  // Nothing half-written is visible: the lower content shows unchanged, no partial copies.
  CHECK(read_file(s.mnt("big")) == view_before);
  CHECK(read_file(s.mnt("small")) == pattern(kSmallSize, 8));
  CHECK(read_file(s.mnt("d/f")) == pattern(kSmallSize, 9));
  CHECK(lstat_path(s.mnt("small")).st_mode == (S_IFREG | 0644));
  CHECK(!get_xattr(s.mnt("big"), "user.x").has_value());
  CHECK(!exists(s.mnt("renamed")));
  CHECK(!exists(s.mnt("big2")));
  CHECK(!exists(s.upper("big")));
  CHECK(!exists(s.upper("small")));
  CHECK(!exists(s.upper("d/f")));
  CHECK(read_file(s.mnt("kept")) == "kept");
  // A failed create may leave an empty or short new file (as on any full filesystem); the merged
  // view then shows exactly what the upper holds.
  if (exists(s.mnt("newfile"))) {
    CHECK(read_file(s.mnt("newfile")) == read_file(s.upper("newfile")));
    s.both("remove newfile", [](const std::string& r) {
      int e = sys::unlink(r + "/newfile");
      return e == ENOENT ? 0 : e;
    });
  }
  // Operations needing no data blocks on tmpfs may work or fail, but never half-way.
  int m = sys::mkdir(s.mnt("ld/newdir"));
  CHECK_MESSAGE((m == 0 || m == ENOSPC), "mkdir on the full upper gave " << errno_name(m));
  if (m == 0)
    CHECK(sys::mkdir(s.ref("ld/newdir")) == 0);
  else
    CHECK(!exists(s.mnt("ld/newdir")));
  CHECK(staging_entries(s).empty());

  // Freeing space through the mount makes the same operations work.
  s.both("unlink filler", [](const std::string& r) {
    int e = sys::unlink(r + "/filler");
    return e == ENOENT ? 0 : e;
  });
  // The daemon holds the removed file's O_PATH descriptor until the kernel forgets the inode,
  // which it does right after the unlink but asynchronously (fs/DESIGN.md, "Faults of the
  // upper filesystem"): wait for the space to come back.
  bool freed = false;
  for (int i = 0; i < 250 && !freed; ++i) {
    struct statvfs v {};
    REQUIRE(::statvfs(s.rw_root().c_str(), &v) == 0);
    freed = v.f_bavail * v.f_frsize >= (8u << 20);
    if (!freed) ::usleep(20000);
  }
  CHECK_MESSAGE(freed, "the space of the removed filler did not come back within 5 s");
  for (const auto& op : ops_needing_space()) s.both(op.what + ", with space again", op.op);
  CHECK(staging_entries(s).empty());
  CompareOptions o;
  o.nlink = true;
  s.check_tree(o, "after space was freed");
  s.remount();
  s.check_tree(o, "after a remount");
  CHECK(staging_entries(s).empty());
}

TEST_CASE("upper faults: ENOSPC while writing an open copied-up file, then a remount") {
  LAYERFS_ONLY("checks the layerfs workdir");
  Scenario s({.lowers = {fault_lower()}, .upper_tmpfs = "size=32m"});
  // Copy small up while there is space, then fill the upper by extending it.
  Fd fd = open_fd(s.mnt("small"), O_WRONLY | O_APPEND);
  std::string chunk(64u << 10, 'a');
  int err = 0;
  size_t written = 0;
  for (int i = 0; i < 1000 && err == 0; ++i) {
    ssize_t n = ::write(fd.get(), chunk.data(), chunk.size());
    if (n < 0)
      err = errno;
    else
      written += static_cast<size_t>(n);
  }
  CHECK_MESSAGE(err == ENOSPC,
                "extending an open file past the free space gave " << errno_name(err));
  int fs = err_of(::fsync(fd.get()));
  CHECK_MESSAGE((fs == 0 || fs == ENOSPC), "fsync after ENOSPC gave " << errno_name(fs));
  fd = Fd();
  // What went in is there; the original bytes are intact.
  std::string got = read_file(s.mnt("small"));
  CHECK(got.size() == kSmallSize + written);
  CHECK(got.substr(0, kSmallSize) == pattern(kSmallSize, 8));
  // The daemon still serves: truncate back frees the space, and new files work.
  CHECK(sys::truncate(s.mnt("small"), kSmallSize) == 0);
  CHECK(sys::write(s.mnt("after"), std::string(1u << 20, 'z')) == 0);
  s.remount();
  CHECK(read_file(s.mnt("small")) == pattern(kSmallSize, 8));
  CHECK(read_file(s.mnt("after")) == std::string(1u << 20, 'z'));
  CHECK(staging_entries(s).empty());
}

namespace {

// An ext4 image loop-mounted on `dir` for the scope (mount -o loop sets autoclear, so the loop
// device goes with the unmount).
class LoopExt4 {
 public:
  LoopExt4(const std::string& image, std::string dir) : dir_(std::move(dir)) {
    Fd img = open_fd(image, O_WRONLY | O_CREAT | O_TRUNC, 0600);
    REQUIRE(::ftruncate(img.get(), 64 << 20) == 0);
    img = Fd();
    CmdResult mk = run_command({"/usr/sbin/mkfs.ext4", "-q", "-F", image});
    REQUIRE_MESSAGE(mk.exit_code == 0, "mkfs.ext4: " << mk.describe());
    mount_ = image;
    remount();
  }
  ~LoopExt4() { unmount(); }
  LoopExt4(const LoopExt4&) = delete;
  LoopExt4& operator=(const LoopExt4&) = delete;

  void remount() {
    CmdResult m = run_command({"/usr/bin/mount", "-t", "ext4", "-o", "loop", mount_, dir_});
    REQUIRE_MESSAGE(m.exit_code == 0, "mount -o loop: " << m.describe());
    mounted_ = true;
  }
  void unmount() {
    if (!mounted_) return;
    // The daemon may still hold the filesystem for a moment after its unmount (fs/DESIGN.md).
    for (int i = 0; i < 100 && ::umount2(dir_.c_str(), 0) != 0 && errno == EBUSY; ++i) {
      ::usleep(20000);
    }
    if (is_mounted(dir_)) ::umount2(dir_.c_str(), MNT_DETACH);
    mounted_ = false;
  }
  // Every later operation on the filesystem fails with EIO; its data up to now is synced.
  int shut_down() const {
    Fd root = open_fd(dir_, O_RDONLY | O_DIRECTORY);
    uint32_t flags = 0;  // EXT4_GOING_FLAGS_DEFAULT: sync, then shut down
    constexpr unsigned long kShutdown = _IOR('X', 125, uint32_t);  // EXT4_IOC_SHUTDOWN
    return err_of(::ioctl(root.get(), kShutdown, &flags));
  }

 private:
  std::string dir_, mount_;
  bool mounted_ = false;
};

}  // namespace

TEST_CASE("upper faults: EIO from the upper reaches the caller and the daemon keeps serving") {
  LAYERFS_ONLY("checks the layerfs daemon");
  TempDir tmp;
  const std::string lower = tmp.mkdir("l");
  build(lower, fault_lower());
  const std::string rw = tmp.mkdir("rw");
  LoopExt4 ext4(tmp / "ext4.img", rw);
  const std::string upper = rw + "/upper", work = rw + "/work";
  REQUIRE(sys::mkdir(upper) == 0);
  REQUIRE(sys::mkdir(work) == 0);
  MountSpec spec;
  spec.lowers = {lower};
  spec.upper = upper;
  spec.work = work;
  spec.options = {"timeout=0"};  // every operation reaches the daemon
  const std::string mnt = tmp.mkdir("mnt");
  {
    Mount m(mnt, spec);
    REQUIRE(sys::write(m / "kept", "kept") == 0);
    REQUIRE(sys::write(m / "small", "+", O_WRONLY | O_APPEND) == 0);
    REQUIRE(sys::mkdir(m / "ld/sub") == 0);
    Fd held = open_fd(m / "kept", O_RDWR);
    REQUIRE(ext4.shut_down() == 0);

    auto must_fail = [&](const std::string& what, int got) {
      CHECK_MESSAGE(got == EIO, what << " on a failing upper gave " << errno_name(got));
    };
    must_fail("create", sys::write(m / "new", "n"));
    must_fail("copy-up of big", sys::open_close(m / "big", O_WRONLY));
    must_fail("chmod d/f", sys::chmod(m / "d/f", 0600));
    must_fail("mkdir", sys::mkdir(m / "newdir"));
    must_fail("unlink kept", sys::unlink(m / "kept"));
    must_fail("rename ld", sys::rename(m / "ld", m / "ld2"));
    must_fail("pwrite on a held upper file", ::pwrite(held.get(), "x", 1, 0) == 1
                                                 ? (::fsync(held.get()) == 0 ? 0 : errno)
                                                 : errno);
    // Reads may fail too (the upper is consulted for every name), but never with a wrong
    // answer: an error other than EIO, or content that is not the file's.
    int st = sys::lstat(m / "kept");
    CHECK_MESSAGE((st == 0 || st == EIO), "lstat kept gave " << errno_name(st));
    for (const char* rel : {"big", "d/f"}) {
      int fd = ::open((m / rel).c_str(), O_RDONLY | O_CLOEXEC);
      if (fd < 0) {
        CHECK_MESSAGE(errno == EIO, "open " << rel << " gave " << errno_name(errno));
        continue;
      }
      ::close(fd);
      CHECK(read_file(m / rel) == read_file(lower + "/" + rel));
    }
    errno = 0;
    try {
      list_dir(m.path());
    } catch (const std::system_error& e) {
      CHECK_MESSAGE(e.code().value() == EIO, "readdir gave " << e.what());
    }
    // Still serving: the daemon is alive and the mount answers (statfs of the mount too).
    CHECK(::kill(m.daemon_pid(), 0) == 0);
    CHECK(is_mounted(mnt));
    held = Fd();
    m.unmount();
    CHECK_MESSAGE((m.exit_status() >= 0 && m.exit_status() < 128),
                  "the daemon ended with " << m.exit_status() << ": " << m.problem() << "\n"
                                           << m.log());
  }
  // The disk comes back: everything done before the failure is there, nothing else.
  ext4.unmount();
  ext4.remount();
  {
    Mount m(mnt, spec);
    CHECK(read_file(m / "kept") == "kept");
    CHECK(read_file(m / "small") == pattern(kSmallSize, 8) + "+");
    CHECK(lstat_path(m / "ld/sub").st_mode == (S_IFDIR | 0755));
    CHECK(exists(m / "ld/inner"));
    CHECK(read_file(m / "big") == pattern(kBigSize, 7));
    CHECK(!exists(m / "new"));
    CHECK(!exists(m / "newdir"));
    CHECK(!exists(m / "ld2"));
    CHECK(list_dir(work + "/staging").empty());
    CHECK(sys::write(m / "new", "works") == 0);
    CHECK(m.unmount());
  }
}

TEST_CASE("upper faults: ENOSPC while writing the index, then a remount") {
  LAYERFS_ONLY("checks layerfs's index");
  // 10 MiB: too small for RocksDB to preallocate its WAL, so the index's own writes hit the
  // full disk. Removing lower files needs index records (whiteouts) and no data blocks.
  constexpr int kFiles = 400;
  std::vector<Entry> lower;
  for (int i = 0; i < kFiles; ++i) {
    lower.push_back(
        file("a_long_name_so_that_each_whiteout_fills_the_log_" + std::to_string(i), "x"));
  }
  Scenario s({.lowers = {lower}, .upper_tmpfs = "size=10m"});
  int e = fill(s.mnt("filler"), 64u << 20);
  REQUIRE_MESSAGE(e == ENOSPC, "filling the upper ended with " << errno_name(e));
  std::vector<bool> removed(kFiles, false);
  int refused = 0;
  auto name = [](int i) {
    return "a_long_name_so_that_each_whiteout_fills_the_log_" + std::to_string(i);
  };
  for (int i = 0; i < kFiles / 2; ++i) {
    int got = sys::unlink(s.mnt(name(i)));
    CHECK_MESSAGE((got == 0 || got == ENOSPC), "unlink on a full upper gave " << errno_name(got));
    removed[i] = got == 0;
    refused += got == ENOSPC;
    // What the caller was told is what the view shows.
    CHECK(exists(s.mnt(name(i))) == !removed[i]);
  }
  CHECK_MESSAGE(refused > 0, "the index never ran out of space; the test needs a smaller upper");
  REQUIRE(sys::unlink(s.mnt("filler")) == 0);
  // RocksDB takes writes again by itself once 8 MiB are free, which this upper never has; a
  // new mount starts a new log (fs/DESIGN.md, "Faults of the upper filesystem").
  s.remount();
  for (int i = 0; i < kFiles; ++i) {
    CHECK_MESSAGE(exists(s.mnt(name(i))) == !removed[i],
                  name(i) << (removed[i] ? " came back" : " went") << " after the remount");
  }
  for (int i = kFiles / 2; i < kFiles; ++i) REQUIRE(sys::unlink(s.mnt(name(i))) == 0);
  s.remount();
  CHECK(list_dir(s.mnt()).size() == static_cast<size_t>(refused));
  s.unmount();
}
