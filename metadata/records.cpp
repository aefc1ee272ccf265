// Value encodings of the layerfs index; see records.h and FORMAT.md.
#include "metadata/records.h"

#include <xxhash.h>

#include <limits>

namespace layerfs::metadata::records {
namespace {

constexpr size_t kChecksumSize = 4;
constexpr uint8_t kKnownObjectFlags = kFlagOrigin | kFlagOpaque | kFlagRedirect;

Error corrupt() {
  return Error{EIO};
}

void seal(std::string* out) {
  uint32_t sum = checksum(*out);
  for (int i = 0; i < 4; ++i) out->push_back(static_cast<char>(sum >> (8 * i)));
}

// Checks the tag and the checksum, and returns the fields between them.
Result<std::string_view> unseal(std::string_view in, uint8_t tag) {
  if (in.size() < 1 + kChecksumSize) return corrupt();
  std::string_view covered = in.substr(0, in.size() - kChecksumSize);
  std::string_view stored = in.substr(in.size() - kChecksumSize);
  uint32_t want = 0;
  for (int i = 3; i >= 0; --i) want = (want << 8) | static_cast<unsigned char>(stored[i]);
  if (checksum(covered) != want) return corrupt();
  if (static_cast<unsigned char>(covered[0]) != tag) return corrupt();
  return covered.substr(1);
}

}  // namespace

uint32_t checksum(std::string_view data) {
  return static_cast<uint32_t>(XXH3_64bits(data.data(), data.size()));
}

void put_varint(std::string* out, uint64_t v) {
  while (v >= 0x80) {
    out->push_back(static_cast<char>((v & 0x7F) | 0x80));
    v >>= 7;
  }
  out->push_back(static_cast<char>(v));
}

Result<uint64_t> get_varint(std::string_view* in) {
  uint64_t v = 0;
  for (size_t i = 0; i < 10; ++i) {
    if (i >= in->size()) return corrupt();
    auto byte = static_cast<unsigned char>((*in)[i]);
    // The tenth byte holds only bit 63.
    if (i == 9 && byte > 1) return corrupt();
    v |= static_cast<uint64_t>(byte & 0x7F) << (7 * i);
    if ((byte & 0x80) == 0) {
      // A final zero byte after others means a longer encoding than needed.
      if (i > 0 && byte == 0) return corrupt();
      in->remove_prefix(i + 1);
      return v;
    }
  }
  return corrupt();
}

std::string encode_object(const ObjectRecord& rec) {
  std::string out;
  out.push_back(static_cast<char>(kTagObject));
  uint8_t flags = 0;
  if (rec.origin) flags |= kFlagOrigin;
  if (rec.opaque) flags |= kFlagOpaque;
  if (rec.redirect) flags |= kFlagRedirect;
  out.push_back(static_cast<char>(flags));
  put_varint(&out, rec.stamp);
  if (rec.origin) put_varint(&out, *rec.origin);
  if (rec.redirect) {
    put_varint(&out, rec.redirect->size());
    out.append(*rec.redirect);
  }
  seal(&out);
  return out;
}

Result<ObjectRecord> decode_object(std::string_view in) {
  LFS_ASSIGN(std::string_view body, unseal(in, kTagObject));
  if (body.empty()) return corrupt();
  auto flags = static_cast<uint8_t>(body[0]);
  body.remove_prefix(1);
  if ((flags & ~kKnownObjectFlags) != 0) return corrupt();
  ObjectRecord rec;
  LFS_ASSIGN(rec.stamp, get_varint(&body));
  if (flags & kFlagOrigin) {
    LFS_ASSIGN(uint64_t origin, get_varint(&body));
    rec.origin = origin;
  }
  rec.opaque = (flags & kFlagOpaque) != 0;
  if (flags & kFlagRedirect) {
    LFS_ASSIGN(uint64_t len, get_varint(&body));
    if (len > body.size()) return corrupt();
    rec.redirect = std::string(body.substr(0, len));
    body.remove_prefix(len);
  }
  if (!body.empty()) return corrupt();
  return rec;
}

std::string encode_link_group(const LinkGroup& group) {
  std::string out;
  out.push_back(static_cast<char>(kTagLinkGroup));
  put_varint(&out, group.upper_ino);
  put_varint(&out, group.links);
  seal(&out);
  return out;
}

Result<LinkGroup> decode_link_group(std::string_view in) {
  LFS_ASSIGN(std::string_view body, unseal(in, kTagLinkGroup));
  LinkGroup group;
  LFS_ASSIGN(group.upper_ino, get_varint(&body));
  LFS_ASSIGN(uint64_t links, get_varint(&body));
  if (links > std::numeric_limits<uint32_t>::max()) return corrupt();
  group.links = static_cast<uint32_t>(links);
  if (!body.empty()) return corrupt();
  return group;
}

std::string encode_number(uint64_t n) {
  std::string out;
  out.push_back(static_cast<char>(kTagNumber));
  put_varint(&out, n);
  seal(&out);
  return out;
}

Result<uint64_t> decode_number(std::string_view in) {
  LFS_ASSIGN(std::string_view body, unseal(in, kTagNumber));
  LFS_ASSIGN(uint64_t n, get_varint(&body));
  if (!body.empty()) return corrupt();
  return n;
}

}  // namespace layerfs::metadata::records
