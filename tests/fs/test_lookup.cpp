// Tests for fs/lookup.cpp: which layer a name resolves to (upper over lower,
// top lower over lower lower, non-directories hiding what is below,
// directories merging across layers), the errors of lookup, and the index
// records it honours or ignores (redirects, opaque, stale records).
#include <fcntl.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#include <optional>

#include "tests/fs/core_fixture.h"

namespace layerfs {
namespace {

using namespace coretest;

TEST_CASE("an upper entry wins over the lowers") {
  Stack s(2);
  write_file(s.L(1, "f"), "lower1");
  write_file(s.L(2, "f"), "lower2");
  write_file(s.U("f"), "upper");
  s.open();
  InodePtr f = s.get("f");
  CHECK(f->has_upper());
  CHECK_FALSE(f->has_lower());
  CHECK(s.read("f") == "upper");
  CHECK(f->ino == ino_at(0, s.U("f")));
}

TEST_CASE("the top-most lower wins over the lower ones") {
  Stack s(3);
  write_file(s.L(1, "a"), "1");
  write_file(s.L(2, "a"), "2");
  write_file(s.L(3, "a"), "3");
  write_file(s.L(2, "b"), "2");
  write_file(s.L(3, "b"), "3");
  write_file(s.L(3, "c"), "3", 0600);
  s.open();
  CHECK(s.read("a") == "1");
  CHECK(s.read("b") == "2");
  CHECK(s.read("c") == "3");
  CHECK(s.get("b")->ino == ino_at(2, s.L(2, "b")));
  CHECK((s.attr("c").st_mode & 07777) == 0600);
  CHECK(s.attr("a").st_size == 1);
  CHECK_FALSE(s.get("a")->has_upper());
}

TEST_CASE("a non-directory hides a directory below it") {
  Stack s(3);
  write_file(s.L(3, "d/deep"), "x");
  write_file(s.L(2, "d"), "file in layer 2");
  write_file(s.L(1, "e/inside"), "x");
  write_file(s.U("e"), "upper file");
  make_dir(s.L(2, "g"));
  write_file(s.L(2, "g/content"), "x");
  make_symlink("/", s.L(1, "g"));
  s.open();

  InodePtr d = s.get("d");
  CHECK(S_ISREG(d->type));
  CHECK(s.read("d") == "file in layer 2");
  CHECK(s.fs().lookup(d, "deep").error() == ENOTDIR);
  CHECK(s.lookup_error("d/deep") == ENOTDIR);

  InodePtr e = s.get("e");
  CHECK(S_ISREG(e->type));
  CHECK(s.lookup_error("e/inside") == ENOTDIR);

  InodePtr g = s.get("g");
  CHECK(S_ISLNK(g->type));  // not followed
  CHECK(MUST(s.fs().readlink(g)) == "/");
  CHECK(s.lookup_error("g/content") == ENOTDIR);
  CHECK(s.names("").size() == 3);
}

TEST_CASE("symlinks inside a layer are never followed, not even to create") {
  Stack s(2);
  write_file(s.dir() + "/outside/secret", "s");
  make_symlink(s.dir() + "/outside", s.L(1, "link"));
  make_dir(s.L(2, "link"));
  write_file(s.L(2, "link/under"), "");
  s.open();
  CHECK(s.lookup_error("link/secret") == ENOTDIR);
  CHECK(s.lookup_error("link/under") == ENOTDIR);
  CHECK_FALSE(s.fs().mkdir(s.get("link"), "x", 0755, kRoot).ok());
  CHECK_FALSE(s.fs().create(s.get("link"), "y", 0644, O_WRONLY, kRoot).ok());
  CHECK(disk_names(s.dir() + "/outside") == std::vector<std::string>{"secret"});
}

TEST_CASE("a directory does not merge with a non-directory below it") {
  Stack s(2);
  make_dir(s.L(1, "d"));
  write_file(s.L(1, "d/one"), "1");
  write_file(s.L(2, "d"), "a file");
  make_dir(s.U("u"));
  write_file(s.L(1, "u"), "a file");
  s.open();
  CHECK(s.names("d") == std::vector<std::string>{"one"});
  CHECK(s.get("d")->lowers.size() == 1);
  CHECK(s.names("u").empty());
  CHECK(s.get("u")->lowers.empty());
}

TEST_CASE("directories merge across the upper and three lowers") {
  Stack s(3);
  write_file(s.U("d/u"), "u");
  write_file(s.L(1, "d/l1"), "l1");
  write_file(s.L(2, "d/l2"), "l2");
  write_file(s.L(3, "d/l3"), "l3");
  write_file(s.L(1, "d/shared"), "from 1");
  write_file(s.L(3, "d/shared"), "from 3");
  write_file(s.L(2, "d/sub/x2"), "x2");
  write_file(s.L(3, "d/sub/x3"), "x3");
  s.open();
  InodePtr d = s.get("d");
  CHECK(d->has_upper());
  CHECK(d->lowers.size() == 3);
  CHECK(s.read("d/u") == "u");
  CHECK(s.read("d/l1") == "l1");
  CHECK(s.read("d/l2") == "l2");
  CHECK(s.read("d/l3") == "l3");
  CHECK(s.read("d/shared") == "from 1");
  CHECK(s.read("d/sub/x2") == "x2");
  CHECK(s.read("d/sub/x3") == "x3");
  CHECK(s.get("d/sub")->lowers.size() == 2);
  CHECK(s.get("d/sub")->ino == ino_at(2, s.L(2, "d/sub")));
  CHECK(s.names("d") == std::vector<std::string>{"l1", "l2", "l3", "shared", "sub", "u"});
  // A merged directory's st_ino is the top-most copy's: here the upper.
  CHECK(d->ino == ino_at(0, s.U("d")));
  // The lowers' layer numbers, top-most first.
  CHECK(d->lowers[0].layer == 1);
  CHECK(d->lowers[1].layer == 2);
  CHECK(d->lowers[2].layer == 3);
}

TEST_CASE("a gap in the middle layer does not stop the merge") {
  Stack s(3);
  write_file(s.L(1, "d/a"), "a");
  write_file(s.L(3, "d/c"), "c");
  write_file(s.L(2, "other"), "o");
  s.open();
  CHECK(s.names("d") == std::vector<std::string>{"a", "c"});
  CHECK(s.read("d/c") == "c");
}

TEST_CASE("lookup errors: ENOENT, ENOTDIR, ENAMETOOLONG, EINVAL") {
  Stack s(2);
  write_file(s.L(1, "f"), "x");
  make_dir(s.L(2, "d"));
  s.open();
  CHECK(s.lookup_error("missing") == ENOENT);
  CHECK(s.lookup_error("d/missing") == ENOENT);
  CHECK(s.lookup_error("missing/x") == ENOENT);
  CHECK(s.fs().lookup(s.get("f"), "x").error() == ENOTDIR);
  CHECK(s.fs().lookup(s.root(), std::string(NAME_MAX + 1, 'n')).error() == ENAMETOOLONG);
  // NAME_MAX itself is fine (and absent).
  CHECK(s.fs().lookup(s.root(), std::string(NAME_MAX, 'n')).error() == ENOENT);
  CHECK(s.fs().lookup(s.root(), "").error() == EINVAL);
  CHECK(s.fs().lookup(s.root(), "d/x").error() == EINVAL);
}

TEST_CASE("'.' and '..'") {
  Stack s(1);
  make_dir(s.L(1, "a/b"));
  s.open();
  InodePtr a = s.get("a");
  InodePtr b = s.get("a/b");
  CHECK(MUST(s.fs().lookup(b, ".")) == b);
  CHECK(MUST(s.fs().lookup(b, "..")) == a);
  CHECK(MUST(s.fs().lookup(a, "..")) == s.root());
  CHECK(MUST(s.fs().lookup(s.root(), "..")) == s.root());
}

TEST_CASE("a lookup returns the same Inode for the same object") {
  Stack s(2);
  write_file(s.L(2, "f"), "x");
  make_dir(s.L(1, "d"));
  s.open();
  InodePtr f1 = s.get("f");
  InodePtr f2 = s.get("f");
  CHECK(f1 == f2);
  CHECK(s.get("d") == s.get("d"));
  // Also after the object was copied up: the Inode keeps serving it.
  MUST(s.fs().copy_up(f1));
  CHECK(s.get("f") == f1);
  CHECK(f1->has_upper());
}

TEST_CASE("names with the whiteout prefix never resolve") {
  Stack s(2);
  write_file(s.L(1, ".wh.f"), "");
  write_file(s.L(2, "f"), "hidden");
  write_file(s.L(1, ".wh.plain"), "a file named like a whiteout");
  s.open();
  CHECK(s.lookup_error(".wh.f") == ENOENT);
  CHECK(s.lookup_error(".wh.plain") == ENOENT);
  CHECK(s.lookup_error(".wh..wh..opq") == ENOENT);
  CHECK(s.lookup_error("f") == ENOENT);
}

TEST_CASE("lower special files resolve with their own type" * doctest::skip(needs_root())) {
  Stack s(1);
  make_node(s.L(1, "fifo"), S_IFIFO | 0640);
  make_node(s.L(1, "null"), S_IFCHR | 0666, makedev(1, 3));
  make_node(s.L(1, "blk"), S_IFBLK | 0600, makedev(7, 0));
  make_symlink("somewhere", s.L(1, "sym"));
  s.open();
  CHECK(S_ISFIFO(s.get("fifo")->type));
  CHECK(S_ISCHR(s.get("null")->type));
  CHECK(s.attr("null").st_rdev == makedev(1, 3));
  CHECK(S_ISBLK(s.get("blk")->type));
  CHECK(S_ISLNK(s.get("sym")->type));
  CHECK(MUST(s.fs().readlink(s.get("sym"))) == "somewhere");
}

TEST_CASE("an upper directory's redirect record gives it the lower view of that path") {
  Stack s(2);
  write_file(s.L(1, "orig/sub/f"), "deep");
  write_file(s.L(2, "orig/g"), "g");
  make_dir(s.U("moved"));
  s.open();
  {
    metadata::Batch b;
    metadata::ObjectRecord rec;
    rec.stamp = 0;  // trusted as it is
    rec.redirect = "/orig";
    b.put_object(s.upper_ino("moved"), rec);
    MUST(s.index().commit(b, metadata::Durability::kSynced));
  }
  s.reopen();
  CHECK(s.names("moved") == std::vector<std::string>{"g", "sub"});
  CHECK(s.read("moved/sub/f") == "deep");
  CHECK(s.get("moved")->lowers.size() == 2);
}

TEST_CASE("an opaque record hides the lowers below an upper directory") {
  Stack s(1);
  write_file(s.L(1, "d/lower"), "x");
  write_file(s.U("d/upper"), "y");
  s.open();
  CHECK(s.names("d") == std::vector<std::string>{"lower", "upper"});
  {
    metadata::Batch b;
    metadata::ObjectRecord rec;
    rec.opaque = true;
    b.put_object(s.upper_ino("d"), rec);
    MUST(s.index().commit(b, metadata::Durability::kSynced));
  }
  s.reopen();
  CHECK(s.names("d") == std::vector<std::string>{"upper"});
  CHECK(s.lookup_error("d/lower") == ENOENT);
}

TEST_CASE("stale index records (stamp of an earlier object) are ignored and dropped") {
  Stack s(1);
  write_file(s.L(1, "d/f"), "lower");
  write_file(s.U("u"), "upper file");
  make_dir(s.U("d"));
  s.open();
  const uint64_t u_ino = s.upper_ino("u");
  const uint64_t d_ino = s.upper_ino("d");
  {
    // Records as an earlier object with the same inode numbers left them.
    metadata::Batch b;
    metadata::ObjectRecord stale;
    stale.stamp = 1;  // no live object was born at the epoch
    stale.origin = ino::encode(1, 424242);
    b.put_object(u_ino, stale);
    metadata::ObjectRecord stale_dir;
    stale_dir.stamp = 1;
    stale_dir.opaque = true;
    b.put_object(d_ino, stale_dir);
    b.add_whiteout(d_ino, "f");
    MUST(s.index().commit(b, metadata::Durability::kSynced));
  }
  s.reopen();
  CHECK(s.get("u")->ino == ino::encode(0, u_ino));
  CHECK(s.attr("u").st_ino == ino::encode(0, u_ino));
  CHECK(s.read("d/f") == "lower");
  CHECK(s.names("d") == std::vector<std::string>{"f"});
  // readdir agrees with lookup.
  for (const auto& e : MUST(s.fs().list(s.root()))) CHECK(e.ino == s.get(e.name)->ino);
  // The stale records were dropped.
  CHECK_FALSE(MUST(s.index().object(u_ino)).has_value());
  CHECK_FALSE(MUST(s.index().object(d_ino)).has_value());
  CHECK(MUST(s.index().whiteouts(d_ino)).empty());
}

TEST_CASE("a record whose stamp matches the live object is honoured") {
  Stack s(1);
  write_file(s.U("u"), "upper file");
  s.open();
  const uint64_t u_ino = s.upper_ino("u");
  struct statx sx;
  REQUIRE(::statx(AT_FDCWD, s.U("u").c_str(), AT_SYMLINK_NOFOLLOW, STATX_BTIME, &sx) == 0);
  REQUIRE((sx.stx_mask & STATX_BTIME) != 0);
  {
    metadata::Batch b;
    metadata::ObjectRecord rec;
    rec.stamp = static_cast<uint64_t>(sx.stx_btime.tv_sec) * 1000000000ull + sx.stx_btime.tv_nsec;
    rec.origin = ino::encode(1, 4242);
    b.put_object(u_ino, rec);
    MUST(s.index().commit(b, metadata::Durability::kSynced));
  }
  s.reopen();
  CHECK(s.get("u")->ino == ino::encode(1, 4242));
  CHECK(entry_names(MUST(s.fs().list(s.root()))) == std::vector<std::string>{"u"});
  CHECK(MUST(s.fs().list(s.root()))[0].ino == ino::encode(1, 4242));
}

TEST_CASE("a lower root marked opaque hides the lowers below it" * doctest::skip(needs_root())) {
  Stack s(3);
  write_file(s.L(1, "one"), "1");
  write_file(s.L(2, "two"), "2");
  write_file(s.L(3, "three"), "3");
  set_xattr(s.L(2), "trusted.overlay.opaque", "y");
  s.open();
  CHECK(s.names("") == std::vector<std::string>{"one", "two"});
  CHECK(s.lookup_error("three") == ENOENT);
}

TEST_CASE("lookups, listings, attributes and reads change nothing on disk or in the index") {
  Stack s(2);
  write_file(s.L(1, "d/a"), "a");
  write_file(s.L(2, "d/b"), "b");
  write_file(s.L(2, "d/sub/c"), "c");
  make_hardlink(s.L(2, "d/b"), s.L(2, "d/b2"));
  write_file(s.U("d/u"), "u");
  set_xattr(s.L(2, "d/b"), "user.x", "x");
  s.open();
  MUST(s.fs().unlink(s.get("d"), "a"));  // some records to keep an eye on
  s.reopen();
  auto count = [&] {
    size_t n = 0;
    MUST(s.index().for_each_object([&](uint64_t, const metadata::ObjectRecord&) {
      ++n;
      return true;
    }));
    MUST(s.index().for_each_link_group([&](uint32_t, uint64_t, const metadata::LinkGroup&) {
      ++n;
      return true;
    }));
    return n;
  };
  const size_t records = count();
  auto upper = snapshot(s.U());
  auto lower1 = snapshot(s.L(1));
  auto lower2 = snapshot(s.L(2));
  for (int round = 0; round < 2; ++round) {
    for (const char* p : {"d", "d/b", "d/b2", "d/u", "d/sub", "d/sub/c"}) {
      InodePtr n = s.get(p);
      MUST(s.fs().getattr(n));
      if (n->is_dir()) {
        MUST(s.fs().list(n));
      } else {
        fs_read(s.fs(), n);
        MUST(s.fs().listxattr(n));
      }
    }
    CHECK(s.lookup_error("d/a") == ENOENT);
    CHECK(s.lookup_error("d/none") == ENOENT);
  }
  CHECK(count() == records);
  CHECK(snapshot(s.U()) == upper);
  CHECK(snapshot(s.L(1)) == lower1);
  CHECK(snapshot(s.L(2)) == lower2);
}

TEST_CASE("lookups on a read-only stack without upper") {
  Stack s(2, false);
  write_file(s.L(1, "d/a"), "a");
  write_file(s.L(2, "d/b"), "b");
  write_file(s.L(2, "d/a"), "under");
  s.open();
  CHECK(s.read("d/a") == "a");
  CHECK(s.read("d/b") == "b");
  CHECK(s.names("d") == std::vector<std::string>{"a", "b"});
  CHECK(s.lookup_error("d/c") == ENOENT);
}

TEST_CASE("a lookup hinted by a current listing starts in the layer the listing found") {
  Stack s(3);
  write_file(s.L(1, "d/top"), "1");
  write_file(s.L(3, "d/deep"), "3");
  make_dir(s.L(2, "d/sub"));
  make_dir(s.L(3, "d/sub"));
  write_file(s.L(3, "d/sub/x"), "x");
  s.open();
  InodePtr d = s.get("d");
  const uint64_t gen = d->names_gen.load();
  auto entries = MUST(s.fs().list(d));
  REQUIRE(entries.size() == 3);
  for (const auto& e : entries) {
    CAPTURE(e.name);
    Filesystem::LookupHint hint{gen, e.from};
    std::optional<struct stat> attr;
    InodePtr hinted = MUST(s.fs().lookup(d, e.name, &hint, &attr));
    InodePtr plain = MUST(s.fs().lookup(d, e.name));
    CHECK(hinted.get() == plain.get());
    struct stat st = MUST(s.fs().getattr(plain));
    CHECK(e.ino == st.st_ino);
    if (e.name == "sub") {
      CHECK(e.from == 1);
      // A merged directory still merges every layer below the hinted one.
      CHECK(MUST(s.fs().lookup(hinted, "x"))->ino == MUST(s.fs().lookup(plain, "x"))->ino);
      CHECK_FALSE(attr.has_value());  // left to getattr
    } else {
      CHECK(e.from == (e.name == "top" ? 0 : 2));
      REQUIRE(attr.has_value());
      CHECK(attr->st_ino == st.st_ino);
      CHECK(attr->st_size == st.st_size);
      CHECK(attr->st_mtime == st.st_mtime);
    }
  }
}

TEST_CASE("a listing's hint is ignored once the directory changed") {
  Stack s(1);
  write_file(s.L(1, "d/f"), "lower");
  s.open();
  InodePtr d = s.get("d");
  const uint64_t gen = d->names_gen.load();
  auto entries = MUST(s.fs().list(d));
  REQUIRE(entries.size() == 1);
  const Filesystem::LookupHint hint{gen, entries[0].from};
  CHECK(hint.from == 0);
  // Replaced since the listing: the lower file is whited out and a new one
  // made in the upper. Following the stale hint would show the lower file.
  MUST(s.fs().unlink(d, "f"));
  auto c = MUST(s.fs().create(d, "f", 0644, O_WRONLY, kRoot));
  REQUIRE(::pwrite(c.handle->fd->get(), "upper", 5, 0) == 5);
  CHECK(d->names_gen.load() != gen);
  std::optional<struct stat> attr;
  InodePtr n = MUST(s.fs().lookup(d, "f", &hint, &attr));
  CHECK(n->has_upper());
  CHECK(n.get() == c.node.get());
  REQUIRE(attr.has_value());
  CHECK(attr->st_size == 5);
  c.handle.reset();
  // A hint taken while a change was under way (odd generation) is never used.
  const Filesystem::LookupHint odd{gen | 1, 0};
  CHECK(MUST(s.fs().lookup(d, "f", &odd, nullptr)).get() == c.node.get());
}

}  // namespace
}  // namespace layerfs
