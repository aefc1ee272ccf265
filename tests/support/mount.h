// Test support: mounting real layerfs instances (or, with LAYERFS_TEST_IMPL=overlay, kernel
// overlayfs with the same layers, to check the tests themselves) and running the layerfs command.
//
// A Mount starts `layerfs ... -f` as a child that dies with the test process (PR_SET_PDEATHSIG),
// waits until /proc/self/mountinfo shows the mountpoint as fuse.layerfs, and its destructor
// always unmounts and reaps the daemon, so no test leaves a mount behind even when it fails.
#pragma once

#include <sys/types.h>

#include <chrono>
#include <optional>
#include <string>
#include <vector>

#include "tests/support/tmptree.h"

namespace layerfs::test {

enum class Impl { kLayerfs, kOverlay };

// LAYERFS_TEST_IMPL=overlay selects kernel overlayfs; anything else (or unset) layerfs.
Impl impl();
inline bool overlay_mode() {
  return impl() == Impl::kOverlay;
}
// The filesystem type /proc/self/mountinfo shows for a mount made by the harness.
std::string expected_fstype();
// Path of the layerfs binary: $LAYERFS_BIN, else the build tree's fs/layerfs.
std::string layerfs_binary();

// What to mount. Paths should be absolute.
struct MountSpec {
  std::vector<std::string> lowers;  // top-most first
  std::optional<std::string> upper;
  std::optional<std::string> work;
  std::vector<std::string> options;  // extra -o options: "ro", "allow_other", "noatime", ...
  std::optional<std::string> source;
  std::vector<std::string> flags;  // extra command-line flags, e.g. "-d", "-s"
  bool foreground = true;          // Mount adds -f (set false to test that -d implies it)
  // RLIMIT_NOFILE (soft = hard) for the daemon Mount starts; it also loses
  // CAP_SYS_RESOURCE so that it cannot raise the limit again.
  std::optional<unsigned long> nofile;
};

// Options from $LAYERFS_TEST_EXTRA_OPTIONS (comma-separated) that every Mount adds to its own,
// e.g. "timeout=0" to run the whole suite with the kernel caches off.
std::vector<std::string> extra_options();

// `layerfs [SOURCE] MOUNTPOINT -o OPTIONS FLAGS...` (without argv[0]); layer paths escaped.
std::vector<std::string> layerfs_args(const std::string& mountpoint, const MountSpec& spec);

struct CmdResult {
  int exit_code = -1;  // exit status, or 128 + signal number
  bool timed_out = false;
  std::string out, err;
  std::string describe() const;  // "exit 1; stderr: ..." for messages
};

// Runs argv[0] with arguments, stdin from /dev/null, and captures output. On timeout the child is
// killed (SIGKILL) and timed_out set.
CmdResult run_command(const std::vector<std::string>& argv,
                      std::chrono::milliseconds timeout = std::chrono::seconds(20));
// Runs the layerfs binary with `args`.
CmdResult run_layerfs(const std::vector<std::string>& args,
                      std::chrono::milliseconds timeout = std::chrono::seconds(20));

// The mountinfo entry whose mountpoint is `path` (the top-most one), if any.
std::optional<MountEntry> find_mount(const std::string& path);
bool is_mounted(const std::string& path);

// A mount held for the lifetime of the object.
class Mount {
 public:
  // Mounts (layerfs in the foreground, or overlayfs) and waits until the mount is usable.
  // Throws std::runtime_error with the daemon's stderr when it fails or times out.
  Mount(std::string mountpoint, MountSpec spec);
  ~Mount();
  Mount(const Mount&) = delete;
  Mount& operator=(const Mount&) = delete;

  const std::string& path() const { return mountpoint_; }
  std::string operator/(std::string_view rel) const { return mountpoint_ + "/" + std::string(rel); }
  const MountSpec& spec() const { return spec_; }
  pid_t daemon_pid() const { return pid_; }
  // The daemon's stdout and stderr so far (empty for overlayfs).
  std::string log() const;

  // Unmounts (umount2, retrying EBUSY briefly, then MNT_DETACH) and waits for the daemon
  // (SIGKILL after a timeout). Idempotent. Returns false when something went wrong; problem()
  // then says what (a crashed daemon, a daemon that had to be killed, a detached mount).
  bool unmount();
  // Kills the daemon with `sig` (a crash the test wants), waits for it and removes the dead
  // mount. Not reported as a problem. Returns false when the daemon did not die in time.
  bool kill_daemon(int sig);
  bool mounted() const { return mounted_; }
  // Daemon exit status after unmount(): exit code, or 128 + signal; -1 when unknown.
  int exit_status() const { return exit_status_; }
  const std::string& problem() const { return problem_; }

 private:
  void start_layerfs();
  void start_overlay();
  void wait_until_mounted();
  bool reap(std::chrono::milliseconds timeout);
  bool killed_on_purpose_ = false;

  std::string mountpoint_;
  MountSpec spec_;
  std::string command_;  // what was run, for messages
  Fd log_fd_;            // memfd holding the daemon's stdout and stderr
  pid_t pid_ = -1;
  int previous_top_ = -1;  // id of the mount at mountpoint_ before ours (-1: none)
  bool mounted_ = false;
  int exit_status_ = -1;
  std::string problem_;
};

// `layerfs` started without -f: the command must return only once the mount is usable and leave
// a daemon behind. The destructor unmounts and waits for that daemon to go away.
class BackgroundMount {
 public:
  BackgroundMount(std::string mountpoint, MountSpec spec);
  ~BackgroundMount();
  BackgroundMount(const BackgroundMount&) = delete;
  BackgroundMount& operator=(const BackgroundMount&) = delete;

  const CmdResult& command() const { return cmd_; }
  // Whether the mount was present the moment the command returned.
  bool mounted_on_return() const { return mounted_on_return_; }
  // The daemon serving the mountpoint (found through /proc), or -1.
  pid_t daemon_pid() const { return daemon_; }
  // Unmounts and waits until the daemon has exited; false (with problem()) when it did not.
  bool unmount();
  const std::string& problem() const { return problem_; }

 private:
  std::string mountpoint_;
  CmdResult cmd_;
  bool mounted_on_return_ = false;
  pid_t daemon_ = -1;
  bool done_ = false;
  std::string problem_;
};

// Processes whose executable is the layerfs binary and whose arguments mention `mountpoint`.
std::vector<pid_t> find_daemons(const std::string& mountpoint);

// Unmounts `path` as the harness does (EBUSY retries, then lazily). Returns false if it had to
// detach lazily or failed.
bool unmount_path(const std::string& path, std::string* problem = nullptr);

}  // namespace layerfs::test
