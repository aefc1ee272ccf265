// Tests for tools/archive.cpp: safe extraction of layer tars (malicious and
// damaged ones refused with nothing written outside the tree), OCI apply
// order, whiteouts, the diffID against sha256sum, and tar writing.
#include <doctest/doctest.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/xattr.h>
#include <unistd.h>

#include "tests/support/temp_dir.h"
#include "tests/tools/test_layer_support.h"
#include "tools/archive.h"

namespace layerfs::ctl {
namespace {

using test::TarEntry;
using test::tdir;
using test::tfile;
using test::tlink;
using test::tsym;

struct Work {
  test::TempDir tmp{"archive"};
  std::string tree = tmp.path() + "/tree";
  std::string copy = tmp.path() + "/copy.tar.zst";
  Work() { REQUIRE(::mkdir(tree.c_str(), 0755) == 0); }
  std::string operator/(const std::string& rel) const { return tmp.path() + "/" + rel; }
  ExtractResult extract(const std::string& tar) { return extract_layer_tar(tar, tree, copy, {}); }
};

std::string xattr_of(const std::string& path, const std::string& name) {
  char v[256];
  ssize_t n = ::lgetxattr(path.c_str(), name.c_str(), v, sizeof v);
  return n < 0 ? "<none>" : std::string(v, static_cast<size_t>(n));
}

// A valid file capability (v2: cap_net_bind_service, effective).
const std::string kCap(
    "\x01\x00\x00\x02\x00\x04\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00"
    "\x00\x00\x00\x00",
    20);

TEST_CASE("extracting a tar keeps every kind of entry and its metadata" *
          doctest::skip(test::needs_root())) {
  Work w;
  TarEntry f = tfile("etc/app/config", "hello\n", 0640);
  f.uid = 1000;
  f.gid = 2000;
  f.mtime = 1500000000;
  f.xattrs = {
      {"user.note", "kept"}, {"trusted.overlay.opaque", "y"}, {"security.capability", kCap}};
  TarEntry d = tdir("etc/app", 0750);
  d.mtime = 1400000000;
  d.uid = 7;
  TarEntry c{"dev/null", 'c', "", 0666};
  c.major = 1;
  c.minor = 3;
  TarEntry b{"dev/blk", 'b', "", 0660};
  b.major = 7;
  b.minor = 0;
  TarEntry p{"run/fifo", 'p', "", 0600};
  TarEntry s = tsym("etc/link", "app/config");
  s.mtime = 1300000000;
  TarEntry suid = tfile("bin/tool", "#!/bin/sh\n", 04755);
  suid.uid = 5;
  std::vector<TarEntry> entries = {
      tdir("etc"), d,           f,           tlink("etc/hard", "etc/app/config"),
      s,           tdir("dev"), c,           b,
      tdir("run"), p,           tdir("bin"), suid};
  const std::string tar = w / "layer.tar";
  test::write_tar(tar, entries);
  ExtractResult r = w.extract(tar);
  CHECK(r.diff_id == test::sha256sum(tar));
  CHECK(r.tar_size == static_cast<uint64_t>(test::slurp(tar).size()));
  CHECK(r.entries == entries.size());

  struct stat st;
  REQUIRE(::lstat((w.tree + "/etc/app/config").c_str(), &st) == 0);
  CHECK((st.st_mode & 07777) == 0640);
  CHECK(st.st_uid == 1000);
  CHECK(st.st_gid == 2000);
  CHECK(st.st_mtim.tv_sec == 1500000000);
  CHECK(st.st_nlink == 2);
  CHECK(test::slurp(w.tree + "/etc/app/config") == "hello\n");
  CHECK(xattr_of(w.tree + "/etc/app/config", "user.note") == "kept");
  CHECK(xattr_of(w.tree + "/etc/app/config", "security.capability") == kCap);
  // Another union's private xattrs are never part of a layer tree.
  CHECK(xattr_of(w.tree + "/etc/app/config", "trusted.overlay.opaque") == "<none>");
  struct stat hl;
  REQUIRE(::lstat((w.tree + "/etc/hard").c_str(), &hl) == 0);
  CHECK(hl.st_ino == st.st_ino);

  REQUIRE(::lstat((w.tree + "/etc/app").c_str(), &st) == 0);
  CHECK((st.st_mode & 07777) == 0750);
  CHECK(st.st_uid == 7);
  CHECK(st.st_mtim.tv_sec == 1400000000);  // set after its children were made

  REQUIRE(::lstat((w.tree + "/etc/link").c_str(), &st) == 0);
  CHECK(S_ISLNK(st.st_mode));
  CHECK(st.st_mtim.tv_sec == 1300000000);
  char target[64] = {};
  CHECK(::readlink((w.tree + "/etc/link").c_str(), target, sizeof target) == 10);
  CHECK(std::string(target) == "app/config");

  REQUIRE(::lstat((w.tree + "/dev/null").c_str(), &st) == 0);
  CHECK(S_ISCHR(st.st_mode));
  CHECK(st.st_rdev == makedev(1, 3));
  CHECK((st.st_mode & 07777) == 0666);
  REQUIRE(::lstat((w.tree + "/dev/blk").c_str(), &st) == 0);
  CHECK(S_ISBLK(st.st_mode));
  CHECK(st.st_rdev == makedev(7, 0));
  REQUIRE(::lstat((w.tree + "/run/fifo").c_str(), &st) == 0);
  CHECK(S_ISFIFO(st.st_mode));
  REQUIRE(::lstat((w.tree + "/bin/tool").c_str(), &st) == 0);
  CHECK((st.st_mode & 07777) == 04755);  // the owner was set first, so setuid stays
  CHECK(st.st_uid == 5);

  // The copy is the tar's exact bytes, zstd-compressed.
  test::Run z = test::run({"zstd", "-q", "-d", "-f", w.copy, "-o", w / "copy.tar"});
  REQUIRE(z.status == 0);
  CHECK(test::sha256sum(w / "copy.tar") == r.diff_id);
}

TEST_CASE("gzip and zstd layers are recognised by content and have the tar's diffID") {
  Work w;
  const std::string tar = w / "l.tar";
  test::write_tar(tar, {tdir("a"), tfile("a/b", std::string(100000, 'x')), tfile("c", "c")});
  const std::string id = test::sha256sum(tar);
  for (const char* c : {"gzip", "zstd"}) {
    CAPTURE(c);
    Work w2;
    // Named misleadingly on purpose: the content decides.
    const std::string packed = w2 / "layer.bin";
    test::write_tar(packed, {tdir("a"), tfile("a/b", std::string(100000, 'x')), tfile("c", "c")},
                    c);
    CHECK(test::sha256sum(packed) != id);
    ExtractResult r = w2.extract(packed);
    CHECK(r.diff_id == id);
    CHECK(test::slurp(w2.tree + "/a/b") == std::string(100000, 'x'));
  }
}

struct Evil {
  const char* what;
  std::vector<TarEntry> entries;
};

TEST_CASE("malicious tars are refused and nothing lands outside the tree") {
  const std::vector<Evil> cases = {
      {"dot-dot", {tfile("../x", "evil")}},
      {"absolute", {tfile("/abs-evil", "evil")}},
      {"dot-dot inside", {tdir("a"), tfile("a/../../x", "evil")}},
      {"symlink to an absolute dir then through it", {tsym("s", "OUTSIDE"), tfile("s/evil", "e")}},
      {"symlink to .. then through it", {tsym("up", ".."), tfile("up/x", "evil")}},
      {"symlink then a directory through it", {tsym("s", "OUTSIDE"), tdir("s/sub")}},
      {"hard link to /etc/passwd", {tlink("h", "/etc/passwd")}},
      {"hard link to ../../x", {tlink("h", "../../x")}},
      {"hard link through a symlink", {tsym("s", "OUTSIDE"), tlink("h", "s/secret")}},
      {"symlink loop", {tsym("a", "b"), tsym("b", "a"), tfile("a/x", "evil")}},
      {"huge name", {tfile(std::string(5000, 'n'), "evil")}},
      {"huge component", {tfile("d/" + std::string(300, 'n'), "evil")}},
      {"empty component", {tfile("a//b", "evil")}},
      {"bare .wh.", {tfile(".wh.", "")}},
      {"opaque marker as a directory", {tdir("d"), tdir("d/.wh..wh..opq")}},
      {"whiteout as a symlink", {tsym(".wh.x", "y")}},
      {"hard link to a directory", {tdir("d"), tlink("h", "d")}},
  };
  for (const auto& c : cases) {
    CAPTURE(c.what);
    Work w;
    const std::string outside = w / "outside";
    REQUIRE(::mkdir(outside.c_str(), 0755) == 0);
    test::spit(outside + "/secret", "s");
    std::vector<TarEntry> entries = c.entries;
    for (auto& e : entries) {
      if (e.data == "OUTSIDE") e.data = outside;
    }
    const std::string tar = w / "evil.tar";
    test::write_tar(tar, entries);
    CHECK_THROWS_AS(w.extract(tar), Error);
    CHECK(test::snapshot(outside).size() == 1);
    CHECK(test::slurp(outside + "/secret") == "s");
    CHECK_FALSE(test::path_exists(w / "x"));
    CHECK_FALSE(test::path_exists("/abs-evil"));
    struct stat st;
    REQUIRE(::stat("/etc/passwd", &st) == 0);
    CHECK(st.st_nlink == 1);
  }
}

TEST_CASE("the refusal names the entry and the archive") {
  Work w;
  const std::string tar = w / "evil.tar";
  test::write_tar(tar, {tsym("s", "/tmp"), tfile("s/evil", "e")});
  try {
    w.extract(tar);
    FAIL("not refused");
  } catch (const Error& e) {
    std::string m = e.what();
    CHECK(m.find(tar) != std::string::npos);
    CHECK(m.find("s/evil") != std::string::npos);
    CHECK(m.find("symlink") != std::string::npos);
  }
}

TEST_CASE("damaged archives are refused") {
  Work w;
  const std::string good = w / "good.tar";
  test::write_tar(good, {tfile("a", std::string(20000, 'a')), tfile("b", "b")});
  std::string bytes = test::slurp(good);

  SUBCASE("truncated in the middle of a file") {
    test::spit(w / "t.tar", bytes.substr(0, 5000));
    CHECK_THROWS_AS(w.extract(w / "t.tar"), Error);
  }
  SUBCASE("truncated in a header") {
    test::spit(w / "t.tar", bytes.substr(0, 100));
    CHECK_THROWS_AS(w.extract(w / "t.tar"), Error);
  }
  SUBCASE("random garbage") {
    std::string g;
    uint32_t x = 12345;
    for (int i = 0; i < 50000; ++i) {
      x = x * 1103515245 + 12345;
      g += static_cast<char>(x >> 16);
    }
    test::spit(w / "g.bin", g);
    CHECK_THROWS_AS(w.extract(w / "g.bin"), Error);
    test::spit(w / "plain.bin", g);
    REQUIRE(test::run({"gzip", "-f", w / "plain.bin"}).status == 0);
    CHECK_THROWS_AS(w.extract(w / "plain.bin.gz"), Error);
  }
  SUBCASE("truncated gzip") {
    test::write_tar(w / "z.tar.gz", {tfile("a", std::string(200000, 'q') + "end")}, "gzip");
    std::string z = test::slurp(w / "z.tar.gz");
    test::spit(w / "z2.tar.gz", z.substr(0, z.size() - 20));
    CHECK_THROWS_AS(w.extract(w / "z2.tar.gz"), Error);
  }
  SUBCASE("an empty file") {
    test::spit(w / "empty.tar", "");
    CHECK_THROWS_AS(w.extract(w / "empty.tar"), Error);
  }
  SUBCASE("a missing file") {
    CHECK_THROWS_AS(w.extract(w / "nothing.tar"), Error);
  }
}

TEST_CASE("an empty tar is an empty layer") {
  Work w;
  test::spit(w / "e.tar", std::string(1024, '\0'));
  ExtractResult r = w.extract(w / "e.tar");
  CHECK(r.entries == 0);
  CHECK(r.diff_id == test::sha256sum(w / "e.tar"));
  CHECK(test::snapshot(w.tree).empty());
}

TEST_CASE("repeated names apply in order, as OCI layers are applied") {
  Work w;
  const std::string tar = w / "dup.tar";
  test::write_tar(tar, {tfile("a", "one"), tfile("a", "two"),          // file over file
                        tfile("d", "file"), tdir("d", 0700),           // dir over file
                        tfile("d/x", "x"), tdir("d", 0711),            // dir over dir keeps content
                        tdir("e"), tfile("e/y", "y"), tsym("e", "d"),  // symlink over a dir
                        tsym("l", "nowhere"), tfile("l", "real")});    // file over symlink
  w.extract(tar);
  CHECK(test::slurp(w.tree + "/a") == "two");
  struct stat st;
  REQUIRE(::lstat((w.tree + "/d").c_str(), &st) == 0);
  CHECK(S_ISDIR(st.st_mode));
  CHECK((st.st_mode & 07777) == 0711);
  CHECK(test::slurp(w.tree + "/d/x") == "x");
  REQUIRE(::lstat((w.tree + "/e").c_str(), &st) == 0);
  CHECK(S_ISLNK(st.st_mode));
  REQUIRE(::lstat((w.tree + "/l").c_str(), &st) == 0);
  CHECK(S_ISREG(st.st_mode));
  CHECK(test::slurp(w.tree + "/l") == "real");
}

TEST_CASE("whiteouts and opaque markers are kept as the empty files they are") {
  Work w;
  const std::string tar = w / "wh.tar";
  test::write_tar(
      tar, {tdir("etc"), tfile("etc/.wh.passwd", ""), tdir("var"), tfile("var/.wh..wh..opq", ""),
            tfile("var/new", "n"), tfile(".wh.gone", ""), tfile("etc/.wh..wh.plnk", "")});
  ExtractResult r = w.extract(tar);
  for (const char* p : {"etc/.wh.passwd", "var/.wh..wh..opq", ".wh.gone"}) {
    CAPTURE(p);
    struct stat st;
    REQUIRE(::lstat((w.tree + "/" + p).c_str(), &st) == 0);
    CHECK(S_ISREG(st.st_mode));
    CHECK(st.st_size == 0);
  }
  // AUFS's own bookkeeping is skipped, as Docker does.
  CHECK_FALSE(test::path_exists(w.tree + "/etc/.wh..wh.plnk"));
  CHECK(r.entries == 6);
}

TEST_CASE("tars written from a tree are deterministic, sorted and in OCI form" *
          doctest::skip(test::needs_root())) {
  test::TempDir t("archive");
  const std::string src = t.path() + "/src";
  REQUIRE(::mkdir(src.c_str(), 0755) == 0);
  REQUIRE(::mkdir((src + "/b").c_str(), 0755) == 0);
  REQUIRE(::mkdir((src + "/a").c_str(), 0755) == 0);
  test::spit(src + "/b/f", "data");
  REQUIRE(::link((src + "/b/f").c_str(), (src + "/a/first").c_str()) == 0);
  REQUIRE(::mknod((src + "/gone").c_str(), S_IFCHR | 0600, makedev(0, 0)) == 0);
  REQUIRE(::mknod((src + "/null").c_str(), S_IFCHR | 0666, makedev(1, 3)) == 0);
  REQUIRE(::setxattr((src + "/b").c_str(), "trusted.overlay.opaque", "y", 1, 0) == 0);
  REQUIRE(::setxattr((src + "/b/f").c_str(), "user.k", "v", 1, 0) == 0);
  REQUIRE(::setxattr((src + "/b/f").c_str(), "trusted.overlay.origin", "zz", 2, 0) == 0);
  test::spit(src + "/.wh.old", "");

  const std::string t1 = t.path() + "/1.tar", t2 = t.path() + "/2.tar";
  write_tree_tar(src, t1, Compression::kNone, {});
  write_tree_tar(src, t2, Compression::kNone, {});
  CHECK(test::slurp(t1) == test::slurp(t2));

  test::Run list = test::run({"tar", "-tvf", t1});
  REQUIRE(list.status == 0);
  test::Run names = test::run({"tar", "-tf", t1});
  CHECK(names.out == ".wh.gone\n.wh.old\na/\na/first\nb/\nb/.wh..wh..opq\nb/f\nnull\n");
  // The second name of an inode is a hard link to the first one written.
  CHECK(list.out.find("b/f link to a/first") != std::string::npos);

  const std::string tree = t.path() + "/tree";
  REQUIRE(::mkdir(tree.c_str(), 0755) == 0);
  extract_layer_tar(t1, tree, t.path() + "/copy.zst", {});
  CHECK(xattr_of(tree + "/b/f", "user.k") == "v");
  CHECK(xattr_of(tree + "/b/f", "trusted.overlay.origin") == "<none>");
  CHECK(xattr_of(tree + "/b", "trusted.overlay.opaque") == "<none>");
  CHECK(test::path_exists(tree + "/b/.wh..wh..opq"));
  CHECK(test::path_exists(tree + "/.wh.gone"));
  CHECK_FALSE(test::path_exists(tree + "/gone"));

  // Compressed output decompresses to the same tar.
  write_tree_tar(src, t.path() + "/3.tar.gz", Compression::kGzip, {});
  write_tree_tar(src, t.path() + "/4.tar.zst", Compression::kZstd, {});
  REQUIRE(test::run({"gzip", "-d", "-k", t.path() + "/3.tar.gz"}).status == 0);
  REQUIRE(test::run({"zstd", "-q", "-d", t.path() + "/4.tar.zst"}).status == 0);
  CHECK(test::slurp(t.path() + "/3.tar") == test::slurp(t1));
  CHECK(test::slurp(t.path() + "/4.tar") == test::slurp(t1));
}

TEST_CASE("a tree round-trips through a tar with its files, links and metadata") {
  test::TempDir t("archive");
  const std::string src = t.path() + "/src";
  REQUIRE(::mkdir(src.c_str(), 0755) == 0);
  REQUIRE(::mkdir((src + "/dir").c_str(), 0710) == 0);
  test::spit(src + "/dir/file", "content", 0600);
  test::spit(src + "/exec", "#!", 0755);
  REQUIRE(::link((src + "/dir/file").c_str(), (src + "/dir/hard").c_str()) == 0);
  REQUIRE(::symlink("dir/file", (src + "/sym").c_str()) == 0);
  REQUIRE(::mkfifo((src + "/fifo").c_str(), 0640) == 0);
  test::spit(src + "/.wh.whiteout", "");
  REQUIRE(::setxattr((src + "/exec").c_str(), "user.x", "1", 1, 0) == 0);
  for (const char* p : {"dir/file", "exec", "fifo", "dir", "."}) {
    timespec ts[2] = {{1000, 0}, {1234567890, 0}};
    REQUIRE(::utimensat(AT_FDCWD, (src + "/" + p).c_str(), ts, AT_SYMLINK_NOFOLLOW) == 0);
  }
  const std::string tar = t.path() + "/t.tar";
  write_tree_tar(src, tar, Compression::kNone, {});
  const std::string tree = t.path() + "/tree";
  REQUIRE(::mkdir(tree.c_str(), 0755) == 0);
  extract_layer_tar(tar, tree, t.path() + "/c.zst", {});
  auto a = test::snapshot(src), b = test::snapshot(tree);
  CHECK_MESSAGE(a == b, "source:\n", test::describe(a), "extracted:\n", test::describe(b));
}

TEST_CASE("compression names, and sha256_file against sha256sum") {
  CHECK(parse_compression("none") == Compression::kNone);
  CHECK(parse_compression("gzip") == Compression::kGzip);
  CHECK(parse_compression("gz") == Compression::kGzip);
  CHECK(parse_compression("zstd") == Compression::kZstd);
  CHECK(parse_compression("zst") == Compression::kZstd);
  try {
    parse_compression("xz");
    FAIL("xz accepted");
  } catch (const Error& e) {
    CHECK(e.exit_code() == 125);
  }
  test::TempDir t("archive");
  test::spit(t.path() + "/f", std::string(300000, 'z') + "tail");
  CHECK(sha256_file(t.path() + "/f") == test::sha256sum(t.path() + "/f"));
}

TEST_CASE("progress is reported up to the input's size") {
  Work w;
  const std::string tar = w / "big.tar";
  test::write_tar(tar, {tfile("big", std::string(3 << 20, 'b'))}, "gzip");
  uint64_t last_done = 0, last_total = 0;
  int calls = 0;
  extract_layer_tar(tar, w.tree, w.copy, [&](uint64_t done, uint64_t total) {
    CHECK(done >= last_done);
    last_done = done;
    last_total = total;
    ++calls;
  });
  CHECK(calls >= 1);
  CHECK(last_total == test::slurp(tar).size());
  CHECK(last_done == last_total);
}

}  // namespace
}  // namespace layerfs::ctl
