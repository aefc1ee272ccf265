// Bounding the daemon's open descriptors. Every Inode needs a way to reach its
// upper object and, for directories, the lower directories it merges; holding
// an O_PATH fd for each would make the fd count grow with the number of inodes
// the kernel remembers (which it forgets only under memory pressure) until
// open() fails with EMFILE. Instead an object is remembered by its file handle
// (name_to_handle_at) and its fd lives in a bounded LRU cache (FdCache); the fd
// is reopened with open_by_handle_at when it was evicted.
//
// Users never hold a bare int across a blocking call: they hold an FdPin, a
// shared reference that keeps the fd open even if the cache evicts it meanwhile.
// So the fds the daemon has open are: the cached ones (at most the capacity),
// the pinned-forever ones (below), and those pinned by requests in flight.
//
// An fd is pinned forever (kept for the life of its owner, the behaviour before
// this cache existed) when it cannot be reopened: the filesystem has no export
// support, the daemon lacks CAP_DAC_READ_SEARCH (open_by_handle_at refuses),
// the object is on another mount than the layer root, or the object is about
// to lose its last name (some filesystems cannot decode handles of unlinked
// files, and an unlinked-but-open file must stay reachable).
//
// Locking: one short mutex per FdCache, never held across a system call that
// can block on the filesystem (closing evicted fds happens after it is released).
#pragma once

#include <cstddef>
#include <cstdint>
#include <list>
#include <memory>
#include <mutex>
#include <vector>

#include "fs/result.h"
#include "fs/unique_fd.h"

namespace layerfs {

// A shared reference to an open fd: the fd stays open while any FdPin for it
// exists, whatever the cache does meanwhile.
class FdPin {
 public:
  FdPin() = default;
  explicit FdPin(std::shared_ptr<UniqueFd> fd) : fd_(std::move(fd)) {}
  int get() const { return fd_ ? fd_->get() : -1; }
  bool valid() const { return fd_ && fd_->valid(); }

 private:
  std::shared_ptr<UniqueFd> fd_;
};

// Where file handles of a layer are decoded: a readable (not O_PATH: the
// kernel refuses those as open_by_handle_at's mount fd) fd of the layer root,
// owned by the layer, and its mount's id. mnt_id < 0: handles are not usable
// there, so fds are pinned forever.
struct HandleMount {
  int fd = -1;
  int mnt_id = -1;
  bool usable() const { return fd >= 0 && mnt_id >= 0; }
};

// Checks, on the directory `root_fd`, that handles can be made and opened
// again (export support and the privilege open_by_handle_at needs).
HandleMount probe_handle_mount(int root_fd);

// How many fds the cache may keep for a process whose RLIMIT_NOFILE soft
// limit is `soft_limit`: half of it minus a reserve for open file handles,
// RocksDB and the layers, between 16 and 16384.
size_t fd_budget_for_limit(uint64_t soft_limit);

class FdCache {
 public:
  struct Entry;  // one reopenable object; address stable while cached

  explicit FdCache(size_t capacity) : capacity_(capacity) {}
  FdCache(const FdCache&) = delete;
  FdCache& operator=(const FdCache&) = delete;
  ~FdCache() = default;  // owners (ReopenableFd) must be gone first

  void set_capacity(size_t capacity);
  size_t capacity() const;
  // Fds held by the cache itself (not pinned-forever ones).
  size_t cached() const;
  // Times an fd had to be opened again after its eviction (for tests).
  uint64_t reopens() const;

  // The cached fd of `e`, made most recently used; null when not cached.
  std::shared_ptr<UniqueFd> lookup(Entry* e);
  // Caches `fd` for `e` (evicting the least recently used entries beyond the
  // capacity) and returns the fd `e` now has: `fd`, or one another thread put
  // there first.
  std::shared_ptr<UniqueFd> insert(Entry* e, std::shared_ptr<UniqueFd> fd);
  // Takes `e` out of the LRU for good and keeps `fd` (or the cached one).
  std::shared_ptr<UniqueFd> make_permanent(Entry* e, std::shared_ptr<UniqueFd> fd);
  // Drops `e` (its owner dies).
  void erase(Entry* e);

  // The cache every Inode of this process uses: the fd limit is per process.
  static FdCache& process();

 private:
  friend class ReopenableFd;
  // Evicts until the capacity holds; the evicted fds go to `out` so that they
  // are closed after the mutex is released.
  void evict_locked(std::vector<std::shared_ptr<UniqueFd>>* out);

  mutable std::mutex m_;
  size_t capacity_;
  std::list<Entry*> lru_;  // most recently used first
  uint64_t reopens_ = 0;
};

struct FdCache::Entry {
  // Immutable after creation.
  FdCache* cache = nullptr;
  int mount_fd = -1;
  int open_flags = 0;
  std::vector<unsigned char> handle;  // a struct file_handle
  // Guarded by cache->m_.
  std::shared_ptr<UniqueFd> fd;
  bool permanent = false;
  bool in_lru = false;
  std::list<Entry*>::iterator pos;
};

// The fd of one object (an upper object, a lower directory), either pinned for
// the life of this object or reopenable through the cache. Movable; the
// object must not be changed while other threads use it (owners publish it
// once, cf. Inode::set_upper).
class ReopenableFd {
 public:
  ReopenableFd() = default;
  // Takes over `fd` (O_PATH, opened with `open_flags` minus O_CLOEXEC). When
  // `mount` is usable and the object's handle decodes on it, the fd goes to
  // `cache`; otherwise it is pinned forever.
  static ReopenableFd make(UniqueFd fd, int open_flags, const HandleMount& mount,
                           FdCache* cache = &FdCache::process());
  // Pinned forever (tests, objects without a layer mount).
  static ReopenableFd pinned(UniqueFd fd);
  ReopenableFd(ReopenableFd&& o) noexcept = default;
  ReopenableFd& operator=(ReopenableFd&& o) noexcept;
  ~ReopenableFd();

  bool valid() const { return e_ != nullptr; }
  // Whether the fd may be closed while unused.
  bool reopenable() const { return e_ && !e_->handle.empty(); }
  // The fd, reopened if the cache evicted it. Fails with the errno of
  // open_by_handle_at (EMFILE, ESTALE, ...) or EBADF when empty.
  Result<FdPin> pin() const;
  // Keeps the fd open for the rest of this object's life.
  Result<void> pin_forever();

 private:
  void release();
  std::unique_ptr<FdCache::Entry> e_;
};

}  // namespace layerfs
