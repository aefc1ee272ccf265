// Open files and their I/O (cf. overlayfs file.c). Reads and writes go to the
// real file of the top-most copy; an open for writing (or with O_TRUNC)
// copies the file up first, without its data for O_TRUNC.
//
// Handles opened read-only before a copy-up switch to the upper copy at their
// next read (FileHandle::gen vs Inode::data_gen), so an old descriptor sees
// what later writers wrote even after the kernel dropped its page cache.
#include <fcntl.h>
#include <linux/falloc.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstring>

#include "fs/fs_internal.h"
#include "fs/log.h"
#include "fs/sys.h"

namespace layerfs {
namespace {

// Flags for the real file. O_APPEND is dropped: the kernel sends the offset
// to write at (the end of the file it knows), and pwrite must honour it.
// O_DIRECT is dropped too: the kernel already bypasses its page cache for an
// O_DIRECT open of a FUSE file, and the buffers libfuse hands us are not
// aligned as O_DIRECT on the real file would demand.
int backing_flags(int flags) {
  return flags & (O_ACCMODE | O_SYNC | O_DSYNC | O_TRUNC | O_LARGEFILE);
}

}  // namespace

Result<std::unique_ptr<FileHandle>> Filesystem::open(const InodePtr& node, int flags) {
  if (node->is_dir()) return Error{EISDIR};
  const bool write = (flags & O_ACCMODE) != O_RDONLY || (flags & O_TRUNC);
  if (write) {
    LFS_TRY(check_writable());
    LFS_TRY(copy_up(node, (flags & O_TRUNC) ? CopyData::kNone : CopyData::kAll));
  }
  auto fh = std::make_unique<FileHandle>();
  fh->node = node;
  fh->flags = flags;
  fh->gen = node->data_gen.load(std::memory_order_acquire);
  int bflags = backing_flags(flags);
  if (node->has_upper()) {
    LFS_ASSIGN(FdPin ufd, node->upper_fd());
    LFS_ASSIGN(UniqueFd fd, sys::reopen(ufd.get(), bflags));
    if (bflags & O_TRUNC) usage_set(node, 0);
    fh->fd = std::make_shared<UniqueFd>(std::move(fd));
    fh->on_upper = true;
  } else {
    LFS_ASSIGN(FdPin lfd, lower_fd_of(node));
    LFS_ASSIGN(UniqueFd fd,
               sys::open_at_noatime(lfd.get(), node->lower_name, (bflags & ~O_TRUNC) | O_NOFOLLOW));
    fh->fd = std::make_shared<UniqueFd>(std::move(fd));
  }
  return fh;
}

Result<Filesystem::Created> Filesystem::create(const InodePtr& dir, std::string_view name_view,
                                               mode_t mode, int flags, const Caller& caller) {
  LFS_TRY(check_writable());
  std::string name(name_view);
  LFS_TRY(copy_up(dir));
  DirLock dl(dir.get());
  LFS_ASSIGN(FdPin upin, dir->upper_fd());
  const int ufd = upin.get();
  int bflags = (backing_flags(flags) & ~O_TRUNC) | O_CREAT | O_EXCL | O_NOFOLLOW;
  LFS_ASSIGN(UniqueFd fd, sys::open_at(ufd, name, bflags, mode & 07777));
  auto owner = set_owner(ufd, name, dir, caller, S_IFREG | (mode & 07777));
  if (!owner.ok()) {
    ::unlinkat(ufd, name.c_str(), 0);
    return Error{owner.error()};
  }
  struct stat attr;
  auto node = new_upper_object(dir, name, fd.get(), owner.value(), &attr);
  if (!node.ok()) {
    ::unlinkat(ufd, name.c_str(), 0);
    return Error{node.error()};
  }
  Created c;
  c.node = node.value();
  c.attr = attr;
  c.handle = std::make_unique<FileHandle>();
  c.handle->node = c.node;
  c.handle->flags = flags;
  c.handle->fd = std::make_shared<UniqueFd>(std::move(fd));
  c.handle->on_upper = true;
  c.handle->gen = c.node->data_gen.load();
  return c;
}

Result<std::shared_ptr<UniqueFd>> Filesystem::read_fd(FileHandle& fh) {
  std::lock_guard<std::mutex> lock(fh.m);
  if (!fh.on_upper) {
    uint32_t gen = fh.node->data_gen.load(std::memory_order_acquire);
    if (gen != fh.gen && fh.node->has_upper()) {
      LFS_ASSIGN(FdPin ufd, fh.node->upper_fd());
      LFS_ASSIGN(UniqueFd fd, sys::reopen(ufd.get(), O_RDONLY));
      fh.fd = std::make_shared<UniqueFd>(std::move(fd));
      fh.on_upper = true;
      fh.gen = gen;
    }
  }
  return fh.fd;
}

Result<std::shared_ptr<UniqueFd>> Filesystem::write_fd(FileHandle& fh) {
  std::lock_guard<std::mutex> lock(fh.m);
  if (!fh.on_upper) return Error{EBADF};
  return fh.fd;
}

void Filesystem::wrote(FileHandle& fh, off_t off, size_t n) {
  if (n > 0) usage_grow(fh.node, static_cast<int64_t>(off) + static_cast<int64_t>(n));
}

Result<void> Filesystem::fsync(FileHandle& fh, bool datasync) {
  std::shared_ptr<UniqueFd> fd;
  {
    std::lock_guard<std::mutex> lock(fh.m);
    if (!fh.on_upper) return {};  // nothing of ours to flush in a lower file
    fd = fh.fd;
  }
  LFS_TRY(check_sys_void(datasync ? ::fdatasync(fd->get()) : ::fsync(fd->get())));
  // The record of the file's copy-up, if it is not on disk yet (copy_up.cpp).
  if (index_) LFS_TRY(index_->sync_if_needed());
  return {};
}

void Filesystem::enable_passthrough(int dev_fd) {
  passthrough_dev_.store(dev_fd);
}

int Filesystem::start_io(FileHandle& fh, bool* keep_cache) {
  *keep_cache = true;
  const int dev = passthrough_dev_.load();
  std::shared_ptr<UniqueFd> fd;
  bool on_upper;
  {
    std::lock_guard<std::mutex> lock(fh.m);
    fd = fh.fd;
    on_upper = fh.on_upper;
  }
  Inode& node = *fh.node;
  {
    std::lock_guard<std::mutex> lock(node.m);
    // A lower file can be a backing file only where nothing is copied up: it
    // would stay the backing file of opens made before a copy-up, which must
    // see the copy.
    bool passthrough =
        node.daemon_opens == 0 && (node.passthrough_opens > 0 ||
                                   (dev >= 0 && (on_upper || !writable()) && S_ISREG(node.type)));
    if (passthrough && node.passthrough_opens == 0) {
      auto id = sys::fuse_backing_open(dev, fd->get());
      if (id.ok()) {
        node.backing_id = id.value();
      } else {
        passthrough = false;
        if (!passthrough_refused_.exchange(true)) {
          LFS_LOG_INFO("FUSE passthrough refused (%s): reads and writes go through the daemon",
                       strerror(id.error()));
        }
      }
    }
    if (passthrough) {
      ++node.passthrough_opens;
      node.page_cache_stale = true;
      fh.backing_id = node.backing_id;
    } else {
      ++node.daemon_opens;
      if (node.page_cache_stale) {
        *keep_cache = false;
        node.page_cache_stale = false;
      }
    }
  }
  if (fh.backing_id >= 0 && (fh.flags & O_ACCMODE) != O_RDONLY) {
    std::lock_guard<std::mutex> lock(pt_writers_mu_);
    pt_writers_.insert(&fh);
  }
  return fh.backing_id;
}

void Filesystem::end_io(FileHandle& fh) {
  if (fh.backing_id >= 0 && (fh.flags & O_ACCMODE) != O_RDONLY) {
    {
      std::lock_guard<std::mutex> lock(pt_writers_mu_);
      pt_writers_.erase(&fh);
    }
    count_passthrough_writes(fh);
  }
  Inode& node = *fh.node;
  std::lock_guard<std::mutex> lock(node.m);
  if (fh.backing_id >= 0) {
    // The kernel lets go of the backing file before it sends the release, so
    // after the last one no open of this inode uses it.
    if (node.passthrough_opens > 0 && --node.passthrough_opens == 0) {
      sys::fuse_backing_close(passthrough_dev_.load(), node.backing_id);
      node.backing_id = -1;
    }
  } else if (node.daemon_opens > 0) {
    --node.daemon_opens;
  }
  fh.backing_id = -1;
}

void Filesystem::count_passthrough_writes(FileHandle& fh) {
  std::shared_ptr<UniqueFd> fd;
  {
    std::lock_guard<std::mutex> lock(fh.m);
    fd = fh.fd;
  }
  struct stat st;
  if (fd && ::fstat(fd->get(), &st) == 0) usage_grow(fh.node, static_cast<int64_t>(st.st_size));
}

Result<void> Filesystem::fallocate(FileHandle& fh, int mode, off_t offset, off_t length) {
  LFS_TRY(check_writable());
  LFS_ASSIGN(auto fd, write_fd(fh));
  LFS_TRY(check_sys_void(::fallocate(fd->get(), mode, offset, length)));
  if (!(mode & FALLOC_FL_KEEP_SIZE)) usage_grow(fh.node, static_cast<int64_t>(offset + length));
  return {};
}

Result<off_t> Filesystem::lseek(FileHandle& fh, off_t offset, int whence) {
  LFS_ASSIGN(auto fd, read_fd(fh));
  off_t r = ::lseek(fd->get(), offset, whence);
  if (r < 0) return errno_error();
  return r;
}

Result<size_t> Filesystem::copy_file_range(FileHandle& in, off_t in_off, FileHandle& out,
                                           off_t out_off, size_t len, unsigned flags) {
  LFS_TRY(check_writable());
  LFS_ASSIGN(auto ifd, read_fd(in));
  LFS_ASSIGN(auto ofd, write_fd(out));
  loff_t ioff = in_off, ooff = out_off;
  ssize_t n = ::copy_file_range(ifd->get(), &ioff, ofd->get(), &ooff, len, flags);
  if (n < 0) return errno_error();
  wrote(out, out_off, static_cast<size_t>(n));
  return static_cast<size_t>(n);
}

Result<void> Filesystem::fsyncdir(const InodePtr& node, bool datasync) {
  if (node->has_upper()) {
    LFS_ASSIGN(FdPin ufd, node->upper_fd());
    LFS_ASSIGN(UniqueFd fd, sys::reopen(ufd.get(), O_RDONLY | O_DIRECTORY));
    LFS_TRY(check_sys_void(datasync ? ::fdatasync(fd.get()) : ::fsync(fd.get())));
  }
  // Whiteouts and other records of this directory live in the index.
  if (index_) LFS_TRY(index_->sync());
  // An fsync of the root is also how a reader of WORK/usage asks for a
  // current count (fs/usage.h), including what passthrough writes added.
  if (usage_ && node == root_) {
    {
      std::lock_guard<std::mutex> lock(pt_writers_mu_);  // end_io waits before freeing one
      for (FileHandle* fh : pt_writers_) count_passthrough_writes(*fh);
    }
    LFS_TRY(usage_->publish_now());
  }
  return {};
}

}  // namespace layerfs
