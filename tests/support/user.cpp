// Running test code as another user in a forked child (see user.h).
#include "tests/support/user.h"

#include <grp.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <exception>
#include <optional>
#include <utility>

#include "tests/support/tmptree.h"

namespace layerfs::test {

void Expect::that(bool cond, const std::string& what) {
  if (!cond) failures_ += "  " + what + "\n";
}

void Expect::err(int got, int want, const std::string& what) {
  if (got != want) {
    failures_ += "  " + what + ": expected " + errno_name(want) + ", got " + errno_name(got) + "\n";
  }
}

void Expect::fail(const std::string& what) {
  failures_ += "  " + what + "\n";
}

namespace {

std::string run_in_child(const std::optional<std::pair<uid_t, gid_t>>& ids,
                         const std::vector<gid_t>& groups, const std::function<void(Expect&)>& fn) {
  int p[2];
  if (::pipe2(p, O_CLOEXEC) != 0) throw_errno("pipe");
  pid_t pid = ::fork();
  if (pid < 0) throw_errno("fork");
  if (pid == 0) {
    ::close(p[0]);
    Expect e;
    if (ids && (::setgroups(groups.size(), groups.data()) != 0 || ::setgid(ids->second) != 0 ||
                ::setuid(ids->first) != 0)) {
      e.fail(std::string("switching to uid ") + std::to_string(ids->first) + ": " +
             strerror(errno));
    } else {
      try {
        fn(e);
      } catch (const std::exception& ex) {
        e.fail(std::string("exception: ") + ex.what());
      } catch (...) {
        e.fail("unknown exception");
      }
    }
    const std::string& out = e.failures();
    size_t done = 0;
    while (done < out.size()) {
      ssize_t n = ::write(p[1], out.data() + done, out.size() - done);
      if (n <= 0) break;
      done += static_cast<size_t>(n);
    }
    // Skip atexit handlers and static destructors: they belong to the parent.
    ::_exit(0);
  }
  ::close(p[1]);
  std::string result;
  char buf[4096];
  for (;;) {
    ssize_t n = ::read(p[0], buf, sizeof buf);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;
    result.append(buf, static_cast<size_t>(n));
  }
  ::close(p[0]);
  int status = 0;
  while (::waitpid(pid, &status, 0) < 0 && errno == EINTR) {
  }
  const std::string who = ids ? "uid " + std::to_string(ids->first) : "the child process";
  if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
    result += "  " + who + " ended abnormally (status " + std::to_string(status) + ")\n";
  }
  return result.empty() ? result : "in " + who + ":\n" + result;
}

}  // namespace

std::string run_as(uid_t uid, gid_t gid, const std::function<void(Expect&)>& fn,
                   const std::vector<gid_t>& groups) {
  return run_in_child(std::make_pair(uid, gid), groups, fn);
}

std::string run_child(const std::function<void(Expect&)>& fn) {
  return run_in_child(std::nullopt, {}, fn);
}

}  // namespace layerfs::test
