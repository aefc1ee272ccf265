// Copy-up data movement: a reflink when the filesystem can share extents,
// otherwise copy_file_range, otherwise pread/pwrite; the last two visit only
// the source's data segments so that sparse files stay sparse.
#include "fs/copy_data.h"

#include <fcntl.h>
#include <linux/fs.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <memory>
#include <optional>

namespace layerfs {
namespace {

constexpr size_t kBufferSize = size_t{1} << 20;
// One copy_file_range call is capped so its result always fits in ssize_t and
// a long copy returns now and then (a signal can then interrupt it cleanly).
constexpr uint64_t kMaxCopyChunk = uint64_t{1} << 30;

// FICLONE failures that only mean "not possible here": another filesystem,
// no reflink support, or fds this ioctl will not take. The rungs below either
// work or report the real problem.
bool clone_impossible(int e) {
  return e == EOPNOTSUPP || e == ENOTSUP || e == ENOTTY || e == EXDEV || e == EINVAL ||
         e == EBADF || e == ENOSYS;
}

// The subset of those that is about the two filesystems, not about one file
// (btrfs answers EINVAL for a nodatacow file next to ordinary ones).
bool clone_never(int e) {
  return e == EOPNOTSUPP || e == ENOTSUP || e == ENOTTY || e == EXDEV || e == ENOSYS;
}

// copy_file_range failures after which pread/pwrite can still do the job.
bool copy_range_impossible(int e) {
  return e == EXDEV || e == EINVAL || e == EOPNOTSUPP || e == ENOTSUP || e == ENOSYS;
}

struct Segment {
  uint64_t begin;
  uint64_t end;
};

class DataCopier {
 public:
  DataCopier(int src, int dst) : src_(src), dst_(dst) {}

  // Copies the data segments of [0, length). Stops early at the source's EOF.
  // Returns true if data was written up to `length` (the destination, if it
  // started empty, then has that size already).
  Result<bool> copy_segments(uint64_t length) {
    uint64_t offset = 0;
    bool reached = false;
    while (offset < length) {
      LFS_ASSIGN(std::optional<Segment> seg, next_segment(offset, length));
      if (!seg) break;
      LFS_ASSIGN(bool hit_eof, copy_range(seg->begin, seg->end));
      if (hit_eof) break;
      offset = seg->end;
      reached = offset == length;
    }
    return reached;
  }

  // Copies [0, length) as one data segment, for a source known to have no
  // holes. Same result as copy_segments.
  Result<bool> copy_dense(uint64_t length) {
    LFS_ASSIGN(bool hit_eof, copy_range(0, length));
    return !hit_eof;
  }

  CopyStats stats() const {
    return CopyStats{use_copy_range_ ? CopyMethod::kCopyFileRange : CopyMethod::kReadWrite,
                     bytes_copied_};
  }

 private:
  // The next data segment starting at or after `offset`, clipped to `limit`;
  // nullopt when no data is left (including when the source shrank below
  // `offset`, which makes lseek fail with ENXIO).
  Result<std::optional<Segment>> next_segment(uint64_t offset, uint64_t limit) {
    if (!seek_data_works_) return std::optional<Segment>(Segment{offset, limit});
    off_t data = ::lseek(src_, static_cast<off_t>(offset), SEEK_DATA);
    if (data < 0) {
      Error e = errno_error();
      if (e.code == ENXIO) return std::optional<Segment>();
      if (e.code != EINVAL) return e;
      // The filesystem does not know SEEK_DATA: everything is data.
      seek_data_works_ = false;
      return std::optional<Segment>(Segment{offset, limit});
    }
    if (static_cast<uint64_t>(data) >= limit) return std::optional<Segment>();
    off_t hole = ::lseek(src_, data, SEEK_HOLE);
    if (hole < 0) {
      Error e = errno_error();
      if (e.code == ENXIO) return std::optional<Segment>();
      return e;
    }
    uint64_t end = std::min(static_cast<uint64_t>(hole), limit);
    if (end <= static_cast<uint64_t>(data)) return std::optional<Segment>();
    return std::optional<Segment>(Segment{static_cast<uint64_t>(data), end});
  }

  // Copies [pos, end) to the same offsets. Returns true if the source ended
  // before `end`.
  Result<bool> copy_range(uint64_t pos, uint64_t end) {
    while (pos < end) {
      uint64_t n = 0;
      if (use_copy_range_) {
        loff_t in = static_cast<loff_t>(pos);
        loff_t out = static_cast<loff_t>(pos);
        size_t want = static_cast<size_t>(std::min(end - pos, kMaxCopyChunk));
        ssize_t rv = ::copy_file_range(src_, &in, dst_, &out, want, 0);
        if (rv < 0) {
          Error e = errno_error();
          if (e.code == EINTR) continue;
          if (!copy_range_impossible(e.code)) return e;
          use_copy_range_ = false;  // for this range's remainder and all later ones
          continue;
        }
        if (rv == 0) {
          // 0 means EOF, but a few filesystems also answer 0 for data they
          // cannot copy this way; only the size tells the two apart.
          struct stat st;
          if (::fstat(src_, &st) < 0) return errno_error();
          if (pos >= static_cast<uint64_t>(st.st_size)) return true;
          use_copy_range_ = false;
          continue;
        }
        n = static_cast<uint64_t>(rv);
      } else {
        LFS_ASSIGN(n, read_write(pos, end));
        if (n == 0) return true;
      }
      pos += n;
      bytes_copied_ += n;
    }
    return false;
  }

  // Moves up to one buffer from `pos`; returns the bytes moved, 0 at EOF.
  Result<uint64_t> read_write(uint64_t pos, uint64_t end) {
    if (!buffer_) buffer_ = std::make_unique<char[]>(kBufferSize);
    size_t want = static_cast<size_t>(std::min<uint64_t>(end - pos, kBufferSize));
    ssize_t got;
    for (;;) {
      got = ::pread(src_, buffer_.get(), want, static_cast<off_t>(pos));
      if (got >= 0) break;
      Error e = errno_error();
      if (e.code != EINTR) return e;
    }
    size_t done = 0;
    while (done < static_cast<size_t>(got)) {
      ssize_t w = ::pwrite(dst_, buffer_.get() + done, static_cast<size_t>(got) - done,
                           static_cast<off_t>(pos + done));
      if (w < 0) {
        Error e = errno_error();
        if (e.code == EINTR) continue;
        return e;
      }
      // pwrite makes no progress only when it cannot store anything.
      if (w == 0) return Error{ENOSPC};
      done += static_cast<size_t>(w);
    }
    return static_cast<uint64_t>(got);
  }

  int src_;
  int dst_;
  bool use_copy_range_ = true;
  bool seek_data_works_ = true;
  uint64_t bytes_copied_ = 0;
  std::unique_ptr<char[]> buffer_;
};

Result<void> truncate_to(int fd, uint64_t length) {
  for (;;) {
    if (::ftruncate(fd, static_cast<off_t>(length)) == 0) return success();
    Error e = errno_error();
    if (e.code != EINTR) return e;
  }
}

// Shares the source's extents with the destination. nullopt when the
// filesystem cannot; the destination is then still untouched.
Result<std::optional<uint64_t>> try_clone(int src_fd, int dst_fd,
                                          std::atomic<bool>* clone_possible) {
  if (clone_possible && !clone_possible->load(std::memory_order_relaxed)) {
    return std::optional<uint64_t>();
  }
  for (;;) {
    if (::ioctl(dst_fd, FICLONE, src_fd) == 0) break;
    Error e = errno_error();
    if (e.code == EINTR) continue;
    if (clone_impossible(e.code)) {
      if (clone_possible && clone_never(e.code)) {
        clone_possible->store(false, std::memory_order_relaxed);
      }
      return std::optional<uint64_t>();
    }
    return e;
  }
  // The clone took the whole source as it was at that instant; the
  // destination's size is that length (before it is cut to `length`).
  struct stat st;
  if (::fstat(dst_fd, &st) < 0) return errno_error();
  return std::optional<uint64_t>(static_cast<uint64_t>(st.st_size));
}

}  // namespace

Result<CopyStats> copy_file_data(int src_fd, int dst_fd, uint64_t length) {
  return copy_file_data(src_fd, dst_fd, length, CopyHints{});
}

Result<CopyStats> copy_file_data(int src_fd, int dst_fd, uint64_t length, const CopyHints& hints) {
  if (length > static_cast<uint64_t>(INT64_MAX)) return Error{EFBIG};
  if (!hints.dst_fresh) {
    LFS_ASSIGN(int dst_flags, check_sys(::fcntl(dst_fd, F_GETFL)));
    if (dst_flags & O_APPEND) return Error{EBADF};
  }

  LFS_ASSIGN(std::optional<uint64_t> cloned, try_clone(src_fd, dst_fd, hints.clone_possible));
  if (cloned) {
    // A clone is whole-file; cutting it back is cheap (shared extents) and
    // also makes the tail a hole when the source was shorter than `length`.
    if (*cloned != length) LFS_TRY(truncate_to(dst_fd, length));
    return CopyStats{CopyMethod::kClone, std::min(*cloned, length)};
  }

  DataCopier copier(src_fd, dst_fd);
  const struct stat* st = hints.src_stat;
  const bool dense = st && S_ISREG(st->st_mode) && st->st_size > 0 &&
                     static_cast<uint64_t>(st->st_size) <= kDenseCopyMax &&
                     length <= static_cast<uint64_t>(st->st_size) &&
                     static_cast<uint64_t>(st->st_blocks) * 512 >=
                         static_cast<uint64_t>(st->st_size);
  LFS_ASSIGN(bool reached, dense ? copier.copy_dense(length) : copier.copy_segments(length));
  // Trailing holes (and a source that ended early) leave the destination
  // short; extending it creates the hole rather than writing zeros. A fresh
  // destination that the data already fills to `length` needs nothing.
  if (!(hints.dst_fresh && reached)) LFS_TRY(truncate_to(dst_fd, length));
  return copier.stats();
}

Result<void> fsync_fd(int fd) {
  for (;;) {
    if (::fsync(fd) == 0) return success();
    Error e = errno_error();
    if (e.code != EINTR) return e;
  }
}

}  // namespace layerfs
