// Tests for fs/layers.cpp and the mount-time setup in fs/filesystem.cpp:
// layer numbering, the workdir layout, the "in use" locks on upper and work
// directories (a second stack or Filesystem on them must be refused), removal
// of staging leftovers when a Filesystem opens, and remove_tree_at.
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include "tests/fs/core_fixture.h"

namespace layerfs {
namespace {

using namespace coretest;

TEST_CASE("LayerStack numbers lowers top-most first and upper as layer 0") {
  Stack s(3);
  std::string why;
  auto ls = MUST(LayerStack::open(s.paths(), &why));
  REQUIRE(ls->lower_count() == 3);
  for (uint32_t i = 0; i < 3; ++i) {
    const Layer& l = ls->lowers()[i];
    CHECK(l.number == i + 1);
    CHECK(l.path == s.L(static_cast<int>(i) + 1));
    CHECK(l.root.valid());
    CHECK(l.dev == lstat_of(s.L(static_cast<int>(i) + 1)).st_dev);
    // The root fd is the layer's root directory.
    struct stat st;
    REQUIRE(::fstat(l.root.get(), &st) == 0);
    CHECK(st.st_ino == lstat_of(s.L(static_cast<int>(i) + 1)).st_ino);
  }
  REQUIRE(ls->has_upper());
  CHECK(ls->upper().number == 0);
  CHECK(ls->upper().path == s.U());
  CHECK(ls->index_path() == s.W("index"));
}

TEST_CASE("LayerStack prepares the workdir's staging and links directories") {
  Stack s(1);
  std::string why;
  auto ls = MUST(LayerStack::open(s.paths(), &why));
  struct stat st = lstat_of(s.W("staging"));
  CHECK(S_ISDIR(st.st_mode));
  CHECK((st.st_mode & 07777) == 0700);
  st = lstat_of(s.W("links"));
  CHECK(S_ISDIR(st.st_mode));
  CHECK((st.st_mode & 07777) == 0700);

  // The fds name those directories.
  struct stat fst;
  REQUIRE(::fstat(ls->staging_fd(), &fst) == 0);
  CHECK(fst.st_ino == lstat_of(s.W("staging")).st_ino);
  REQUIRE(::fstat(ls->links_fd(), &fst) == 0);
  CHECK(fst.st_ino == lstat_of(s.W("links")).st_ino);

  // Nothing was created in the upper.
  CHECK(disk_names(s.U()).empty());
}

TEST_CASE("LayerStack without upper is read-only and touches nothing") {
  Stack s(2, false);
  auto before = snapshot(s.dir());
  std::string why;
  auto ls = MUST(LayerStack::open(s.paths(), &why));
  CHECK_FALSE(ls->has_upper());
  CHECK(ls->lower_count() == 2);
  CHECK(snapshot(s.dir()) == before);
}

TEST_CASE("LayerStack refuses a missing lowerdir, upperdir or an empty lower list") {
  Stack s(1);
  std::string why;
  SUBCASE("missing lowerdir") {
    CanonicalPaths p = s.paths();
    p.lowerdirs.push_back(s.dir() + "/nope");
    auto r = LayerStack::open(p, &why);
    CHECK(r.error() == ENOENT);
    CHECK(why.find(s.dir() + "/nope") != std::string::npos);
  }
  SUBCASE("missing upperdir") {
    CanonicalPaths p = s.paths();
    p.upperdir = s.dir() + "/nope";
    auto r = LayerStack::open(p, &why);
    CHECK(r.error() == ENOENT);
    CHECK(why.find("nope") != std::string::npos);
  }
  SUBCASE("no lowerdir") {
    CanonicalPaths p = s.paths();
    p.lowerdirs.clear();
    auto r = LayerStack::open(p, &why);
    CHECK(r.error() == EINVAL);
    CHECK_FALSE(why.empty());
  }
}

TEST_CASE("a second LayerStack on an upper or workdir in use is refused with EBUSY") {
  Stack s(1);
  std::string why;
  auto first = MUST(LayerStack::open(s.paths(), &why));

  SUBCASE("same upper and workdir") {
    why.clear();
    auto second = LayerStack::open(s.paths(), &why);
    CHECK(second.error() == EBUSY);
    CHECK(why.find("in use") != std::string::npos);
  }
  SUBCASE("same upper, another workdir") {
    make_dir(s.dir() + "/work2", 0700);
    CanonicalPaths p = s.paths();
    p.workdir = s.dir() + "/work2";
    auto second = LayerStack::open(p, &why);
    CHECK(second.error() == EBUSY);
  }
  SUBCASE("another upper, same workdir") {
    make_dir(s.dir() + "/upper2");
    CanonicalPaths p = s.paths();
    p.upperdir = s.dir() + "/upper2";
    auto second = LayerStack::open(p, &why);
    CHECK(second.error() == EBUSY);
  }
  SUBCASE("free again once the first is gone") {
    first.reset();
    auto second = LayerStack::open(s.paths(), &why);
    CHECK(second.ok());
  }
}

TEST_CASE("a second Filesystem on the same upper is refused while the first is open") {
  Stack s(1);
  write_file(s.L(1, "f"), "x");
  s.open();
  std::string why;
  auto second = Stack::open_fs(s.paths(), {}, &why);
  CHECK_FALSE(second.ok());
  CHECK(second.error() == EBUSY);
  // The first one still works.
  CHECK(s.read("f") == "x");
  s.close();
  auto third = Stack::open_fs(s.paths(), {}, &why);
  CHECK(third.ok());
}

TEST_CASE("a Filesystem does not open while another user holds the index") {
  Stack s(1);
  s.open();
  s.close();
  std::string why;
  auto holder = MUST(metadata::Index::open(s.W("index"), false, &why));
  why.clear();
  auto fs = Stack::open_fs(s.paths(), {}, &why);
  CHECK(fs.error() == EBUSY);
  CHECK_FALSE(why.empty());
  holder.reset();
  // The refused attempt released the directory locks.
  s.open();
}

TEST_CASE("two read-only stacks on the same lowers may coexist") {
  Stack s(2, false);
  write_file(s.L(1, "f"), "x");
  std::string why;
  auto a = MUST(Stack::open_fs(s.paths(), {}, &why));
  auto b = MUST(Stack::open_fs(s.paths(), {}, &why));
  CHECK(a->index() == nullptr);
  CHECK(b->index() == nullptr);
}

TEST_CASE("opening a Filesystem removes leftovers from WORK/staging and their index records" * doctest::skip(needs_root())) {
  Stack s(1);
  write_file(s.L(1, "keep"), "lower");
  {
    // A first mount creates the workdir layout.
    s.open();
    s.close();
  }
  // Junk as a crash would leave it: a file, a directory tree, a symlink
  // pointing outside (which must not be followed), a fifo.
  write_file(s.dir() + "/outside/precious", "do not touch");
  write_file(s.W("staging/#1"), "half a copy");
  write_file(s.W("staging/#2/sub/deeper/file"), "tree");
  make_symlink(s.dir() + "/outside", s.W("staging/#3"));
  make_node(s.W("staging/#4"), S_IFIFO | 0600);
  SYS(::chmod(s.W("staging/#2/sub").c_str(), 0));  // unreadable for others; root removes it

  // An index record as copy_up writes it before publishing.
  uint64_t junk_ino = lstat_of(s.W("staging/#1")).st_ino;
  {
    std::string why;
    auto idx = MUST(metadata::Index::open(s.W("index"), false, &why));
    metadata::Batch b;
    metadata::ObjectRecord rec;
    rec.stamp = 42;
    rec.origin = ino::encode(1, 777);
    b.put_object(junk_ino, rec);
    MUST(idx->commit(b, metadata::Durability::kSynced));
  }

  s.open();
  CHECK(s.staging().empty());
  CHECK(read_file(s.dir() + "/outside/precious") == "do not touch");
  CHECK_FALSE(MUST(s.index().object(junk_ino)).has_value());
  CHECK(s.read("keep") == "lower");
  CHECK(disk_names(s.W()) == std::vector<std::string>{"index", "links", "staging"});
}

TEST_CASE("remove_tree_at removes files and trees and never follows symlinks") {
  TempDir t;
  write_file(t.path() + "/outside/file", "x");
  write_file(t.path() + "/d/a/b/c", "y");
  make_symlink(t.path() + "/outside", t.path() + "/d/a/link");
  make_symlink(t.path() + "/outside", t.path() + "/toplink");
  write_file(t.path() + "/plain", "z");
  UniqueFd dir(::open(t.path().c_str(), O_PATH | O_DIRECTORY | O_CLOEXEC));
  REQUIRE(dir.valid());

  MUST(remove_tree_at(dir.get(), "d"));
  CHECK_FALSE(exists(t.path() + "/d"));
  MUST(remove_tree_at(dir.get(), "toplink"));
  CHECK_FALSE(exists(t.path() + "/toplink"));
  MUST(remove_tree_at(dir.get(), "plain"));
  CHECK_FALSE(exists(t.path() + "/plain"));
  CHECK(read_file(t.path() + "/outside/file") == "x");
  // A missing name is not an error.
  MUST(remove_tree_at(dir.get(), "never-was"));
}

TEST_CASE("a Filesystem on a stack without upper has no index and an EROFS stance") {
  Stack s(1, false);
  write_file(s.L(1, "f"), "x");
  s.open();
  CHECK(s.fs().index() == nullptr);
  CHECK_FALSE(s.fs().writable());
  CHECK(s.fs().root()->ino == ino_at(1, s.L(1)));
  CHECK(s.read("f") == "x");
}

TEST_CASE("the root's st_ino is the upper root's, with an upper") {
  Stack s(2);
  s.open();
  CHECK(s.root()->ino == ino_at(0, s.U()));
  CHECK(s.attr("").st_ino == ino_at(0, s.U()));
  // Stable across reopening.
  s.reopen();
  CHECK(s.root()->ino == ino_at(0, s.U()));
}

}  // namespace
}  // namespace layerfs
