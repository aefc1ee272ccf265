// Test support: running a piece of a test as another user. The code runs in a forked child that
// drops supplementary groups and switches gid and uid (as a real unprivileged process would), so
// the kernel and layerfs check permissions against that user. The child cannot use doctest, so
// it records its expectations in an Expect and the parent turns the failures into one message.
#pragma once

#include <sys/types.h>

#include <functional>
#include <string>
#include <vector>

namespace layerfs::test {

// The unprivileged ids the permission tests use.
inline constexpr uid_t kNobodyUid = 65534;
inline constexpr gid_t kNogroupGid = 65534;
inline constexpr uid_t kUserUid = 1000;
inline constexpr gid_t kUserGid = 1000;

class Expect {
 public:
  // Records a failure unless `cond`.
  void that(bool cond, const std::string& what);
  // Records a failure unless `got` (an errno, 0 = success) equals `want`.
  void err(int got, int want, const std::string& what);
  // Records a failure (used for exceptions in the child).
  void fail(const std::string& what);
  const std::string& failures() const { return failures_; }

 private:
  std::string failures_;
};

// Runs `fn` as uid/gid (supplementary groups: `groups`, default none) in a child process and
// returns its failures, empty when every expectation held. The child's exit problems (signal,
// exception, failure to switch ids) are failures too.
std::string run_as(uid_t uid, gid_t gid, const std::function<void(Expect&)>& fn,
                   const std::vector<gid_t>& groups = {});

// Runs `fn` in a forked child with the same ids (a second process, e.g. for lock conflicts) and
// returns its failures, empty when every expectation held.
std::string run_child(const std::function<void(Expect&)>& fn);

}  // namespace layerfs::test
