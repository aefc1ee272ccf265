#include "fs/passthrough.h"

#include <fcntl.h>
#include <sys/uio.h>
#include <unistd.h>

#include <atomic>
#include <cstdint>
#include <cstring>

#include "fs/log.h"

namespace layerfs::passthrough {
namespace {

// From the kernel's uapi linux/fuse.h (protocol 7.40); Debian 12's copy and
// libfuse 3.14's predate passthrough.
constexpr uint32_t kOpInit = 26;
constexpr uint32_t kInitExt = 1u << 30;         // flags: flags2 is meaningful
constexpr uint32_t kWritebackCache = 1u << 16;  // flags: excludes passthrough
constexpr uint32_t kPassthrough2 = 1u << 5;     // flags2: FUSE_PASSTHROUGH (bit 37)
constexpr uint32_t kOpenPassthrough = 1u << 7;  // fuse_open_out.open_flags

// Offsets in the messages (all fields little-endian, as the host).
constexpr size_t kInHeader = 40;     // struct fuse_in_header
constexpr size_t kOutHeader = 16;    // struct fuse_out_header {len, error, unique}
constexpr size_t kInitInFlags = 12;  // fuse_init_in: major, minor, max_readahead, flags
constexpr size_t kInitInFlags2 = 16;
constexpr size_t kInitOutFlags = 12;  // fuse_init_out: same first four fields
constexpr size_t kInitOutFlags2 = 32;
constexpr size_t kInitOutStackDepth = 36;
constexpr size_t kOpenOut = 16;    // fuse_open_out {fh, open_flags, backing_id}
constexpr size_t kEntryOut = 128;  // fuse_entry_out, before fuse_open_out in CREATE's

bool g_wanted = false;
int g_dev = -1;
void (*g_on_enabled)(int, void*) = nullptr;
void* g_on_enabled_arg = nullptr;
// The unique of an INIT request that offered passthrough, until its answer.
std::atomic<uint64_t> g_init_unique{0};

thread_local int t_backing_id = -1;

uint32_t load32(const void* p, size_t off) {
  uint32_t v;
  std::memcpy(&v, static_cast<const char*>(p) + off, sizeof v);
  return v;
}
void store32(void* p, size_t off, uint32_t v) {
  std::memcpy(static_cast<char*>(p) + off, &v, sizeof v);
}

ssize_t hooked_read(int fd, void* buf, size_t len, void*) {
  ssize_t n = ::read(fd, buf, len);
  if (n >= static_cast<ssize_t>(kInHeader + kInitInFlags2 + 4) && load32(buf, 4) == kOpInit) {
    const char* in = static_cast<const char*>(buf) + kInHeader;
    uint32_t flags = load32(in, kInitInFlags);
    uint32_t flags2 = load32(in, kInitInFlags2);
    if (g_wanted && (flags & kInitExt) && (flags2 & kPassthrough2)) {
      uint64_t unique;
      std::memcpy(&unique, static_cast<const char*>(buf) + 8, sizeof unique);
      g_init_unique.store(unique);
    }
  }
  return n;
}

// Sends `iov` with its last element replaced by `last` (a patched copy).
ssize_t writev_with_last(int fd, struct iovec* iov, int count, void* last, size_t last_len) {
  struct iovec copy[8];
  if (count > 8) return ::writev(fd, iov, count);
  for (int i = 0; i < count; ++i) copy[i] = iov[i];
  copy[count - 1].iov_base = last;
  copy[count - 1].iov_len = last_len;
  return ::writev(fd, copy, count);
}

ssize_t hooked_writev(int fd, struct iovec* iov, int count, void*) {
  const uint64_t init_unique = g_init_unique.load(std::memory_order_relaxed);
  if ((t_backing_id < 0 && init_unique == 0) || count < 2 || iov[0].iov_len < kOutHeader) {
    return ::writev(fd, iov, count);
  }
  uint32_t len = load32(iov[0].iov_base, 0);
  int32_t error = static_cast<int32_t>(load32(iov[0].iov_base, 4));
  uint64_t unique;
  std::memcpy(&unique, static_cast<const char*>(iov[0].iov_base) + 8, sizeof unique);
  if (unique == 0) return ::writev(fd, iov, count);  // a notification
  struct iovec& last = iov[count - 1];

  if (init_unique != 0 && unique == init_unique) {
    g_init_unique.store(0);
    if (error != 0 || count != 2 || last.iov_len < kInitOutStackDepth + 4 || last.iov_len > 256) {
      return ::writev(fd, iov, count);
    }
    char out[256];
    std::memcpy(out, last.iov_base, last.iov_len);
    uint32_t flags = load32(out, kInitOutFlags);
    if (flags & kWritebackCache) return ::writev(fd, iov, count);
    store32(out, kInitOutFlags, flags | kInitExt);
    store32(out, kInitOutFlags2, load32(out, kInitOutFlags2) | kPassthrough2);
    // Backing files may live on a filesystem that is not itself stacked;
    // this mount then counts as one level of stacking (so kernel overlayfs
    // can still use it as a layer).
    store32(out, kInitOutStackDepth, 1);
    if (g_on_enabled) g_on_enabled(g_dev, g_on_enabled_arg);
    LFS_LOG_INFO("FUSE passthrough offered by the kernel and accepted");
    return writev_with_last(fd, iov, count, out, last.iov_len);
  }

  const int backing_id = t_backing_id;
  if (backing_id < 0) return ::writev(fd, iov, count);
  t_backing_id = -1;  // one answer only, whatever it is
  const size_t payload = len - kOutHeader;
  if (error != 0 || (payload != kOpenOut && payload != kEntryOut + kOpenOut) ||
      last.iov_len < kOpenOut || last.iov_len > 256) {
    return ::writev(fd, iov, count);
  }
  char out[256];
  std::memcpy(out, last.iov_base, last.iov_len);
  const size_t open_out = last.iov_len - kOpenOut;
  store32(out, open_out + 8, load32(out, open_out + 8) | kOpenPassthrough);
  store32(out, open_out + 12, static_cast<uint32_t>(backing_id));
  return writev_with_last(fd, iov, count, out, last.iov_len);
}

ssize_t hooked_splice_send(int fdin, off_t* offin, int fdout, off_t* offout, size_t len,
                           unsigned int flags, void*) {
  static_assert(sizeof(off_t) == sizeof(loff_t));
  return ::splice(fdin, reinterpret_cast<loff_t*>(offin), fdout, reinterpret_cast<loff_t*>(offout),
                  len, flags);
}

}  // namespace

void on_enabled(void (*fn)(int dev_fd, void* arg), void* arg) {
  g_on_enabled = fn;
  g_on_enabled_arg = arg;
}

bool hook(fuse_session* se, bool wanted) {
  const int fd = fuse_session_fd(se);
  if (fd < 0) return false;
  g_wanted = wanted;
  g_dev = fd;
  struct fuse_custom_io io;
  std::memset(&io, 0, sizeof io);
  io.read = hooked_read;
  io.writev = hooked_writev;
  io.splice_send = hooked_splice_send;  // replies with file data stay spliced
  return fuse_session_custom_io(se, &io, fd) == 0;
}

void mark_open_reply(int backing_id) {
  t_backing_id = backing_id;
}
void clear_open_reply() {
  t_backing_id = -1;
}

}  // namespace layerfs::passthrough
