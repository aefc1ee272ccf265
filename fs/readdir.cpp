// The merged listing of a directory (cf. overlayfs readdir.c): upper entries,
// then each lower layer top-down, each name once, whiteouts and whiteout
// markers left out. d_ino is the st_ino a lookup of the same name presents, so
// `ls -i` and stat agree.
//
// A listing is a snapshot taken when a handle reads from offset 0; offsets are
// positions in it. The kernel keeps it in its readdir cache (cache_readdir)
// until the directory changes through the mount, which the kernel notices by
// itself since every change is a request it sends.
#include <dirent.h>
#include <sys/stat.h>

#include <unordered_set>

#include "fs/fs_internal.h"
#include "fs/ino.h"
#include "fs/log.h"
#include "fs/sys.h"

namespace layerfs {

Result<std::vector<DirEntry>> Filesystem::list(const InodePtr& dir) {
  if (!dir->is_dir()) return Error{ENOTDIR};
  std::vector<DirEntry> out;
  std::unordered_set<std::string> seen;

  if (dir->has_upper()) {
    LFS_ASSIGN(FdPin upin, dir->upper_fd());
    const int ufd = upin.get();
    std::vector<sys::RawDirent> raw;
    LFS_TRY(sys::for_each_dirent(ufd, [&](const sys::RawDirent& d) { raw.push_back(d); }));
    for (auto& d : raw) {
      uint64_t ino = 0;
      unsigned char type = d.type;
      std::optional<metadata::ObjectRecord> rec;
      if (index_) {
        LFS_ASSIGN(rec, index_->object(d.ino));
        if (rec && rec->stamp != 0) {
          auto sx = sys::statx_at(ufd, d.name, STATX_INO | STATX_TYPE | STATX_BTIME);
          if (!sx.ok()) continue;  // gone meanwhile
          uint64_t stamp = sys::birth_stamp(sx.value());
          if (stamp != 0 && stamp != rec->stamp) rec.reset();
        }
      }
      if (rec && rec->origin) {
        ino = *rec->origin;
      } else {
        LFS_ASSIGN(ino, present_ino(0, d.ino));
      }
      if (type == DT_UNKNOWN) {
        LFS_ASSIGN(auto st, sys::stat_if_exists(ufd, d.name));
        if (!st) continue;
        type = IFTODT(st->st_mode);
      }
      seen.insert(d.name);
      out.push_back(DirEntry{std::move(d.name), ino, type, -1});
    }
  }

  if (dir->lowers.empty()) return out;
  LFS_TRY(load_whiteouts(dir));
  std::unordered_set<std::string> hidden;
  {
    std::lock_guard<std::mutex> lock(dir->m);
    hidden = *dir->whiteouts;
  }
  for (size_t li = 0; li < dir->lowers.size(); ++li) {
    const LowerDir& ld = dir->lowers[li];
    std::vector<std::string> layer_whiteouts;
    std::vector<sys::RawDirent> raw;
    LFS_ASSIGN(FdPin lfd, ld.fd.pin());
    LFS_TRY(sys::for_each_dirent(
        lfd.get(), [&](const sys::RawDirent& d) { raw.push_back(d); }, /*noatime=*/true));
    for (auto& d : raw) {
      if (has_whiteout_prefix(d.name)) {
        if (d.name != kOpaqueMarker)
          layer_whiteouts.push_back(d.name.substr(kWhiteoutPrefix.size()));
        continue;
      }
      if (seen.count(d.name) || hidden.count(d.name)) continue;
      unsigned char type = d.type;
      if (type == DT_CHR || type == DT_UNKNOWN) {
        LFS_ASSIGN(auto st, sys::stat_if_exists(lfd.get(), d.name));
        if (!st) continue;
        if (is_whiteout_dev(*st)) {
          hidden.insert(d.name);
          continue;
        }
        type = IFTODT(st->st_mode);
      }
      LFS_ASSIGN(uint64_t ino, present_ino(ld.layer, d.ino));
      seen.insert(d.name);
      out.push_back(DirEntry{std::move(d.name), ino, type, static_cast<int32_t>(li)});
    }
    for (auto& w : layer_whiteouts) hidden.insert(std::move(w));
  }
  return out;
}

Result<bool> Filesystem::is_empty_dir(const InodePtr& dir) {
  LFS_ASSIGN(auto entries, list(dir));
  return entries.empty();
}

Result<std::unique_ptr<DirHandle>> Filesystem::opendir(const InodePtr& node) {
  if (!node->is_dir()) return Error{ENOTDIR};
  auto h = std::make_unique<DirHandle>();
  h->node = node;
  return h;
}

}  // namespace layerfs
