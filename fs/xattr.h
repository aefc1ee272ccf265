// Extended attributes: which names are private to union filesystems (never
// shown through the mount, never copied up), and copying the others.
//
// Objects are named by a path that the caller builds from an fd:
// "/proc/self/fd/N" for an fd of the object itself (following that magic link
// reaches the object, even a symlink, and nothing further), or
// "/proc/self/fd/N/name" for entry `name` of directory fd N (then `follow` must
// be false so a symlink is not followed).
#pragma once

#include <cstddef>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "fs/result.h"

namespace layerfs {

// True for the names other union filesystems keep their metadata in and that
// layerfs therefore hides: "trusted.overlay.*", "user.overlay.*",
// "user.fuseoverlayfs.*", "trusted.fuseoverlayfs.*" and layerfs's own
// "trusted.layerfs.*" / "user.layerfs.*".
bool is_private_xattr(std::string_view name);

// All names (private ones included) of the object at `path`.
Result<std::vector<std::string>> list_xattrs(const std::string& path, bool follow);
// Value of one attribute (ENODATA when absent).
Result<std::string> get_xattr(const std::string& path, const std::string& name, bool follow);

// As above, but starting from a buffer of `first_buffer` bytes; too small a
// buffer is grown on ERANGE. The plain versions pick a size that fits nearly
// every attribute; these exist so that tests can force the growth path.
Result<std::vector<std::string>> list_xattrs_sized(const std::string& path, bool follow,
                                                   size_t first_buffer);
Result<std::string> get_xattr_sized(const std::string& path, const std::string& name, bool follow,
                                    size_t first_buffer);

// Copies every non-private attribute of `src` to `dst`. Attributes the
// destination filesystem does not support (EOPNOTSUPP, ENOTSUP) and, unless
// running as root, "trusted.*" ones (EPERM) are skipped; any other failure is
// returned. Values are copied exactly, including empty values.
// "security.*" names refused with EPERM are skipped too when not root (setting
// security.capability needs CAP_SETFCAP), and a name that disappears from
// `src` between listing and reading (ENODATA) is skipped.
Result<void> copy_xattrs(const std::string& src, bool src_follow, const std::string& dst,
                         bool dst_follow);

// As copy_xattrs, and also hands back the value `src` has for `wanted`
// (nullopt when it has none), read in the same pass: copy-up needs
// security.capability again after chown, and asking for it separately costs a
// system call per copied file that nearly always answers ENODATA.
Result<std::optional<std::string>> copy_xattrs_keeping(const std::string& src, bool src_follow,
                                                       const std::string& dst, bool dst_follow,
                                                       std::string_view wanted);

}  // namespace layerfs
