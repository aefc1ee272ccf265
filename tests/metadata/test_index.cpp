// Tests of metadata/index.cpp on a real RocksDB database in a fresh temporary
// directory: persistence, batch semantics, aliases, and the refusal paths of
// Index::open.
#include <doctest/doctest.h>
#include <fcntl.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "metadata/index.h"
#include "metadata/keys.h"
#include "metadata/records.h"
#include "metadata/testing.h"

using namespace layerfs::metadata;
namespace fs = std::filesystem;

namespace {

class TempDir {
 public:
  TempDir() {
    char tmpl[] = "/tmp/layerfs-test-index-XXXXXX";
    REQUIRE(mkdtemp(tmpl) != nullptr);
    path_ = tmpl;
  }
  ~TempDir() {
    std::error_code ec;
    fs::remove_all(path_, ec);
  }
  const std::string& path() const { return path_; }
  std::string sub(const std::string& name) const { return path_ + "/" + name; }

 private:
  std::string path_;
};

std::unique_ptr<Index> open_ok(const std::string& path, bool create = true) {
  std::string why;
  auto res = Index::open(path, create, &why);
  INFO("open " << path << ": " << why);
  REQUIRE(res.ok());
  CHECK(why.empty());
  return std::move(res).value();
}

// Opens and expects failure with `code`; returns the message.
std::string open_fails(const std::string& path, bool create, int code) {
  std::string why;
  auto res = Index::open(path, create, &why);
  INFO("open " << path << ": " << why);
  REQUIRE_FALSE(res.ok());
  CHECK(res.error() == code);
  CHECK_FALSE(why.empty());
  return why;
}

void commit_ok(Index& index, const Batch& b, Durability d = Durability::kBuffered) {
  auto res = index.commit(b, d);
  REQUIRE(res.ok());
}

std::string read_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
}

void write_file(const std::string& path, const std::string& data) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out << data;
  REQUIRE(out.good());
}

// Every file below `dir` with its content, to prove a refused open touched nothing.
std::map<std::string, std::string> snapshot(const std::string& dir) {
  std::map<std::string, std::string> files;
  for (const auto& e : fs::recursive_directory_iterator(dir)) {
    files[e.path().string()] = e.is_regular_file() ? read_file(e.path().string()) : "<dir>";
  }
  return files;
}

std::vector<std::string> files_with_suffix(const std::string& dir, const std::string& suffix) {
  std::vector<std::string> out;
  for (const auto& e : fs::directory_iterator(dir)) {
    std::string name = e.path().filename().string();
    if (name.size() >= suffix.size() && name.ends_with(suffix)) out.push_back(e.path().string());
  }
  return out;
}

}  // namespace

TEST_CASE("index: open creates a fresh index, and refuses a missing one without create") {
  TempDir tmp;
  const std::string path = tmp.sub("index");
  open_fails(path, false, ENOENT);
  CHECK_FALSE(fs::exists(path));  // not created as a side effect

  {
    auto index = open_ok(path, true);
    auto version = index->meta("format.version");
    REQUIRE(version.ok());
    CHECK(*version == std::optional<std::string>(std::to_string(kFormatVersion)));
    CHECK(index->object(1)->has_value() == false);
  }
  CHECK(fs::exists(path + "/CURRENT"));
  open_ok(path, false);  // exists now

  // An empty existing directory is fine to create into, and not an index without create.
  const std::string empty = tmp.sub("empty");
  REQUIRE(mkdir(empty.c_str(), 0700) == 0);
  open_fails(empty, false, ENOENT);
  open_ok(empty, true);

  // A parent that does not exist is not created.
  open_fails(tmp.sub("no/such/parent"), true, ENOENT);
  // Null `why` is allowed.
  CHECK(Index::open(tmp.sub("nothing"), false, nullptr).error() == ENOENT);
}

TEST_CASE("index: every record kind persists across reopen") {
  TempDir tmp;
  const std::string path = tmp.sub("index");
  const ObjectRecord plain{.stamp = 11};
  const ObjectRecord moved{
      .stamp = 12, .origin = (1ull << 56) | 99, .opaque = true, .redirect = "/usr/lib"};
  const ObjectRecord root_redirect{.stamp = 0, .redirect = ""};
  const LinkGroup group{.upper_ino = 500, .links = 3};
  const LinkGroup uncopied{.upper_ino = 0, .links = 2};
  {
    auto index = open_ok(path);
    Batch b;
    b.put_object(100, plain);
    b.put_object(101, moved);
    b.put_object(0xFFFFFFFFFFFFFFFFull, root_redirect);
    b.add_whiteout(101, "gone");
    b.add_whiteout(101, "also gone");
    b.put_link_group(0, 42, group);
    b.put_link_group(7, 42, uncopied);
    b.put_meta("layers", "a:b:c");
    CHECK(b.size() == 8);
    commit_ok(*index, b, Durability::kSynced);
    REQUIRE(index->sync().ok());
  }
  auto index = open_ok(path, false);
  CHECK(*index->object(100) == std::optional<ObjectRecord>(plain));
  CHECK(*index->object(101) == std::optional<ObjectRecord>(moved));
  CHECK(*index->object(0xFFFFFFFFFFFFFFFFull) == std::optional<ObjectRecord>(root_redirect));
  CHECK_FALSE(index->object(102)->has_value());
  CHECK(*index->whiteouts(101) == std::vector<std::string>{"also gone", "gone"});
  CHECK(index->whiteouts(100)->empty());
  CHECK(*index->link_group(0, 42) == std::optional<LinkGroup>(group));
  CHECK(*index->link_group(7, 42) == std::optional<LinkGroup>(uncopied));
  CHECK_FALSE(index->link_group(1, 42)->has_value());
  CHECK(*index->meta("layers") == std::optional<std::string>("a:b:c"));
  CHECK_FALSE(index->meta("other")->has_value());
  CHECK(index->meta("").error() == EINVAL);
}

TEST_CASE("index: removals and replacement") {
  TempDir tmp;
  auto index = open_ok(tmp.sub("index"));
  Batch b1;
  b1.put_object(5, {.stamp = 1});
  b1.put_link_group(1, 2, {.upper_ino = 3, .links = 2});
  b1.add_whiteout(5, "x");
  commit_ok(*index, b1);

  Batch b2;
  b2.put_object(5, {.stamp = 2, .opaque = true});
  b2.remove_link_group(1, 2);
  b2.remove_whiteout(5, "x");
  b2.remove_whiteout(5, "never-added");  // removing what is absent is not an error
  commit_ok(*index, b2);
  CHECK(*index->object(5) == std::optional<ObjectRecord>(ObjectRecord{.stamp = 2, .opaque = true}));
  CHECK_FALSE(index->link_group(1, 2)->has_value());
  CHECK(index->whiteouts(5)->empty());
  CHECK(index->commit(Batch(), Durability::kSynced).ok());
}

TEST_CASE("index: batch ops apply in order") {
  TempDir tmp;
  auto index = open_ok(tmp.sub("index"));
  Batch b;
  b.add_whiteout(9, "added-then-removed");
  b.remove_whiteout(9, "added-then-removed");
  b.remove_whiteout(9, "removed-then-added");
  b.add_whiteout(9, "removed-then-added");
  b.put_meta("k", "first");
  b.put_meta("k", "second");
  b.put_object(9, {.stamp = 1});
  b.put_object(9, {.stamp = 2});
  commit_ok(*index, b);
  CHECK(*index->whiteouts(9) == std::vector<std::string>{"removed-then-added"});
  CHECK(*index->meta("k") == std::optional<std::string>("second"));
  CHECK(index->object(9)->value().stamp == 2);
}

TEST_CASE("index: forget_object removes the object and its whiteouts, nothing else") {
  TempDir tmp;
  auto index = open_ok(tmp.sub("index"));
  const uint64_t ino = 0x1FF;  // its neighbours differ in the last byte and beyond
  Batch setup;
  for (uint64_t i : {ino - 1, ino, ino + 1, ino + 0x100}) {
    setup.put_object(i, {.stamp = i});
    setup.add_whiteout(i, "a");
    setup.add_whiteout(i, "\xff\xff");
  }
  commit_ok(*index, setup);

  Batch b;
  b.add_whiteout(ino, "added-in-this-batch");  // in the batch, not yet in the database
  b.forget_object(ino);
  b.add_whiteout(ino, "after-forget");  // a reused inode number may start over
  commit_ok(*index, b);
  CHECK_FALSE(index->object(ino)->has_value());
  CHECK(*index->whiteouts(ino) == std::vector<std::string>{"after-forget"});
  for (uint64_t i : {ino - 1, ino + 1, ino + 0x100}) {
    CHECK(index->object(i)->has_value());
    CHECK(*index->whiteouts(i) == std::vector<std::string>{"a", "\xff\xff"});
  }

  // Forgetting an unknown object is harmless.
  Batch again;
  again.forget_object(123456);
  commit_ok(*index, again);
}

TEST_CASE("index: whiteouts come back sorted bytewise") {
  TempDir tmp;
  auto index = open_ok(tmp.sub("index"));
  std::vector<std::string> names = {
      "zeta", "Alpha", "alpha", "\xc3\xa9t\xc3\xa9",  "a", "ab", "a b",
      "_",    "10",    "9",     std::string(255, 'x')};
  Batch b;
  for (const auto& n : names) b.add_whiteout(77, n);
  commit_ok(*index, b);
  std::sort(names.begin(), names.end());
  CHECK(*index->whiteouts(77) == names);
}

TEST_CASE("index: a batch that cannot be applied applies nothing") {
  TempDir tmp;
  auto index = open_ok(tmp.sub("index"));
  Batch b;
  b.put_object(1, {.stamp = 1});
  b.add_whiteout(1, "ok");
  b.put_meta("format.version", "2");  // reserved for the index
  CHECK(index->commit(b, Durability::kSynced).error() == EINVAL);
  CHECK_FALSE(index->object(1)->has_value());
  CHECK(index->whiteouts(1)->empty());
  CHECK(*index->meta("format.version") == std::optional<std::string>("1"));

  for (const std::string& bad : std::vector<std::string>{
           "", ".", "..", "a/b", std::string("a\0b", 3), std::string(256, 'x')}) {
    Batch w;
    w.put_object(2, {.stamp = 2});
    w.add_whiteout(2, bad);
    CHECK(index->commit(w, Durability::kBuffered).error() == EINVAL);
  }
  CHECK_FALSE(index->object(2)->has_value());
  Batch m;
  m.put_meta("", "x");
  CHECK(index->commit(m, Durability::kBuffered).error() == EINVAL);
}

TEST_CASE("index: for_each visits every record in key order and can stop early") {
  TempDir tmp;
  auto index = open_ok(tmp.sub("index"));
  Batch b;
  const std::vector<uint64_t> inos = {3, 1, 0x100, 0xFFFFFFFFFFFFFFFFull, 2};
  for (uint64_t i : inos) b.put_object(i, {.stamp = i * 10});
  b.put_link_group(2, 1, {.upper_ino = 9, .links = 2});
  b.put_link_group(1, 5, {.upper_ino = 0, .links = 4});
  b.put_link_group(1, 4, {.upper_ino = 8, .links = 3});
  b.add_whiteout(1, "w");  // other kinds must not show up
  b.put_meta("m", "v");
  commit_ok(*index, b);

  std::vector<uint64_t> seen;
  REQUIRE(index
              ->for_each_object([&](uint64_t ino, const ObjectRecord& rec) {
                CHECK(rec.stamp == ino * 10);
                seen.push_back(ino);
                return true;
              })
              .ok());
  CHECK(seen == std::vector<uint64_t>{1, 2, 3, 0x100, 0xFFFFFFFFFFFFFFFFull});

  seen.clear();
  REQUIRE(index
              ->for_each_object([&](uint64_t ino, const ObjectRecord&) {
                seen.push_back(ino);
                return seen.size() < 2;
              })
              .ok());
  CHECK(seen == std::vector<uint64_t>{1, 2});

  std::vector<std::tuple<uint32_t, uint64_t, LinkGroup>> groups;
  REQUIRE(index
              ->for_each_link_group([&](uint32_t layer, uint64_t ino, const LinkGroup& g) {
                groups.emplace_back(layer, ino, g);
                return true;
              })
              .ok());
  REQUIRE(groups.size() == 3);
  CHECK(groups[0] == std::make_tuple(1u, uint64_t{4}, LinkGroup{.upper_ino = 8, .links = 3}));
  CHECK(groups[1] == std::make_tuple(1u, uint64_t{5}, LinkGroup{.upper_ino = 0, .links = 4}));
  CHECK(groups[2] == std::make_tuple(2u, uint64_t{1}, LinkGroup{.upper_ino = 9, .links = 2}));
}

TEST_CASE("index: scan_all visits every kind and goes on past damaged keys") {
  TempDir tmp;
  const std::string path = tmp.sub("index");
  {
    auto index = open_ok(path);
    Batch b;
    b.put_object(5, {.stamp = 50, .opaque = true});
    b.add_whiteout(5, "a");
    b.add_whiteout(5, "b");
    b.put_link_group(1, 7, {.upper_ino = 5, .links = 2});
    b.put_meta("m", "v");
    commit_ok(*index, b);
    REQUIRE(index->alias(3, 1ull << 50).ok());
  }
  REQUIRE(testing::raw_put(path, false, keys::object_key(6), "junk").ok());
  REQUIRE(testing::raw_put(path, false, "q", "").ok());
  REQUIRE(testing::raw_put(path, false, keys::whiteout_key(5, "c"), "x").ok());
  auto index = open_ok(path, false);
  std::vector<std::string> seen;
  Index::Visitor v;
  v.object = [&](uint64_t ino, const ObjectRecord& r) {
    seen.push_back("o" + std::to_string(ino) + (r.opaque ? "*" : ""));
  };
  v.whiteout = [&](uint64_t dir, std::string_view n) {
    seen.push_back("w" + std::to_string(dir) + std::string(n));
  };
  v.link_group = [&](uint32_t layer, uint64_t ino, const LinkGroup& g) {
    seen.push_back("l" + std::to_string(layer) + "/" + std::to_string(ino) + "=" +
                   std::to_string(g.upper_ino));
  };
  v.alias = [&](uint32_t layer, uint64_t, uint64_t a) {
    seen.push_back("a" + std::to_string(layer) + "=" + std::to_string(a));
  };
  v.meta = [&](std::string_view n, std::string_view) { seen.push_back("m" + std::string(n)); };
  v.damaged = [&](const std::string& key, const std::string& problem) {
    seen.push_back("!" + key + " " + problem);
  };
  REQUIRE(index->scan_all(v).ok());
  CHECK(seen ==
        std::vector<std::string>{
            "a3=1", "l1/7=5", "mformat.alias_last", "mformat.version", "mm", "o5*",
            "!6f0000000000000006 object record that does not decode", "!71 key of an unknown kind",
            "w5a", "w5b",
            "!770000000000000005" + std::string("63") + " whiteout with a non-empty value"});
  // Empty callbacks skip their kind.
  REQUIRE(index->scan_all(Index::Visitor{}).ok());
}

TEST_CASE("index: aliases are stable, distinct, count from 1 and survive reopen") {
  TempDir tmp;
  const std::string path = tmp.sub("index");
  std::map<std::pair<uint32_t, uint64_t>, uint64_t> given;
  {
    auto index = open_ok(path);
    const std::vector<std::pair<uint32_t, uint64_t>> pairs = {
        {0, 1ull << 60}, {1, 1ull << 60}, {0, (1ull << 60) + 1}, {7, ~0ull}};
    uint64_t expect = 1;
    for (auto [layer, ino] : pairs) {
      auto a = index->alias(layer, ino);
      REQUIRE(a.ok());
      CHECK(*a == expect++);
      given[{layer, ino}] = *a;
    }
    for (auto [pair, n] : given) CHECK(*index->alias(pair.first, pair.second) == n);
  }
  auto index = open_ok(path, false);
  for (auto [pair, n] : given) CHECK(*index->alias(pair.first, pair.second) == n);
  // Numbers keep counting after a reopen; none is handed out twice.
  CHECK(*index->alias(3, 3) == 5);
}

TEST_CASE("index: a buffered commit waits for a sync; synced commits and sync() clear it") {
  TempDir tmp;
  auto index = open_ok(tmp.sub("index"));
  CHECK_FALSE(index->unsynced());
  Batch b;
  b.add_whiteout(5, "a");
  REQUIRE(index->commit(b, Durability::kBuffered).ok());
  CHECK(index->unsynced());
  REQUIRE(index->sync_if_needed().ok());
  CHECK_FALSE(index->unsynced());
  REQUIRE(index->sync_if_needed().ok());  // nothing to do

  Batch b2;
  b2.add_whiteout(5, "b");
  REQUIRE(index->commit(b2, Durability::kSynced).ok());
  CHECK_FALSE(index->unsynced());
  REQUIRE(index->commit(b, Durability::kBuffered).ok());
  REQUIRE(index->sync().ok());
  CHECK_FALSE(index->unsynced());
}

TEST_CASE("index: sync_within syncs buffered commits in the background") {
  TempDir tmp;
  auto index = open_ok(tmp.sub("index"));
  index->sync_within(std::chrono::milliseconds(20));
  for (int round = 0; round < 3; ++round) {
    Batch b;
    b.add_whiteout(9, "n" + std::to_string(round));
    REQUIRE(index->commit(b, Durability::kBuffered).ok());
    // Liveness, not timing: the background sync comes, however loaded the machine.
    int waited = 0;
    while (index->unsynced() && waited < 30000) {
      std::this_thread::sleep_for(std::chrono::milliseconds(5));
      waited += 5;
    }
    CHECK_FALSE(index->unsynced());
  }
  // Closing with the syncer running is clean, and what was committed is there.
  const std::string path = tmp.sub("index");
  index.reset();
  auto again = open_ok(path, false);
  auto w = again->whiteouts(9);
  REQUIRE(w.ok());
  CHECK(w->size() == 3);
}

TEST_CASE("index: concurrent commits and aliases lose nothing") {
  TempDir tmp;
  auto index = open_ok(tmp.sub("index"));
  constexpr int kThreads = 4;
  constexpr int kPerThread = 150;
  std::atomic<int> failures{0};
  std::vector<std::thread> threads;
  std::vector<std::vector<uint64_t>> aliases(kThreads);
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      for (int i = 0; i < kPerThread; ++i) {
        const uint64_t ino = static_cast<uint64_t>(t) * 100000 + i;
        Batch b;
        b.put_object(ino, {.stamp = ino});
        b.add_whiteout(ino, "w" + std::to_string(i));
        // Every third commit also forgets a neighbour of its own, taking the
        // exclusive path while other threads commit.
        if (i % 3 == 2) b.forget_object(ino - 1);
        if (!index->commit(b, i % 10 == 0 ? Durability::kSynced : Durability::kBuffered).ok())
          ++failures;
        // All threads ask for the same 50 pairs.
        auto a = index->alias(1, 1000 + i % 50);
        if (!a.ok()) ++failures;
        aliases[t].push_back(a.ok() ? *a : 0);
      }
    });
  }
  for (auto& th : threads) th.join();
  CHECK(failures == 0);

  int objects = 0;
  REQUIRE(
      index->for_each_object([&](uint64_t, const ObjectRecord&) { return ++objects, true; }).ok());
  int expected = 0;
  for (int i = 0; i < kPerThread; ++i) expected += (i % 3 == 1) ? 0 : 1;
  CHECK(objects == expected * kThreads);
  for (int t = 0; t < kThreads; ++t) {
    for (int i = 0; i < kPerThread; ++i) {
      const uint64_t ino = static_cast<uint64_t>(t) * 100000 + i;
      const bool forgotten = i % 3 == 1;
      CHECK(index->object(ino)->has_value() == !forgotten);
      CHECK(index->whiteouts(ino)->size() == (forgotten ? 0u : 1u));
    }
  }
  // The same pair got the same number in every thread; 50 pairs, numbers 1..50.
  std::set<uint64_t> numbers;
  for (int i = 0; i < kPerThread; ++i) {
    for (int t = 1; t < kThreads; ++t) CHECK(aliases[t][i] == aliases[0][i]);
    numbers.insert(aliases[0][i]);
  }
  CHECK(numbers.size() == 50);
  CHECK(*numbers.begin() == 1);
  CHECK(*numbers.rbegin() == 50);
}

TEST_CASE("index: refuses a foreign directory and leaves it untouched") {
  TempDir tmp;
  const std::string dir = tmp.sub("foreign");
  REQUIRE(mkdir(dir.c_str(), 0700) == 0);
  write_file(dir + "/notes.txt", "precious");
  REQUIRE(mkdir((dir + "/sub").c_str(), 0700) == 0);
  auto before = snapshot(dir);
  std::string why = open_fails(dir, true, EINVAL);
  CHECK(why.find("not a layerfs index") != std::string::npos);
  open_fails(dir, false, EINVAL);
  CHECK(snapshot(dir) == before);

  // A file where the directory should be.
  write_file(tmp.sub("file"), "x");
  open_fails(tmp.sub("file"), true, EINVAL);
  CHECK(read_file(tmp.sub("file")) == "x");
}

TEST_CASE("index: finishes a creation that was interrupted before CURRENT existed") {
  TempDir tmp;
  const std::string dir = tmp.sub("index");
  REQUIRE(mkdir(dir.c_str(), 0700) == 0);
  write_file(dir + "/LOCK", "");
  write_file(dir + "/LOG", "partial");
  write_file(dir + "/MANIFEST-000001", "partial");
  open_fails(dir, false, ENOENT);
  auto index = open_ok(dir, true);
  CHECK(*index->meta("format.version") == std::optional<std::string>("1"));
}

TEST_CASE("index: refuses a RocksDB database that is not a layerfs index, untouched") {
  TempDir tmp;
  const std::string dir = tmp.sub("other-db");
  REQUIRE(testing::raw_put(dir, true, "some-key", "some-value").ok());
  auto before = snapshot(dir);
  std::string why = open_fails(dir, true, EINVAL);
  CHECK(why.find("format.version") != std::string::npos);
  open_fails(dir, false, EINVAL);
  CHECK(snapshot(dir) == before);  // the read-only probe wrote nothing, not even a LOG

  // A database holding only a meta key but no version is foreign too.
  const std::string meta_only = tmp.sub("meta-only");
  REQUIRE(testing::raw_put(meta_only, true, keys::meta_key("scratch"), "").ok());
  open_fails(meta_only, true, EINVAL);

  // An empty RocksDB database is an index whose creation stopped before the
  // version was written: not an index without create, adopted with it.
  const std::string empty = tmp.sub("empty-db");
  REQUIRE(testing::raw_put(empty, true, "k", "v").ok());
  REQUIRE(testing::raw_delete(empty, "k").ok());
  open_fails(empty, false, ENOENT);
  auto index = open_ok(empty, true);
  CHECK(*index->meta("format.version") == std::optional<std::string>("1"));
}

TEST_CASE("index: refuses another format version") {
  TempDir tmp;
  const std::string path = tmp.sub("index");
  {
    auto index = open_ok(path);
    Batch b;
    b.put_object(1, {.stamp = 1});
    commit_ok(*index, b);
  }
  REQUIRE(testing::raw_put(path, false, keys::meta_key(keys::kMetaFormatVersion), "2").ok());
  auto before = snapshot(path);
  std::string why = open_fails(path, true, ENOTSUP);
  CHECK(why.find("version 2") != std::string::npos);
  CHECK(snapshot(path) == before);

  REQUIRE(testing::raw_put(path, false, keys::meta_key(keys::kMetaFormatVersion), "1x").ok());
  open_fails(path, true, EIO);
  REQUIRE(testing::raw_put(path, false, keys::meta_key(keys::kMetaFormatVersion), "1").ok());
  auto index = open_ok(path, false);
  CHECK(index->object(1)->has_value());
}

TEST_CASE("index: a second open while the first is open is EBUSY") {
  TempDir tmp;
  const std::string path = tmp.sub("index");
  {
    auto first = open_ok(path);
    std::string why = open_fails(path, true, EBUSY);
    CHECK(why.find("in use") != std::string::npos);
    // Also through another spelling of the same directory.
    open_fails(tmp.path() + "/./index", false, EBUSY);
    // The refused open did not disturb the open one.
    Batch b;
    b.put_meta("still", "works");
    commit_ok(*first, b);
  }
  auto again = open_ok(path, false);
  CHECK(*again->meta("still") == std::optional<std::string>("works"));
}

TEST_CASE("index: an index locked by another process is EBUSY") {
  TempDir tmp;
  const std::string path = tmp.sub("index");
  open_ok(path);  // create, then close
  int ready[2], done[2];
  REQUIRE(pipe2(ready, O_CLOEXEC) == 0);
  REQUIRE(pipe2(done, O_CLOEXEC) == 0);
  const std::string lock = path + "/LOCK";
  pid_t pid = fork();
  REQUIRE(pid >= 0);
  if (pid == 0) {
    // Only async-signal-safe calls here: take the lock the way RocksDB does.
    close(ready[0]);
    close(done[1]);
    int fd = open(lock.c_str(), O_RDWR | O_CLOEXEC);
    struct flock fl {};
    fl.l_type = F_WRLCK;
    fl.l_whence = SEEK_SET;
    char c = (fd >= 0 && fcntl(fd, F_SETLK, &fl) == 0) ? 'y' : 'n';
    if (write(ready[1], &c, 1) != 1) _exit(1);
    if (read(done[0], &c, 1) < 0) _exit(1);
    _exit(0);
  }
  close(ready[1]);
  close(done[0]);
  char c = 0;
  REQUIRE(read(ready[0], &c, 1) == 1);
  CHECK(c == 'y');
  std::string why = open_fails(path, false, EBUSY);
  CHECK(why.find(std::to_string(pid)) != std::string::npos);
  close(done[1]);
  close(ready[0]);
  int status = 0;
  REQUIRE(waitpid(pid, &status, 0) == pid);
  CHECK(WIFEXITED(status));
  open_ok(path, false);  // free again
}

// Run only in a child process started by the next test (doctest::skip keeps
// it out of normal runs): commits without syncing, reports, and waits to be
// SIGKILLed.
TEST_CASE("index: helper that commits and waits to be killed" * doctest::skip()) {
  const char* path = getenv("LAYERFS_TEST_INDEX_PATH");
  if (path == nullptr) return;
  auto index = open_ok(path, false);
  Batch b;
  b.put_object(42, {.stamp = 4242, .opaque = true});
  b.add_whiteout(42, "killed");
  commit_ok(*index, b, Durability::kBuffered);
  REQUIRE(index->alias(3, 1ull << 62).ok());
  REQUIRE(write(3, "y", 1) == 1);
  for (;;) pause();
}

TEST_CASE("index: buffered commits survive the process being killed") {
  TempDir tmp;
  const std::string path = tmp.sub("index");
  open_ok(path);  // create, then close

  char exe[4096];
  ssize_t n = readlink("/proc/self/exe", exe, sizeof exe - 1);
  REQUIRE(n > 0);
  exe[n] = '\0';
  std::string env_path = "LAYERFS_TEST_INDEX_PATH=" + path;
  std::vector<char*> envp;
  for (char** e = environ; *e != nullptr; ++e) envp.push_back(*e);
  envp.push_back(env_path.data());
  envp.push_back(nullptr);
  std::string arg_filter = "--test-case=index: helper that commits and waits to be killed";
  std::string arg_skip = "--no-skip";
  char* argv[] = {exe, arg_skip.data(), arg_filter.data(), nullptr};

  int report[2];
  REQUIRE(pipe2(report, O_CLOEXEC) == 0);
  pid_t pid = fork();
  REQUIRE(pid >= 0);
  if (pid == 0) {
    // fd 3 is the report pipe in the child (dup2 clears O_CLOEXEC).
    if (dup2(report[1], 3) < 0) _exit(127);
    int devnull = open("/dev/null", O_WRONLY | O_CLOEXEC);
    if (devnull < 0 || dup2(devnull, 1) < 0) _exit(127);
    execve(exe, argv, envp.data());
    _exit(127);
  }
  close(report[1]);
  char c = 0;
  const ssize_t got = read(report[0], &c, 1);
  close(report[0]);
  kill(pid, SIGKILL);
  int status = 0;
  REQUIRE(waitpid(pid, &status, 0) == pid);
  REQUIRE(got == 1);  // the child committed before it was killed
  CHECK(WIFSIGNALED(status));

  auto index = open_ok(path, false);
  CHECK(*index->object(42) ==
        std::optional<ObjectRecord>(ObjectRecord{.stamp = 4242, .opaque = true}));
  CHECK(*index->whiteouts(42) == std::vector<std::string>{"killed"});
  CHECK(*index->alias(3, 1ull << 62) == 1);  // the allocation was kept, not redone
  CHECK(*index->alias(3, 1) == 2);
}

TEST_CASE("index: a damaged CURRENT file is EIO, and stays as it was") {
  TempDir tmp;
  const std::string path = tmp.sub("index");
  open_ok(path);
  write_file(path + "/CURRENT", "garbage-without-newline");
  std::string why = open_fails(path, true, EIO);
  CHECK(why.find("RocksDB") != std::string::npos);
  CHECK(read_file(path + "/CURRENT") == "garbage-without-newline");
  write_file(path + "/CURRENT", "MANIFEST-999999\n");
  open_fails(path, false, EIO);
}

TEST_CASE("index: a damaged table file is EIO, not a crash") {
  TempDir tmp;
  const std::string path = tmp.sub("index");
  {
    auto index = open_ok(path);
    for (int round = 0; round < 4; ++round) {
      Batch b;
      for (uint64_t i = 0; i < 500; ++i) b.put_object(round * 1000 + i, {.stamp = i, .origin = i});
      commit_ok(*index, b);
    }
  }
  open_ok(path, false);  // recovery moves the WAL into a table file
  auto tables = files_with_suffix(path, ".sst");
  REQUIRE_FALSE(tables.empty());
  for (const auto& t : tables) {
    std::string data = read_file(t);
    for (size_t i = 0; i < data.size(); i += 7) data[i] = static_cast<char>(data[i] ^ 0x5A);
    write_file(t, data);
  }
  std::string why;
  auto res = Index::open(path, false, &why);
  if (!res.ok()) {
    CHECK(res.error() == EIO);
    CHECK(why.find("RocksDB") != std::string::npos);
  } else {
    // Opened lazily: the damage must surface on reads.
    auto rec = (*res)->object(1000);
    CHECK(rec.error() == EIO);
    CHECK((*res)->for_each_object([](uint64_t, const ObjectRecord&) { return true; }).error() ==
          EIO);
  }
}

TEST_CASE("index: a damaged value is EIO on read") {
  TempDir tmp;
  const std::string path = tmp.sub("index");
  {
    auto index = open_ok(path);
    Batch b;
    b.put_object(1, {.stamp = 1});
    b.put_object(3, {.stamp = 3});
    commit_ok(*index, b);
  }
  std::string bad = records::encode_object({.stamp = 2});
  bad[2] ^= 1;
  REQUIRE(testing::raw_put(path, false, keys::object_key(2), bad).ok());
  REQUIRE(testing::raw_put(path, false, keys::link_group_key(1, 1), "junk").ok());
  REQUIRE(testing::raw_put(path, false, keys::whiteout_key(5, "a"), "not empty").ok());
  REQUIRE(testing::raw_put(path, false, keys::whiteout_key(6, "a/b"), "").ok());
  REQUIRE(testing::raw_put(path, false, keys::meta_key(keys::kMetaAliasLast), "junk").ok());
  std::string why = open_fails(path, false, EIO);  // the alias counter is checked at open
  CHECK(why.find("alias") != std::string::npos);
  REQUIRE(
      testing::raw_put(path, false, keys::meta_key(keys::kMetaAliasLast), records::encode_number(0))
          .ok());

  auto index = open_ok(path, false);
  CHECK(index->object(1)->has_value());
  CHECK(index->object(2).error() == EIO);
  CHECK(index->link_group(1, 1).error() == EIO);
  CHECK(index->whiteouts(5).error() == EIO);
  CHECK(index->whiteouts(6).error() == EIO);
  int visited = 0;
  CHECK(index->for_each_object([&](uint64_t, const ObjectRecord&) { return ++visited, true; })
            .error() == EIO);
  CHECK(visited == 1);  // object 1, then the damaged object 2
  CHECK(index->for_each_link_group([](uint32_t, uint64_t, const LinkGroup&) { return true; })
            .error() == EIO);
}
