// The st_ino the mount presents (design-notes.md section 1).
//
// An object is named by where it was first seen: layer number (0 = upper,
// 1..N = lowers, top-most first) in the top 16 bits and that layer's inode
// number in the low 48 bits. So st_ino is unique across layers, needs no write
// on read paths, and is the same after a remount with the same layers. A copied
// up object keeps the number of its lower original: the index records it as
// the upper object's `origin`. Inode numbers that do not fit in 48 bits get an
// alias allocated in the index, presented under the reserved layer 0xFFFF.
#pragma once

#include <cstdint>

namespace layerfs::ino {

inline constexpr int kInoBits = 48;
inline constexpr uint64_t kInoMask = (uint64_t{1} << kInoBits) - 1;
inline constexpr uint32_t kAliasLayer = 0xFFFF;
inline constexpr uint32_t kMaxLayers = kAliasLayer;  // layers 0 .. 0xFFFE

inline bool fits(uint64_t real_ino) { return real_ino <= kInoMask; }

inline uint64_t encode(uint32_t layer, uint64_t real_ino) {
  return (static_cast<uint64_t>(layer) << kInoBits) | (real_ino & kInoMask);
}

inline uint64_t encode_alias(uint64_t alias) { return encode(kAliasLayer, alias); }

inline uint32_t layer_of(uint64_t st_ino) { return static_cast<uint32_t>(st_ino >> kInoBits); }

}  // namespace layerfs::ino
