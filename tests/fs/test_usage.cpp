// Tests for fs/usage.cpp and its hooks in the core: the writable layer's size
// count (Docker's rule: st_size of every non-directory of the upper layer and
// WORK/links, each inode once) stays equal to a walk of those directories
// after every kind of change, is published in WORK/usage, and starts right
// after a clean unmount and after a crash.
#include <fcntl.h>
#include <linux/falloc.h>
#include <sys/stat.h>
#include <unistd.h>

#include <fstream>
#include <set>
#include <sstream>

#include "tests/fs/core_fixture.h"

namespace layerfs {
namespace {

using namespace coretest;

// The count by walking, independently of fs/usage.cpp.
int64_t walk_size(const std::string& dir, std::set<std::pair<dev_t, ino_t>>* seen) {
  int64_t total = 0;
  for (const auto& e : std::filesystem::recursive_directory_iterator(dir)) {
    struct stat st = lstat_of(e.path().string());
    if (S_ISDIR(st.st_mode) || st.st_size <= 0) continue;
    if (!seen->insert({st.st_dev, st.st_ino}).second) continue;
    total += st.st_size;
  }
  return total;
}

int64_t expected(Stack& s) {
  std::set<std::pair<dev_t, ino_t>> seen;
  return walk_size(s.U(), &seen) + walk_size(s.W("links"), &seen);
}

FsOptions tracking() {
  FsOptions o;
  o.track_usage = true;
  return o;
}

// Writes through a handle as the FUSE adapter does (so the count sees it).
void write_at(Stack& s, const std::string& path, std::string_view data, off_t off, int flags = 0) {
  auto fh = must(s.fs().open(s.get(path), O_WRONLY | flags), "open");
  write_handle(s.fs(), *fh, data, off);
  s.fs().wrote(*fh, off, data.size());
}

std::string usage_file(Stack& s) {
  std::ifstream in(s.W("usage"));
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

TEST_CASE("the size count follows every change of the writable layer") {
  Stack s(1);
  write_file(s.L(1, "lower.txt"), std::string(1000, 'l'));
  write_file(s.L(1, "dir/inner.txt"), "inner");
  write_file(s.L(1, "big"), std::string(5000, 'b'));
  make_hardlink(s.L(1, "big"), s.L(1, "big2"));
  s.open(tracking());
  UsageCounter* u = s.fs().usage();
  REQUIRE(u != nullptr);
  CHECK(u->bytes() == 0);

  const Caller me{0, 0};
  SUBCASE("create, write, extend, overwrite, truncate") {
    auto c = must(s.fs().create(s.root(), "new", 0644, O_WRONLY, me), "create");
    write_handle(s.fs(), *c.handle, "hello", 0);
    s.fs().wrote(*c.handle, 0, 5);
    CHECK(u->bytes() == expected(s));
    write_at(s, "new", "world", 100);  // extends to 105
    CHECK(u->bytes() == 105);
    write_at(s, "new", "H", 0);  // inside: no change
    CHECK(u->bytes() == 105);
    SetAttr t;
    t.size = 10;
    must(s.fs().setattr(s.get("new"), t, nullptr), "truncate");
    CHECK(u->bytes() == 10);
    auto fh = must(s.fs().open(s.get("new"), O_WRONLY | O_TRUNC), "O_TRUNC");
    CHECK(u->bytes() == 0);
    CHECK(u->bytes() == expected(s));
  }
  SUBCASE("copy-up counts the copy; a prefix truncate counts what is kept") {
    write_at(s, "lower.txt", "x", 1000);  // copy-up of 1000 bytes, then one more
    CHECK(u->bytes() == 1001);
    SetAttr t;
    t.size = 3;
    must(s.fs().setattr(s.get("dir/inner.txt"), t, nullptr), "truncate lower");
    CHECK(u->bytes() == 1004);
    CHECK(u->bytes() == expected(s));
  }
  SUBCASE("symlinks count their target, directories nothing") {
    must(s.fs().symlink(s.root(), "sl", "0123456789", me), "symlink");
    must(s.fs().mkdir(s.root(), "d", 0755, me), "mkdir");
    CHECK(u->bytes() == 10);
    CHECK(u->bytes() == expected(s));
  }
  SUBCASE("hard links count once; the last unlink takes the size away") {
    auto c = must(s.fs().create(s.root(), "a", 0644, O_WRONLY, me), "create");
    write_handle(s.fs(), *c.handle, "12345678", 0);
    s.fs().wrote(*c.handle, 0, 8);
    c.handle.reset();
    must(s.fs().link(s.get("a"), s.root(), "b"), "link");
    CHECK(u->bytes() == 8);
    must(s.fs().unlink(s.root(), "a"), "unlink a");
    CHECK(u->bytes() == 8);
    must(s.fs().unlink(s.root(), "b"), "unlink b");
    CHECK(u->bytes() == 0);
    CHECK(u->bytes() == expected(s));
  }
  SUBCASE("a lower hard-link group is counted once, in WORK/links") {
    write_at(s, "big", "!", 0);
    CHECK(u->bytes() == 5000);
    CHECK(u->bytes() == expected(s));
    must(s.fs().unlink(s.root(), "big"), "unlink big");
    CHECK(u->bytes() == 5000);  // big2 still holds it
    must(s.fs().unlink(s.root(), "big2"), "unlink big2");
    CHECK(u->bytes() == 0);
    CHECK(u->bytes() == expected(s));
  }
  SUBCASE("rename over a file drops the replaced one") {
    write_at(s, "lower.txt", "", 0, 0);
    auto c = must(s.fs().create(s.root(), "n", 0644, O_WRONLY, me), "create");
    write_handle(s.fs(), *c.handle, "abc", 0);
    s.fs().wrote(*c.handle, 0, 3);
    c.handle.reset();
    must(s.fs().rename(s.root(), "n", s.root(), "lower.txt", 0), "rename over");
    CHECK(u->bytes() == 3);
    CHECK(u->bytes() == expected(s));
  }
  SUBCASE("fallocate without KEEP_SIZE extends the count") {
    auto c = must(s.fs().create(s.root(), "f", 0644, O_RDWR, me), "create");
    must(s.fs().fallocate(*c.handle, 0, 0, 4096), "fallocate");
    CHECK(u->bytes() == 4096);
    must(s.fs().fallocate(*c.handle, FALLOC_FL_KEEP_SIZE, 4096, 4096), "keep size");
    CHECK(u->bytes() == 4096);
    CHECK(u->bytes() == expected(s));
  }
}

TEST_CASE("the count is published, kept across a clean unmount and recounted after a crash") {
  Stack s(1);
  write_file(s.L(1, "f"), "12345");
  s.open(tracking());
  write_at(s, "f", "67", 5);
  MUST(s.fs().shutdown());
  CHECK(usage_file(s) == "bytes=7\nstate=final\n");
  s.close();

  // A clean start trusts the final count (it does not walk): put a file in the
  // upper behind its back and the count ignores it.
  write_file(s.U("sneaked-in"), "123");
  s.open(tracking());
  CHECK(s.fs().usage()->bytes() == 7);
  CHECK(usage_file(s).find("state=live") != std::string::npos);
  s.close();  // no shutdown: as if the daemon died

  // After a crash the file says "live": the next start counts.
  s.open(tracking());
  CHECK(s.fs().usage()->bytes() == 10);
  CHECK(s.fs().usage()->bytes() == expected(s));
}

TEST_CASE("an fsync of the root directory publishes the count at once") {
  Stack s(1);
  write_file(s.L(1, "f"), "12345");
  s.open(tracking());
  const std::string before = usage_file(s);
  write_at(s, "f", "67", 5);  // copied up: 7 bytes
  // The publisher waits up to a second; fsyncdir on the root does not.
  MUST(s.fs().fsyncdir(s.fs().root(), false));
  CHECK(usage_file(s) == "bytes=7\nstate=live\n");
  CHECK(before != usage_file(s));
  s.close();
}

}  // namespace
}  // namespace layerfs
