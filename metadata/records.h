// Value encodings of the layerfs index (metadata/FORMAT.md, "Values").
//
// Every value starts with a tag byte naming its type (and encoding version),
// carries compact fields (LEB128 varints), and ends with a 4-byte checksum of
// everything before it. Decoders take arbitrary bytes: whatever they are given
// they either return the record or EIO, and never read outside `in`.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

#include "fs/result.h"
#include "metadata/index.h"

namespace layerfs::metadata::records {

// Tag bytes, the first byte of each value.
inline constexpr uint8_t kTagObject = 0x01;
inline constexpr uint8_t kTagLinkGroup = 0x02;
inline constexpr uint8_t kTagNumber = 0x03;  // alias numbers and the alias counter

// ObjectRecord flag bits (the byte after the tag).
inline constexpr uint8_t kFlagOrigin = 0x01;
inline constexpr uint8_t kFlagOpaque = 0x02;
inline constexpr uint8_t kFlagRedirect = 0x04;

std::string encode_object(const ObjectRecord& rec);
Result<ObjectRecord> decode_object(std::string_view in);

std::string encode_link_group(const LinkGroup& group);
Result<LinkGroup> decode_link_group(std::string_view in);

std::string encode_number(uint64_t n);
Result<uint64_t> decode_number(std::string_view in);

// The building blocks, exposed for tests and for a checker.
void put_varint(std::string* out, uint64_t v);
// Reads one varint from the front of *in and advances it. Fails (EIO) on a
// truncated, over-long (more than 64 bits) or non-minimal encoding, so that
// every number has exactly one encoding.
Result<uint64_t> get_varint(std::string_view* in);
// Low 32 bits of XXH3-64 of `data`.
uint32_t checksum(std::string_view data);

}  // namespace layerfs::metadata::records
