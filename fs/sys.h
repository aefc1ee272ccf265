// Thin wrappers over the syscalls the core uses, returning Result and always
// relative to an fd. Every open adds O_CLOEXEC; callers pass O_NOFOLLOW where
// a symlink must not be followed (always, for names inside a layer).
#pragma once

#include <fcntl.h>
#include <sys/stat.h>

#include <optional>
#include <string>
#include <string_view>

#include "fs/result.h"
#include "fs/unique_fd.h"

namespace layerfs::sys {

// "/proc/self/fd/N": following it reaches the object fd refers to (a symlink
// itself for an O_PATH|O_NOFOLLOW fd) and nothing further.
std::string fd_path(int fd);
// "/proc/self/fd/N/name": entry `name` of directory fd N. Use with the
// no-follow variants (l*xattr, AT_SYMLINK_NOFOLLOW).
std::string fd_path(int dirfd, std::string_view name);

Result<UniqueFd> open_at(int dirfd, const std::string& name, int flags, mode_t mode = 0);
// open_at with O_NOATIME, for files of lower layers (which layerfs never
// changes, access times included). Falls back to a plain open where the
// daemon may not use O_NOATIME (EPERM: not the owner, not root).
Result<UniqueFd> open_at_noatime(int dirfd, const std::string& name, int flags);
// Opens the object of `fd` (often an O_PATH fd) again with `flags`.
Result<UniqueFd> reopen(int fd, int flags);

// lstat of `name` in `dirfd`; "" means dirfd itself.
Result<struct stat> stat_at(int dirfd, const std::string& name);
// Same, with ENOENT turned into an empty optional.
Result<std::optional<struct stat>> stat_if_exists(int dirfd, const std::string& name);
// statx with AT_SYMLINK_NOFOLLOW; "" means dirfd itself.
Result<struct statx> statx_at(int dirfd, const std::string& name, unsigned mask);

Result<std::string> read_link_at(int dirfd, const std::string& name);

// Reads a whole directory (fd borrowed, any kind of fd for the directory).
struct RawDirent {
  std::string name;
  uint64_t ino;
  unsigned char type;  // DT_*
};
// With `noatime`, reading does not change the directory's access time (for
// lower layers).
template <class Fn>  // Fn(const RawDirent&) -> void
Result<void> for_each_dirent(int dirfd, Fn&& fn, bool noatime = false);
Result<void> read_dir_raw(int dirfd, void (*cb)(void*, const char*, uint64_t, unsigned char),
                          void* ctx, bool noatime);

// Birth stamp of an object (see metadata/index.h): btime in nanoseconds, or 0
// when the filesystem does not report it.
uint64_t birth_stamp(const struct statx& stx);

// statx -> stat.
struct stat to_stat(const struct statx& stx);

// Sets atime/mtime of the object of fd `fd` (any fd, O_PATH included).
Result<void> set_times(int fd, const struct timespec times[2]);

// FUSE passthrough (Linux 6.9+; fs/passthrough.h): registers the open file
// `fd` as a backing file of the FUSE connection of `dev_fd` (/dev/fuse) and
// returns its backing id; EPERM without CAP_SYS_ADMIN or when the connection
// did not negotiate passthrough, ELOOP when `fd` is itself on a stacked
// filesystem.
Result<int> fuse_backing_open(int dev_fd, int fd);
// Drops the registration (files already opened with it keep their backing).
void fuse_backing_close(int dev_fd, int id);

}  // namespace layerfs::sys

namespace layerfs::sys {
template <class Fn>
Result<void> for_each_dirent(int dirfd, Fn&& fn, bool noatime) {
  struct Ctx {
    Fn* fn;
  } ctx{&fn};
  return read_dir_raw(
      dirfd,
      [](void* c, const char* name, uint64_t ino, unsigned char type) {
        (*static_cast<Ctx*>(c)->fn)(RawDirent{name, ino, type});
      },
      &ctx, noatime);
}
}  // namespace layerfs::sys
