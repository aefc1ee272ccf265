// Resolving a name through the layers (cf. overlayfs namei.c), and making the
// Inode for what it resolves to.
//
// Rules, for child NAME of merged directory D:
//  - An upper entry wins. A non-directory there hides everything below. An
//    upper directory continues into the lowers unless its record says opaque;
//    with a redirect its lower view comes from the redirect path instead.
//  - The lowers are consulted only when D has a lower view and NAME is not
//    whited out in D's index records. In the lowers the top-most entry wins;
//    a whiteout there (char 0/0 or .wh.NAME) hides the layers below it.
//  - Identity (st_ino): the origin recorded for an upper object that was
//    copied up or moved, else the layer number and inode number of the top-most
//    layer holding the object (fs/ino.h).
#include <fcntl.h>
#include <sys/stat.h>
#include <sys/xattr.h>
#include <unistd.h>
#include <xxhash.h>

#include <cstring>

#include "fs/fs_internal.h"
#include "fs/ino.h"
#include "fs/log.h"
#include "fs/sys.h"

namespace layerfs {

metadata::ObjectRecord record_of_locked(const Inode& node) {
  metadata::ObjectRecord rec;
  rec.stamp = node.upper_stamp;
  if (node.origin_recorded) rec.origin = node.ino;
  rec.opaque = node.opaque;
  rec.redirect = node.redirect;
  return rec;
}

std::vector<std::string> split_path(const std::string& path) {
  std::vector<std::string> parts;
  size_t i = 0;
  while (i < path.size()) {
    size_t j = path.find('/', i);
    if (j == std::string::npos) j = path.size();
    if (j > i) parts.push_back(path.substr(i, j - i));
    i = j + 1;
  }
  return parts;
}

Result<uint64_t> Filesystem::present_ino(uint32_t layer, uint64_t real_ino) {
  if (ino::fits(real_ino)) return ino::encode(layer, real_ino);
  if (index_) {
    LFS_ASSIGN(uint64_t alias, index_->alias(layer, real_ino));
    return ino::encode_alias(alias);
  }
  // Read-only mount without an index: a hash stands in for the allocation.
  uint64_t key[2] = {layer, real_ino};
  uint64_t h = XXH3_64bits(key, sizeof key) & ino::kInoMask;
  return ino::encode_alias(h == 0 ? 1 : h);
}

Result<std::optional<metadata::ObjectRecord>> Filesystem::live_record(uint64_t upper_ino,
                                                                      uint64_t stamp) {
  if (!index_) return std::optional<metadata::ObjectRecord>();
  LFS_ASSIGN(auto rec, index_->object(upper_ino));
  if (rec && rec->stamp != 0 && stamp != 0 && rec->stamp != stamp) {
    // Written for an earlier object that had this inode number: stale.
    LFS_LOG_INFO("dropping stale index records of upper inode %llu",
                 static_cast<unsigned long long>(upper_ino));
    metadata::Batch b;
    b.forget_object(upper_ino);
    ignore_error(index_->commit(b, metadata::Durability::kBuffered), "stale records stay ignored");
    return std::optional<metadata::ObjectRecord>();
  }
  return rec;
}

Result<FdPin> Filesystem::lower_fd_of(const InodePtr& node) {
  if (!node->lower_dir || node->lower_index >= node->lower_dir->lowers.size()) {
    LFS_LOG_ERROR("inode %llu has no lower location", static_cast<unsigned long long>(node->ino));
    return Error{EIO};
  }
  return node->lower_dir->lowers[node->lower_index].fd.pin();
}

Result<bool> lower_dir_is_opaque(int dir_fd) {
  std::string p = sys::fd_path(dir_fd);
  for (const char* attr : {"trusted.overlay.opaque", "user.overlay.opaque"}) {
    char v[2];
    ssize_t n = ::getxattr(p.c_str(), attr, v, sizeof v);
    if (n == 1 && v[0] == 'y') return true;
  }
  LFS_ASSIGN(auto marker, sys::stat_if_exists(dir_fd, std::string(kOpaqueMarker)));
  return marker.has_value();
}

Result<std::vector<LowerDir>> collect_lower_dirs(const LayerStack& layers,
                                                 const std::vector<LowerDir>& dirs,
                                                 const std::string& name, size_t first) {
  std::vector<LowerDir> out;
  for (size_t i = first; i < dirs.size(); ++i) {
    LFS_ASSIGN(FdPin parent, dirs[i].fd.pin());
    const int pfd = parent.get();
    if (i > first) {
      LFS_ASSIGN(auto st, sys::stat_if_exists(pfd, name));
      if (!st) {
        // Absent here: a .wh.NAME in this layer hides it further down.
        LFS_ASSIGN(auto wh, sys::stat_if_exists(pfd, std::string(kWhiteoutPrefix) + name));
        if (wh) break;
        continue;
      }
      if (is_whiteout_dev(*st) || !S_ISDIR(st->st_mode)) break;
    }
    LFS_ASSIGN(UniqueFd fd, sys::open_at(pfd, name, O_PATH | O_DIRECTORY | O_NOFOLLOW));
    // Checked before the fd goes to the cache, which may close it.
    bool opaque = false;
    if (i + 1 < dirs.size()) {
      LFS_ASSIGN(opaque, lower_dir_is_opaque(fd.get()));
    }
    out.push_back(make_lower_dir(layers, dirs[i].layer, std::move(fd)));
    if (i + 1 < dirs.size()) {
      // Opacity only matters when there are layers below. A .wh.NAME beside
      // NAME in this layer (an OCI layer that deleted NAME and made it anew)
      // also ends the merge here.
      if (opaque) break;
      LFS_ASSIGN(auto wh, sys::stat_if_exists(pfd, std::string(kWhiteoutPrefix) + name));
      if (wh) break;
    }
  }
  return out;
}

Result<std::vector<LowerDir>> Filesystem::lower_dirs_at(const std::string& lower_path) {
  std::vector<LowerDir> cur;
  for (const auto& l : root_->lowers) {
    LFS_ASSIGN(FdPin root_fd, l.fd.pin());
    LFS_ASSIGN(UniqueFd fd, sys::open_at(root_fd.get(), ".", O_PATH | O_DIRECTORY));
    cur.push_back(make_lower_dir(*layers_, l.layer, std::move(fd)));
  }
  for (const auto& comp : split_path(lower_path)) {
    if (cur.empty()) break;
    LowerHit hit;
    LFS_ASSIGN(bool found, lower_lookup(cur, comp, &hit));
    if (!found || !S_ISDIR(hit.st.st_mode)) return std::vector<LowerDir>();
    LFS_ASSIGN(cur, collect_lower_dirs(*layers_, cur, comp, hit.index));
  }
  return cur;
}

Result<bool> Filesystem::resolve(const InodePtr& dir, const std::string& name, Resolved* r,
                                 const LookupHint* hint) {
  // A name found by a listing still current in lower `from` is not in the
  // upper, not whited out and in no layer above (see LookupHint).
  const bool hinted = hint && hint->from >= 0 &&
                      static_cast<size_t>(hint->from) < dir->lowers.size() &&
                      !has_whiteout_prefix(name);
  if (!hinted && dir->has_upper()) {
    LFS_ASSIGN(FdPin ufd, dir->upper_fd());
    auto sx = sys::statx_at(ufd.get(), name, STATX_BASIC_STATS | STATX_BTIME);
    if (sx.ok()) {
      r->in_upper = true;
      r->upper = sx.value();
    } else if (sx.error() != ENOENT) {
      return Error{sx.error()};
    }
  }
  if (r->in_upper) {
    r->type = r->upper.stx_mode & S_IFMT;
    r->upper_stamp = sys::birth_stamp(r->upper);
    LFS_ASSIGN(r->record, live_record(r->upper.stx_ino, r->upper_stamp));
    if (r->record && r->record->origin) {
      r->ino = *r->record->origin;
    } else {
      LFS_ASSIGN(r->ino, present_ino(0, r->upper.stx_ino));
    }
    if (!S_ISDIR(r->type)) return true;
    if (r->record && r->record->opaque) return true;
    if (r->record && r->record->redirect) {
      r->lower_view = true;
      r->redirected = true;
      r->lower_path = *r->record->redirect;
      return true;
    }
    if (dir->lowers.empty() || has_whiteout_prefix(name)) return true;
    LFS_ASSIGN(bool wh, is_whited_out(dir, name));
    if (wh) return true;
    LFS_ASSIGN(bool found, lower_lookup(dir->lowers, name, &r->lower));
    if (found && S_ISDIR(r->lower.st.st_mode)) {
      r->lower_view = true;
      r->lower_path = dir->lower_path.value_or("") + "/" + name;
    } else {
      r->lower.found = false;
    }
    return true;
  }
  if (dir->lowers.empty() || has_whiteout_prefix(name)) return false;
  if (!hinted) {
    LFS_ASSIGN(bool wh, is_whited_out(dir, name));
    if (wh) return false;
  }
  LFS_ASSIGN(bool found, lower_lookup(dir->lowers, name, &r->lower,
                                      hinted ? static_cast<size_t>(hint->from) : 0));
  if (!found) return false;
  r->type = r->lower.st.st_mode & S_IFMT;
  LFS_ASSIGN(r->ino, present_ino(dir->lowers[r->lower.index].layer, r->lower.st.st_ino));
  if (S_ISDIR(r->type)) {
    r->lower_view = true;
    r->lower_path = dir->lower_path.value_or("") + "/" + name;
  }
  return true;
}

Result<InodePtr> Filesystem::instantiate(const InodePtr& dir, const std::string& name,
                                         Resolved&& r) {
  bool replace = false;
  if (InodePtr existing = table_.find(r.ino)) {
    if (existing->type == r.type) {
      std::lock_guard<std::mutex> lock(existing->m);
      if (existing.get() != root_.get()) {
        existing->parent = dir;
        existing->name = name;
      }
      return existing;
    }
    // Only possible when a layer changed behind the daemon's back.
    LFS_LOG_WARN("inode %llu changed type; replacing it", static_cast<unsigned long long>(r.ino));
    existing->dead = true;
    replace = true;
  }

  InodePtr node = table_.make(r.ino, r.type);
  node->parent = dir;
  node->name = name;

  if (r.in_upper) {
    LFS_ASSIGN(FdPin dfd, dir->upper_fd());
    LFS_ASSIGN(UniqueFd fd, sys::open_at(dfd.get(), name, O_PATH | O_NOFOLLOW));
    struct stat st;
    if (::fstat(fd.get(), &st) < 0) return errno_error();
    if (st.st_ino != r.upper.stx_ino) return Error{EAGAIN};  // replaced meanwhile; caller retries
    node->has_record = r.record.has_value();
    if (r.record) {
      node->origin_recorded = r.record->origin.has_value();
      node->opaque = r.record->opaque;
      node->redirect = r.record->redirect;
    }
    node->set_upper(upper_ref(std::move(fd)), r.upper.stx_ino, r.upper_stamp);
    // Already part of the size count; remember how much.
    node->counted_size = S_ISDIR(r.type) ? 0 : static_cast<int64_t>(r.upper.stx_size);
    // A copied-up member of a lower hard-link group.
    if (!S_ISDIR(r.type) && node->origin_recorded && r.upper.stx_nlink > 1 && index_) {
      uint32_t layer = ino::layer_of(r.ino);
      if (layer >= 1 && layer != ino::kAliasLayer) {
        uint64_t lower_ino = r.ino & ino::kInoMask;
        LFS_ASSIGN(auto group, index_->link_group(layer, lower_ino));
        if (group) {
          node->in_group = true;
          node->group_layer = layer;
          node->group_lower_ino = lower_ino;
          node->group_links = group->links;
        }
      }
    }
  }

  if (S_ISDIR(r.type)) {
    if (r.lower_view) {
      if (r.redirected) {
        LFS_ASSIGN(node->lowers, lower_dirs_at(r.lower_path));
      } else if (r.lower.found) {
        LFS_ASSIGN(node->lowers, collect_lower_dirs(*layers_, dir->lowers, name, r.lower.index));
      }
      if (!node->lowers.empty()) node->lower_path = r.lower_path;
    }
  } else if (!r.in_upper) {
    node->lower_dir = dir;
    node->lower_index = static_cast<uint32_t>(r.lower.index);
    node->lower_name = name;
    if (r.lower.st.st_nlink > 1) {
      node->in_group = true;
      node->group_layer = dir->lowers[r.lower.index].layer;
      node->group_lower_ino = r.lower.st.st_ino;
      node->group_links = static_cast<uint32_t>(r.lower.st.st_nlink);
      if (index_) {
        LFS_ASSIGN(auto group, index_->link_group(node->group_layer, node->group_lower_ino));
        if (group) {
          node->group_links = group->links;
          if (group->upper_ino != 0) {
            std::string lname =
                std::to_string(node->group_layer) + "-" + std::to_string(node->group_lower_ino);
            auto fd = sys::open_at(layers_->links_fd(), lname, O_PATH | O_NOFOLLOW);
            if (fd.ok()) {
              LFS_ASSIGN(auto sx,
                         sys::statx_at(fd.value().get(), "", STATX_BASIC_STATS | STATX_BTIME));
              node->origin_recorded = true;
              node->has_record = true;
              node->set_upper(upper_ref(std::move(fd).value()), sx.stx_ino, sys::birth_stamp(sx));
              node->counted_size = static_cast<int64_t>(sx.stx_size);
            } else {
              // The shared copy is gone (removed behind our back): the lower
              // file shows again, and the next change copies it up anew.
              LFS_LOG_WARN("links/%s is missing; using the lower copy", lname.c_str());
            }
          }
        }
      }
    }
  }
  if (replace) {
    table_.replace(node);
    return node;
  }
  return table_.insert_or_get(node);
}

Result<InodePtr> Filesystem::lookup(const InodePtr& dir, std::string_view name_view) {
  return lookup(dir, name_view, nullptr, nullptr);
}

Result<InodePtr> Filesystem::lookup(const InodePtr& dir, std::string_view name_view,
                                    const LookupHint* hint, std::optional<struct stat>* attr) {
  if (attr) attr->reset();
  if (!dir->is_dir()) return Error{ENOTDIR};
  if (name_view.empty() || name_view.find('/') != std::string_view::npos) return Error{EINVAL};
  if (name_view.size() > NAME_MAX) return Error{ENAMETOOLONG};
  std::string name(name_view);
  if (name == ".") return dir;
  if (name == "..") {
    std::lock_guard<std::mutex> lock(dir->m);
    return dir->parent ? dir->parent : dir;
  }
  // The hint holds only while no change of the directory began since the
  // listing (an odd generation: one is under way).
  if (hint && ((hint->names_gen & 1) != 0 ||
               dir->names_gen.load(std::memory_order_acquire) != hint->names_gen)) {
    hint = nullptr;
  }
  for (int attempt = 0;; ++attempt) {
    Resolved r;
    LFS_ASSIGN(bool found, resolve(dir, name, &r, attempt == 0 ? hint : nullptr));
    if (!found) return Error{ENOENT};
    // What resolve read is what stat_real would read again when the node
    // ends on that same object: the upper one it found, or (a non-directory
    // with no upper copy, not even a hard-link group's shared one) the
    // top-most lower one. A directory merged from lowers takes its
    // attributes from its first lower directory: left to getattr.
    std::optional<struct stat> seen;
    if (attr) {
      if (r.in_upper) {
        seen = sys::to_stat(r.upper);
      } else if (!S_ISDIR(r.type)) {
        seen = r.lower.st;
      }
    }
    const bool seen_upper = r.in_upper;
    const uint64_t seen_upper_ino = r.upper.stx_ino;
    auto node = instantiate(dir, name, std::move(r));
    if (node.ok() && seen) {
      const InodePtr& n = node.value();
      bool same;
      {
        std::lock_guard<std::mutex> lock(n->m);
        same = seen_upper ? (n->has_upper() && n->upper_ino == seen_upper_ino) : !n->has_upper();
      }
      if (same) *attr = present_attr(n, *seen);
    }
    if (node.ok() || node.error() != EAGAIN || attempt >= 3) return node;
  }
}

Result<InodePtr> Filesystem::make_root() {
  std::vector<LowerDir> lowers;
  const auto& ls = layers_->lowers();
  for (size_t i = 0; i < ls.size(); ++i) {
    LFS_ASSIGN(UniqueFd fd, sys::open_at(ls[i].root.get(), ".", O_PATH | O_DIRECTORY));
    bool opaque = false;
    if (i + 1 < ls.size()) {
      LFS_ASSIGN(opaque, lower_dir_is_opaque(fd.get()));
    }
    lowers.push_back(make_lower_dir(*layers_, ls[i].number, std::move(fd)));
    if (opaque) break;
  }
  uint64_t ino;
  UniqueFd upper;
  uint64_t upper_ino = 0, stamp = 0;
  std::optional<metadata::ObjectRecord> rec;
  if (layers_->has_upper()) {
    LFS_ASSIGN(upper, sys::open_at(layers_->upper().root.get(), ".", O_PATH | O_DIRECTORY));
    LFS_ASSIGN(auto sx, sys::statx_at(upper.get(), "", STATX_BASIC_STATS | STATX_BTIME));
    upper_ino = sx.stx_ino;
    stamp = sys::birth_stamp(sx);
    LFS_ASSIGN(rec, live_record(upper_ino, stamp));
    LFS_ASSIGN(ino, present_ino(0, upper_ino));
  } else {
    struct stat st;
    LFS_ASSIGN(FdPin lfd, lowers[0].fd.pin());
    if (::fstat(lfd.get(), &st) < 0) return errno_error();
    LFS_ASSIGN(ino, present_ino(lowers[0].layer, st.st_ino));
  }
  InodePtr root = table_.make(ino, S_IFDIR);
  root->lowers = std::move(lowers);
  root->lower_path = "";
  if (upper.valid()) {
    root->has_record = rec.has_value();
    if (rec) root->opaque = rec->opaque;
    root->set_upper(upper_ref(std::move(upper)), upper_ino, stamp);
    if (root->opaque) root->lowers.clear();
  }
  return table_.insert_or_get(root);
}

}  // namespace layerfs
