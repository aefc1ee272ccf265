// Mounted tests: everything a mount did survives an unmount and a new mount of the same
// directories — data, metadata, deletions, opaque directories, renames, links — also when the
// new mount uses another mountpoint, and over several rounds.
#include <doctest/doctest.h>
#include <fcntl.h>
#include <linux/fs.h>
#include <stdio.h>
#include <sys/stat.h>
#include <unistd.h>

#include <chrono>
#include <thread>

#include "tests/support/scenario.h"

using namespace layerfs::test;

namespace {

std::vector<std::vector<Entry>> workload_lowers() {
  return {{file("a", "a"), dir("d"), file("d/x", "x"), sym("l", "a"), dir("big"),
           file("big/1", "1"), file("h1", "h").owner(7, 8), hardlink("h2", "h1")},
          {file("b", "b"), file("d/y", "y"), dir("e"), file("e/z", "z"), file("big/2", "2"),
           dir("opq"), file("opq/old", "o"), fifo("p")}};
}

// A bit of every kind of change, applied through Scenario::both.
void apply_workload(Scenario& s, const std::string& round) {
  auto op = [&](const std::string& what, const std::function<int(const std::string&)>& f) {
    s.both(round + ": " + what, f);
  };
  op("write a", [](const std::string& r) { return sys::write(r + "/a", "new a", O_WRONLY); });
  op("append b",
     [](const std::string& r) { return sys::write(r + "/b", "+", O_WRONLY | O_APPEND); });
  op("unlink d/y", [](const std::string& r) { return sys::unlink(r + "/d/y"); });
  op("chmod d/x", [](const std::string& r) { return sys::chmod(r + "/d/x", 0600); });
  op("chown d", [](const std::string& r) { return sys::lchown(r + "/d", 3, 4); });
  op("xattr", [](const std::string& r) { return sys::setxattr(r + "/d/x", "user.r", "1"); });
  op("times", [](const std::string& r) {
    return sys::utimens(r + "/b", {1111111111, 0}, {1222222222, 0});
  });
  op("rm opq/old", [](const std::string& r) { return sys::unlink(r + "/opq/old"); });
  op("rmdir opq", [](const std::string& r) { return sys::rmdir(r + "/opq"); });
  op("mkdir opq", [](const std::string& r) { return sys::mkdir(r + "/opq"); });
  op("create opq/new", [](const std::string& r) { return sys::write(r + "/opq/new", "n"); });
  op("rename big", [](const std::string& r) { return sys::rename(r + "/big", r + "/moved"); });
  op("rename e/z", [](const std::string& r) { return sys::rename(r + "/e/z", r + "/z"); });
  op("link", [](const std::string& r) { return sys::link(r + "/z", r + "/e/z2"); });
  op("write h2", [](const std::string& r) { return sys::write(r + "/h2", "H", O_WRONLY); });
  op("symlink", [](const std::string& r) { return sys::symlink("moved/1", r + "/sl"); });
  op("mkfifo", [](const std::string& r) { return sys::mknod(r + "/fifo", S_IFIFO | 0600); });
  op("exchange",
     [](const std::string& r) { return sys::renameat2(r + "/a", r + "/b", RENAME_EXCHANGE); });
  op("sparse", [](const std::string& r) {
    int fd = ::open((r + "/sparse").c_str(), O_WRONLY | O_CREAT | O_CLOEXEC, 0644);
    if (fd < 0) return errno;
    int e = err_of(::pwrite(fd, "end", 3, 5 << 20));
    ::close(fd);
    return e;
  });
}

}  // namespace

TEST_CASE("persistence: a mixed workload survives unmount and mount") {
  Scenario s({.lowers = workload_lowers()});
  apply_workload(s, "first");
  CompareOptions o;
  o.nlink = true;
  s.check_tree(o);
  s.remount();
  s.check_tree(o, "after the first remount");
  s.remount();
  s.check_tree(o, "after the second remount");
  // The same names changed again on top of the persisted state.
  s.both("unlink moved/1", [](const std::string& r) { return sys::unlink(r + "/moved/1"); });
  s.both("rename moved back",
         [](const std::string& r) { return sys::rename(r + "/moved", r + "/big"); });
  s.both("rmdir e after emptying", [](const std::string& r) {
    int e = sys::unlink(r + "/e/z2");
    return e ? e : sys::rmdir(r + "/e");
  });
  s.check_tree(o, "after more changes");
  s.remount();
  s.check_tree(o, "after the third remount");
}

TEST_CASE("persistence: another mountpoint with the same directories shows the same tree") {
  Scenario s({.lowers = workload_lowers()});
  apply_workload(s, "before");
  s.unmount();
  Mount other(s.tmp().mkdir("elsewhere"), s.spec());
  std::string diff =
      diff_trees(s.snapshot_ref(), scan_tree(other.path()), {}, "reference", "new mountpoint");
  CHECK_MESSAGE(diff.empty(), "the new mountpoint differs:\n" << diff);
  write_file(other / "from_elsewhere", "e");
  CHECK_MESSAGE(other.unmount(), other.problem());
  s.do_mount();
  CHECK(read_file(s.mnt("from_elsewhere")) == "e");
}

TEST_CASE("persistence: many small mounts in a row") {
  Scenario s({.lowers = {{file("counter", "0"), dir("d")}, {file("d/base", "b")}}});
  for (int i = 1; i <= 5; ++i) {
    const std::string n = std::to_string(i);
    s.both("write counter", [&](const std::string& r) { return sys::write(r + "/counter", n); });
    s.both("create", [&](const std::string& r) { return sys::write(r + "/d/f" + n, n); });
    s.both("unlink previous", [&](const std::string& r) {
      return i == 1 ? sys::unlink(r + "/d/base") : sys::unlink(r + "/d/f" + std::to_string(i - 1));
    });
    s.remount();
    CHECK(read_file(s.mnt("counter")) == n);
    CHECK(list_dir(s.mnt("d")) == std::vector<std::string>{"f" + n});
  }
  s.check_tree();
}

namespace {

// fsync(2) on every file and directory of a tree: what a careful application does before it
// relies on its changes.
void fsync_tree(const std::string& root) {
  for (const auto& rel : list_tree(root)) {
    const std::string p = root + "/" + rel;
    struct stat st = lstat_path(p);
    if (!S_ISREG(st.st_mode) && !S_ISDIR(st.st_mode)) continue;
    Fd fd = open_fd(p, O_RDONLY | O_NOFOLLOW);
    CHECK_MESSAGE(err_of(::fsync(fd.get())) == 0, "fsync " << rel);
  }
  Fd fd = open_fd(root, O_RDONLY | O_DIRECTORY);
  CHECK(err_of(::fsync(fd.get())) == 0);
}

}  // namespace

TEST_CASE("persistence: fsynced changes survive a killed daemon") {
  LAYERFS_ONLY("kills the layerfs daemon");
  Scenario s({.lowers = workload_lowers()});
  apply_workload(s, "before the crash");
  fsync_tree(s.mnt());
  s.crash();
  s.do_mount();
  CompareOptions o;
  o.nlink = true;
  s.check_tree(o, "after the crash");
  apply_workload(s, "after the crash");
  s.check_tree(o, "after more changes");
}

TEST_CASE("persistence: a copy-up cut short by a crash is never half visible") {
  LAYERFS_ONLY("kills the layerfs daemon");
  const std::string data = pattern(64 << 20, 77);
  std::string changed = data;
  changed[0] = 'Z';
  Scenario s({.lowers = {{file("big", data)}}, .reference = false});
  const size_t work_before = count_entries(s.work());
  std::thread writer([&] {
    int fd = ::open(s.mnt("big").c_str(), O_WRONLY | O_CLOEXEC);
    if (fd >= 0) {
      ssize_t ignored = ::pwrite(fd, "Z", 1, 0);
      (void)ignored;
      ::close(fd);
    }
  });
  // Kill as soon as the copy-up shows in the workdir or the upper (bounded wait).
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(3);
  while (std::chrono::steady_clock::now() < deadline && count_entries(s.work()) == work_before &&
         !exists(s.upper("big"))) {
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
  s.crash();
  writer.join();
  s.do_mount();
  const std::string got = read_file(s.mnt("big"));
  CHECK_MESSAGE((got == data || got == changed), "after the crash big has "
                                                     << got.size()
                                                     << " bytes and neither old nor new content");
  CHECK(list_dir(s.mnt()) == std::vector<std::string>{"big"});
}
