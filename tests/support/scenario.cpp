// One mounted-test scenario: layers, mount, reference and the end-of-test checks (see
// scenario.h).
#include "tests/support/scenario.h"

#include <doctest/doctest.h>
#include <signal.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>

#include <stdexcept>

namespace layerfs::test {

Scenario::Scenario(ScenarioConfig cfg)
    : cfg_(std::move(cfg)), log_context_([this](std::ostream* os) {
        if (overlay_mode()) return;
        std::string log = mount_ ? mount_->log() : last_log_;
        if (log.empty()) {
          *os << "(no layerfs daemon output)";
          return;
        }
        if (log.size() > 4096) log = "[...]" + log.substr(log.size() - 4096);
        *os << "layerfs daemon output" << (mount_ ? "" : " (last mount)") << ":\n" << log;
      }) {
  if (cfg_.lowers.empty()) cfg_.lowers.emplace_back();
  for (size_t i = 0; i < cfg_.lowers.size(); ++i) {
    std::string l = tmp_.mkdir("l" + std::to_string(i));
    if (cfg_.tmpfs_lowers &&
        ::mount("layerfs-test-tmpfs", l.c_str(), "tmpfs", 0, "mode=0755") != 0) {
      throw_errno("mount tmpfs on " + l);
    }
    build(l, cfg_.lowers[i]);
    lowers_.push_back(l);
  }
  std::vector<std::string> layers;
  if (cfg_.writable) {
    rw_root_ = tmp_.path();
    if (!cfg_.upper_tmpfs.empty()) {
      rw_root_ = tmp_.mkdir("rw");
      if (::mount("layerfs-test-tmpfs", rw_root_.c_str(), "tmpfs", 0,
                  ("mode=0755," + cfg_.upper_tmpfs).c_str()) != 0) {
        throw_errno("mount tmpfs (" + cfg_.upper_tmpfs + ") on " + rw_root_);
      }
      rw_tmpfs_ = true;
    }
    upper_ = rw_root_ + "/upper";
    work_ = rw_root_ + "/work";
    if (::mkdir(upper_.c_str(), 0755) != 0) throw_errno("mkdir " + upper_);
    if (::mkdir(work_.c_str(), 0755) != 0) throw_errno("mkdir " + work_);
    build(upper_, cfg_.upper);
    layers.push_back(upper_);
  } else if (!cfg_.upper.empty()) {
    throw std::invalid_argument("Scenario: upper content given for a read-only scenario");
  }
  layers.insert(layers.end(), lowers_.begin(), lowers_.end());
  mnt_ = tmp_.mkdir("mnt");
  ref_ = tmp_.mkdir("ref");
  if (cfg_.reference) build_reference(layers, ref_);
  if (cfg_.check_lowers) {
    for (const auto& l : lowers_) lower_snapshots_.push_back(scan_tree(l));
  }
  if (cfg_.mount) do_mount();
}

Scenario::~Scenario() {
  try {
    if (mount_) {
      if (!mount_->unmount()) {
        FAIL_CHECK("unmount of " << mnt_ << " at the end of the test: " << mount_->problem());
      }
      last_log_ = mount_->log();
      mount_.reset();
    }
    if (ever_mounted_) {
      if (cfg_.check_lowers) check_lowers_unchanged();
      if (!overlay_mode() && cfg_.writable) check_upper_clean();
    }
    if (cfg_.tmpfs_lowers) {
      for (const auto& l : lowers_) ::umount2(l.c_str(), MNT_DETACH);
    }
    if (rw_tmpfs_) ::umount2(rw_root_.c_str(), MNT_DETACH);
  } catch (const std::exception& e) {
    FAIL_CHECK("end-of-test checks failed: " << e.what());
  }
}

MountSpec Scenario::spec() const {
  MountSpec s;
  s.lowers = lowers_;
  if (cfg_.writable) {
    s.upper = upper_;
    s.work = work_;
  }
  s.options = cfg_.options;
  return s;
}

Mount& Scenario::mount() {
  if (!mount_) throw std::logic_error("Scenario: not mounted");
  return *mount_;
}

void Scenario::do_mount() {
  if (mount_) throw std::logic_error("Scenario: already mounted");
  mount_ = std::make_unique<Mount>(mnt_, spec());
  ever_mounted_ = true;
}

void Scenario::unmount() {
  if (!mount_) return;
  bool ok = mount_->unmount();
  CHECK_MESSAGE(ok, "unmount of " << mnt_ << ": " << mount_->problem());
  last_log_ = mount_->log();
  mount_.reset();
}

void Scenario::crash() {
  if (!mount_) throw std::logic_error("Scenario: not mounted");
  bool died = mount_->kill_daemon(SIGKILL);
  CHECK_MESSAGE(died, "the layerfs daemon did not die of SIGKILL");
  last_log_ = mount_->log();
  mount_.reset();
}

int Scenario::both(const std::string& what, const std::function<int(const std::string& root)>& op) {
  int m = op(mnt_);
  int r = op(ref_);
  CHECK_MESSAGE(
      m == r, what << ": the mount gave " << errno_name(m) << ", the reference " << errno_name(r));
  return m;
}

bool Scenario::check_tree(const CompareOptions& opts, const std::string& when) {
  Snapshot r = scan_tree(ref_);
  Snapshot m = scan_tree(mnt_);
  std::string diff = diff_trees(r, m, opts, "reference", "mount");
  CHECK_MESSAGE(diff.empty(), "the mount differs from the reference"
                                  << (when.empty() ? "" : " " + when) << ":\n"
                                  << diff);
  return diff.empty();
}

bool Scenario::check_lowers_unchanged() {
  bool ok = true;
  CompareOptions strict = strict_compare();
  for (size_t i = 0; i < lower_snapshots_.size(); ++i) {
    std::string diff =
        diff_trees(lower_snapshots_[i], scan_tree(lowers_[i]), strict, "before", "after");
    CHECK_MESSAGE(diff.empty(), "lower layer " << i << " (" << lowers_[i] << ") was modified:\n"
                                               << diff);
    ok = ok && diff.empty();
  }
  return ok;
}

bool Scenario::check_upper_clean() {
  std::string problems;
  for (const auto& rel : list_tree(upper_)) {
    const std::string p = upper_ + "/" + rel;
    struct stat st = lstat_path(p);
    const std::string name =
        rel.substr(rel.rfind('/') == std::string::npos ? 0 : rel.rfind('/') + 1);
    if (S_ISCHR(st.st_mode) && st.st_rdev == makedev(0, 0)) {
      problems += "  " + rel + ": whiteout device (char 0/0)\n";
    }
    if (name.rfind(".wh.", 0) == 0) problems += "  " + rel + ": .wh.* name\n";
    for (const auto& x : xattr_names(p)) {
      if (is_union_private_xattr(x)) problems += "  " + rel + ": xattr " + x + "\n";
    }
  }
  for (const auto& x : xattr_names(upper_)) {
    if (is_union_private_xattr(x)) problems += "  (upper root): xattr " + x + "\n";
  }
  CHECK_MESSAGE(problems.empty(), "the upper is not a plain tree:\n" << problems);
  return problems.empty();
}

}  // namespace layerfs::test
