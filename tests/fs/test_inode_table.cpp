// Tests for fs/inode_table.cpp: one live Inode per st_ino, dead ones replaced,
// entries gone with the last reference, and the orphan-copy cleanup hook of
// the Inode deleter.
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <thread>

#include "tests/fs/core_fixture.h"

namespace layerfs {
namespace {

using namespace coretest;

TEST_CASE("make creates an Inode that is not in the table yet") {
  InodeTable t;
  InodePtr a = t.make(ino::encode(1, 5), S_IFREG | 0644);
  CHECK(a->ino == ino::encode(1, 5));
  CHECK(a->type == S_IFREG);  // only the S_IFMT bits are kept
  CHECK_FALSE(a->is_dir());
  CHECK(t.find(a->ino) == nullptr);
  CHECK(t.size() == 0);
  InodePtr d = t.make(7, S_IFDIR | 0755);
  CHECK(d->is_dir());
  CHECK_FALSE(d->has_upper());
  CHECK_FALSE(d->has_lower());
}

TEST_CASE("generations are unique and increasing") {
  InodeTable t;
  InodePtr a = t.make(1, S_IFREG);
  InodePtr b = t.make(1, S_IFREG);
  InodePtr c = t.make(2, S_IFREG);
  CHECK(a->generation != 0);
  CHECK(a->generation < b->generation);
  CHECK(b->generation < c->generation);
}

TEST_CASE("insert_or_get returns the live Inode already in the table") {
  InodeTable t;
  InodePtr a = t.make(10, S_IFREG);
  CHECK(t.insert_or_get(a) == a);
  CHECK(t.find(10) == a);
  CHECK(t.size() == 1);

  InodePtr b = t.make(10, S_IFREG);
  InodePtr got = t.insert_or_get(b);
  CHECK(got == a);
  CHECK(t.find(10) == a);
  // The refused fresh Inode dying must not remove the live entry.
  b.reset();
  got.reset();
  CHECK(t.find(10) == a);
  CHECK(t.size() == 1);
}

TEST_CASE("a dead Inode is not found and gets replaced by insert_or_get") {
  InodeTable t;
  InodePtr a = t.make(11, S_IFREG);
  t.insert_or_get(a);
  a->dead = true;
  CHECK(t.find(11) == nullptr);
  InodePtr b = t.make(11, S_IFREG);
  CHECK(t.insert_or_get(b) == b);
  CHECK(t.find(11) == b);
  // The old one dying later leaves the new entry alone.
  a.reset();
  CHECK(t.find(11) == b);
  CHECK(t.size() == 1);
}

TEST_CASE("entries vanish when the last reference goes") {
  InodeTable t;
  InodePtr a = t.make(12, S_IFREG);
  t.insert_or_get(a);
  InodePtr copy = a;
  a.reset();
  CHECK(t.find(12) == copy);
  copy.reset();
  CHECK(t.find(12) == nullptr);
  CHECK(t.size() == 0);
  // And a new one can take the number.
  InodePtr c = t.make(12, S_IFDIR);
  CHECK(t.insert_or_get(c) == c);
  CHECK(t.find(12) == c);
}

TEST_CASE("replace takes over the number even from a live Inode") {
  InodeTable t;
  InodePtr a = t.make(13, S_IFREG);
  t.insert_or_get(a);
  InodePtr b = t.make(13, S_IFREG);
  t.replace(b);
  CHECK(t.find(13) == b);
  a.reset();  // the replaced one dying leaves b's entry
  CHECK(t.find(13) == b);
  CHECK(t.size() == 1);
  // replace() of a number not in the table inserts it.
  InodePtr c = t.make(14, S_IFREG);
  t.replace(c);
  CHECK(t.find(14) == c);
  CHECK(t.size() == 2);
}

TEST_CASE("numbers that share a shard stay separate") {
  InodeTable t;
  std::vector<InodePtr> keep;
  // Same low bits, different layers: the shard hash mixes them, the map must not.
  for (uint32_t layer = 0; layer < 200; ++layer) {
    InodePtr n = t.make(ino::encode(layer, 64), S_IFREG);
    CHECK(t.insert_or_get(n) == n);
    keep.push_back(n);
  }
  CHECK(t.size() == 200);
  for (uint32_t layer = 0; layer < 200; ++layer) {
    CHECK(t.find(ino::encode(layer, 64)) == keep[layer]);
  }
  keep.clear();
  CHECK(t.size() == 0);
}

TEST_CASE("concurrent insert_or_get of one number agrees on a single Inode") {
  InodeTable t;
  constexpr int kThreads = 8;
  std::vector<InodePtr> got(kThreads);
  std::atomic<bool> go{false};
  std::vector<std::thread> threads;
  for (int i = 0; i < kThreads; ++i) {
    threads.emplace_back([&, i] {
      while (!go.load()) {
      }
      InodePtr fresh = t.make(99, S_IFREG);
      got[i] = t.insert_or_get(fresh);
    });
  }
  go = true;
  for (auto& th : threads) th.join();
  for (int i = 1; i < kThreads; ++i) CHECK(got[i] == got[0]);
  CHECK(t.find(99) == got[0]);
  got.clear();
  CHECK(t.size() == 0);
}

TEST_CASE("the deleter removes an orphan copy from staging") {
  TempDir d;
  write_file(d.path() + "/#orphan", "data");
  write_file(d.path() + "/#other", "data");
  UniqueFd dir(::open(d.path().c_str(), O_PATH | O_DIRECTORY | O_CLOEXEC));
  REQUIRE(dir.valid());
  InodeTable t;
  {
    InodePtr n = t.make(20, S_IFREG);
    n->orphan_name = "#orphan";
    n->staging_fd_for_orphan = dir.get();
    t.insert_or_get(n);
    CHECK(exists(d.path() + "/#orphan"));
  }
  CHECK_FALSE(exists(d.path() + "/#orphan"));
  CHECK(exists(d.path() + "/#other"));
  CHECK(t.size() == 0);
}

TEST_CASE("set_upper installs the fd once and bumps data_gen") {
  TempDir d;
  write_file(d.path() + "/f", "x");
  InodeTable t;
  InodePtr n = t.make(30, S_IFREG);
  uint32_t gen = n->data_gen.load();
  int fd = ::open((d.path() + "/f").c_str(), O_PATH | O_CLOEXEC);
  REQUIRE(fd >= 0);
  n->set_upper(UniqueFd(fd), 1234, 5678);
  CHECK(n->has_upper());
  REQUIRE(n->upper_fd().ok());
  CHECK(n->upper_fd()->get() == fd);  // a plain UniqueFd stays pinned
  CHECK(n->upper_ino == 1234);
  CHECK(n->upper_stamp == 5678);
  CHECK(n->data_gen.load() == gen + 1);
}

TEST_CASE("the Filesystem's table keeps one Inode per object across lookups") {
  Stack s(1);
  write_file(s.L(1, "a"), "1");
  make_dir(s.L(1, "d"));
  s.open();
  CHECK(s.fs().table().size() == 1);  // the root
  {
    InodePtr a1 = s.get("a");
    InodePtr a2 = s.get("a");
    CHECK(a1 == a2);
    CHECK(s.fs().table().find(a1->ino) == a1);
    InodePtr d = s.get("d");
    CHECK(s.fs().table().size() == 3);
  }
  // Nothing keeps them once the test lets go.
  CHECK(s.fs().table().size() == 1);
}

}  // namespace
}  // namespace layerfs
