// Extended attributes by path: listing and reading with buffers that grow as
// needed, the private-name filter, and the copy used by copy-up.
#include "fs/xattr.h"

#include <sys/xattr.h>
#include <unistd.h>

#include <algorithm>

#include "fs/log.h"

namespace layerfs {
namespace {

constexpr size_t kFirstListBuffer = 4096;
constexpr size_t kFirstValueBuffer = 1024;

constexpr std::string_view kPrivatePrefixes[] = {
    "trusted.overlay.",       "user.overlay.",    "user.fuseoverlayfs.",
    "trusted.fuseoverlayfs.", "trusted.layerfs.", "user.layerfs.",
};

// Runs one xattr call, retried on EINTR (possible when the object lives on a
// FUSE or network filesystem).
template <class Call>
Result<size_t> xattr_call(Call call) {
  for (;;) {
    ssize_t n = call();
    if (n >= 0) return static_cast<size_t>(n);
    Error e = errno_error();
    if (e.code != EINTR) return e;
  }
}

// Fills a buffer through `fill(buf, size)`, a listxattr/getxattr-style call.
// The attribute can change between asking for its size and reading it, so
// ERANGE sends us round again; the buffer at least doubles each time, which
// ends the loop because the kernel caps sizes at 64 KiB.
template <class Fill>
Result<std::string> read_growing(size_t first_buffer, Fill fill) {
  std::string buf(std::max<size_t>(first_buffer, 1), '\0');
  for (;;) {
    Result<size_t> got = xattr_call([&] { return fill(buf.data(), buf.size()); });
    if (got.ok()) {
      buf.resize(*got);
      return buf;
    }
    if (got.error() != ERANGE) return Error{got.error()};
    LFS_ASSIGN(size_t needed, xattr_call([&] { return fill(nullptr, 0); }));
    buf.assign(std::max(needed, buf.size() * 2), '\0');
  }
}

bool skippable_set_error(int code, const std::string& name) {
  if (code == EOPNOTSUPP || code == ENOTSUP) return true;
  if (code == EPERM && ::geteuid() != 0) {
    std::string_view n(name);
    return n.starts_with("trusted.") || n.starts_with("security.");
  }
  return false;
}

}  // namespace

bool is_private_xattr(std::string_view name) {
  for (std::string_view prefix : kPrivatePrefixes) {
    if (name.starts_with(prefix)) return true;
  }
  return false;
}

Result<std::vector<std::string>> list_xattrs_sized(const std::string& path, bool follow,
                                                   size_t first_buffer) {
  LFS_ASSIGN(std::string raw, read_growing(first_buffer, [&](char* buf, size_t size) {
               return follow ? ::listxattr(path.c_str(), buf, size)
                             : ::llistxattr(path.c_str(), buf, size);
             }));
  // The list is a run of NUL-terminated names.
  std::vector<std::string> names;
  size_t pos = 0;
  while (pos < raw.size()) {
    size_t end = raw.find('\0', pos);
    if (end == std::string::npos) end = raw.size();
    if (end > pos) names.emplace_back(raw, pos, end - pos);
    pos = end + 1;
  }
  return names;
}

Result<std::vector<std::string>> list_xattrs(const std::string& path, bool follow) {
  return list_xattrs_sized(path, follow, kFirstListBuffer);
}

Result<std::string> get_xattr_sized(const std::string& path, const std::string& name, bool follow,
                                    size_t first_buffer) {
  return read_growing(first_buffer, [&](char* buf, size_t size) {
    return follow ? ::getxattr(path.c_str(), name.c_str(), buf, size)
                  : ::lgetxattr(path.c_str(), name.c_str(), buf, size);
  });
}

Result<std::string> get_xattr(const std::string& path, const std::string& name, bool follow) {
  return get_xattr_sized(path, name, follow, kFirstValueBuffer);
}

Result<void> copy_xattrs(const std::string& src, bool src_follow, const std::string& dst,
                         bool dst_follow) {
  LFS_TRY(copy_xattrs_keeping(src, src_follow, dst, dst_follow, {}));
  return success();
}

Result<std::optional<std::string>> copy_xattrs_keeping(const std::string& src, bool src_follow,
                                                       const std::string& dst, bool dst_follow,
                                                       std::string_view wanted) {
  std::optional<std::string> kept;
  LFS_ASSIGN(std::vector<std::string> names, list_xattrs(src, src_follow));
  for (const std::string& name : names) {
    if (is_private_xattr(name)) continue;
    Result<std::string> value = get_xattr(src, name, src_follow);
    if (!value.ok()) {
      if (value.error() == ENODATA) continue;  // removed since the listing
      return Error{value.error()};
    }
    if (!wanted.empty() && name == wanted) kept = *value;
    Result<size_t> set = xattr_call([&]() -> ssize_t {
      return dst_follow ? ::setxattr(dst.c_str(), name.c_str(), value->data(), value->size(), 0)
                        : ::lsetxattr(dst.c_str(), name.c_str(), value->data(), value->size(), 0);
    });
    if (set.ok()) continue;
    if (!skippable_set_error(set.error(), name)) return Error{set.error()};
    LFS_LOG_DEBUG("copy_xattrs: %s not copied to %s (errno %d)", name.c_str(), dst.c_str(),
                  set.error());
  }
  return kept;
}

}  // namespace layerfs
