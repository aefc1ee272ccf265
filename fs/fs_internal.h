// Private helpers shared by the fs/*.cpp files that implement Filesystem.
// Sections list what each file exports to the others.
#pragma once

#include <sys/stat.h>

#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "fs/filesystem.h"

namespace layerfs {

// --- lookup.cpp / whiteout.cpp

// The top-most visible entry of a name in a list of lower directories.
struct Filesystem::LowerHit {
  bool found = false;
  size_t index = 0;  // in the list searched
  struct stat st{};  // of that entry
};

// What a name resolves to, before an Inode is made for it.
struct Filesystem::Resolved {
  uint64_t ino = 0;  // presented st_ino
  mode_t type = 0;   // S_IFMT
  // Upper entry.
  bool in_upper = false;
  struct statx upper{};
  uint64_t upper_stamp = 0;
  std::optional<metadata::ObjectRecord> record;
  // Lower entry (top-most visible), in the parent's lower list.
  LowerHit lower;
  // Directories: whether and where the lower view continues below it.
  bool lower_view = false;
  bool redirected = false;
  std::string lower_path;
};

inline constexpr std::string_view kWhiteoutPrefix = ".wh.";
inline constexpr std::string_view kOpaqueMarker = ".wh..wh..opq";

inline bool has_whiteout_prefix(std::string_view name) {
  return name.substr(0, kWhiteoutPrefix.size()) == kWhiteoutPrefix;
}

// A character device 0/0: kernel overlayfs's whiteout.
inline bool is_whiteout_dev(const struct stat& st) {
  return S_ISCHR(st.st_mode) && st.st_rdev == 0;
}

// The record an upper object's Inode stands for (call with node->m held).
metadata::ObjectRecord record_of_locked(const Inode& node);

// Whether a lower directory hides the layers below it (overlay opaque xattr,
// or an OCI ".wh..wh..opq" marker inside).
Result<bool> lower_dir_is_opaque(int dir_fd);

// Lower directories of `name` starting at dirs[hit.index] (a directory) and
// going down while the directory continues (not opaque, not hidden by a
// whiteout, not replaced by a non-directory).
Result<std::vector<LowerDir>> collect_lower_dirs(const LayerStack& layers,
                                                 const std::vector<LowerDir>& dirs,
                                                 const std::string& name, size_t first);

// A lower directory's O_PATH fd in the form Inodes keep (fs/fd_cache.h).
inline LowerDir make_lower_dir(const LayerStack& layers, uint32_t layer, UniqueFd fd) {
  return LowerDir{layer,
                  ReopenableFd::make(std::move(fd), O_PATH | O_DIRECTORY, layers.handles(layer))};
}

// "/a/b" -> {"a", "b"}; "" -> {}.
std::vector<std::string> split_path(const std::string& path);

// --- inode_ops.cpp

// Moves the change time of the object of `fd` to now, changing nothing else.
Result<void> touch_ctime(int fd);

// --- dir_ops.cpp

// Holds one directory's dir_mutex.
class DirLock {
 public:
  explicit DirLock(Inode* dir) : dir_(dir) {
    dir_->dir_mutex.lock();
    dir_->names_gen.fetch_add(1, std::memory_order_acq_rel);
  }
  ~DirLock() {
    dir_->names_gen.fetch_add(1, std::memory_order_acq_rel);
    dir_->dir_mutex.unlock();
  }
  DirLock(const DirLock&) = delete;
  DirLock& operator=(const DirLock&) = delete;

 private:
  Inode* dir_;
};

}  // namespace layerfs
