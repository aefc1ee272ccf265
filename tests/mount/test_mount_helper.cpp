// The mount(8) helper (mount.fuse.layerfs / mount.layerfs) through the real
// mount(8): `-t fuse.layerfs`, `-t layerfs`, fstab lines with `mount -T`
// (by mountpoint, by source, `mount -a`), escapes, and failures.
//
// mount(8) only looks for helpers in /sbin, so each test runs in a child
// process with a mount namespace of its own in which /usr/sbin also holds this
// build's helpers. Nothing outside the namespace changes, tests can run in
// parallel, and every mount a test makes lives and dies in its namespace (the
// child unmounts them all before it exits; the parent kills any daemon left).
#include <dirent.h>
#include <sched.h>
#include <signal.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstring>
#include <fstream>
#include <functional>
#include <sstream>
#include <string>
#include <vector>

#include "tests/support/mount.h"
#include "tests/support/scenario.h"
#include "tests/support/tmptree.h"

#include <doctest/doctest.h>

#ifndef LAYERFS_HELPER_BINARY
#error "LAYERFS_HELPER_BINARY must name the mount.fuse.layerfs of this build"
#endif

namespace layerfs::test {
namespace {

const std::string kMount = "/usr/bin/mount";
const std::string kUmount = "/usr/bin/umount";

// Failures found in the child, sent to the parent.
struct Report {
  std::vector<std::string> failures;
  void check(bool ok, const std::string& what) {
    if (!ok) failures.push_back(what);
  }
};

std::string slurp(const std::string& path) {
  std::ifstream in(path);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

void write_text(const std::string& path, const std::string& text) {
  std::ofstream out(path);
  out << text;
}

// The fuse.layerfs mounts this namespace has below `dir`.
std::vector<MountEntry> layerfs_mounts_below(const std::string& dir) {
  std::vector<MountEntry> out;
  for (const auto& m : read_mountinfo()) {
    if (m.fstype == "fuse.layerfs" && m.mountpoint.rfind(dir, 0) == 0) out.push_back(m);
  }
  return out;
}

// Daemons whose command line mentions `dir`: ones a failed child left behind.
void kill_daemons_mentioning(const std::string& dir) {
  DIR* d = ::opendir("/proc");
  if (!d) return;
  while (struct dirent* e = ::readdir(d)) {
    pid_t pid = static_cast<pid_t>(std::atoi(e->d_name));
    if (pid <= 0) continue;
    std::string cmd = slurp("/proc/" + std::string(e->d_name) + "/cmdline");
    for (auto& c : cmd) {
      if (c == '\0') c = ' ';
    }
    if (cmd.find("layerfs") != std::string::npos && cmd.find(dir) != std::string::npos) {
      ::kill(pid, SIGKILL);
    }
  }
  ::closedir(d);
}

// Runs `body` in a child with a private mount namespace whose /usr/sbin also
// holds the helpers; returns the child's failures (empty: all good).
std::vector<std::string> with_helpers(const TempDir& tmp, const std::function<void(Report&)>& body) {
  int pipefd[2];
  REQUIRE(::pipe(pipefd) == 0);
  pid_t pid = ::fork();
  REQUIRE(pid >= 0);
  if (pid == 0) {
    ::close(pipefd[0]);
    Report r;
    try {
      if (::unshare(CLONE_NEWNS) != 0) throw_errno("unshare(CLONE_NEWNS)");
      if (::mount("none", "/", nullptr, MS_REC | MS_PRIVATE, nullptr) != 0) {
        throw_errno("making / private");
      }
      // A copy of /usr/sbin (as symlinks) plus the helpers under both names.
      const std::string sbin = tmp.mkdir("sbin");
      if (DIR* d = ::opendir("/usr/sbin")) {
        while (struct dirent* e = ::readdir(d)) {
          std::string n = e->d_name;
          if (n == "." || n == ".." || n == "mount.fuse.layerfs" || n == "mount.layerfs") continue;
          ::symlink(("/usr/sbin/" + n).c_str(), (sbin + "/" + n).c_str());
        }
        ::closedir(d);
      }
      for (const char* name : {"mount.fuse.layerfs", "mount.layerfs"}) {
        if (::symlink(LAYERFS_HELPER_BINARY, (sbin + "/" + name).c_str()) != 0) {
          throw_errno("symlink " + std::string(name));
        }
      }
      if (::mount(sbin.c_str(), "/usr/sbin", nullptr, MS_BIND, nullptr) != 0) {
        throw_errno("bind-mounting the helpers over /usr/sbin");
      }
      body(r);
    } catch (const std::exception& e) {
      r.failures.push_back(std::string("exception: ") + e.what());
    }
    // Every layerfs mount made here goes, so its daemon exits.
    for (const auto& m : layerfs_mounts_below(tmp.path())) {
      r.failures.push_back("left mounted: " + m.mountpoint);
      if (::umount2(m.mountpoint.c_str(), 0) != 0) ::umount2(m.mountpoint.c_str(), MNT_DETACH);
    }
    std::string out;
    for (const auto& f : r.failures) out += f + "\n";
    ssize_t n = ::write(pipefd[1], out.data(), out.size());
    (void)n;
    ::_exit(0);
  }
  ::close(pipefd[1]);
  std::string report;
  char buf[4096];
  ssize_t n;
  while ((n = ::read(pipefd[0], buf, sizeof buf)) > 0) report.append(buf, n);
  ::close(pipefd[0]);
  int status = 0;
  ::waitpid(pid, &status, 0);
  kill_daemons_mentioning(tmp.path());
  std::vector<std::string> failures;
  std::istringstream lines(report);
  for (std::string line; std::getline(lines, line);) failures.push_back(line);
  if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) failures.push_back("the test child crashed");
  return failures;
}

void require_no_failures(const std::vector<std::string>& failures) {
  for (const auto& f : failures) FAIL_CHECK(f);
}

// A two-layer stack with an upper, in `tmp`.
struct Layers {
  std::string l1, l2, upper, work, mnt;
  explicit Layers(const TempDir& tmp, const std::string& prefix = "") {
    l1 = tmp.mkdir(prefix + "l1");
    l2 = tmp.mkdir(prefix + "l2");
    upper = tmp.mkdir(prefix + "upper");
    work = tmp.mkdir(prefix + "work");
    mnt = tmp.mkdir(prefix + "mnt");
    write_file(l1 + "/top", "from l1");
    write_file(l2 + "/bottom", "from l2");
    write_file(l2 + "/top", "hidden");
  }
  std::string options() const {
    return "lowerdir=" + l1 + ":" + l2 + ",upperdir=" + upper + ",workdir=" + work;
  }
};

// Checks that `mnt` is a working layerfs mount of `layers` shown with `source`.
void check_mounted(Report& r, const Layers& layers, const std::string& mnt,
                   const std::string& source, const std::string& what) {
  auto m = find_mount(mnt);
  r.check(m.has_value(), what + ": nothing mounted on " + mnt);
  if (!m) return;
  r.check(m->fstype == "fuse.layerfs", what + ": type " + m->fstype);
  r.check(m->source == source, what + ": source '" + m->source + "', expected '" + source + "'");
  r.check(read_file(mnt + "/top") == "from l1", what + ": merged view wrong (top)");
  r.check(read_file(mnt + "/bottom") == "from l2", what + ": merged view wrong (bottom)");
  write_file(mnt + "/new-" + std::to_string(m->id), "x");
  r.check(read_file(layers.upper + "/new-" + std::to_string(m->id)) == "x",
          what + ": a write did not land in the upper");
}

// `umount DIR` works and the daemon then leaves.
void check_umount(Report& r, const std::string& mnt, const std::string& what) {
  CmdResult u = run_command({kUmount, mnt});
  r.check(u.exit_code == 0, what + ": umount failed: " + u.describe());
  r.check(!is_mounted(mnt) || find_mount(mnt)->fstype != "fuse.layerfs",
          what + ": still mounted after umount");
}

TEST_CASE("mount helper: mount -t fuse.layerfs and -t layerfs mount, umount unmounts") {
  LAYERFS_ONLY("the layerfs mount helper");
  TempDir tmp;
  Layers layers(tmp);
  require_no_failures(with_helpers(tmp, [&](Report& r) {
    CmdResult a = run_command({kMount, "-t", "fuse.layerfs", "stack-a", layers.mnt, "-o",
                               layers.options() + ",nofail,_netdev,x-systemd.requires=x.mount"});
    r.check(a.exit_code == 0, "mount -t fuse.layerfs: " + a.describe());
    check_mounted(r, layers, layers.mnt, "stack-a", "-t fuse.layerfs");
    check_umount(r, layers.mnt, "-t fuse.layerfs");

    CmdResult b = run_command({kMount, "-t", "layerfs", "stack-b", layers.mnt, "-o",
                               layers.options()});
    r.check(b.exit_code == 0, "mount -t layerfs: " + b.describe());
    check_mounted(r, layers, layers.mnt, "stack-b", "-t layerfs");
    // As for other filesystems root mounts, devices and set-id bits work.
    auto m = find_mount(layers.mnt);
    r.check(m && m->options.find("nosuid") == std::string::npos &&
                m->options.find("nodev") == std::string::npos,
            "-t layerfs: root mount has nosuid/nodev: " + (m ? m->options : std::string()));
    check_umount(r, layers.mnt, "-t layerfs");

    // ... unless refused.
    CmdResult c = run_command({kMount, "-t", "fuse.layerfs", "stack-c", layers.mnt, "-o",
                               layers.options() + ",nosuid,nodev,ro"});
    r.check(c.exit_code == 0, "mount with nosuid,nodev,ro: " + c.describe());
    auto mc = find_mount(layers.mnt);
    r.check(mc && mc->options.find("nosuid") != std::string::npos &&
                mc->options.find("nodev") != std::string::npos &&
                mc->options.rfind("ro", 0) == 0,
            "nosuid,nodev,ro not in the mount's options: " + (mc ? mc->options : std::string()));
    check_umount(r, layers.mnt, "nosuid,nodev,ro");
  }));
}

TEST_CASE("mount helper: fstab lines through mount -T, by mountpoint, by source and with -a") {
  LAYERFS_ONLY("the layerfs mount helper");
  TempDir tmp;
  Layers one(tmp, "one-"), two(tmp, "two-"), three(tmp, "three-");
  const std::string fstab = tmp / "test.fstab";
  write_text(fstab,
             "# layerfs stacks\n"
             "stack-one " + one.mnt + " fuse.layerfs " + one.options() +
                 ",nofail,x-systemd.requires-mounts-for=/srv 0 0\n"
             "stack-two " + two.mnt + " layerfs " + two.options() + ",_netdev 0 0\n"
             "stack-three " + three.mnt + " fuse.layerfs " + three.options() +
                 ",noauto,user 0 0\n");
  require_no_failures(with_helpers(tmp, [&](Report& r) {
    CmdResult by_dir = run_command({kMount, "-T", fstab, one.mnt});
    r.check(by_dir.exit_code == 0, "mount -T FILE DIR: " + by_dir.describe());
    check_mounted(r, one, one.mnt, "stack-one", "mount -T FILE DIR");
    check_umount(r, one.mnt, "mount -T FILE DIR");

    CmdResult by_source = run_command({kMount, "-T", fstab, "stack-two"});
    r.check(by_source.exit_code == 0, "mount -T FILE SOURCE: " + by_source.describe());
    check_mounted(r, two, two.mnt, "stack-two", "mount -T FILE SOURCE");
    check_umount(r, two.mnt, "mount -T FILE SOURCE");

    // -a mounts every entry but the noauto one.
    CmdResult all = run_command({kMount, "-a", "-T", fstab});
    r.check(all.exit_code == 0, "mount -a -T FILE: " + all.describe());
    check_mounted(r, one, one.mnt, "stack-one", "mount -a (one)");
    check_mounted(r, two, two.mnt, "stack-two", "mount -a (two)");
    r.check(!is_mounted(three.mnt), "mount -a mounted the noauto entry");
    check_umount(r, one.mnt, "mount -a (one)");
    check_umount(r, two.mnt, "mount -a (two)");

    // The noauto entry still mounts by name.
    CmdResult noauto = run_command({kMount, "-T", fstab, three.mnt});
    r.check(noauto.exit_code == 0, "mount -T FILE DIR (noauto entry): " + noauto.describe());
    check_mounted(r, three, three.mnt, "stack-three", "noauto entry");
    check_umount(r, three.mnt, "noauto entry");
  }));
}

TEST_CASE("mount helper: escaped spaces, commas and colons in fstab and on the command line") {
  LAYERFS_ONLY("the layerfs mount helper");
  TempDir tmp;
  const std::string lower = tmp.mkdir("lower with space");
  const std::string odd = tmp.mkdir("odd,name:here");
  const std::string mnt = tmp.mkdir("mount point");
  const std::string upper = tmp.mkdir("up per"), work = tmp.mkdir("wo rk");
  write_file(lower + "/a", "spaced");
  write_file(odd + "/b", "odd");
  auto esc = [](std::string s) {  // fstab's octal escape for a space
    std::string out;
    for (char c : s) out += c == ' ' ? std::string("\\040") : std::string(1, c);
    return out;
  };
  const std::string fstab = tmp / "esc.fstab";
  // Comma and colon inside a layer path: escaped with a backslash (layerfs's
  // own escapes) in one entry, as octal escapes in the other.
  const std::string odd_bs = tmp.path() + "/odd\\,name\\:here";
  const std::string odd_oct = tmp.path() + "/odd\\054name\\072here";
  write_text(fstab, "my\\040stack " + esc(mnt) + " fuse.layerfs lowerdir=" + esc(lower) + ":" +
                        odd_bs + ",upperdir=" + esc(upper) + ",workdir=" + esc(work) +
                        " 0 0\n");
  require_no_failures(with_helpers(tmp, [&](Report& r) {
    CmdResult a = run_command({kMount, "-T", fstab, mnt});
    r.check(a.exit_code == 0, "fstab with escapes: " + a.describe());
    auto m = find_mount(mnt);
    r.check(m && m->source == "my stack", "fstab with escapes: source not decoded");
    r.check(read_file(mnt + "/a") == "spaced", "fstab with escapes: lower with a space");
    r.check(read_file(mnt + "/b") == "odd", "fstab with escapes: lower with , and :");
    check_umount(r, mnt, "fstab with escapes");

    // The same written by hand on the command line, with octal escapes.
    CmdResult b = run_command({kMount, "-t", "fuse.layerfs", "my\\040stack", esc(mnt), "-o",
                               "lowerdir=" + esc(lower) + ":" + odd_oct + ",upperdir=" +
                                   esc(upper) + ",workdir=" + esc(work)});
    r.check(b.exit_code == 0, "command line with escapes: " + b.describe());
    r.check(is_mounted(mnt) && read_file(mnt + "/b") == "odd",
            "command line with escapes: merged view wrong");
    check_umount(r, mnt, "command line with escapes");
  }));
}

TEST_CASE("mount helper: failures give mount's exit status and a message, and mount nothing") {
  LAYERFS_ONLY("the layerfs mount helper");
  TempDir tmp;
  Layers layers(tmp);
  require_no_failures(with_helpers(tmp, [&](Report& r) {
    struct Case {
      std::string what;
      std::vector<std::string> argv;
      std::string must_mention;
    };
    const std::string missing = tmp / "no-such-dir";
    std::vector<Case> cases = {
        {"missing lowerdir",
         {kMount, "-t", "fuse.layerfs", "s", layers.mnt, "-o", "lowerdir=" + missing},
         "no-such-dir"},
        {"missing lowerdir (type layerfs)",
         {kMount, "-t", "layerfs", "s", layers.mnt, "-o", "lowerdir=" + missing},
         "no-such-dir"},
        {"unknown option",
         {kMount, "-t", "fuse.layerfs", "s", layers.mnt, "-o", layers.options() + ",frobnicate"},
         "frobnicate"},
        {"upperdir without workdir",
         {kMount, "-t", "fuse.layerfs", "s", layers.mnt, "-o",
          "lowerdir=" + layers.l1 + ",upperdir=" + layers.upper},
         "workdir"},
        {"no lowerdir", {kMount, "-t", "fuse.layerfs", "s", layers.mnt}, "lowerdir"},
    };
    for (const auto& c : cases) {
      CmdResult res = run_command(c.argv);
      r.check(res.exit_code == 32, c.what + ": expected exit 32, got " + res.describe());
      r.check(res.err.find(c.must_mention) != std::string::npos,
              c.what + ": message does not name '" + c.must_mention + "': " + res.err);
      r.check(!is_mounted(layers.mnt), c.what + ": something got mounted");
    }
    // mount -f: nothing is mounted, and that is success.
    CmdResult fake = run_command({kMount, "-f", "-t", "fuse.layerfs", "s", layers.mnt, "-o",
                                  layers.options()});
    r.check(fake.exit_code == 0, "mount -f: " + fake.describe());
    r.check(!is_mounted(layers.mnt), "mount -f mounted something");
    // The helper's own usage error (called directly).
    CmdResult usage = run_command({LAYERFS_HELPER_BINARY, "only-one-argument"});
    r.check(usage.exit_code == 1, "helper usage error: " + usage.describe());
    r.check(usage.err.find("SOURCE and MOUNTPOINT") != std::string::npos,
            "helper usage error without a message: " + usage.err);
  }));
}

}  // namespace
}  // namespace layerfs::test
