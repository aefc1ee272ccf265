// libFuzzer target: decoding the index's values and keys (metadata/records.h,
// metadata/keys.h), which read whatever bytes the workdir's database holds.
//
// The first input byte picks what the rest is fed to. The decoders must return
// a record or an error and never read outside the input (ASan checks that);
// a value they accept must encode back to exactly the same bytes, because
// FORMAT.md gives every record one encoding. Values are checksummed, so random
// bytes rarely get past the checksum: half the modes re-seal the input with a
// correct checksum first, to reach the field decoding behind it.
#include "metadata/records.h"

#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string>
#include <string_view>

#include "metadata/keys.h"

namespace {

namespace keys = layerfs::metadata::keys;
namespace records = layerfs::metadata::records;

void require(bool ok) {
  if (!ok) std::abort();
}

std::string sealed(std::string_view body) {
  std::string out(body);
  uint32_t sum = records::checksum(out);
  for (int i = 0; i < 4; ++i) out.push_back(static_cast<char>(sum >> (8 * i)));
  return out;
}

void check_values(std::string_view in) {
  if (auto r = records::decode_object(in)) require(records::encode_object(*r) == in);
  if (auto r = records::decode_link_group(in)) require(records::encode_link_group(*r) == in);
  if (auto r = records::decode_number(in)) require(records::encode_number(*r) == in);
}

void check_keys(std::string_view key) {
  if (auto k = keys::decode_meta_key(key)) require(keys::meta_key(*k) == key);
  if (auto k = keys::decode_object_key(key)) require(keys::object_key(*k) == key);
  if (auto k = keys::decode_whiteout_key(key)) {
    require(keys::whiteout_key(k->dir_ino, k->name) == key);
    require(key.starts_with(keys::whiteout_prefix(k->dir_ino)));
  }
  if (auto k = keys::decode_link_group_key(key)) {
    require(keys::link_group_key(k->layer, k->ino) == key);
  }
  if (auto k = keys::decode_alias_key(key)) require(keys::alias_key(k->layer, k->ino) == key);
  keys::valid_entry_name(key);
  if (auto bound = keys::prefix_upper_bound(key)) {
    require(*bound > key && !bound->starts_with(key));
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size == 0) return 0;
  const uint8_t mode = data[0];
  const std::string_view rest(reinterpret_cast<const char*>(data) + 1, size - 1);
  switch (mode % 4) {
    case 0:  // a value as stored
      check_values(rest);
      break;
    case 1: {  // a value whose checksum is right
      std::string value = sealed(rest);
      check_values(value);
      break;
    }
    case 2:  // a key
      check_keys(rest);
      break;
    case 3: {  // varints back to back
      std::string_view in = rest;
      while (true) {
        const std::string_view before = in;
        auto v = records::get_varint(&in);
        if (!v) break;
        std::string again;
        records::put_varint(&again, *v);
        require(before.substr(0, before.size() - in.size()) == again);
      }
      break;
    }
  }
  return 0;
}
