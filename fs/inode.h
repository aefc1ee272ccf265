// An Inode is one object of the merged view, shared by every name that leads to
// it (hard links) and by every request and open handle that uses it. It is
// known to the kernel by its FUSE node id (the Inode's address; the root is
// node 1) and to users by `ino`, the st_ino the mount presents (fs/ino.h).
//
// Where its content lives:
//  - upper: the upper object, once there is one (created, copied up, or the
//    shared copy of a hard-link group), as a ReopenableFd (fs/fd_cache.h): its
//    O_PATH fd lives in the process's bounded fd cache and is reopened from its
//    file handle after an eviction, so the daemon's fd count does not grow with
//    the number of Inodes the kernel remembers. Set at most once. A reader
//    holds an FdPin (upper_fd()) for as long as it uses the fd, never a bare
//    int past the pin; the pin keeps the fd open even if the cache evicts it.
//    Before an upper object may lose its last name, pin_upper() keeps its fd
//    for the Inode's life (an unlinked object may not be reopenable by handle).
//  - lower non-directory (until copied up): entry `lower_name` of the lower
//    directory `lower_dir->lowers[lower_index]`. The lower layers never change,
//    so this stays valid forever; no fd per lower file is kept.
//  - directory: `lowers`, the lower directories merged below it, top-most
//    first (empty when it has no lower view: opaque, or created in the upper),
//    reopenable like the upper object.
//
// Locking (see also filesystem.h):
//  - `m` guards the mutable fields marked "guarded by m". Held only for short
//    sections, never across I/O on the layers or a FUSE reply; never two at once.
//  - `copy_mutex` serialises copy-up of this Inode. Taken after the ancestors'
//    copy-up finished, never while holding any other Inode's lock.
//  - `dir_mutex` (directories) serialises changes of this directory's upper
//    entries and index records: namespace operations in it and the publish step
//    of a copy-up into it. A rename takes the two parents' dir_mutex in address
//    order.
#pragma once

#include <sys/stat.h>

#include <atomic>
#include <cstdint>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <unordered_set>
#include <vector>

#include "fs/fd_cache.h"
#include "fs/result.h"
#include "fs/unique_fd.h"

namespace layerfs {

struct LowerDir {
  uint32_t layer;   // layer number, 1..N
  ReopenableFd fd;  // O_PATH | O_DIRECTORY
};

class Inode;
using InodePtr = std::shared_ptr<Inode>;

class Inode : public std::enable_shared_from_this<Inode> {
 public:
  Inode(uint64_t ino, mode_t type) : ino(ino), type(type) {}
  Inode(const Inode&) = delete;
  Inode& operator=(const Inode&) = delete;

  const uint64_t ino;   // presented st_ino; key in the InodeTable
  const mode_t type;    // S_IFMT bits
  uint64_t generation = 0;  // FUSE generation, unique per Inode object

  bool is_dir() const { return S_ISDIR(type); }

  // --- FUSE lookup count (fs/fuse_ops.cpp). `kernel_ref` keeps the Inode
  // alive while the kernel knows it. Guarded by m.
  uint64_t nlookup = 0;
  InodePtr kernel_ref;

  mutable std::mutex m;

  // --- A merged location: one name of this object in the merged view, used to
  // copy it up. Guarded by m. Null parent for the root.
  InodePtr parent;
  std::string name;
  // No name in the merged view any more (unlinked, removed, replaced). Atomic
  // because the InodeTable reads it under its own lock.
  std::atomic<bool> dead{false};

  // --- Upper side.
  bool has_upper() const { return has_upper_.load(std::memory_order_acquire); }
  // The upper object's O_PATH fd, held open while the pin lives (reopened if
  // the fd cache evicted it). EIO without an upper object.
  Result<FdPin> upper_fd() const;
  // Keeps the upper fd open until the Inode dies: call before removing what
  // may be the object's last name. Nothing to do without an upper object.
  Result<void> pin_upper();
  // Installs the upper object (once). Bumps data_gen so open handles on the
  // lower copy switch to the upper one. A plain UniqueFd stays pinned.
  void set_upper(ReopenableFd fd, uint64_t upper_ino, uint64_t stamp);
  void set_upper(UniqueFd fd, uint64_t upper_ino, uint64_t stamp) {
    set_upper(ReopenableFd::pinned(std::move(fd)), upper_ino, stamp);
  }
  uint64_t upper_ino = 0;   // guarded by m (set with the fd)
  uint64_t upper_stamp = 0; // guarded by m
  bool has_record = false;  // an ObjectRecord exists in the index; guarded by m
  bool origin_recorded = false;  // `ino` comes from the record's origin; guarded by m
  std::atomic<uint32_t> data_gen{0};
  // Regular files and symlinks with an upper object: the st_size this object
  // contributes to the writable layer's size count (fs/usage.h).
  std::atomic<int64_t> counted_size{0};
  // How the kernel does the I/O of the object's open files (Filesystem::
  // start_io), guarded by m: `passthrough_opens` share the backing file
  // `backing_id`; `daemon_opens` go through the daemon; never both.
  // `page_cache_stale`: passthrough I/O went around the kernel's page cache of
  // this inode since its last open through the daemon.
  uint32_t passthrough_opens = 0;
  uint32_t daemon_opens = 0;
  int backing_id = -1;
  bool page_cache_stale = false;
  // Staging name of an orphan copy (copied up after losing every name); the
  // file is removed when the Inode dies. Guarded by m.
  std::string orphan_name;

  // --- Lower side of a non-directory.
  InodePtr lower_dir;
  uint32_t lower_index = 0;  // index in lower_dir->lowers
  std::string lower_name;
  bool has_lower() const { return lower_dir != nullptr; }

  // --- Lower hard-link group (a lower non-directory with st_nlink > 1).
  bool in_group = false;
  uint32_t group_layer = 0;
  uint64_t group_lower_ino = 0;
  uint32_t group_links = 0;  // names in the merged view; guarded by m

  // --- Directories.
  std::vector<LowerDir> lowers;             // immutable after creation
  std::optional<std::string> lower_path;    // path in the lowers; nullopt = no lower view
  bool opaque = false;                      // guarded by m
  std::optional<std::string> redirect;      // guarded by m
  // Index whiteouts of this directory, loaded on first use. Guarded by m.
  std::optional<std::unordered_set<std::string>> whiteouts;
  std::mutex dir_mutex;
  // Bumped when dir_mutex is taken and again when it is released (odd: a
  // change is under way), so a listing can tell whether the directory's
  // entries changed since it was taken (see Filesystem::LookupHint).
  std::atomic<uint64_t> names_gen{0};
  std::mutex copy_mutex;

  // Cleanup hook run by the InodeTable deleter (removes orphan copies).
  int staging_fd_for_orphan = -1;

 private:
  friend class InodeTable;
  std::atomic<bool> has_upper_{false};
  ReopenableFd upper_;  // immutable once has_upper_ is true
};

}  // namespace layerfs
