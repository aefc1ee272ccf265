#include "fs/sys.h"

#include <dirent.h>
#include <sys/ioctl.h>
#include <sys/syscall.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#include <cstring>
#include <vector>

namespace layerfs::sys {

std::string fd_path(int fd) { return "/proc/self/fd/" + std::to_string(fd); }

std::string fd_path(int dirfd, std::string_view name) {
  std::string p = fd_path(dirfd);
  p += '/';
  p += name;
  return p;
}

Result<UniqueFd> open_at(int dirfd, const std::string& name, int flags, mode_t mode) {
  int fd;
  do {
    fd = ::openat(dirfd, name.c_str(), flags | O_CLOEXEC, mode);
  } while (fd < 0 && errno == EINTR);
  if (fd < 0) return errno_error();
  return UniqueFd(fd);
}

Result<UniqueFd> open_at_noatime(int dirfd, const std::string& name, int flags) {
  auto fd = open_at(dirfd, name, flags | O_NOATIME);
  if (!fd.ok() && fd.error() == EPERM) return open_at(dirfd, name, flags);
  return fd;
}

Result<UniqueFd> reopen(int fd, int flags) {
  // O_NOFOLLOW would refuse the magic link itself.
  flags &= ~(O_NOFOLLOW | O_CREAT | O_EXCL | O_NOCTTY);
  int nfd;
  do {
    nfd = ::open(fd_path(fd).c_str(), flags | O_CLOEXEC);
  } while (nfd < 0 && errno == EINTR);
  if (nfd < 0) return errno_error();
  return UniqueFd(nfd);
}

Result<struct stat> stat_at(int dirfd, const std::string& name) {
  struct stat st;
  int flags = AT_SYMLINK_NOFOLLOW | (name.empty() ? AT_EMPTY_PATH : 0);
  if (::fstatat(dirfd, name.c_str(), &st, flags) < 0) return errno_error();
  return st;
}

Result<std::optional<struct stat>> stat_if_exists(int dirfd, const std::string& name) {
  struct stat st;
  int flags = AT_SYMLINK_NOFOLLOW | (name.empty() ? AT_EMPTY_PATH : 0);
  if (::fstatat(dirfd, name.c_str(), &st, flags) < 0) {
    if (errno == ENOENT) return std::optional<struct stat>();
    return errno_error();
  }
  return std::optional<struct stat>(st);
}

Result<struct statx> statx_at(int dirfd, const std::string& name, unsigned mask) {
  struct statx stx;
  int flags = AT_SYMLINK_NOFOLLOW | AT_STATX_SYNC_AS_STAT | (name.empty() ? AT_EMPTY_PATH : 0);
  if (::statx(dirfd, name.c_str(), flags, mask, &stx) < 0) return errno_error();
  return stx;
}

Result<std::string> read_link_at(int dirfd, const std::string& name) {
  std::vector<char> buf(256);
  for (;;) {
    ssize_t n = ::readlinkat(dirfd, name.c_str(), buf.data(), buf.size());
    if (n < 0) return errno_error();
    if (static_cast<size_t>(n) < buf.size()) return std::string(buf.data(), n);
    if (buf.size() >= (1u << 20)) return Error{ENAMETOOLONG};
    buf.resize(buf.size() * 4);
  }
}

namespace {
struct linux_dirent64 {
  uint64_t d_ino;
  int64_t d_off;
  unsigned short d_reclen;
  unsigned char d_type;
  char d_name[];
};
}  // namespace

Result<void> read_dir_raw(int dirfd, void (*cb)(void*, const char*, uint64_t, unsigned char),
                          void* ctx, bool noatime) {
  // Our own fd and offset, so that concurrent readers never share a position.
  LFS_ASSIGN(UniqueFd fd, noatime ? open_at_noatime(dirfd, ".", O_RDONLY | O_DIRECTORY)
                                  : open_at(dirfd, ".", O_RDONLY | O_DIRECTORY));
  alignas(linux_dirent64) char buf[32768];
  for (;;) {
    long n = ::syscall(SYS_getdents64, fd.get(), buf, sizeof buf);
    if (n < 0) {
      if (errno == EINTR) continue;
      return errno_error();
    }
    if (n == 0) break;
    for (long off = 0; off < n;) {
      auto* d = reinterpret_cast<linux_dirent64*>(buf + off);
      off += d->d_reclen;
      const char* nm = d->d_name;
      if (nm[0] == '.' && (nm[1] == 0 || (nm[1] == '.' && nm[2] == 0))) continue;
      cb(ctx, nm, d->d_ino, d->d_type);
    }
  }
  return {};
}

uint64_t birth_stamp(const struct statx& stx) {
  if (!(stx.stx_mask & STATX_BTIME)) return 0;
  uint64_t s = static_cast<uint64_t>(stx.stx_btime.tv_sec) * 1000000000ull + stx.stx_btime.tv_nsec;
  return s == 0 ? 1 : s;
}

struct stat to_stat(const struct statx& x) {
  struct stat st;
  memset(&st, 0, sizeof st);
  st.st_dev = makedev(x.stx_dev_major, x.stx_dev_minor);
  st.st_ino = x.stx_ino;
  st.st_mode = x.stx_mode;
  st.st_nlink = x.stx_nlink;
  st.st_uid = x.stx_uid;
  st.st_gid = x.stx_gid;
  st.st_rdev = makedev(x.stx_rdev_major, x.stx_rdev_minor);
  st.st_size = static_cast<off_t>(x.stx_size);
  st.st_blksize = x.stx_blksize;
  st.st_blocks = static_cast<blkcnt_t>(x.stx_blocks);
  st.st_atim.tv_sec = x.stx_atime.tv_sec;
  st.st_atim.tv_nsec = x.stx_atime.tv_nsec;
  st.st_mtim.tv_sec = x.stx_mtime.tv_sec;
  st.st_mtim.tv_nsec = x.stx_mtime.tv_nsec;
  st.st_ctim.tv_sec = x.stx_ctime.tv_sec;
  st.st_ctim.tv_nsec = x.stx_ctime.tv_nsec;
  return st;
}

Result<void> set_times(int fd, const struct timespec times[2]) {
  // Through the magic link, so that O_PATH fds and symlinks work alike.
  if (::utimensat(AT_FDCWD, fd_path(fd).c_str(), times, 0) < 0) return errno_error();
  return {};
}

namespace {

// From the kernel's uapi linux/fuse.h (7.40); Debian 12's headers predate it.
struct FuseBackingMap {
  int32_t fd;
  uint32_t flags;
  uint64_t padding;
};
constexpr unsigned kFuseDevIocMagic = 229;
constexpr unsigned long kFuseDevIocBackingOpen = _IOW(kFuseDevIocMagic, 1, FuseBackingMap);
constexpr unsigned long kFuseDevIocBackingClose = _IOW(kFuseDevIocMagic, 2, uint32_t);

}  // namespace

Result<int> fuse_backing_open(int dev_fd, int fd) {
  FuseBackingMap map{};
  map.fd = fd;
  int id = ::ioctl(dev_fd, kFuseDevIocBackingOpen, &map);
  if (id < 0) return errno_error();
  // Id 0 is never handed out; the kernel counts from 1.
  if (id == 0) return Error{EIO};
  return id;
}

void fuse_backing_close(int dev_fd, int id) {
  uint32_t arg = static_cast<uint32_t>(id);
  (void)::ioctl(dev_fd, kFuseDevIocBackingClose, &arg);
}

}  // namespace layerfs::sys
