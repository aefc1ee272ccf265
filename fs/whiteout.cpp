// Whiteouts and opaque directories: the only code that knows how they are
// stored.
//  - layerfs's own, for upper directories: records in the index (a whiteout per
//    name, opaque and redirect in the directory's object record), never
//    anything in the upper tree. Cached per directory Inode once loaded.
//  - other tools', read in lower layers and never written: a character device
//    0/0 or a ".wh.NAME" file hides NAME below that layer; a directory with
//    trusted.overlay.opaque=y / user.overlay.opaque=y or a ".wh..wh..opq"
//    entry hides the layers below it (see collect_lower_dirs in lookup.cpp).
#include <sys/stat.h>

#include "fs/fs_internal.h"
#include "fs/log.h"
#include "fs/sys.h"

namespace layerfs {

Result<void> Filesystem::load_whiteouts(const InodePtr& dir) {
  uint64_t uino;
  {
    std::lock_guard<std::mutex> lock(dir->m);
    if (dir->whiteouts) return {};
    if (!dir->has_upper() || !dir->has_record || !index_) {
      dir->whiteouts.emplace();
      return {};
    }
    uino = dir->upper_ino;
  }
  LFS_ASSIGN(auto names, index_->whiteouts(uino));
  std::lock_guard<std::mutex> lock(dir->m);
  if (!dir->whiteouts) dir->whiteouts.emplace(names.begin(), names.end());
  return {};
}

Result<bool> Filesystem::is_whited_out(const InodePtr& dir, const std::string& name) {
  LFS_TRY(load_whiteouts(dir));
  std::lock_guard<std::mutex> lock(dir->m);
  return dir->whiteouts->count(name) > 0;
}

void Filesystem::note_whiteout(const InodePtr& dir, const std::string& name, bool present) {
  std::lock_guard<std::mutex> lock(dir->m);
  if (present) dir->has_record = true;
  if (!dir->whiteouts) return;  // loaded from the index when first needed
  if (present) {
    dir->whiteouts->insert(name);
  } else {
    dir->whiteouts->erase(name);
  }
}

void Filesystem::add_whiteout_to_batch(const InodePtr& dir, const std::string& name,
                                       metadata::Batch* batch) {
  std::lock_guard<std::mutex> lock(dir->m);
  if (!dir->has_record) batch->put_object(dir->upper_ino, record_of_locked(*dir));
  batch->add_whiteout(dir->upper_ino, name);
}

Result<bool> Filesystem::lower_lookup(const std::vector<LowerDir>& dirs, const std::string& name,
                                      LowerHit* hit, size_t first) {
  hit->found = false;
  if (has_whiteout_prefix(name)) return false;
  for (size_t i = first; i < dirs.size(); ++i) {
    struct stat st;
    LFS_ASSIGN(FdPin dfd, dirs[i].fd.pin());
    if (::fstatat(dfd.get(), name.c_str(), &st, AT_SYMLINK_NOFOLLOW) < 0) {
      if (errno == ENOENT || errno == ENOTDIR) continue;
      return errno_error();
    }
    if (is_whiteout_dev(st)) return false;
    // Absent in the layers above: a .wh.NAME in any of them hides this one.
    if (i > first) {
      std::string wh = std::string(kWhiteoutPrefix) + name;
      for (size_t j = first; j < i; ++j) {
        LFS_ASSIGN(FdPin above, dirs[j].fd.pin());
        LFS_ASSIGN(auto w, sys::stat_if_exists(above.get(), wh));
        if (w) return false;
      }
    }
    hit->found = true;
    hit->index = i;
    hit->st = st;
    return true;
  }
  return false;
}

Result<bool> Filesystem::lower_has(const InodePtr& dir, std::string_view name_view) {
  if (dir->lowers.empty()) return false;
  std::string name(name_view);
  if (has_whiteout_prefix(name)) return false;
  LFS_ASSIGN(bool wh, is_whited_out(dir, name));
  if (wh) return false;
  LowerHit hit;
  return lower_lookup(dir->lowers, name, &hit);
}

}  // namespace layerfs
