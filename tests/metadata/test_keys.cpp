// Tests of metadata/keys.cpp: round trips, the sort order prefix scans rely
// on, and prefix upper bounds.
#include <doctest/doctest.h>

#include <algorithm>
#include <cstdint>
#include <random>
#include <string>
#include <vector>

#include "metadata/keys.h"

namespace k = layerfs::metadata::keys;

namespace {

const uint64_t kInos[] = {0,
                          1,
                          0xFF,
                          0x100,
                          0xFFFFFFFF,
                          0x100000000ull,
                          0x7FFFFFFFFFFFFFFFull,
                          0x8000000000000000ull,
                          0xFFFFFFFFFFFFFFFFull};
const uint32_t kLayers[] = {0, 1, 0xFF, 0x100, 0x80000000u, 0xFFFFFFFFu};

bool starts_with(const std::string& s, const std::string& prefix) {
  return s.compare(0, prefix.size(), prefix) == 0;
}

}  // namespace

TEST_CASE("keys: big-endian helpers round trip and write the high byte first") {
  std::string out;
  k::put_be32(&out, 0x01020304u);
  k::put_be64(&out, 0x0A0B0C0D0E0F1011ull);
  REQUIRE(out.size() == 12);
  CHECK(out.substr(0, 4) == std::string("\x01\x02\x03\x04", 4));
  CHECK(static_cast<unsigned char>(out[4]) == 0x0A);
  CHECK(static_cast<unsigned char>(out[11]) == 0x11);
  CHECK(k::get_be32(out) == 0x01020304u);
  CHECK(k::get_be64(std::string_view(out).substr(4)) == 0x0A0B0C0D0E0F1011ull);
}

TEST_CASE("keys: every kind round trips") {
  for (uint64_t ino : kInos) {
    std::string ok = k::object_key(ino);
    CHECK(ok.size() == 9);
    CHECK(ok[0] == 'o');
    REQUIRE(k::decode_object_key(ok).has_value());
    CHECK(*k::decode_object_key(ok) == ino);

    for (const std::string& name :
         std::vector<std::string>{"a", "hello world", "\xff\xfe", std::string(255, 'x')}) {
      std::string wk = k::whiteout_key(ino, name);
      CHECK(wk[0] == 'w');
      auto w = k::decode_whiteout_key(wk);
      REQUIRE(w.has_value());
      CHECK(w->dir_ino == ino);
      CHECK(w->name == name);
    }

    for (uint32_t layer : kLayers) {
      auto l = k::decode_link_group_key(k::link_group_key(layer, ino));
      REQUIRE(l.has_value());
      CHECK(l->layer == layer);
      CHECK(l->ino == ino);
      auto a = k::decode_alias_key(k::alias_key(layer, ino));
      REQUIRE(a.has_value());
      CHECK(a->layer == layer);
      CHECK(a->ino == ino);
    }
  }
  const std::string mk = k::meta_key("layers.fingerprint");
  auto m = k::decode_meta_key(mk);
  REQUIRE(m.has_value());
  CHECK(*m == "layers.fingerprint");
}

TEST_CASE("keys: decoders refuse keys of another kind or length") {
  std::string obj = k::object_key(7);
  CHECK_FALSE(k::decode_object_key(obj.substr(0, 8)));
  CHECK_FALSE(k::decode_object_key(obj + "x"));
  CHECK_FALSE(k::decode_object_key(""));
  CHECK_FALSE(k::decode_link_group_key(obj));
  CHECK_FALSE(k::decode_alias_key(k::link_group_key(1, 2)));
  CHECK_FALSE(k::decode_link_group_key(k::alias_key(1, 2)));
  CHECK_FALSE(k::decode_link_group_key(k::link_group_key(1, 2) + std::string(1, '\0')));
  CHECK_FALSE(k::decode_meta_key("m"));
  CHECK_FALSE(k::decode_meta_key(obj));
  // A whiteout key needs a valid entry name after the directory.
  CHECK_FALSE(k::decode_whiteout_key(k::whiteout_prefix(3)));
  CHECK_FALSE(k::decode_whiteout_key(k::whiteout_key(3, "a/b")));
  CHECK_FALSE(k::decode_whiteout_key(k::whiteout_key(3, std::string("a\0b", 3))));
  CHECK_FALSE(k::decode_whiteout_key(k::whiteout_key(3, std::string(256, 'x'))));
  CHECK_FALSE(k::decode_whiteout_key(k::whiteout_key(3, "..")));
  CHECK_FALSE(k::decode_whiteout_key(obj));
}

TEST_CASE("keys: valid_entry_name") {
  CHECK(k::valid_entry_name("a"));
  CHECK(k::valid_entry_name("..."));
  CHECK(k::valid_entry_name(".hidden"));
  CHECK(k::valid_entry_name(std::string(255, 'n')));
  CHECK_FALSE(k::valid_entry_name(""));
  CHECK_FALSE(k::valid_entry_name("."));
  CHECK_FALSE(k::valid_entry_name(".."));
  CHECK_FALSE(k::valid_entry_name("a/b"));
  CHECK_FALSE(k::valid_entry_name(std::string("\0", 1)));
  CHECK_FALSE(k::valid_entry_name(std::string(256, 'n')));
}

TEST_CASE("keys: big-endian numbers sort numerically") {
  std::mt19937_64 rng(42);
  std::vector<uint64_t> values(std::begin(kInos), std::end(kInos));
  for (int i = 0; i < 500; ++i) values.push_back(rng() >> (rng() % 64));
  for (uint64_t a : values) {
    for (uint64_t b : {values[0], values[3], values[5], values[values.size() / 2], values.back()}) {
      CHECK((k::object_key(a) < k::object_key(b)) == (a < b));
      CHECK((k::whiteout_prefix(a) < k::whiteout_prefix(b)) == (a < b));
    }
  }
  // Layer is the major number in link group and alias keys.
  CHECK(k::link_group_key(1, 0xFFFFFFFFFFFFFFFFull) < k::link_group_key(2, 0));
  CHECK(k::alias_key(0x100, 1) > k::alias_key(0xFF, 2));
}

TEST_CASE("keys: the whiteouts of one directory sort together, in name order") {
  const std::vector<std::string> names = {"b", "a", "ab", "\xff", "A", "a b", "z", "\x01"};
  std::vector<std::string> all;
  for (uint64_t dir : {4ull, 5ull, 6ull, 0x105ull}) {
    for (const auto& n : names) all.push_back(k::whiteout_key(dir, n));
  }
  std::sort(all.begin(), all.end());
  // Dir 5's keys form one contiguous run...
  auto first = std::find_if(all.begin(), all.end(), [](const std::string& s) {
    return starts_with(s, k::whiteout_prefix(5));
  });
  REQUIRE(first != all.end());
  std::vector<std::string> run;
  for (auto it = first; it != all.end() && starts_with(*it, k::whiteout_prefix(5)); ++it) {
    auto w = k::decode_whiteout_key(*it);
    REQUIRE(w.has_value());
    run.emplace_back(w->name);
  }
  REQUIRE(run.size() == names.size());
  // ...in bytewise name order.
  std::vector<std::string> sorted = names;
  std::sort(sorted.begin(), sorted.end());
  CHECK(run == sorted);
  // Keys of different kinds never interleave.
  CHECK(k::object_key(0xFFFFFFFFFFFFFFFFull) < k::whiteout_key(0, "a"));
  CHECK(k::meta_key("zzz") < k::object_key(0));
}

TEST_CASE("keys: prefix upper bounds") {
  CHECK(k::prefix_upper_bound("a") == std::optional<std::string>("b"));
  CHECK(k::prefix_upper_bound(std::string("a\x00", 2)) == std::optional<std::string>("a\x01"));
  CHECK(k::prefix_upper_bound("a\xff") == std::optional<std::string>("b"));
  CHECK(k::prefix_upper_bound("a\xfe\xff\xff") == std::optional<std::string>("a\xff"));
  CHECK_FALSE(k::prefix_upper_bound(""));
  CHECK_FALSE(k::prefix_upper_bound("\xff\xff\xff"));
  CHECK(k::prefix_upper_bound(k::kind_prefix(k::Kind::kObject)) == std::optional<std::string>("p"));
  CHECK(k::prefix_upper_bound(k::whiteout_prefix(0xFFFFFFFFFFFFFFFFull)) ==
        std::optional<std::string>("x"));
  // The trailing 0xFF is cut, so the bound is shorter than the next directory's prefix.
  CHECK(k::prefix_upper_bound(k::whiteout_prefix(0x00000000000000FFull)) ==
        std::optional<std::string>(k::whiteout_prefix(0x100).substr(0, 8)));

  // Every key that continues the prefix sorts below the bound; the bound and
  // everything at or above it does not continue the prefix.
  std::mt19937_64 rng(7);
  for (uint64_t dir : kInos) {
    std::string prefix = k::whiteout_prefix(dir);
    auto bound = k::prefix_upper_bound(prefix);
    REQUIRE(bound.has_value());
    CHECK(*bound > prefix);
    CHECK_FALSE(starts_with(*bound, prefix));
    for (int i = 0; i < 50; ++i) {
      std::string name(1 + rng() % 8, '\0');
      for (char& c : name) c = static_cast<char>(rng());
      CHECK(prefix + name < *bound);
    }
    CHECK(prefix + std::string(300, '\xff') < *bound);
    if (dir != 0xFFFFFFFFFFFFFFFFull) CHECK(k::whiteout_key(dir + 1, "a") >= *bound);
  }
}
