// Copying file data for copy-up: FICLONE (a reflink) when the filesystem can,
// else copy_file_range over the data segments only (SEEK_DATA / SEEK_HOLE), so
// holes stay holes; pread/pwrite is the last resort, never a byte loop.
#pragma once

#include <sys/stat.h>

#include <atomic>
#include <cstdint>

#include "fs/result.h"

namespace layerfs {

enum class CopyMethod { kNone, kClone, kCopyFileRange, kReadWrite };

struct CopyStats {
  CopyMethod method = CopyMethod::kNone;  // the method that finished the copy
  uint64_t bytes_copied = 0;              // data bytes moved (holes not counted)
};

// Copies the first `length` bytes of `src_fd` (open for reading, a regular
// file) into `dst_fd` (open for writing, an empty regular file) at the same
// offsets; `dst_fd` ends with size `length` and holes where `src_fd` has them
// (as far as the destination filesystem keeps holes). Both fds are borrowed.
// Retries on EINTR and short transfers. Returns the first real error.
//
// If `src_fd` ends before `length` (it shrank, or was shorter to begin with),
// copying stops at its end and the rest of `dst_fd` is a hole. The file
// offset of `src_fd` is moved (SEEK_DATA / SEEK_HOLE); the data itself is
// copied with explicit offsets. A `dst_fd` opened with O_APPEND is refused
// (EBADF), since positional writes would land at the end. `method` is kClone
// when a reflink did the whole copy, kReadWrite when any part needed
// pread/pwrite, and kCopyFileRange otherwise (including when there was no data
// to move); for a clone, `bytes_copied` is the cloned length.
Result<CopyStats> copy_file_data(int src_fd, int dst_fd, uint64_t length);

// What a caller that has just created the destination already knows; each
// field lets copy_file_data skip system calls whose answer is known. On a
// machine where every system call is expensive (a virtual machine that traps
// them) these are a large part of copying up a small file.
struct CopyHints {
  // `dst_fd` was just created (O_CREAT | O_EXCL) by the caller, without
  // O_APPEND: no F_GETFL check, and no final ftruncate when the copied data
  // already reaches `length`.
  bool dst_fresh = false;
  // The source's attributes (st_size, st_blocks, st_blksize). A small source
  // whose allocated blocks cover its whole size has no hole inside it, so it
  // is copied in one piece without SEEK_DATA / SEEK_HOLE. (A file with blocks
  // preallocated past its end and a hole inside can pass this test; it is then
  // copied dense, which is why only files up to kDenseCopyMax qualify.)
  const struct stat* src_stat = nullptr;
  // Shared between copies from one source filesystem: set to false when
  // FICLONE answers that the filesystems cannot share extents at all
  // (EOPNOTSUPP, EXDEV, ...), so that later copies do not ask again. Answers
  // that may be particular to one file (EINVAL, EBADF) do not clear it.
  std::atomic<bool>* clone_possible = nullptr;
};

// Largest source copied without looking for holes (see CopyHints::src_stat).
inline constexpr uint64_t kDenseCopyMax = uint64_t{64} << 10;

Result<CopyStats> copy_file_data(int src_fd, int dst_fd, uint64_t length, const CopyHints& hints);

// fsync(2), retried on EINTR.
Result<void> fsync_fd(int fd);

}  // namespace layerfs
