// Tests for tools/store.cpp: layout, records, locking between processes, and
// the cleanup of work a killed command left behind.
#include "tools/store.h"

#include <doctest/doctest.h>
#include <signal.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <fstream>
#include <thread>

#include "tests/support/temp_dir.h"

namespace layerfs::ctl {
namespace {

bool is_dir(const std::string& p) {
  struct stat st;
  return ::stat(p.c_str(), &st) == 0 && S_ISDIR(st.st_mode);
}

TEST_CASE("a store is created with its layout and keeps its records") {
  test::TempDir t("store");
  const std::string root = t.path() + "/store-root";
  {
    auto s = Store::open(root, Access::kWrite);
    for (const char* d : {"layers", "stacks", "volumes", "tmp", "store"}) {
      CAPTURE(d);
      CHECK(is_dir(root + "/" + d));
    }
    s->write({{"volume/a", json{{"Name", "a"}}}, {"volume/b", json{{"Name", "b"}}},
              {"stack/x", json{{"name", "x"}}}});
  }
  auto r = Store::open(root, Access::kRead);
  REQUIRE(r->get("volume/a").has_value());
  CHECK((*r->get("volume/a"))["Name"] == "a");
  CHECK_FALSE(r->get("volume/zzz").has_value());
  auto vols = r->list("volume/");
  REQUIRE(vols.size() == 2);
  CHECK(vols[0].first == "volume/a");
  CHECK(vols[1].first == "volume/b");
  CHECK_THROWS_AS(r->write({{"volume/c", json::object()}}), Error);
}

TEST_CASE("deleting records, and paths of things in the store") {
  test::TempDir t("store");
  auto s = Store::open(t.path(), Access::kWrite);
  s->write({{"layer/sha256:ab", json{{"id", "sha256:ab"}}}});
  s->write({{"layer/sha256:ab", std::nullopt}});
  CHECK_FALSE(s->get("layer/sha256:ab").has_value());
  CHECK(s->layer_dir("sha256:abcd") == t.path() + "/layers/abcd");
  CHECK(s->stack_dir("web") == t.path() + "/stacks/web");
  CHECK(s->volume_dir("data") == t.path() + "/volumes/data");
}

TEST_CASE("reading a store that does not exist yet sees it empty and creates nothing") {
  test::TempDir t("store");
  const std::string root = t.path() + "/nothing-here";
  auto s = Store::open(root, Access::kRead);
  CHECK(s->list("").empty());
  CHECK_FALSE(s->get("volume/x").has_value());
  CHECK_FALSE(is_dir(root));
}

TEST_CASE("writers wait for each other") {
  test::TempDir t("store");
  // The child is forked before the parent opens the store, so it shares
  // neither the lock's open file nor the database's threads.
  int go[2];
  REQUIRE(::pipe(go) == 0);
  pid_t pid = ::fork();
  REQUIRE(pid >= 0);
  if (pid == 0) {
    ::close(go[1]);
    char c;
    if (::read(go[0], &c, 1) != 1) _exit(2);
    // Blocks until the parent closes its store, then sees its write.
    auto second = Store::open(t.path(), Access::kWrite);
    auto v = second->get("k/order");
    bool ok = v && (*v)["by"] == "first-done";
    second->write({{"k/order", json{{"by", "second"}}}});
    _exit(ok ? 0 : 1);
  }
  ::close(go[0]);
  auto first = Store::open(t.path(), Access::kWrite);
  first->write({{"k/order", json{{"by", "first"}}}});
  REQUIRE(::write(go[1], "x", 1) == 1);
  ::close(go[1]);
  std::this_thread::sleep_for(std::chrono::milliseconds(300));
  int status = 0;
  CHECK(::waitpid(pid, &status, WNOHANG) == 0);  // still waiting for the lock
  first->write({{"k/order", json{{"by", "first-done"}}}});
  first.reset();
  ::waitpid(pid, &status, 0);
  CHECK((WIFEXITED(status) && WEXITSTATUS(status) == 0));
  auto after = Store::open(t.path(), Access::kRead);
  CHECK((*after->get("k/order"))["by"] == "second");
}

TEST_CASE("work left in ROOT/tmp by a dead process is removed by the next writer") {
  test::TempDir t("store");
  std::string left;
  {
    auto s = Store::open(t.path(), Access::kWrite);
    left = s->make_temp("import");
  }
  // A process that no longer exists made this one.
  std::string dead = t.path() + "/tmp/999999999-import-abcdef";
  REQUIRE(::mkdir(dead.c_str(), 0700) == 0);
  REQUIRE(::mkdir((dead + "/inner").c_str(), 0500) == 0);  // read-only dirs too
  {
    auto s = Store::open(t.path(), Access::kWrite);
    CHECK(is_dir(left));  // ours: this process is alive
    CHECK_FALSE(is_dir(dead));
  }
}

TEST_CASE("remove_tree does not cross into a filesystem mounted inside" *
          doctest::skip(test::needs_root())) {
  test::TempDir t("store");
  const std::string tree = t.path() + "/tree";
  REQUIRE(::mkdir(tree.c_str(), 0755) == 0);
  test::TmpfsMount m(tree + "/mnt", "size=1m");
  {
    std::ofstream(m.path() + "/precious") << "keep me";
  }
  remove_tree(tree);
  struct stat st;
  CHECK(::stat((m.path() + "/precious").c_str(), &st) == 0);
}

TEST_CASE("a mount left inside dead work in ROOT/tmp is detached before the work is removed" *
          doctest::skip(test::needs_root())) {
  test::TempDir t("store");
  { auto s = Store::open(t.path(), Access::kWrite); }
  const std::string dead = t.path() + "/tmp/999999998-commit-abcdef";
  REQUIRE(::mkdir(dead.c_str(), 0700) == 0);
  const std::string mnt = dead + "/merged";
  REQUIRE(::mkdir(mnt.c_str(), 0700) == 0);
  REQUIRE(::mount("tmpfs", mnt.c_str(), "tmpfs", 0, "size=1m") == 0);
  {
    auto s = Store::open(t.path(), Access::kWrite);
  }
  std::ifstream info("/proc/self/mountinfo");
  std::string all((std::istreambuf_iterator<char>(info)), {});
  const bool still = all.find(mnt) != std::string::npos;
  if (still) ::umount2(mnt.c_str(), MNT_DETACH);
  CHECK_FALSE(still);
  CHECK_FALSE(is_dir(dead));
}

TEST_CASE("random ids and times look as Docker's do") {
  std::string a = random_hex_id(), b = random_hex_id();
  CHECK(a.size() == 64);
  CHECK(a.find_first_not_of("0123456789abcdef") == std::string::npos);
  CHECK(a != b);
  std::string now = now_rfc3339();
  CHECK(now.size() == 20);
  CHECK(now[4] == '-');
  CHECK(now[10] == 'T');
  CHECK(now.back() == 'Z');
}

}  // namespace
}  // namespace layerfs::ctl
