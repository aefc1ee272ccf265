// Mounted tests of `layerctl check` (fs/check.h) through the binary: a stack
// and an upper/work pair that a real daemon wrote check clean; damage done on
// purpose behind the index (an upper file removed under its record, a stray
// staging file, a whiteout whose directory record is gone) is reported, then
// repaired, and the next mount shows what it should; usage errors and a live
// mount are refused with status 2. Also: after the daemon died, `umount` and
// `fusermount3 -u` clear the dead mount and a new mount on the same
// mountpoint works (fs/DESIGN.md "After a crash").
#include <doctest/doctest.h>
#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include <chrono>
#include <thread>

#include "tests/support/scenario.h"

using namespace layerfs::test;

namespace {

CmdResult layerctl(const std::vector<std::string>& args) {
  std::vector<std::string> argv = {LAYERCTL_BINARY};
  argv.insert(argv.end(), args.begin(), args.end());
  return run_command(argv, std::chrono::seconds(60));
}

// `layerctl check --upper U --work W --lower L...` of a scenario, plus `extra`.
CmdResult check_scenario(const Scenario& s, const std::vector<std::string>& extra = {}) {
  std::vector<std::string> args = {"check", "--upper", s.upper(), "--work", s.work()};
  for (const auto& l : s.lowers()) {
    args.push_back("--lower");
    args.push_back(l);
  }
  args.insert(args.end(), extra.begin(), extra.end());
  return layerctl(args);
}

// `name` in the usual system directories (run_command does not search PATH).
std::string system_tool(const std::string& name) {
  for (const char* d : {"/usr/bin/", "/bin/", "/usr/sbin/", "/sbin/"}) {
    if (::access((d + name).c_str(), X_OK) == 0) return d + name;
  }
  FAIL("cannot find " << name);
  return name;
}

bool has(const std::string& text, const std::string& what) {
  return text.find(what) != std::string::npos;
}

std::vector<std::vector<Entry>> lowers() {
  return {{file("a", "lower a"), file("b", "lower b"), dir("d"), file("d/x", "x"), file("d/y", "y"),
           dir("gone"), file("gone/1", "1")},
          {file("c", "lower c"), dir("d"), file("d/z", "z")}};
}

// Copy-ups, whiteouts, an opaque directory and a renamed lower directory.
void workload(Scenario& s) {
  s.both("write a", [](const std::string& r) { return sys::write(r + "/a", "upper a", O_WRONLY); });
  s.both("unlink b", [](const std::string& r) { return sys::unlink(r + "/b"); });
  s.both("unlink d/z", [](const std::string& r) { return sys::unlink(r + "/d/z"); });
  s.both("rename d", [](const std::string& r) { return sys::rename(r + "/d", r + "/d2"); });
  s.both("rm gone/1", [](const std::string& r) { return sys::unlink(r + "/gone/1"); });
  s.both("rmdir gone", [](const std::string& r) { return sys::rmdir(r + "/gone"); });
  s.both("mkdir gone", [](const std::string& r) { return sys::mkdir(r + "/gone"); });
  s.both("create n", [](const std::string& r) { return sys::write(r + "/n", "new"); });
}

}  // namespace

TEST_CASE("layerctl check: an upper/work pair the daemon wrote checks clean") {
  LAYERFS_ONLY("checks layerfs's index");
  Scenario s({.lowers = lowers()});
  workload(s);
  // Refused while the daemon holds the directories.
  CmdResult live = check_scenario(s);
  CHECK_MESSAGE(live.exit_code == 2, live.describe());
  CHECK_MESSAGE(has(live.err, "in use by a running layerfs mount"), live.describe());
  s.unmount();
  CmdResult r = check_scenario(s);
  CHECK_MESSAGE(r.exit_code == 0, r.describe());
  CHECK_MESSAGE(has(r.out, s.upper() + ": clean ("), r.describe());
  // --repair on a clean pair changes nothing and says so.
  CmdResult rr = check_scenario(s, {"--repair"});
  CHECK_MESSAGE(rr.exit_code == 0, rr.describe());
  s.do_mount();
  s.check_tree();
}

TEST_CASE("layerctl check: damage behind the index is reported, then repaired") {
  LAYERFS_ONLY("checks layerfs's index");
  Scenario s({.lowers = lowers()});
  workload(s);
  s.unmount();
  // An upper file removed behind its record (the copy-up of a), a staging
  // leftover, and the record of the renamed directory d2 (redirect and
  // whiteout) gone with the directory.
  REQUIRE(::unlink(s.upper("a").c_str()) == 0);
  write_file(s.work() + "/staging/stray", "half a copy");
  REQUIRE(::rename(s.upper("d2").c_str(), s.upper("d3").c_str()) == 0);  // still there: fine

  CmdResult r = check_scenario(s);
  CHECK_MESSAGE(r.exit_code == 1, r.describe());
  CHECK_MESSAGE(has(r.out, "stale-record: object record of upper inode"), r.describe());
  CHECK_MESSAGE(has(r.out, "staging-leftover: staging/stray"), r.describe());
  CHECK_MESSAGE(has(r.out, "2 problems (2 harmless); run with --repair"), r.describe());
  CHECK(exists(s.work() + "/staging/stray"));

  CmdResult fixed = check_scenario(s, {"--repair"});
  CHECK_MESSAGE(fixed.exit_code == 1, fixed.describe());
  CHECK_MESSAGE(has(fixed.out, "  repaired: dropped the record"), fixed.describe());
  CHECK_MESSAGE(has(fixed.out, "  repaired: removed it"), fixed.describe());
  CHECK_MESSAGE(has(fixed.out, "2 problems (2 harmless), 2 repaired, 0 left"), fixed.describe());
  CHECK_FALSE(exists(s.work() + "/staging/stray"));
  CHECK(exists(s.upper("d3")));  // user data in the upper is never removed

  CmdResult again = check_scenario(s);
  CHECK_MESSAGE(again.exit_code == 0, again.describe());
  s.do_mount();
  CHECK(read_file(s.mnt("a")) == "lower a");
  CHECK(read_file(s.mnt("d3/x")) == "x");
}

TEST_CASE("layerctl check: a directory replaced behind the index leaves stale records") {
  LAYERFS_ONLY("checks layerfs's index");
  Scenario s({.lowers = lowers(), .reference = false});
  REQUIRE(sys::unlink(s.mnt("d/x")) == 0);
  s.unmount();
  // The directory d is replaced by another one under the same name: its
  // records now belong to no object (stale), the new d has none.
  const std::string moved = s.tmp() / "old-d";
  REQUIRE(::rename(s.upper("d").c_str(), moved.c_str()) == 0);
  REQUIRE(::mkdir(s.upper("d").c_str(), 0755) == 0);
  CmdResult r = check_scenario(s);
  CHECK_MESSAGE(r.exit_code == 1, r.describe());
  CHECK_MESSAGE(has(r.out, "stale-record: object record and its 1 whiteout"), r.describe());
  CHECK_MESSAGE(check_scenario(s, {"--repair"}).exit_code == 1, "");
  CHECK(check_scenario(s).exit_code == 0);
  s.do_mount();
  // Without the record the lower d/x shows again under the new upper d.
  CHECK(read_file(s.mnt("d/x")) == "x");
}

TEST_CASE("layerctl check: stacks, usage errors and exit codes") {
  LAYERFS_ONLY("checks layerfs's index");
  TempDir t;
  const std::string root = t / "store";
  auto ctl = [&](std::vector<std::string> args) {
    args.insert(args.begin(), {"--root", root});
    return layerctl(args);
  };
  const std::string src = t.mkdir("src");
  build(src, {file("f", "content\n"), file("g", "g\n")});
  REQUIRE(ctl({"layer", "import", src, "--name", "base"}).exit_code == 0);
  REQUIRE(ctl({"create", "web", "base"}).exit_code == 0);
  const std::string mp = t.mkdir("mnt");
  REQUIRE(ctl({"mount", "web", mp}).exit_code == 0);
  write_file(mp + "/f", "changed\n");
  REQUIRE(sys::unlink(mp + "/g") == 0);
  CmdResult mounted = ctl({"check", "web"});
  CHECK_MESSAGE(mounted.exit_code == 2, mounted.describe());
  CHECK_MESSAGE(has(mounted.err, "stack web is mounted at " + mp + "; umount it before checking"),
                mounted.describe());
  REQUIRE(ctl({"umount", "web"}).exit_code == 0);

  CmdResult r = ctl({"check", "web"});
  CHECK_MESSAGE(r.exit_code == 0, r.describe());
  CHECK_MESSAGE(has(r.out, "stack web: clean ("), r.describe());

  struct Bad {
    std::vector<std::string> args;
    std::string message;
  };
  for (const Bad& b : std::vector<Bad>{
           {{"check"}, "check needs a STACK, or both --upper DIR and --work DIR"},
           {{"check", "--upper", t / "u"}, "check needs a STACK, or both"},
           {{"check", "web", "--upper", t / "u", "--work", t / "w"}, "not both"},
           {{"check", "nosuch"}, "No such stack: nosuch"},
           {{"check", "--upper", t / "u", "--work", t / "w"}, t / "u"},
           {{"check", "--upper"}, "--upper"},
       }) {
    CmdResult e = ctl(b.args);
    CAPTURE(b.args.size());
    CHECK_MESSAGE(e.exit_code == 2, e.describe());
    CHECK_MESSAGE(has(e.err, b.message), e.describe());
  }
}

TEST_CASE("after the daemon died, umount or fusermount3 -u clears the mount and a new one works") {
  LAYERFS_ONLY("kills the layerfs daemon");
  for (const std::string how : {"umount", "fusermount3 -u"}) {
    CAPTURE(how);
    Scenario s({.lowers = lowers(), .mount = false, .reference = false});
    std::vector<std::string> args = layerfs_args(s.mountpoint(), s.spec());
    CmdResult started = run_layerfs(args);  // without -f: daemonizes
    REQUIRE_MESSAGE(started.exit_code == 0, started.describe());
    REQUIRE(is_mounted(s.mountpoint()));
    write_file(s.mnt("kept"), "kept");
    auto daemons = find_daemons(s.mountpoint());
    REQUIRE(daemons.size() == 1);
    REQUIRE(::kill(daemons[0], SIGKILL) == 0);
    for (int i = 0; i < 250 && ::kill(daemons[0], 0) == 0; ++i) {
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
    CHECK(sys::lstat(s.mnt("a")) == ENOTCONN);
    std::vector<std::string> cmd =
        how == "umount"
            ? std::vector<std::string>{system_tool("umount"), s.mountpoint()}
            : std::vector<std::string>{system_tool("fusermount3"), "-u", s.mountpoint()};
    CmdResult u = run_command(cmd);
    CHECK_MESSAGE(u.exit_code == 0, u.describe());
    CHECK_FALSE(is_mounted(s.mountpoint()));
    s.do_mount();
    CHECK(read_file(s.mnt("kept")) == "kept");
    CHECK(read_file(s.mnt("a")) == "lower a");
    s.unmount();
    CmdResult c = check_scenario(s);
    CHECK_MESSAGE(c.exit_code == 0, c.describe());
  }
}
