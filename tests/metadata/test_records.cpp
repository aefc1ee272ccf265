// Tests of metadata/records.cpp: round trips of every record shape, and that
// damaged or forged values decode to EIO rather than to a wrong record.
#include <doctest/doctest.h>

#include <cerrno>
#include <limits>
#include <random>
#include <string>
#include <vector>

#include "metadata/records.h"

using layerfs::metadata::LinkGroup;
using layerfs::metadata::ObjectRecord;
namespace r = layerfs::metadata::records;

namespace {

std::vector<ObjectRecord> object_shapes() {
  std::string all_bytes;
  for (int i = 0; i < 4096; ++i) all_bytes.push_back(static_cast<char>(i));
  std::vector<ObjectRecord> shapes;
  shapes.push_back({});
  shapes.push_back({.stamp = 1});
  shapes.push_back({.stamp = std::numeric_limits<uint64_t>::max()});
  shapes.push_back({.stamp = 5, .origin = 0});
  shapes.push_back({.stamp = 5, .origin = std::numeric_limits<uint64_t>::max()});
  shapes.push_back({.stamp = 0, .opaque = true});
  shapes.push_back({.stamp = 9, .redirect = ""});
  shapes.push_back({.stamp = 9, .redirect = "/a/b"});
  shapes.push_back({.stamp = 9, .redirect = all_bytes});
  shapes.push_back({.stamp = 1ull << 40,
                    .origin = (3ull << 56) | 12345,
                    .opaque = true,
                    .redirect = "/usr/share/" + std::string(300, 'n')});
  return shapes;
}

// A value with a correct checksum around arbitrary content: what a buggy or
// malicious writer could store. The decoder must still check the content.
std::string sealed(const std::string& content) {
  std::string out = content;
  uint32_t sum = r::checksum(out);
  for (int i = 0; i < 4; ++i) out.push_back(static_cast<char>(sum >> (8 * i)));
  return out;
}

template <class Decode>
void check_damage_detected(const std::string& good, Decode decode) {
  REQUIRE(decode(good).ok());
  for (size_t i = 0; i < good.size(); ++i) {
    for (unsigned char mask : {0x01, 0x80, 0xFF}) {
      std::string bad = good;
      bad[i] = static_cast<char>(bad[i] ^ mask);
      auto res = decode(bad);
      CHECK_MESSAGE(res.error() == EIO, "flipped byte ", i, " mask ", int(mask));
    }
  }
  for (size_t len = 0; len < good.size(); ++len) {
    CHECK_MESSAGE(decode(good.substr(0, len)).error() == EIO, "truncated to ", len);
  }
  CHECK(decode(good + "x").error() == EIO);
  CHECK(decode(std::string()).error() == EIO);
}

}  // namespace

TEST_CASE("records: varints round trip and have one encoding each") {
  for (uint64_t v : std::vector<uint64_t>{0, 1, 127, 128, 16383, 16384, 0xFFFFFFFF,
                                          0x7FFFFFFFFFFFFFFF, 0xFFFFFFFFFFFFFFFF}) {
    std::string buf;
    r::put_varint(&buf, v);
    buf += "tail";
    std::string_view in = buf;
    auto got = r::get_varint(&in);
    REQUIRE(got.ok());
    CHECK(*got == v);
    CHECK(in == "tail");
  }
  std::string max;
  r::put_varint(&max, std::numeric_limits<uint64_t>::max());
  CHECK(max.size() == 10);

  auto decode = [](std::string bytes) {
    std::string_view in = bytes;
    return r::get_varint(&in);
  };
  CHECK(decode("").error() == EIO);
  CHECK(decode("\x80").error() == EIO);                      // truncated
  CHECK(decode(std::string("\x80\x00", 2)).error() == EIO);  // non-minimal zero
  CHECK(decode(std::string("\x81\x80\x00", 3)).error() == EIO);
  CHECK(decode(std::string(9, '\xff') + "\x02").error() == EIO);   // bit 64
  CHECK(decode(std::string(10, '\xff') + "\x01").error() == EIO);  // 11 bytes
  CHECK(decode(std::string(9, '\xff') + "\x01").ok());
}

TEST_CASE("records: object records round trip in every shape") {
  for (const ObjectRecord& rec : object_shapes()) {
    std::string enc = r::encode_object(rec);
    CHECK(static_cast<unsigned char>(enc[0]) == r::kTagObject);
    auto dec = r::decode_object(enc);
    REQUIRE(dec.ok());
    CHECK(*dec == rec);
  }
  // redirect "" (the root) and no redirect are different records.
  CHECK(r::encode_object({.redirect = ""}) != r::encode_object({}));
  CHECK(r::decode_object(r::encode_object({.redirect = ""}))->redirect == std::string());
  // The common case stays small: tag, flags, stamp, checksum.
  CHECK(r::encode_object({.stamp = 100}).size() == 7);
}

TEST_CASE("records: link groups and numbers round trip") {
  for (LinkGroup g : {LinkGroup{}, LinkGroup{.upper_ino = 77, .links = 3},
                      LinkGroup{.upper_ino = std::numeric_limits<uint64_t>::max(),
                      .links = std::numeric_limits<uint32_t>::max()}}) {
    auto dec = r::decode_link_group(r::encode_link_group(g));
    REQUIRE(dec.ok());
    CHECK(*dec == g);
  }
  for (uint64_t n :
       {uint64_t{0}, uint64_t{1}, uint64_t{300}, std::numeric_limits<uint64_t>::max()}) {
    auto dec = r::decode_number(r::encode_number(n));
    REQUIRE(dec.ok());
    CHECK(*dec == n);
  }
}

TEST_CASE("records: flipped, truncated, extended and empty values are EIO") {
  for (const ObjectRecord& rec : object_shapes()) {
    if (rec.redirect && rec.redirect->size() > 1000) continue;  // keep the loop short
    check_damage_detected(r::encode_object(rec), r::decode_object);
  }
  check_damage_detected(r::encode_link_group({.upper_ino = 1ull << 50, .links = 70000}),
                        r::decode_link_group);
  check_damage_detected(r::encode_number(123456789), r::decode_number);
}

TEST_CASE("records: a value of another type is EIO") {
  std::string obj = r::encode_object({.stamp = 1});
  std::string grp = r::encode_link_group({.upper_ino = 1, .links = 1});
  std::string num = r::encode_number(1);
  CHECK(r::decode_link_group(obj).error() == EIO);
  CHECK(r::decode_number(obj).error() == EIO);
  CHECK(r::decode_object(grp).error() == EIO);
  CHECK(r::decode_object(num).error() == EIO);
  CHECK(r::decode_number(grp).error() == EIO);
}

TEST_CASE("records: well-sealed but malformed content is EIO") {
  const char tag = static_cast<char>(r::kTagObject);
  CHECK(r::decode_object(sealed({tag, 0, 5})).ok());                         // the reference: valid
  CHECK(r::decode_object(sealed({tag})).error() == EIO);                     // no flags
  CHECK(r::decode_object(sealed({tag, 0})).error() == EIO);                  // no stamp
  CHECK(r::decode_object(sealed({tag, 0x08, 5})).error() == EIO);            // unknown flag
  CHECK(r::decode_object(sealed({tag, 0, 5, 0})).error() == EIO);            // trailing byte
  CHECK(r::decode_object(sealed({tag, r::kFlagOrigin, 5})).error() == EIO);  // origin missing
  CHECK(r::decode_object(sealed({tag, r::kFlagRedirect, 5, 3, 'a', 'b'})).error() == EIO);
  CHECK(r::decode_object(sealed({tag, r::kFlagRedirect, 5, 2, 'a', 'b'})).ok());
  // A redirect length far past the end must not be trusted.
  std::string huge{tag, static_cast<char>(r::kFlagRedirect), 5};
  r::put_varint(&huge, std::numeric_limits<uint64_t>::max());
  CHECK(r::decode_object(sealed(huge)).error() == EIO);

  std::string links{static_cast<char>(r::kTagLinkGroup), 1};
  r::put_varint(&links, 1ull << 32);  // does not fit the uint32_t count
  CHECK(r::decode_link_group(sealed(links)).error() == EIO);
  CHECK(r::decode_number(sealed({static_cast<char>(r::kTagNumber)})).error() == EIO);
}

TEST_CASE("records: random garbage never decodes") {
  std::mt19937_64 rng(1234);
  int decoded = 0;
  for (int i = 0; i < 20000; ++i) {
    std::string junk(rng() % 40, '\0');
    for (char& c : junk) c = static_cast<char>(rng());
    // Start some samples with a real tag so the decoders get past the first check.
    if (!junk.empty() && i % 2 == 0) junk[0] = static_cast<char>(1 + i % 3);
    decoded += r::decode_object(junk).error() != EIO;
    decoded += r::decode_link_group(junk).error() != EIO;
    decoded += r::decode_number(junk).error() != EIO;
  }
  CHECK(decoded == 0);
}
