// Operations that change the namespace (cf. overlayfs dir.c): create, mkdir,
// mknod, symlink, link, unlink, rmdir, rename.
//
// Order of effects, chosen so that a crash between two steps leaves either the
// old state or the new one in the merged view:
//  - removing NAME that the lowers also have: commit the whiteout record first,
//    then remove the upper entry. A whiteout only hides lower entries; while the
//    upper entry exists it still shows, so the name is wholly there until the
//    upper entry goes. If removing the upper entry fails the whiteout is taken
//    back.
//  - renaming a directory: its redirect or opaque record and the whiteout of
//    its old name are committed before the upper rename. Until the rename the
//    directory still shows at its old name with the same content (the redirect
//    names the lower path it already merges).
//  - records of a deleted upper object are dropped after it is gone; if that
//    step is lost, its stamp no longer matches any live object and the records
//    are ignored (metadata/FORMAT.md).
//
// New objects are created by the daemon and then given to the caller's uid and
// gid (the parent's gid when the parent directory is set-group-ID), then the
// requested mode is put back where chown cleared set-id bits.
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstring>
#include <functional>

#include "fs/fs_internal.h"
#include "fs/ino.h"
#include "fs/log.h"
#include "fs/sys.h"

namespace layerfs {

DirPairLock::DirPairLock(Inode* a, Inode* b) {
  if (a == b) {
    first_ = a;
    second_ = nullptr;
    a->dir_mutex.lock();
    a->names_gen.fetch_add(1, std::memory_order_acq_rel);
    return;
  }
  if (std::less<Inode*>()(b, a)) std::swap(a, b);
  first_ = a;
  second_ = b;
  first_->dir_mutex.lock();
  second_->dir_mutex.lock();
  first_->names_gen.fetch_add(1, std::memory_order_acq_rel);
  second_->names_gen.fetch_add(1, std::memory_order_acq_rel);
}

DirPairLock::~DirPairLock() {
  first_->names_gen.fetch_add(1, std::memory_order_acq_rel);
  if (second_) second_->names_gen.fetch_add(1, std::memory_order_acq_rel);
  if (second_) second_->dir_mutex.unlock();
  first_->dir_mutex.unlock();
}

Result<InodePtr> Filesystem::new_upper_object(const InodePtr& dir, const std::string& name,
                                              int fd_hint, const std::optional<struct statx>& known,
                                              struct stat* attr) {
  UniqueFd fd;
  if (fd_hint >= 0) {
    LFS_ASSIGN(fd, sys::reopen(fd_hint, O_PATH));
  } else {
    LFS_ASSIGN(FdPin dfd, dir->upper_fd());
    LFS_ASSIGN(fd, sys::open_at(dfd.get(), name, O_PATH | O_NOFOLLOW));
  }
  // The caller holds the directory's lock: the name still is that object.
  struct statx sx;
  if (known) {
    sx = *known;
  } else {
    LFS_ASSIGN(sx, sys::statx_at(fd.get(), "", STATX_BASIC_STATS | STATX_BTIME));
  }
  LFS_ASSIGN(uint64_t ino, present_ino(0, sx.stx_ino));
  InodePtr node = table_.make(ino, sx.stx_mode);
  node->parent = dir;
  node->name = name;
  node->set_upper(upper_ref(std::move(fd)), sx.stx_ino, sys::birth_stamp(sx));
  if (!S_ISDIR(sx.stx_mode)) usage_set(node, static_cast<int64_t>(sx.stx_size));  // symlinks
  table_.replace(node);
  // Nothing has changed the object since the statx: it is getattr's answer.
  if (attr) *attr = present_attr(node, sys::to_stat(sx));
  return node;
}

Result<std::optional<struct statx>> Filesystem::set_owner(int dirfd, const std::string& name,
                                                          const InodePtr& dir, const Caller& caller,
                                                          mode_t mode) {
  if (!root_daemon_) return std::optional<struct statx>();
  mode_t want = mode & 07777;
  // Most often the object already is as it should be (the caller is the
  // daemon's own user and group, nothing asked for set-id bits).
  LFS_ASSIGN(struct statx now, sys::statx_at(dirfd, name, STATX_BASIC_STATS | STATX_BTIME));
  if (now.stx_uid == caller.uid && now.stx_gid == caller.gid &&
      (S_ISLNK(mode) || (now.stx_mode & 07777) == want)) {
    return std::optional<struct statx>(now);
  }
  struct stat pst;
  LFS_ASSIGN(FdPin dfd, dir->upper_fd());
  if (::fstat(dfd.get(), &pst) < 0) return errno_error();
  const bool sgid_parent = (pst.st_mode & S_ISGID) != 0;
  gid_t gid = sgid_parent ? static_cast<gid_t>(-1) : caller.gid;
  if (::fchownat(dirfd, name.c_str(), caller.uid, gid, AT_SYMLINK_NOFOLLOW) < 0) {
    return errno_error();
  }
  if (S_ISLNK(mode)) return std::optional<struct statx>();
  if (S_ISDIR(mode) && sgid_parent) want |= S_ISGID;
  LFS_ASSIGN(struct stat st, sys::stat_at(dirfd, name));
  if ((st.st_mode & 07777) != want) {
    LFS_TRY(check_sys_void(::fchmodat(dirfd, name.c_str(), want, 0)));
  }
  return std::optional<struct statx>();
}

void Filesystem::touch_dir(const InodePtr& dir) {
  struct timespec ts[2] = {{0, UTIME_OMIT}, {0, UTIME_NOW}};
  auto dfd = dir->upper_fd();
  if (!dfd.ok()) {
    ignore_error(Result<void>(Error{dfd.error()}), "mtime of a whiteout-only change");
    return;
  }
  ignore_error(sys::set_times(dfd->get(), ts), "mtime of a whiteout-only change");
}

void Filesystem::forget_records(const InodePtr& node) {
  bool rec;
  uint64_t uino;
  {
    std::lock_guard<std::mutex> lock(node->m);
    rec = node->has_record && node->has_upper();
    uino = node->upper_ino;
  }
  if (!rec) return;
  metadata::Batch b;
  b.forget_object(uino);
  ignore_error(index_->commit(b, metadata::Durability::kBuffered),
               "records of a deleted object are ignored by stamp");
}

Result<void> Filesystem::drop_name(const InodePtr& node, bool upper_name_removed) {
  if (node->in_group) {
    uint32_t links;
    bool up;
    uint64_t uino;
    {
      std::lock_guard<std::mutex> lock(node->m);
      if (node->group_links > 0) --node->group_links;
      links = node->group_links;
      up = node->has_upper();
      uino = node->upper_ino;
    }
    metadata::Batch b;
    if (links == 0) {
      b.remove_link_group(node->group_layer, node->group_lower_ino);
      if (up) b.forget_object(uino);
    } else {
      b.put_link_group(node->group_layer, node->group_lower_ino,
                       metadata::LinkGroup{up ? uino : 0, links});
    }
    LFS_TRY(index_->commit(b, metadata::Durability::kBuffered));
    // The shared copy lost a link without losing an upper name: its change
    // time moves as the link count changes.
    if (links > 0 && up && !upper_name_removed) {
      auto ufd = node->upper_fd();
      if (ufd.ok()) ignore_error(touch_ctime(ufd->get()), "ctime of a hard-link group");
    }
    if (links == 0) {
      if (up) {
        // The shared copy's last name goes: keep it reachable for open handles.
        ignore_error(node->pin_upper(), "an open handle may not reach the removed copy");
        usage_set(node, 0);
        std::string lname =
            std::to_string(node->group_layer) + "-" + std::to_string(node->group_lower_ino);
        if (::unlinkat(layers_->links_fd(), lname.c_str(), 0) < 0 && errno != ENOENT) {
          LFS_LOG_WARN("removing links/%s: %s", lname.c_str(), strerror(errno));
        }
      }
      node->dead = true;
    }
    return {};
  }
  if (node->has_upper()) {
    if (!upper_name_removed) return {};
    struct stat st;
    LFS_ASSIGN(FdPin ufd, node->upper_fd());
    if (::fstat(ufd.get(), &st) < 0) return errno_error();
    if (st.st_nlink == 0) {
      forget_records(node);
      usage_set(node, 0);
      node->dead = true;
    }
    return {};
  }
  node->dead = true;
  return {};
}

namespace {

// Forgets `node`'s merged location if it is (dir, name).
void clear_location(const InodePtr& node, const InodePtr& dir, const std::string& name) {
  std::lock_guard<std::mutex> lock(node->m);
  if (node->parent == dir && node->name == name) {
    node->parent.reset();
    node->name.clear();
  }
}

void set_location(const InodePtr& node, const InodePtr& dir, const std::string& name) {
  std::lock_guard<std::mutex> lock(node->m);
  node->parent = dir;
  node->name = name;
}

}  // namespace

Result<InodePtr> Filesystem::mknod(const InodePtr& dir, std::string_view name_view, mode_t mode,
                                   dev_t rdev, const Caller& caller) {
  LFS_TRY(check_writable());
  std::string name(name_view);
  LFS_TRY(copy_up(dir));
  DirLock dl(dir.get());
  LFS_ASSIGN(FdPin upin, dir->upper_fd());
  const int ufd = upin.get();
  LFS_TRY(check_sys_void(::mknodat(ufd, name.c_str(), mode, rdev)));
  auto owner = set_owner(ufd, name, dir, caller, mode);
  if (!owner.ok()) {
    ::unlinkat(ufd, name.c_str(), 0);
    return Error{owner.error()};
  }
  return new_upper_object(dir, name, -1, owner.value());
}

Result<InodePtr> Filesystem::mkdir(const InodePtr& dir, std::string_view name_view, mode_t mode,
                                   const Caller& caller) {
  LFS_TRY(check_writable());
  std::string name(name_view);
  LFS_TRY(copy_up(dir));
  // Made where a lower directory was deleted: hide that one's content.
  bool opaque = false;
  if (!dir->lowers.empty()) {
    LFS_ASSIGN(bool wh, is_whited_out(dir, name));
    opaque = wh;
    if (!opaque) {
      LowerHit hit;
      LFS_ASSIGN(opaque, lower_lookup(dir->lowers, name, &hit));
    }
  }
  DirLock dl(dir.get());
  LFS_ASSIGN(FdPin upin, dir->upper_fd());
  const int ufd = upin.get();
  LFS_TRY(check_sys_void(::mkdirat(ufd, name.c_str(), mode & 07777)));
  auto owner = set_owner(ufd, name, dir, caller, S_IFDIR | (mode & 07777));
  if (!owner.ok()) {
    ::unlinkat(ufd, name.c_str(), AT_REMOVEDIR);
    return Error{owner.error()};
  }
  LFS_ASSIGN(InodePtr node, new_upper_object(dir, name, -1, owner.value()));
  if (opaque) {
    metadata::Batch b;
    {
      std::lock_guard<std::mutex> lock(node->m);
      node->opaque = true;
      b.put_object(node->upper_ino, record_of_locked(*node));
    }
    auto r = index_->commit(b, metadata::Durability::kBuffered);
    if (!r.ok()) {
      ::unlinkat(ufd, name.c_str(), AT_REMOVEDIR);
      node->dead = true;
      return Error{r.error()};
    }
    std::lock_guard<std::mutex> lock(node->m);
    node->has_record = true;
  }
  return node;
}

Result<InodePtr> Filesystem::symlink(const InodePtr& dir, std::string_view name_view,
                                     const std::string& target, const Caller& caller) {
  LFS_TRY(check_writable());
  std::string name(name_view);
  LFS_TRY(copy_up(dir));
  DirLock dl(dir.get());
  LFS_ASSIGN(FdPin upin, dir->upper_fd());
  const int ufd = upin.get();
  LFS_TRY(check_sys_void(::symlinkat(target.c_str(), ufd, name.c_str())));
  auto owner = set_owner(ufd, name, dir, caller, S_IFLNK | 0777);
  if (!owner.ok()) {
    ::unlinkat(ufd, name.c_str(), 0);
    return Error{owner.error()};
  }
  return new_upper_object(dir, name, -1, owner.value());
}

Result<InodePtr> Filesystem::link(const InodePtr& node, const InodePtr& dir,
                                  std::string_view name_view) {
  LFS_TRY(check_writable());
  if (node->is_dir()) return Error{EPERM};
  std::string name(name_view);
  LFS_TRY(copy_up(node));
  LFS_TRY(copy_up(dir));
  DirLock dl(dir.get());
  LFS_ASSIGN(FdPin src, node->upper_fd());
  LFS_ASSIGN(FdPin dfd, dir->upper_fd());
  if (::linkat(AT_FDCWD, sys::fd_path(src.get()).c_str(), dfd.get(), name.c_str(),
               AT_SYMLINK_FOLLOW) < 0) {
    return errno_error();
  }
  if (node->in_group) {
    metadata::Batch b;
    {
      std::lock_guard<std::mutex> lock(node->m);
      ++node->group_links;
      b.put_link_group(node->group_layer, node->group_lower_ino,
                       metadata::LinkGroup{node->upper_ino, node->group_links});
    }
    auto r = index_->commit(b, metadata::Durability::kBuffered);
    if (!r.ok()) {
      ::unlinkat(dfd.get(), name.c_str(), 0);
      std::lock_guard<std::mutex> lock(node->m);
      --node->group_links;
      return Error{r.error()};
    }
  }
  {
    std::lock_guard<std::mutex> lock(node->m);
    if (!node->parent) {
      node->parent = dir;
      node->name = name;
    }
  }
  return node;
}

Result<void> Filesystem::unlink(const InodePtr& dir, std::string_view name_view) {
  LFS_TRY(check_writable());
  std::string name(name_view);
  LFS_ASSIGN(InodePtr child, lookup(dir, name));
  if (child->is_dir()) return Error{EISDIR};
  LFS_ASSIGN(bool need_wh, lower_has(dir, name));
  if (need_wh) LFS_TRY(copy_up(dir));
  DirLock dl(dir.get());
  FdPin upin;
  bool in_upper = false;
  if (dir->has_upper()) {
    LFS_ASSIGN(upin, dir->upper_fd());
    LFS_ASSIGN(auto st, sys::stat_if_exists(upin.get(), name));
    in_upper = st.has_value();
  }
  const int ufd = upin.get();
  // This may be the object's last name.
  if (in_upper) LFS_TRY(child->pin_upper());
  if (need_wh) {
    metadata::Batch b;
    add_whiteout_to_batch(dir, name, &b);
    LFS_TRY(index_->commit(b, metadata::Durability::kBuffered));
    note_whiteout(dir, name, true);
  }
  if (in_upper) {
    if (::unlinkat(ufd, name.c_str(), 0) < 0) {
      Error e = errno_error();
      if (need_wh) {
        metadata::Batch undo;
        undo.remove_whiteout(dir->upper_ino, name);
        ignore_error(index_->commit(undo, metadata::Durability::kBuffered), "logged below");
        note_whiteout(dir, name, false);
      }
      return e;
    }
  } else {
    touch_dir(dir);
  }
  clear_location(child, dir, name);
  return drop_name(child, in_upper);
}

Result<void> Filesystem::rmdir(const InodePtr& dir, std::string_view name_view) {
  LFS_TRY(check_writable());
  std::string name(name_view);
  LFS_ASSIGN(InodePtr child, lookup(dir, name));
  if (!child->is_dir()) return Error{ENOTDIR};
  if (child == root_) return Error{EBUSY};
  LFS_ASSIGN(bool empty, is_empty_dir(child));
  if (!empty) return Error{ENOTEMPTY};
  LFS_ASSIGN(bool need_wh, lower_has(dir, name));
  if (need_wh) LFS_TRY(copy_up(dir));
  DirLock dl(dir.get());
  FdPin upin;
  if (child->has_upper()) {
    LFS_ASSIGN(upin, dir->upper_fd());
    // An open directory handle may still list it after its removal.
    LFS_TRY(child->pin_upper());
  }
  const int ufd = upin.get();
  if (need_wh) {
    metadata::Batch b;
    add_whiteout_to_batch(dir, name, &b);
    LFS_TRY(index_->commit(b, metadata::Durability::kBuffered));
    note_whiteout(dir, name, true);
  }
  if (child->has_upper()) {
    if (::unlinkat(ufd, name.c_str(), AT_REMOVEDIR) < 0) {
      Error e = errno_error();
      if (need_wh) {
        metadata::Batch undo;
        undo.remove_whiteout(dir->upper_ino, name);
        ignore_error(index_->commit(undo, metadata::Durability::kBuffered), "best effort");
        note_whiteout(dir, name, false);
      }
      return e;
    }
    forget_records(child);
  } else {
    touch_dir(dir);
  }
  child->dead = true;
  clear_location(child, dir, name);
  return {};
}

Result<void> Filesystem::rename(const InodePtr& dir, std::string_view name_view,
                                const InodePtr& newdir, std::string_view newname_view,
                                unsigned flags) {
  LFS_TRY(check_writable());
  if (flags & ~(RENAME_NOREPLACE | RENAME_EXCHANGE)) return Error{EINVAL};
  if ((flags & RENAME_NOREPLACE) && (flags & RENAME_EXCHANGE)) return Error{EINVAL};
  const bool exchange = flags & RENAME_EXCHANGE;
  std::string name(name_view), newname(newname_view);

  LFS_ASSIGN(InodePtr src, lookup(dir, name));
  InodePtr dst;
  {
    auto d = lookup(newdir, newname);
    if (d.ok()) {
      dst = d.value();
    } else if (d.error() != ENOENT) {
      return Error{d.error()};
    }
  }
  if (exchange && !dst) return Error{ENOENT};
  if ((flags & RENAME_NOREPLACE) && dst) return Error{EEXIST};
  if (dst == src) return {};  // two names of one file: nothing to do
  if (dst && !exchange) {
    if (src->is_dir() && !dst->is_dir()) return Error{ENOTDIR};
    if (!src->is_dir() && dst->is_dir()) return Error{EISDIR};
    if (dst->is_dir()) {
      LFS_ASSIGN(bool empty, is_empty_dir(dst));
      if (!empty) return Error{ENOTEMPTY};
    }
  }

  LFS_TRY(copy_up(dir));
  LFS_TRY(copy_up(newdir));
  LFS_TRY(copy_up(src));
  if (exchange) LFS_TRY(copy_up(dst));
  bool need_wh = false;
  if (!exchange) {
    LFS_ASSIGN(need_wh, lower_has(dir, name));
  }

  DirPairLock locks(dir.get(), newdir.get());
  LFS_ASSIGN(FdPin upin, dir->upper_fd());
  LFS_ASSIGN(FdPin nupin, newdir->upper_fd());
  const int ufd = upin.get();
  const int nufd = nupin.get();

  // A lower hard-link group member may have its data in WORK/links only.
  auto ensure_upper_name = [&](const InodePtr& n, int pfd, const std::string& nm) -> Result<void> {
    if (!n->in_group) return {};
    LFS_ASSIGN(auto st, sys::stat_if_exists(pfd, nm));
    if (st) return {};
    std::string lname = std::to_string(n->group_layer) + "-" + std::to_string(n->group_lower_ino);
    return check_sys_void(::linkat(layers_->links_fd(), lname.c_str(), pfd, nm.c_str(), 0));
  };
  LFS_TRY(ensure_upper_name(src, ufd, name));
  if (exchange) LFS_TRY(ensure_upper_name(dst, nufd, newname));

  bool dst_in_upper = false;
  if (dst && !exchange) {
    LFS_ASSIGN(auto st, sys::stat_if_exists(nufd, newname));
    dst_in_upper = st.has_value();
    // The rename may take the target's last name.
    if (dst_in_upper) LFS_TRY(dst->pin_upper());
  }

  // A moved directory keeps its lower view through a redirect to the lower path
  // it merges; one without a lower view becomes opaque, so that nothing at its
  // new place merges into it.
  struct DirChange {
    InodePtr node;
    metadata::ObjectRecord before;
    bool had_record;
    metadata::ObjectRecord after;
  };
  std::vector<DirChange> changes;
  auto plan_moved_dir = [&](const InodePtr& d) {
    std::lock_guard<std::mutex> lock(d->m);
    DirChange c{d, record_of_locked(*d), d->has_record, {}};
    c.after = c.before;
    if (!d->lowers.empty()) {
      if (d->redirect) return;
      c.after.redirect = d->lower_path.value_or("");
    } else {
      if (d->opaque) return;
      c.after.opaque = true;
    }
    changes.push_back(std::move(c));
  };
  if (src->is_dir()) plan_moved_dir(src);
  if (exchange && dst->is_dir()) plan_moved_dir(dst);

  metadata::Batch batch, undo;
  if (need_wh) {
    add_whiteout_to_batch(dir, name, &batch);
    undo.remove_whiteout(dir->upper_ino, name);
  }
  for (auto& c : changes) {
    uint64_t uino;
    {
      std::lock_guard<std::mutex> lock(c.node->m);
      uino = c.node->upper_ino;
    }
    batch.put_object(uino, c.after);
    if (c.had_record) {
      undo.put_object(uino, c.before);
    } else {
      undo.forget_object(uino);
    }
  }
  if (!batch.empty()) LFS_TRY(index_->commit(batch, metadata::Durability::kBuffered));

  if (::renameat2(ufd, name.c_str(), nufd, newname.c_str(),
                  flags & (RENAME_NOREPLACE | RENAME_EXCHANGE)) < 0) {
    Error e = errno_error();
    if (!undo.empty()) {
      ignore_error(index_->commit(undo, metadata::Durability::kBuffered), "rename failed anyway");
    }
    return e;
  }

  if (need_wh) note_whiteout(dir, name, true);
  for (auto& c : changes) {
    std::lock_guard<std::mutex> lock(c.node->m);
    c.node->redirect = c.after.redirect;
    c.node->opaque = c.after.opaque;
    c.node->has_record = true;
  }

  if (dst && !exchange) {
    clear_location(dst, newdir, newname);
    if (dst->is_dir()) {
      forget_records(dst);
      dst->dead = true;
    } else {
      LFS_TRY(drop_name(dst, dst_in_upper));
    }
  }
  set_location(src, newdir, newname);
  if (exchange) set_location(dst, dir, name);
  return {};
}

}  // namespace layerfs
