// Key encoding of the layerfs index (metadata/FORMAT.md, "Keys").
//
// Every key is a one-byte kind followed by big-endian fixed-width numbers and,
// for some kinds, a trailing name. Big-endian fixed width makes RocksDB's
// bytewise order agree with numeric order, so that all the records of one
// object or directory sit next to each other and can be read with one prefix
// scan. Decoders accept only exactly well-formed keys: a key of the right kind
// but the wrong length is corruption, not something to guess about.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace layerfs::metadata::keys {

enum class Kind : char {
  kMeta = 'm',       // 'm' name                   -> free-form bytes
  kObject = 'o',     // 'o' upper_ino(8)           -> ObjectRecord
  kWhiteout = 'w',   // 'w' dir_ino(8) name        -> empty
  kLinkGroup = 'l',  // 'l' layer(4) lower_ino(8)  -> LinkGroup
  kAlias = 'a',      // 'a' layer(4) ino(8)        -> alias number
};

// Meta keys whose name starts with this are written only by the index itself.
inline constexpr std::string_view kReservedMetaPrefix = "format";
// Meta names used by the index.
inline constexpr std::string_view kMetaFormatVersion = "format.version";
inline constexpr std::string_view kMetaAliasLast = "format.alias_last";

// Big-endian fixed-width numbers.
void put_be32(std::string* out, uint32_t v);
void put_be64(std::string* out, uint64_t v);
// Reads from the first 4 / 8 bytes of `in`; the caller checks the length.
uint32_t get_be32(std::string_view in);
uint64_t get_be64(std::string_view in);

std::string meta_key(std::string_view name);
std::string object_key(uint64_t upper_ino);
std::string whiteout_key(uint64_t dir_ino, std::string_view name);
std::string link_group_key(uint32_t layer, uint64_t lower_ino);
std::string alias_key(uint32_t layer, uint64_t ino);

// The prefix shared by every key of one kind, and by every whiteout of one
// directory.
std::string kind_prefix(Kind kind);
std::string whiteout_prefix(uint64_t dir_ino);

// The smallest key greater than every key that starts with `prefix` (usable as
// an exclusive iterate_upper_bound). nullopt when no such key exists, i.e. the
// prefix is empty or all 0xFF: then the scan runs to the end of the keyspace.
std::optional<std::string> prefix_upper_bound(std::string_view prefix);

// Decoders: nullopt unless `key` is exactly a key of that kind.
struct WhiteoutKey {
  uint64_t dir_ino;
  std::string_view name;  // points into the decoded key
};
struct LayerInoKey {
  uint32_t layer;
  uint64_t ino;
};
std::optional<std::string_view> decode_meta_key(std::string_view key);
std::optional<uint64_t> decode_object_key(std::string_view key);
std::optional<WhiteoutKey> decode_whiteout_key(std::string_view key);
std::optional<LayerInoKey> decode_link_group_key(std::string_view key);
std::optional<LayerInoKey> decode_alias_key(std::string_view key);

// Whether `name` may be stored as a whiteout: a single directory entry name
// (1 to 255 bytes, no '/' and no NUL, not "." or "..").
bool valid_entry_name(std::string_view name);

}  // namespace layerfs::metadata::keys
