// Mounted tests: FUSE passthrough (fs/passthrough.h). A root daemon on a kernel that offers it
// hands the reads and writes of upper files to the kernel; these tests check that it does, and
// that what a user sees is the same with it and without it (`nopassthrough`).
#include <doctest/doctest.h>
#include <fcntl.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/utsname.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstring>
#include <future>
#include <string>

#include "tests/support/scenario.h"

using namespace layerfs::test;

namespace {

// Whether this kernel and this process should get passthrough: root, Linux 6.9 or later, and
// (when the kernel publishes its configuration) CONFIG_FUSE_PASSTHROUGH.
bool passthrough_expected() {
  if (::geteuid() != 0) return false;
  struct utsname u;
  if (::uname(&u) != 0) return false;
  int major = 0, minor = 0;
  if (std::sscanf(u.release, "%d.%d", &major, &minor) != 2) return false;
  if (major < 6 || (major == 6 && minor < 9)) return false;
  if (::access("/proc/config.gz", R_OK) == 0) {
    CmdResult r =
        run_command({"/bin/sh", "-c", "zcat /proc/config.gz | grep -qx CONFIG_FUSE_PASSTHROUGH=y"});
    return r.exit_code == 0;
  }
  return true;
}

// Reads the first 4 KiB of `path` through a descriptor opened beforehand, with nothing of the
// file left in any page cache, while the daemon is stopped: true when the read finished without
// it within `wait`. The daemon is let go on either way, and the read must then succeed.
bool read_while_daemon_stopped(Scenario& s, const std::string& path,
                               std::chrono::milliseconds wait = std::chrono::seconds(20)) {
  Fd fd = open_fd(path, O_RDONLY);
  ::sync();
  write_file("/proc/sys/vm/drop_caches", "3");
  // drop_caches skips pages another CPU still holds in its LRU batch; this drains them.
  ::posix_fadvise(fd.get(), 0, 0, POSIX_FADV_DONTNEED);
  const pid_t pid = s.mount().daemon_pid();
  REQUIRE(::kill(pid, SIGSTOP) == 0);
  auto reader = std::async(std::launch::async, [&] {
    char buf[4096];
    return ::pread(fd.get(), buf, sizeof buf, 0);
  });
  bool done = reader.wait_for(wait) == std::future_status::ready;
  ::kill(pid, SIGCONT);
  CHECK(reader.get() == 4096);
  return done;
}

int64_t usage_bytes(Scenario& s) {
  std::string text = read_file(s.work() + "/usage");
  auto at = text.find("bytes=");
  REQUIRE(at != std::string::npos);
  return std::stoll(text.substr(at + 6));
}

}  // namespace

TEST_CASE("passthrough: the kernel reads upper files without the daemon") {
  LAYERFS_ONLY("passthrough is layerfs's");
  if (!passthrough_expected()) {
    MESSAGE("passthrough needs root and Linux 6.9+ with CONFIG_FUSE_PASSTHROUGH: not checked");
    return;
  }
  Scenario s({.lowers = {{file("lower", pattern(64 * 1024, 3))}}});
  write_file(s.mnt("new"), pattern(64 * 1024, 4));  // created through the mount
  append_file(s.mnt("lower"), "x");                 // copied up
  CHECK(read_while_daemon_stopped(s, s.mnt("new")));
  CHECK(read_while_daemon_stopped(s, s.mnt("lower")));
  CHECK(read_file(s.mnt("new")) == pattern(64 * 1024, 4));
  CHECK(read_file(s.mnt("lower")) == pattern(64 * 1024, 3) + "x");
  s.unmount();
}

TEST_CASE("passthrough: off with nopassthrough") {
  LAYERFS_ONLY("passthrough is layerfs's");
  // Copied up without being read through the mount: none of it is in the mount's page cache.
  Scenario s({.lowers = {{file("f", pattern(8192, 5))}}, .options = {"nopassthrough"}});
  { Fd w = open_fd(s.mnt("f"), O_WRONLY); }
  // The read waits for the daemon (it is let go after a moment).
  CHECK_FALSE(read_while_daemon_stopped(s, s.mnt("f"), std::chrono::milliseconds(300)));
  CHECK(read_file(s.mnt("f")) == pattern(8192, 5));
}

TEST_CASE("passthrough: sizes, times and contents agree on every path") {
  for (bool on : {true, false}) {
    CAPTURE(on);
    Scenario s({.lowers = {{file("lower", "lowerdata")}},
                .options = {on ? "passthrough" : "nopassthrough"}});
    // A descriptor opened on the lower file before the copy-up sees what a writer writes
    // after it (both then go through the daemon).
    Fd ro = open_fd(s.mnt("lower"), O_RDONLY);
    char buf[64] = {};
    CHECK(::pread(ro.get(), buf, sizeof buf, 0) == 9);
    {
      Fd w = open_fd(s.mnt("lower"), O_WRONLY);
      CHECK(::pwrite(w.get(), "UPPER", 5, 0) == 5);
      CHECK(::pread(ro.get(), buf, sizeof buf, 0) == 9);
      CHECK(std::string(buf, 9) == "UPPERdata");
    }
    ro = Fd();
    // New opens of the copy (passthrough when on): a write past the end shows in the size
    // and times that stat gives at once, through any name and descriptor.
    struct stat before = stat_path(s.mnt("lower"));
    ::usleep(20000);
    Fd rw = open_fd(s.mnt("lower"), O_RDWR);
    Fd other = open_fd(s.mnt("lower"), O_RDONLY);
    CHECK(::pwrite(rw.get(), "tail", 4, 100) == 4);
    struct stat after = stat_path(s.mnt("lower"));
    CHECK(after.st_size == 104);
    CHECK((after.st_mtim.tv_sec > before.st_mtim.tv_sec ||
           (after.st_mtim.tv_sec == before.st_mtim.tv_sec &&
            after.st_mtim.tv_nsec > before.st_mtim.tv_nsec)));
    struct stat fst;
    REQUIRE(::fstat(other.get(), &fst) == 0);
    CHECK(fst.st_size == 104);
    CHECK(::pread(other.get(), buf, 4, 100) == 4);
    CHECK(std::string(buf, 4) == "tail");
    // A shared mapping writes the same file that read(2) and the upper see.
    void* map = ::mmap(nullptr, 104, PROT_READ | PROT_WRITE, MAP_SHARED, rw.get(), 0);
    REQUIRE(map != MAP_FAILED);
    std::memcpy(map, "MMAP", 4);
    CHECK(::msync(map, 104, MS_SYNC) == 0);
    ::munmap(map, 104);
    CHECK(::pread(other.get(), buf, 9, 0) == 9);
    CHECK(std::string(buf, 9) == "MMAPRdata");
    rw = Fd();
    other = Fd();
    CHECK(read_file(s.mnt("lower")).substr(0, 9) == "MMAPRdata");
    CHECK(read_file(s.upper("lower")).substr(0, 9) == "MMAPRdata");
    s.remount();
    CHECK(read_file(s.mnt("lower")).size() == 104);
    CHECK(read_file(s.mnt("lower")).substr(100) == "tail");
  }
}

TEST_CASE("passthrough: the writable layer's size counts writes of files still open") {
  LAYERFS_ONLY("WORK/usage is layerfs's");
  for (bool on : {true, false}) {
    CAPTURE(on);
    Scenario s({.lowers = {{}}, .options = {on ? "passthrough" : "nopassthrough"}});
    Fd fd = open_fd(s.mnt("f"), O_WRONLY | O_CREAT, 0644);
    const std::string data = pattern(100000, 6);
    CHECK(::write(fd.get(), data.data(), data.size()) == static_cast<ssize_t>(data.size()));
    // An fsync of the root asks for a current count (fs/usage.h).
    Fd root = open_fd(s.mnt(), O_RDONLY | O_DIRECTORY);
    REQUIRE(::fsync(root.get()) == 0);
    CHECK(usage_bytes(s) == 100000);
    CHECK(::pwrite(fd.get(), "x", 1, 199999) == 1);
    fd = Fd();
    REQUIRE(::fsync(root.get()) == 0);
    CHECK(usage_bytes(s) == 200000);
  }
}
