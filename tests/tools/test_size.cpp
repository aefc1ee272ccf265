// Tests for tools/size.cpp: Docker's classic size rule over a tree, and a
// writable layer's size read from the daemon's count or recounted.
#include "tools/size.h"

#include <doctest/doctest.h>
#include <fcntl.h>
#include <sys/file.h>
#include <sys/wait.h>
#include <sys/stat.h>
#include <unistd.h>

#include <fstream>

#include "tests/support/temp_dir.h"

namespace layerfs::ctl {
namespace {

void put(const std::string& path, const std::string& data) {
  std::ofstream(path) << data;
}

std::string slurp(const std::string& path) {
  std::ifstream in(path);
  return std::string(std::istreambuf_iterator<char>(in), {});
}

TEST_CASE("tree_size counts file lengths, each inode once, directories and whiteouts nothing") {
  test::TempDir t("size");
  const std::string d = t.path();
  REQUIRE(::mkdir((d + "/sub").c_str(), 0755) == 0);
  put(d + "/a", "12345");                       // 5
  put(d + "/sub/b", "1234567");                 // 7
  REQUIRE(::link((d + "/a").c_str(), (d + "/sub/a-again").c_str()) == 0);  // counted once
  REQUIRE(::symlink("target", (d + "/link").c_str()) == 0);               // 6
  put(d + "/sub/.wh.gone", "");                 // a whiteout: 0
  put(d + "/empty", "");                        // 0
  CHECK(tree_size(d) == 5 + 7 + 6);
  CHECK(tree_size(d + "/no-such-dir") == 0);
}

TEST_CASE("writable_size trusts a final count, a live one only while a daemon holds the lock") {
  test::TempDir t("size");
  const std::string upper = t.path() + "/upper", work = t.path() + "/work";
  REQUIRE(::mkdir(upper.c_str(), 0755) == 0);
  REQUIRE(::mkdir(work.c_str(), 0700) == 0);
  REQUIRE(::mkdir((work + "/links").c_str(), 0700) == 0);
  put(upper + "/f", "123");
  put(work + "/links/2-7", "4567");

  // No count yet: walked (upper and links), and the result is left as final.
  CHECK(writable_size(upper, work) == 7);
  CHECK(slurp(work + "/usage") == "bytes=7\nstate=final\n");

  // A final count is read as it is, even if the tree changed behind it.
  put(work + "/usage", "bytes=1000\nstate=final\n");
  CHECK(writable_size(upper, work) == 1000);

  // A live count with a daemon holding the workdir's lock is read as it is.
  put(work + "/usage", "bytes=42\nstate=live\n");
  int daemon = ::open(work.c_str(), O_RDONLY | O_DIRECTORY);
  REQUIRE(::flock(daemon, LOCK_EX) == 0);
  pid_t pid = ::fork();
  REQUIRE(pid >= 0);
  if (pid == 0) _exit(writable_size(upper, work) == 42 ? 0 : 1);  // another process asks
  int status = 0;
  ::waitpid(pid, &status, 0);
  CHECK((WIFEXITED(status) && WEXITSTATUS(status) == 0));
  ::close(daemon);

  // The same live count with no daemon (it died): recounted.
  CHECK(writable_size(upper, work) == 7);
  CHECK(slurp(work + "/usage") == "bytes=7\nstate=final\n");
}

}  // namespace
}  // namespace layerfs::ctl
