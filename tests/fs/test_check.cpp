// Tests for fs/check.cpp: the index/upper consistency checker. Each case
// builds a stack through the Filesystem (so the index holds what the daemon
// writes), closes it, damages one thing on purpose and checks the report,
// then the repair, then that a second check finds nothing.
#include <fcntl.h>
#include <sys/file.h>
#include <unistd.h>

#include <algorithm>

#include "fs/check.h"
#include "metadata/keys.h"
#include "metadata/testing.h"
#include "tests/fs/core_fixture.h"

namespace layerfs {
namespace {

using namespace coretest;

check::Options options_of(const Stack& s, bool repair = false, bool lowers = true) {
  check::Options o;
  o.upper = s.U();
  o.work = s.W();
  if (lowers) o.lowers = s.paths().lowerdirs;
  o.repair = repair;
  return o;
}

check::Report run(const Stack& s, bool repair = false, bool lowers = true) {
  std::string why;
  auto r = check::check(options_of(s, repair, lowers), &why);
  REQUIRE_MESSAGE(r.ok(), "check failed: ", err_text(r.error()), ": ", why);
  return std::move(r).value();
}

std::string describe(const check::Report& r) {
  std::string out;
  for (const auto& f : r.findings) {
    out += std::string(check::kind_name(f.kind)) + ": " + f.what;
    if (!f.action.empty()) out += " -> " + f.action;
    out += "\n";
  }
  return out;
}

// The kinds found, in the enum's order: the report follows the index's key
// order, which depends on inode numbers the tests do not choose.
std::vector<check::Kind> kinds(const check::Report& r) {
  std::vector<check::Kind> k;
  for (const auto& f : r.findings) k.push_back(f.kind);
  std::sort(k.begin(), k.end());
  return k;
}

// A stack with copy-ups, whiteouts, an opaque directory, a renamed lower
// directory and a copied-up hard-link group, closed again.
void populate(Stack& s) {
  write_file(s.L(1, "f"), "lower f");
  write_file(s.L(1, "gone"), "deleted");
  write_file(s.L(2, "d/x"), "x");
  write_file(s.L(2, "d/y"), "y");
  write_file(s.L(1, "e/z"), "z");
  write_file(s.L(1, "h1"), "linked");
  make_hardlink(s.L(1, "h1"), s.L(1, "h2"));
  s.open();
  s.write("f", "upper f");
  s.write("h1", "LINKED");
  MUST(s.fs().unlink(s.root(), "gone"));
  MUST(s.fs().unlink(s.get("d"), "x"));
  MUST(s.fs().rename(s.root(), "d", s.root(), "d2", 0));
  MUST(s.fs().unlink(s.get("e"), "z"));
  MUST(s.fs().rmdir(s.root(), "e"));
  MUST(s.fs().mkdir(s.root(), "e", 0755, kRoot));
  s.close();
}

std::vector<std::string> upper_listing(const Stack& s) {
  std::vector<std::string> out;
  for (const auto& e : std::filesystem::recursive_directory_iterator(s.U()))
    out.push_back(e.path().string());
  std::sort(out.begin(), out.end());
  return out;
}

TEST_CASE("check: a stack the daemon wrote checks clean, with and without the lowers") {
  Stack s(2);
  populate(s);
  auto r = run(s);
  CHECK_MESSAGE(r.clean(), describe(r));
  CHECK(r.index_found);
  CHECK(r.object_records >= 4);
  CHECK(r.whiteouts >= 2);
  CHECK(r.link_groups == 1);
  CHECK(r.upper_objects >= 4);  // f, h1, d2, e
  auto r2 = run(s, false, false);
  CHECK_MESSAGE(r2.clean(), describe(r2));
}

TEST_CASE("check: a workdir that was never mounted has no index and is clean") {
  Stack s(1);
  auto r = run(s);
  CHECK_FALSE(r.index_found);
  CHECK(r.clean());
}

TEST_CASE("check: a staging leftover with its record is reported and removed by repair") {
  Stack s(2);
  populate(s);
  write_file(s.W("staging/copy.1"), "half a copy");
  {
    std::string why;
    auto idx = MUST(metadata::Index::open(s.W("index"), false, &why));
    metadata::Batch b;
    b.put_object(lstat_of(s.W("staging/copy.1")).st_ino, metadata::ObjectRecord{0, 77, false, {}});
    MUST(idx->commit(b, metadata::Durability::kSynced));
  }
  auto r = run(s);
  REQUIRE(kinds(r) == std::vector{check::Kind::kStagingLeftover});
  CHECK(r.findings[0].harmless);
  CHECK(r.findings[0].what.find("staging/copy.1") != std::string::npos);
  CHECK(r.findings[0].what.find("with an object record") != std::string::npos);
  CHECK(r.findings[0].action.empty());
  CHECK(exists(s.W("staging/copy.1")));  // without repair nothing changes

  auto before = upper_listing(s);
  auto fixed = run(s, true);
  REQUIRE(fixed.findings.size() == 1);
  CHECK(fixed.findings[0].repaired);
  CHECK(fixed.findings[0].action == "dropped its records and removed it");
  CHECK_FALSE(exists(s.W("staging/copy.1")));
  CHECK(upper_listing(s) == before);
  auto again = run(s);
  CHECK_MESSAGE(again.clean(), describe(again));
}

TEST_CASE(
    "check: a staging leftover reusing a deleted object's inode number is not given its record") {
  // The deleted object's record is stale; the leftover is a plain one.
  Stack s(2);
  populate(s);
  write_file(s.W("staging/copy.2"), "half a copy");
  struct statx sx;
  SYS(::statx(AT_FDCWD, s.W("staging/copy.2").c_str(), AT_SYMLINK_NOFOLLOW, STATX_BTIME, &sx));
  if (!(sx.stx_mask & STATX_BTIME)) return;  // no birth times here: records are trusted
  const uint64_t ino = lstat_of(s.W("staging/copy.2")).st_ino;
  {
    std::string why;
    auto idx = MUST(metadata::Index::open(s.W("index"), false, &why));
    metadata::Batch b;
    // The stamp of an earlier object with that number (any stamp but this file's).
    b.put_object(ino, metadata::ObjectRecord{1, 77, false, {}});
    MUST(idx->commit(b, metadata::Durability::kSynced));
  }
  auto r = run(s);
  CHECK_MESSAGE(kinds(r) == (std::vector{check::Kind::kStagingLeftover, check::Kind::kStaleRecord}),
                describe(r));
  CHECK(describe(r).find("with an object record") == std::string::npos);
  auto fixed = run(s, true);
  CHECK(fixed.unrepaired() == 0);
  CHECK_FALSE(exists(s.W("staging/copy.2")));
  CHECK_MESSAGE(run(s).clean(), describe(run(s)));
}

TEST_CASE("check: records of an upper object removed behind the index are stale") {
  Stack s(2);
  populate(s);
  // d2 is the renamed lower directory: its record holds a redirect and the
  // whiteout of x.
  const uint64_t d2 = s.upper_ino("d2");
  SYS(::rmdir(s.U("d2").c_str()));
  SYS(::unlink(s.U("f").c_str()));
  auto r = run(s);
  CHECK_MESSAGE(r.findings.size() == 2, describe(r));
  for (const auto& f : r.findings) {
    CHECK(f.kind == check::Kind::kStaleRecord);
    CHECK(f.harmless);
  }
  CHECK(describe(r).find("upper inode " + std::to_string(d2) + ": no such object") !=
        std::string::npos);
  CHECK(describe(r).find("and its 1 whiteout") != std::string::npos);
  auto fixed = run(s, true);
  CHECK(fixed.unrepaired() == 0);
  auto again = run(s);
  CHECK_MESSAGE(again.clean(), describe(again));
  s.open();
  CHECK(s.read("f") == "lower f");
}

TEST_CASE("check: a record written for an earlier object with the same inode number is stale") {
  Stack s(1);
  write_file(s.L(1, "f"), "lower");
  s.open();
  s.write("f", "upper");
  s.close();
  // Replace the upper file by another object under the same inode number's
  // record: rewrite the record with a stamp no live object has.
  const uint64_t ino = s.upper_ino("f");
  {
    std::string why;
    auto idx = MUST(metadata::Index::open(s.W("index"), false, &why));
    auto rec = MUST(idx->object(ino));
    REQUIRE(rec.has_value());
    if (rec->stamp == 0) return;  // no birth times here: records are trusted
    rec->stamp += 1;
    metadata::Batch b;
    b.put_object(ino, *rec);
    MUST(idx->commit(b, metadata::Durability::kSynced));
  }
  auto r = run(s);
  REQUIRE(kinds(r) == std::vector{check::Kind::kStaleRecord});
  CHECK(r.findings[0].what.find("earlier object") != std::string::npos);
  CHECK(run(s, true).unrepaired() == 0);
  CHECK(run(s).clean());
  CHECK(exists(s.U("f")));
}

TEST_CASE("check: whiteouts without their directory's record are orphans") {
  Stack s(2);
  populate(s);
  const uint64_t e = s.upper_ino("e");  // a fresh upper directory, no whiteouts
  {
    std::string why;
    auto idx = MUST(metadata::Index::open(s.W("index"), false, &why));
    metadata::Batch b;
    b.forget_object(e);
    b.add_whiteout(e, "ghost");
    b.add_whiteout(e, "ghost2");
    MUST(idx->commit(b, metadata::Durability::kSynced));
  }
  auto r = run(s);
  REQUIRE_MESSAGE(kinds(r) == std::vector{check::Kind::kOrphanWhiteouts}, describe(r));
  CHECK(r.findings[0].what.find("2 whiteout(s) of upper/e") != std::string::npos);
  CHECK_FALSE(r.findings[0].harmless);
  auto fixed = run(s, true);
  CHECK(fixed.findings[0].repaired);
  CHECK(run(s).clean());
}

TEST_CASE("check: directory-only fields and whiteouts on a file are repaired, the origin kept") {
  Stack s(2);
  populate(s);
  const uint64_t f = s.upper_ino("f");
  std::optional<metadata::ObjectRecord> orig;
  {
    std::string why;
    auto idx = MUST(metadata::Index::open(s.W("index"), false, &why));
    orig = MUST(idx->object(f));
    REQUIRE(orig.has_value());
    auto bad = *orig;
    bad.opaque = true;
    bad.redirect = "/d";
    metadata::Batch b;
    b.put_object(f, bad);
    b.add_whiteout(f, "w");
    MUST(idx->commit(b, metadata::Durability::kSynced));
  }
  auto r = run(s);
  CHECK_MESSAGE(
      kinds(r) == (std::vector{check::Kind::kWhiteoutsOnNonDir, check::Kind::kDirFlagsOnNonDir}),
      describe(r));
  CHECK(run(s, true).unrepaired() == 0);
  CHECK(run(s).clean());
  std::string why;
  auto idx = MUST(metadata::Index::open(s.W("index"), false, &why));
  CHECK(MUST(idx->object(f)) == orig);
  CHECK(MUST(idx->whiteouts(f)).empty());
}

TEST_CASE("check: an origin or a redirect the lowers cannot have is reported, not repaired") {
  Stack s(2);
  populate(s);
  const uint64_t f = s.upper_ino("f");
  const uint64_t d2 = s.upper_ino("d2");
  {
    std::string why;
    auto idx = MUST(metadata::Index::open(s.W("index"), false, &why));
    auto rf = MUST(idx->object(f)).value();
    rf.origin = ino::encode(7, 1234);
    auto rd = MUST(idx->object(d2)).value();
    rd.redirect = "/no/such/dir";
    metadata::Batch b;
    b.put_object(f, rf);
    b.put_object(d2, rd);
    MUST(idx->commit(b, metadata::Durability::kSynced));
  }
  auto r = run(s);
  CHECK_MESSAGE(kinds(r) == (std::vector{check::Kind::kBadOrigin, check::Kind::kRedirectNowhere}),
                describe(r));
  // Without the lowers neither can be judged.
  CHECK(run(s, false, false).clean());
  auto fixed = run(s, true);
  CHECK(fixed.unrepaired() == 2);
  for (const auto& fi : fixed.findings) CHECK(fi.action.rfind("not repaired: ", 0) == 0);
}

TEST_CASE("check: link-group copies that are missing, stray or without a record") {
  Stack s(2);
  populate(s);
  const auto lname = "1-" + std::to_string(lstat_of(s.L(1, "h1")).st_ino);
  const uint64_t copy = lstat_of(s.W("links/" + lname)).st_ino;
  SUBCASE("missing copy: the group is reset, the upper name stays") {
    SYS(::unlink(s.W("links/" + lname).c_str()));
    auto r = run(s);
    REQUIRE_MESSAGE(kinds(r) == std::vector{check::Kind::kLinkCopyMissing}, describe(r));
    CHECK(r.findings[0].harmless);
    CHECK(run(s, true).unrepaired() == 0);
    auto again = run(s);
    CHECK_MESSAGE(again.clean(), describe(again));
    CHECK(exists(s.U("h1")));
  }
  SUBCASE("stray copy with no other name is removed; one an upper name shares is kept") {
    write_file(s.W("links/1-999999"), "unreachable");
    make_hardlink(s.U("h1"), s.W("links/1-888888"));
    auto r = run(s);
    CHECK_MESSAGE(
        kinds(r) == (std::vector{check::Kind::kStrayLinkCopy, check::Kind::kStrayLinkCopy}),
        describe(r));
    auto fixed = run(s, true);
    CHECK(fixed.unrepaired() == 1);
    CHECK_FALSE(exists(s.W("links/1-999999")));
    CHECK(exists(s.W("links/1-888888")));
  }
  SUBCASE("copy without its object record gets its origin back") {
    {
      std::string why;
      auto idx = MUST(metadata::Index::open(s.W("index"), false, &why));
      metadata::Batch b;
      b.forget_object(copy);
      MUST(idx->commit(b, metadata::Durability::kSynced));
    }
    auto r = run(s);
    REQUIRE_MESSAGE(kinds(r) == std::vector{check::Kind::kLinkCopyNoRecord}, describe(r));
    CHECK(run(s, true).unrepaired() == 0);
    CHECK(run(s).clean());
    std::string why;
    auto idx = MUST(metadata::Index::open(s.W("index"), false, &why));
    auto rec = MUST(idx->object(copy));
    REQUIRE(rec.has_value());
    CHECK(rec->origin == ino_at(1, s.L(1, "h1")));
  }
}

TEST_CASE("check: a damaged key is reported and left alone") {
  Stack s(2);
  populate(s);
  MUST(metadata::testing::raw_put(s.W("index"), false, metadata::keys::object_key(4242), "junk"));
  MUST(metadata::testing::raw_put(s.W("index"), false, "zzz", ""));
  auto r = run(s, true);
  CHECK_MESSAGE(kinds(r) == (std::vector{check::Kind::kDamagedKey, check::Kind::kDamagedKey}),
                describe(r));
  CHECK(r.unrepaired() == 2);
  CHECK(describe(r).find("does not decode") != std::string::npos);
  CHECK(describe(r).find("unknown kind") != std::string::npos);
}

TEST_CASE("check: refuses while a mount holds the upper or the workdir") {
  Stack s(2);
  populate(s);
  s.open();
  std::string why;
  auto r = check::check(options_of(s), &why);
  CHECK(r.error() == EBUSY);
  CHECK(why.find("in use by a running layerfs mount") != std::string::npos);
  s.close();
  {
    UniqueFd lock(::open(s.W().c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
    SYS(::flock(lock.get(), LOCK_EX));
    why.clear();
    CHECK(check::check(options_of(s), &why).error() == EBUSY);
    CHECK(why.find(s.W()) != std::string::npos);
  }
  CHECK(run(s).clean());
}

TEST_CASE("check: a missing directory is an error naming it") {
  Stack s(1);
  auto o = options_of(s);
  o.upper = s.dir() + "/nope";
  std::string why;
  CHECK(check::check(o, &why).error() == ENOENT);
  CHECK(why.find(s.dir() + "/nope") != std::string::npos);
}

}  // namespace
}  // namespace layerfs
