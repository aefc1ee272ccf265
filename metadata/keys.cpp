// Key encoding of the layerfs index; see keys.h and FORMAT.md.
#include "metadata/keys.h"

namespace layerfs::metadata::keys {
namespace {

constexpr size_t kInoWidth = 8;
constexpr size_t kLayerWidth = 4;
// NAME_MAX on Linux: a whiteout stands for one directory entry.
constexpr size_t kMaxEntryName = 255;

std::string with_kind(Kind kind, size_t reserve) {
  std::string key;
  key.reserve(1 + reserve);
  key.push_back(static_cast<char>(kind));
  return key;
}

bool has_kind(std::string_view key, Kind kind) {
  return !key.empty() && key[0] == static_cast<char>(kind);
}

std::optional<LayerInoKey> decode_layer_ino(std::string_view key, Kind kind) {
  if (!has_kind(key, kind) || key.size() != 1 + kLayerWidth + kInoWidth) return std::nullopt;
  return LayerInoKey{get_be32(key.substr(1)), get_be64(key.substr(1 + kLayerWidth))};
}

}  // namespace

void put_be32(std::string* out, uint32_t v) {
  for (int shift = 24; shift >= 0; shift -= 8) out->push_back(static_cast<char>(v >> shift));
}

void put_be64(std::string* out, uint64_t v) {
  for (int shift = 56; shift >= 0; shift -= 8) out->push_back(static_cast<char>(v >> shift));
}

uint32_t get_be32(std::string_view in) {
  uint32_t v = 0;
  for (size_t i = 0; i < 4; ++i) v = (v << 8) | static_cast<unsigned char>(in[i]);
  return v;
}

uint64_t get_be64(std::string_view in) {
  uint64_t v = 0;
  for (size_t i = 0; i < 8; ++i) v = (v << 8) | static_cast<unsigned char>(in[i]);
  return v;
}

std::string meta_key(std::string_view name) {
  std::string key = with_kind(Kind::kMeta, name.size());
  key.append(name);
  return key;
}

std::string object_key(uint64_t upper_ino) {
  std::string key = with_kind(Kind::kObject, kInoWidth);
  put_be64(&key, upper_ino);
  return key;
}

std::string whiteout_prefix(uint64_t dir_ino) {
  std::string key = with_kind(Kind::kWhiteout, kInoWidth);
  put_be64(&key, dir_ino);
  return key;
}

std::string whiteout_key(uint64_t dir_ino, std::string_view name) {
  std::string key = whiteout_prefix(dir_ino);
  key.append(name);
  return key;
}

std::string link_group_key(uint32_t layer, uint64_t lower_ino) {
  std::string key = with_kind(Kind::kLinkGroup, kLayerWidth + kInoWidth);
  put_be32(&key, layer);
  put_be64(&key, lower_ino);
  return key;
}

std::string alias_key(uint32_t layer, uint64_t ino) {
  std::string key = with_kind(Kind::kAlias, kLayerWidth + kInoWidth);
  put_be32(&key, layer);
  put_be64(&key, ino);
  return key;
}

std::string kind_prefix(Kind kind) {
  return with_kind(kind, 0);
}

std::optional<std::string> prefix_upper_bound(std::string_view prefix) {
  std::string bound(prefix);
  // Bytes equal to 0xFF cannot be incremented: a key that continues the prefix
  // may have any byte there, so the bound must be cut before them.
  while (!bound.empty() && static_cast<unsigned char>(bound.back()) == 0xFF) bound.pop_back();
  if (bound.empty()) return std::nullopt;
  bound.back() = static_cast<char>(static_cast<unsigned char>(bound.back()) + 1);
  return bound;
}

std::optional<std::string_view> decode_meta_key(std::string_view key) {
  if (!has_kind(key, Kind::kMeta) || key.size() < 2) return std::nullopt;
  return key.substr(1);
}

std::optional<uint64_t> decode_object_key(std::string_view key) {
  if (!has_kind(key, Kind::kObject) || key.size() != 1 + kInoWidth) return std::nullopt;
  return get_be64(key.substr(1));
}

std::optional<WhiteoutKey> decode_whiteout_key(std::string_view key) {
  if (!has_kind(key, Kind::kWhiteout) || key.size() < 1 + kInoWidth) return std::nullopt;
  std::string_view name = key.substr(1 + kInoWidth);
  if (!valid_entry_name(name)) return std::nullopt;
  return WhiteoutKey{get_be64(key.substr(1)), name};
}

std::optional<LayerInoKey> decode_link_group_key(std::string_view key) {
  return decode_layer_ino(key, Kind::kLinkGroup);
}

std::optional<LayerInoKey> decode_alias_key(std::string_view key) {
  return decode_layer_ino(key, Kind::kAlias);
}

bool valid_entry_name(std::string_view name) {
  return !name.empty() && name.size() <= kMaxEntryName && name != "." && name != ".." &&
         name.find_first_of(std::string_view("/\0", 2)) == std::string_view::npos;
}

}  // namespace layerfs::metadata::keys
