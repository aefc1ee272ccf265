// Tests for fs/readdir.cpp: the merged listing is every visible name once,
// upper and lowers together, without whiteouts or markers of any kind, each
// entry with the type of the object that name resolves to and a d_ino equal
// to the st_ino that getattr presents for it.
#include <dirent.h>
#include <fcntl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/un.h>
#include <unistd.h>

#include "tests/fs/core_fixture.h"

namespace layerfs {
namespace {

using namespace coretest;

using Names = std::vector<std::string>;

// Checks every entry of `dir` against a lookup of its name: d_ino equals
// getattr's st_ino and the type matches. Returns the names.
Names check_listing(Stack& s, const std::string& dir) {
  InodePtr d = s.get(dir);
  auto entries = MUST(s.fs().list(d));
  std::set<std::string> unique;
  for (const auto& e : entries) {
    CAPTURE(e.name);
    CHECK(unique.insert(e.name).second);  // each name once
    CHECK(e.name != ".");
    CHECK(e.name != "..");
    CHECK(e.name.rfind(".wh.", 0) != 0);
    auto n = s.fs().lookup(d, e.name);
    REQUIRE(n.ok());
    struct stat st = MUST(s.fs().getattr(n.value()));
    CHECK(e.ino == st.st_ino);
    CHECK(e.ino == n.value()->ino);
    CHECK(e.type == IFTODT(st.st_mode));
  }
  return entry_names(entries);
}

TEST_CASE("the listing merges upper and lowers and names each entry once") {
  Stack s(3);
  write_file(s.U("d/u"), "");
  write_file(s.U("d/all"), "upper");
  write_file(s.L(1, "d/all"), "1");
  write_file(s.L(2, "d/all"), "2");
  write_file(s.L(3, "d/all"), "3");
  write_file(s.L(1, "d/l1"), "");
  write_file(s.L(2, "d/l2"), "");
  write_file(s.L(3, "d/l3"), "");
  write_file(s.L(2, "d/l23"), "");
  write_file(s.L(3, "d/l23"), "");
  make_dir(s.L(1, "d/sub"));
  make_dir(s.L(3, "d/sub"));
  s.open();
  CHECK(check_listing(s, "d") == Names{"all", "l1", "l2", "l23", "l3", "sub", "u"});
  CHECK(check_listing(s, "") == Names{"d"});
  CHECK(check_listing(s, "d/sub").empty());
}

TEST_CASE("d_ino matches getattr for objects of every layer and origin") {
  Stack s(3);
  write_file(s.L(1, "one"), "1");
  write_file(s.L(2, "two"), "2");
  write_file(s.L(3, "three"), "3");
  write_file(s.L(3, "copied"), "c");
  write_file(s.L(2, "renamed"), "r");
  make_dir(s.L(2, "dir2"));
  make_dir(s.L(3, "dir2"));
  write_file(s.U("upper"), "u");
  make_dir(s.U("both"));
  make_dir(s.L(1, "both"));
  s.open();
  s.write("copied", "changed");
  MUST(s.fs().rename(s.root(), "renamed", s.root(), "moved", 0));
  auto c = MUST(s.fs().create(s.root(), "created", 0644, O_WRONLY, kRoot));
  c = {};
  Names expect{"both", "copied", "created", "dir2", "moved", "one", "three", "two", "upper"};
  CHECK(check_listing(s, "") == expect);
  s.reopen();
  CHECK(check_listing(s, "") == expect);
}

TEST_CASE("whiteouts, .wh. files and opaque markers never appear") {
  Stack s(3);
  make_whiteout(s.L(1, "d/cw"));
  write_file(s.L(2, "d/cw"), "hidden");
  write_file(s.L(1, "d/.wh.fw"), "");
  write_file(s.L(2, "d/fw"), "hidden");
  write_file(s.L(1, "d/.wh.nothing"), "");
  write_file(s.L(2, "d/.wh..wh..opq"), "");
  write_file(s.L(2, "d/mid"), "m");
  write_file(s.L(3, "d/bottom"), "hidden by the opaque middle");
  make_whiteout(s.L(3, "d/lone"));  // a whiteout with nothing under it
  write_file(s.L(1, "d/top"), "t");
  s.open();
  CHECK(check_listing(s, "d") == Names{"mid", "top"});
}

TEST_CASE("types are those of the objects" * doctest::skip(needs_root())) {
  Stack s(2);
  write_file(s.L(1, "reg"), "");
  make_dir(s.L(1, "dir"));
  make_symlink("reg", s.L(1, "lnk"));
  make_node(s.L(2, "fifo"), S_IFIFO | 0644);
  make_node(s.L(2, "chr"), S_IFCHR | 0644, makedev(1, 3));
  make_node(s.L(2, "blk"), S_IFBLK | 0600, makedev(7, 0));
  {
    int sock = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    REQUIRE(sock >= 0);
    struct sockaddr_un addr {};
    addr.sun_family = AF_UNIX;
    std::string p = s.L(2, "sock");
    REQUIRE(p.size() < sizeof addr.sun_path);
    std::strcpy(addr.sun_path, p.c_str());
    CHECK(::bind(sock, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0);
    ::close(sock);
  }
  // Upper entries of their own type over lower ones of another.
  write_file(s.U("was_dir"), "");
  make_dir(s.L(1, "was_dir"));
  make_symlink("x", s.U("was_file"));
  write_file(s.L(2, "was_file"), "");
  s.open();
  auto entries = MUST(s.fs().list(s.root()));
  std::map<std::string, unsigned char> types;
  for (const auto& e : entries) types[e.name] = e.type;
  CHECK(types["reg"] == DT_REG);
  CHECK(types["dir"] == DT_DIR);
  CHECK(types["lnk"] == DT_LNK);
  CHECK(types["fifo"] == DT_FIFO);
  CHECK(types["chr"] == DT_CHR);
  CHECK(types["blk"] == DT_BLK);
  CHECK(types["sock"] == DT_SOCK);
  CHECK(types["was_dir"] == DT_REG);
  CHECK(types["was_file"] == DT_LNK);
  CHECK(types.size() == 9);
  check_listing(s, "");
}

TEST_CASE("index whiteouts and opaque directories shape the listing") {
  Stack s(2);
  write_file(s.L(1, "d/a"), "");
  write_file(s.L(2, "d/b"), "");
  write_file(s.L(2, "d/c"), "");
  write_file(s.L(2, "e/old"), "");
  s.open();
  MUST(s.fs().unlink(s.get("d"), "b"));
  CHECK(check_listing(s, "d") == Names{"a", "c"});
  // e replaced by a new (opaque) directory.
  MUST(s.fs().unlink(s.get("e"), "old"));
  MUST(s.fs().rmdir(s.root(), "e"));
  CHECK(check_listing(s, "") == Names{"d"});
  auto e = MUST(s.fs().mkdir(s.root(), "e", 0755, kRoot));
  e.reset();
  CHECK(check_listing(s, "e").empty());
  s.reopen();
  CHECK(check_listing(s, "d") == Names{"a", "c"});
  CHECK(check_listing(s, "e").empty());
  CHECK(check_listing(s, "") == Names{"d", "e"});
}

TEST_CASE("entries copied up, renamed or removed are listed where they are now") {
  Stack s(2);
  write_file(s.L(2, "d/f"), "f");
  write_file(s.L(2, "d/g"), "g");
  write_file(s.L(1, "d/h"), "h");
  s.open();
  const uint64_t f_ino = s.get("d/f")->ino;
  s.write("d/f", "F");
  CHECK(check_listing(s, "d") == Names{"f", "g", "h"});
  MUST(s.fs().rename(s.get("d"), "g", s.root(), "g2", 0));
  MUST(s.fs().unlink(s.get("d"), "h"));
  CHECK(check_listing(s, "d") == Names{"f"});
  CHECK(check_listing(s, "") == Names{"d", "g2"});
  auto entries = MUST(s.fs().list(s.get("d")));
  REQUIRE(entries.size() == 1);
  CHECK(entries[0].ino == f_ino);
}

TEST_CASE("a renamed lower directory lists the content of its origin") {
  Stack s(2);
  write_file(s.L(1, "src/a"), "");
  write_file(s.L(2, "src/b"), "");
  make_dir(s.L(2, "src/sub"));
  s.open();
  MUST(s.fs().rename(s.root(), "src", s.root(), "dst", 0));
  CHECK(check_listing(s, "dst") == Names{"a", "b", "sub"});
  CHECK(check_listing(s, "") == Names{"dst"});
  s.reopen();
  CHECK(check_listing(s, "dst") == Names{"a", "b", "sub"});
  CHECK(check_listing(s, "") == Names{"dst"});
}

TEST_CASE("listing errors and empty directories") {
  Stack s(2);
  write_file(s.L(1, "f"), "");
  make_dir(s.L(1, "empty"));
  make_dir(s.L(2, "empty"));
  s.open();
  CHECK(s.fs().list(s.get("f")).error() == ENOTDIR);
  CHECK(s.fs().opendir(s.get("f")).error() == ENOTDIR);
  CHECK(MUST(s.fs().list(s.get("empty"))).empty());
  auto h = MUST(s.fs().opendir(s.get("empty")));
  CHECK(h->node == s.get("empty"));
}

TEST_CASE("a large merged directory") {
  Stack s(2);
  for (int i = 0; i < 600; ++i) {
    std::string n = "f" + std::to_string(i);
    if (i % 3 == 0) write_file(s.U("d/" + n), "");
    if (i % 2 == 0) write_file(s.L(1, "d/" + n), "");
    if (i % 5 != 0 || i % 3 == 0 || i % 2 == 0) write_file(s.L(2, "d/" + n), "");
  }
  s.open();
  auto entries = MUST(s.fs().list(s.get("d")));
  std::set<std::string> names;
  for (const auto& e : entries) names.insert(e.name);
  CHECK(names.size() == entries.size());
  int expect = 0;
  for (int i = 0; i < 600; ++i) {
    if (i % 3 == 0 || i % 2 == 0 || i % 5 != 0) ++expect;
  }
  CHECK(names.size() == static_cast<size_t>(expect));
  check_listing(s, "d");
}

}  // namespace
}  // namespace layerfs
