// Tests for the st_ino scheme (fs/ino.h) and how the Filesystem applies it:
// the encode/alias helpers, layer-tagged numbers for objects first seen in a
// layer, the origin's number for copied-up objects, uniqueness across layers
// whose real inode numbers collide (each layer on its own tmpfs), and
// stability across copy-up, rename and a new Filesystem on the same dirs.
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <set>

#include "tests/fs/core_fixture.h"

namespace layerfs {
namespace {

using namespace coretest;

TEST_CASE("ino::encode puts the layer in the top 16 bits") {
  CHECK(ino::kInoBits == 48);
  CHECK(ino::kInoMask == 0x0000FFFFFFFFFFFFull);
  CHECK(ino::encode(0, 5) == 5);
  CHECK(ino::encode(1, 5) == ((uint64_t{1} << 48) | 5));
  CHECK(ino::encode(0xFFFE, 0xFFFFFFFFFFFFull) == 0xFFFEFFFFFFFFFFFFull);
  CHECK(ino::layer_of(ino::encode(7, 123)) == 7);
  CHECK(ino::layer_of(5) == 0);
  CHECK((ino::encode(3, 42) & ino::kInoMask) == 42);
  // Bits above 48 of the real number never leak into the layer.
  CHECK(ino::encode(2, (uint64_t{1} << 50) | 9) == ino::encode(2, 9));
}

TEST_CASE("ino::fits and the alias layer") {
  CHECK(ino::fits(0));
  CHECK(ino::fits(ino::kInoMask));
  CHECK_FALSE(ino::fits(ino::kInoMask + 1));
  CHECK_FALSE(ino::fits(~uint64_t{0}));
  CHECK(ino::kAliasLayer == 0xFFFF);
  CHECK(ino::encode_alias(1) == 0xFFFF000000000001ull);
  CHECK(ino::layer_of(ino::encode_alias(77)) == ino::kAliasLayer);
  // No real layer reaches the alias layer.
  CHECK(ino::kMaxLayers == ino::kAliasLayer);
  CHECK(ino::layer_of(ino::encode(ino::kMaxLayers - 1, 1)) < ino::kAliasLayer);
}

TEST_CASE("presented st_ino: layer of first sight and that layer's inode number") {
  Stack s(3);
  write_file(s.L(1, "top"), "1");
  write_file(s.L(2, "mid"), "2");
  write_file(s.L(3, "low"), "3");
  write_file(s.L(2, "both"), "mid");
  write_file(s.L(3, "both"), "low");
  make_dir(s.L(2, "d"));
  make_dir(s.L(3, "d"));
  write_file(s.U("up"), "u");
  s.open();
  CHECK(s.get("top")->ino == ino_at(1, s.L(1, "top")));
  CHECK(s.get("mid")->ino == ino_at(2, s.L(2, "mid")));
  CHECK(s.get("low")->ino == ino_at(3, s.L(3, "low")));
  CHECK(s.get("both")->ino == ino_at(2, s.L(2, "both")));
  CHECK(s.get("d")->ino == ino_at(2, s.L(2, "d")));
  CHECK(s.get("up")->ino == ino_at(0, s.U("up")));
  for (const char* n : {"top", "mid", "low", "both", "d", "up"}) {
    CHECK(s.attr(n).st_ino == s.get(n)->ino);
  }
}

TEST_CASE("st_ino is unique across layers whose real inode numbers collide" * doctest::skip(needs_root())) {
  TempDir t;
  TmpfsMount m1(t.path() + "/m1");
  TmpfsMount m2(t.path() + "/m2");
  TmpfsMount m3(t.path() + "/m3");
  // The same creations in the same order on each fresh tmpfs give the same
  // inode numbers.
  for (const auto* m : {&m1, &m2, &m3}) {
    make_dir(m->path() + "/d");
    write_file(m->path() + "/d/f", "x");
    write_file(m->path() + "/g", "x");
  }
  std::string tag[] = {"one", "two"};
  write_file(m1.path() + "/only1", tag[0]);
  write_file(m2.path() + "/only2", tag[1]);
  make_dir(m3.path() + "/upper");
  make_dir(m3.path() + "/work", 0700);
  write_file(m3.path() + "/upper/u1", "up");

  REQUIRE(lstat_of(m1.path() + "/d/f").st_ino == lstat_of(m2.path() + "/d/f").st_ino);
  REQUIRE(lstat_of(m1.path() + "/g").st_ino == lstat_of(m2.path() + "/g").st_ino);
  REQUIRE(lstat_of(m1.path() + "/only1").st_ino == lstat_of(m2.path() + "/only2").st_ino);

  CanonicalPaths p;
  p.lowerdirs = {m1.path(), m2.path()};
  p.upperdir = m3.path() + "/upper";
  p.workdir = m3.path() + "/work";
  Stack s(p);
  s.open();

  // Every object of the merged tree, by path, with its st_ino from lookup and
  // from readdir.
  std::map<std::string, uint64_t> seen;
  std::function<void(const std::string&)> walk = [&](const std::string& dir) {
    InodePtr d = s.get(dir);
    for (const auto& e : MUST(s.fs().list(d))) {
      std::string path = dir.empty() ? e.name : dir + "/" + e.name;
      InodePtr n = MUST(s.fs().lookup(d, e.name));
      CHECK_MESSAGE(e.ino == n->ino, path);
      CHECK(MUST(s.fs().getattr(n)).st_ino == n->ino);
      seen[path] = n->ino;
      if (n->is_dir()) walk(path);
    }
  };
  walk("");
  CHECK(seen.size() == 6);  // d, d/f, g, only1, only2, u1
  std::set<uint64_t> distinct;
  for (const auto& [path, ino] : seen) distinct.insert(ino);
  distinct.insert(s.root()->ino);
  CHECK(distinct.size() == seen.size() + 1);
  CHECK(seen["only1"] == ino_at(1, m1.path() + "/only1"));
  CHECK(seen["only2"] == ino_at(2, m2.path() + "/only2"));

  // Copy-up keeps the number, and the upper copy's own number (which may
  // collide with a lower one) does not leak.
  uint64_t before = seen["only2"];
  s.write("only2", "changed");
  CHECK(s.get("only2")->ino == before);
  CHECK(s.attr("only2").st_ino == before);
  // Creations in the upper get layer 0 numbers, distinct from the lowers'.
  InodePtr root = s.root();
  auto c = MUST(s.fs().create(root, "new", 0644, O_WRONLY, kRoot));
  CHECK(ino::layer_of(c.node->ino) == 0);
  CHECK(distinct.count(c.node->ino) == 0);
  c = {};
  root.reset();

  s.reopen();
  CHECK(s.get("only2")->ino == before);
  CHECK(s.read("only2") == "changed");
  CHECK(s.get("only1")->ino == seen["only1"]);
}

TEST_CASE("st_ino is stable across copy-up, rename and reopening") {
  Stack s(2);
  write_file(s.L(2, "a/b/file"), "data");
  write_file(s.L(1, "x"), "x");
  make_symlink("target", s.L(2, "a/link"));
  s.open();
  const uint64_t a = s.get("a")->ino;
  const uint64_t b = s.get("a/b")->ino;
  const uint64_t file = s.get("a/b/file")->ino;
  const uint64_t x = s.get("x")->ino;
  const uint64_t link = s.get("a/link")->ino;
  CHECK(a == ino_at(2, s.L(2, "a")));
  CHECK(file == ino_at(2, s.L(2, "a/b/file")));

  MUST(s.fs().copy_up(s.get("a/b/file")));
  MUST(s.fs().copy_up(s.get("a/link")));
  CHECK(exists(s.U("a/b/file")));
  CHECK(s.get("a")->ino == a);
  CHECK(s.get("a/b")->ino == b);
  CHECK(s.get("a/b/file")->ino == file);
  CHECK(s.get("a/link")->ino == link);
  CHECK(s.attr("a/b/file").st_ino == file);
  // The index records the origin of each copy.
  CHECK(s.record("a/b/file")->origin == file);
  CHECK(s.record("a/b")->origin == b);
  CHECK(s.record("a")->origin == a);

  MUST(s.fs().rename(s.root(), "x", s.get("a"), "y", 0));
  CHECK(s.get("a/y")->ino == x);

  s.reopen();
  CHECK(s.get("a")->ino == a);
  CHECK(s.get("a/b")->ino == b);
  CHECK(s.get("a/b/file")->ino == file);
  CHECK(s.get("a/link")->ino == link);
  CHECK(s.get("a/y")->ino == x);
  CHECK(s.attr("a/y").st_ino == x);
  // And readdir agrees.
  for (const auto& e : MUST(s.fs().list(s.get("a")))) {
    CHECK(e.ino == s.get("a/" + e.name)->ino);
  }
}

TEST_CASE("the read_only option presents the numbers recorded by an earlier rw mount") {
  Stack s(1);
  write_file(s.L(1, "a/f"), "x");
  s.open();
  const uint64_t f = s.get("a/f")->ino;
  const uint64_t a = s.get("a")->ino;
  s.write("a/f", "y");
  MUST(s.fs().rename(s.get("a"), "f", s.root(), "g", 0));
  MUST(s.fs().rename(s.root(), "a", s.root(), "b", 0));
  s.close();
  s.open(FsOptions{.read_only = true});
  CHECK(s.get("g")->ino == f);
  CHECK(s.get("b")->ino == a);
  CHECK(s.read("g") == "y");
  CHECK(s.lookup_error("a") == ENOENT);
  for (const auto& e : MUST(s.fs().list(s.root()))) CHECK(e.ino == s.get(e.name)->ino);
}

TEST_CASE("a read-only stack without upper presents the same numbers") {
  Stack s(2, false);
  write_file(s.L(2, "f"), "x");
  make_dir(s.L(1, "d"));
  s.open();
  CHECK(s.get("f")->ino == ino_at(2, s.L(2, "f")));
  CHECK(s.get("d")->ino == ino_at(1, s.L(1, "d")));
}

TEST_CASE("Index::alias gives stable distinct numbers that encode_alias can present") {
  TempDir t;
  std::string why;
  uint64_t a1, a2;
  {
    auto idx = MUST(metadata::Index::open(t.path() + "/index", true, &why));
    a1 = MUST(idx->alias(1, uint64_t{1} << 60));
    a2 = MUST(idx->alias(2, uint64_t{1} << 60));
    CHECK(a1 != a2);
    CHECK(MUST(idx->alias(1, uint64_t{1} << 60)) == a1);
  }
  auto idx = MUST(metadata::Index::open(t.path() + "/index", false, &why));
  CHECK(MUST(idx->alias(1, uint64_t{1} << 60)) == a1);
  CHECK(MUST(idx->alias(2, uint64_t{1} << 60)) == a2);
  CHECK(ino::fits(a1));
  CHECK(ino::encode_alias(a1) != ino::encode_alias(a2));
  CHECK(ino::layer_of(ino::encode_alias(a1)) == ino::kAliasLayer);
}

}  // namespace
}  // namespace layerfs
