// Copy-up (cf. overlayfs copy_up.c): giving a lower object its upper copy.
//
// Protocol, for each object, ancestors first:
//  1. build the copy in WORK/staging under a fresh temporary name: data (holes
//     kept, fs/copy_data.h), then xattrs, then owner, mode and times (data
//     before xattrs because writing data drops security.capability; owner
//     before mode because chown clears set-id bits; chown also drops
//     security.capability, which is then set again);
//  2. fsync it (files);
//  3. commit the index record {upper inode -> origin st_ino}; the upper inode
//     number does not change when the file is renamed, so the record is right
//     from this moment. The record is in the index's log when the commit
//     returns (a killed daemon keeps it) and on disk within a second (the
//     index's background sync, or an fsync through the mount, sooner): a power
//     cut in between can only give the copy its own inode number instead of
//     the lower one's. A hard-link group's record is synced at once, because
//     it is how the group's other names find the shared copy;
//  4. rename the copy into place with RENAME_NOREPLACE, under the parent's
//     dir_mutex, and put back the parent's times (best effort).
// A crash before 4 leaves only a staging entry, removed at the next mount; its
// record is then dropped too (and would be ignored anyway: its stamp matches no
// live object). The merged view never shows a partial copy.
//
// Lower hard-link groups (nlink > 1) are copied once, to WORK/links/<layer>-
// <ino>, and then linked at the name being copied up; other names of the group
// find that copy through the group record.
//
// Only the object's own copy_mutex is held while copying, so one copy-up never
// holds up operations on other files.
#include <fcntl.h>
#include <sys/stat.h>
#include <sys/xattr.h>
#include <unistd.h>

#include <cstdio>
#include <cstring>
#include <optional>

#include "fs/copy_data.h"
#include "fs/fs_internal.h"
#include "fs/log.h"
#include "fs/sys.h"
#include "fs/xattr.h"

namespace layerfs {
namespace {

constexpr const char* kCapabilityXattr = "security.capability";

// Removes a half-built staging entry when a copy-up fails.
class StagingGuard {
 public:
  StagingGuard(int staging_fd, std::string name) : fd_(staging_fd), name_(std::move(name)) {}
  ~StagingGuard() {
    if (armed_) ignore_error(remove_tree_at(fd_, name_), "staging is cleaned at the next mount");
  }
  void disarm() { armed_ = false; }

 private:
  int fd_;
  std::string name_;
  bool armed_ = true;
};

}  // namespace

std::string Filesystem::temp_name() {
  char buf[32];
  snprintf(buf, sizeof buf, "#%llx", static_cast<unsigned long long>(temp_counter_.fetch_add(1)));
  return buf;
}

std::atomic<bool>* Filesystem::clone_possible(dev_t dev) {
  std::lock_guard<std::mutex> lock(clone_mu_);
  auto& slot = clone_possible_[dev];
  if (!slot) slot = std::make_unique<std::atomic<bool>>(true);
  return slot.get();
}

Result<void> Filesystem::copy_up(const InodePtr& node, CopyData data, uint64_t prefix) {
  LFS_TRY(check_writable());
  for (int attempt = 0;; ++attempt) {
    if (node->has_upper()) return {};
    // Ancestors without an upper copy, nearest first.
    std::vector<InodePtr> chain;
    {
      InodePtr p;
      {
        std::lock_guard<std::mutex> lock(node->m);
        p = node->parent;
      }
      while (p && !p->has_upper()) {
        chain.push_back(p);
        std::lock_guard<std::mutex> lock(p->m);
        p = p->parent;
      }
    }
    for (auto it = chain.rbegin(); it != chain.rend(); ++it) {
      LFS_TRY(copy_up_one(*it, CopyData::kAll, 0));
    }
    // EAGAIN: the object moved while it was being copied; start again.
    auto r = copy_up_one(node, data, prefix);
    if (r.ok() || r.error() != EAGAIN || attempt >= 3) return r;
  }
}

Result<void> Filesystem::copy_up_one(const InodePtr& node, CopyData data, uint64_t prefix) {
  std::lock_guard<std::mutex> copy_lock(node->copy_mutex);
  if (node->has_upper()) return {};

  InodePtr parent;
  std::string name;
  {
    std::lock_guard<std::mutex> lock(node->m);
    parent = node->parent;
    name = node->name;
  }
  bool orphan = node->dead.load() || !parent;
  if (!orphan && !parent->has_upper()) {
    // The parent was copied up just before; only a racing removal of it gets here.
    return Error{ENOENT};
  }

  std::string lname;  // name in WORK/links for a hard-link group
  if (node->in_group) {
    lname = std::to_string(node->group_layer) + "-" + std::to_string(node->group_lower_ino);
    LFS_ASSIGN(auto group, index_->link_group(node->group_layer, node->group_lower_ino));
    if (group && group->upper_ino != 0) {
      // Copied up through another name, by an earlier mount (if the copy is
      // missing, make it again below).
      auto fd = sys::open_at(layers_->links_fd(), lname, O_PATH | O_NOFOLLOW);
      if (fd.ok()) {
        LFS_ASSIGN(auto sx, sys::statx_at(fd.value().get(), "", STATX_BASIC_STATS | STATX_BTIME));
        std::lock_guard<std::mutex> lock(node->m);
        node->origin_recorded = true;
        node->has_record = true;
        node->set_upper(upper_ref(std::move(fd).value()), sx.stx_ino, sys::birth_stamp(sx));
        node->counted_size = static_cast<int64_t>(sx.stx_size);
        return {};
      }
    }
  }

  LFS_ASSIGN(struct stat st, stat_real(node));
  const int staging = layers_->staging_fd();
  const std::string tmp = temp_name();
  StagingGuard guard(staging, tmp);
  UniqueFd dir_fd;  // directories: for the times, set after the rename
  std::optional<struct statx> file_sx;  // regular files: taken before the fsync

  switch (st.st_mode & S_IFMT) {
    case S_IFREG: {
      LFS_ASSIGN(FdPin lfd, lower_fd_of(node));
      LFS_ASSIGN(UniqueFd src,
                 sys::open_at_noatime(lfd.get(), node->lower_name, O_RDONLY | O_NOFOLLOW));
      // Root creates the copy with its final permission bits (umask is 0),
      // which spares an fchmod for nearly every file: root can still write
      // and set xattrs on it. Set-id and sticky bits come after chown (which
      // clears set-id bits). Another daemon needs the copy writable by its
      // owner for user.* xattrs until the end.
      const mode_t create_mode = root_daemon_ ? (st.st_mode & 0777) : 0600;
      LFS_ASSIGN(UniqueFd dst, sys::open_at(staging, tmp, O_CREAT | O_EXCL | O_WRONLY | O_NOFOLLOW,
                                            create_mode));
      uint64_t len = 0;
      if (data == CopyData::kAll) len = st.st_size;
      if (data == CopyData::kPrefix) len = std::min<uint64_t>(prefix, st.st_size);
      if (len > 0) {
        CopyHints hints;
        hints.dst_fresh = true;
        hints.src_stat = &st;
        hints.clone_possible = clone_possible(st.st_dev);
        LFS_TRY(copy_file_data(src.get(), dst.get(), len, hints));
      }
      LFS_ASSIGN(std::optional<std::string> cap,
                 copy_xattrs_keeping(sys::fd_path(src.get()), true, sys::fd_path(dst.get()), true,
                                     kCapabilityXattr));
      if (::fchown(dst.get(), st.st_uid, st.st_gid) < 0 && (root_daemon_ || errno != EPERM)) {
        return errno_error();
      }
      // chown from userspace always drops file capabilities; put them back.
      if (cap) {
        if (::fsetxattr(dst.get(), kCapabilityXattr, cap->data(), cap->size(), 0) < 0 &&
            (root_daemon_ || errno != EPERM)) {
          return errno_error();
        }
      }
      if (!root_daemon_ || (st.st_mode & 07000)) {
        LFS_TRY(check_sys_void(::fchmod(dst.get(), st.st_mode & 07777)));
      }
      struct timespec ts[2] = {st.st_atim, st.st_mtim};
      LFS_TRY(check_sys_void(::futimens(dst.get(), ts)));
      // The copy's identity and size, asked here rather than through the
      // O_PATH fd below, so that a mode the creation did not give exactly (a
      // default ACL on the staging directory) is still corrected before fsync.
      LFS_ASSIGN(file_sx, sys::statx_at(dst.get(), "", STATX_BASIC_STATS | STATX_BTIME));
      if ((file_sx->stx_mode & 07777) != (st.st_mode & 07777)) {
        LFS_TRY(check_sys_void(::fchmod(dst.get(), st.st_mode & 07777)));
      }
      LFS_TRY(check_sys_void(::fsync(dst.get())));
      break;
    }
    case S_IFDIR: {
      LFS_TRY(check_sys_void(::mkdirat(staging, tmp.c_str(), 0700)));
      LFS_ASSIGN(dir_fd, sys::open_at(staging, tmp, O_RDONLY | O_DIRECTORY | O_NOFOLLOW));
      if (node->lowers.empty()) return Error{EIO};
      LFS_ASSIGN(FdPin lower, node->lowers[0].fd.pin());
      LFS_TRY(copy_xattrs(sys::fd_path(lower.get()), true,
                          sys::fd_path(dir_fd.get()), true));
      if (::fchown(dir_fd.get(), st.st_uid, st.st_gid) < 0 && (root_daemon_ || errno != EPERM)) {
        return errno_error();
      }
      LFS_TRY(check_sys_void(::fchmod(dir_fd.get(), st.st_mode & 07777)));
      break;
    }
    default: {
      LFS_ASSIGN(FdPin lpin, lower_fd_of(node));
      const int lfd = lpin.get();
      if (S_ISLNK(st.st_mode)) {
        LFS_ASSIGN(std::string target, sys::read_link_at(lfd, node->lower_name));
        LFS_TRY(check_sys_void(::symlinkat(target.c_str(), staging, tmp.c_str())));
      } else {
        LFS_TRY(check_sys_void(::mknodat(staging, tmp.c_str(), st.st_mode & (S_IFMT | 0600),
                                         st.st_rdev)));
      }
      LFS_TRY(copy_xattrs(sys::fd_path(lfd, node->lower_name), false, sys::fd_path(staging, tmp),
                          false));
      if (::fchownat(staging, tmp.c_str(), st.st_uid, st.st_gid, AT_SYMLINK_NOFOLLOW) < 0 &&
          (root_daemon_ || errno != EPERM)) {
        return errno_error();
      }
      if (!S_ISLNK(st.st_mode)) {
        LFS_TRY(check_sys_void(::fchmodat(staging, tmp.c_str(), st.st_mode & 07777, 0)));
      }
      struct timespec ts[2] = {st.st_atim, st.st_mtim};
      LFS_TRY(check_sys_void(::utimensat(staging, tmp.c_str(), ts, AT_SYMLINK_NOFOLLOW)));
      break;
    }
  }

  LFS_ASSIGN(UniqueFd upper, sys::open_at(staging, tmp, O_PATH | O_NOFOLLOW));
  struct statx sx;
  if (file_sx) {
    sx = *file_sx;
  } else {
    LFS_ASSIGN(sx, sys::statx_at(upper.get(), "", STATX_BASIC_STATS | STATX_BTIME));
  }
  const uint64_t stamp = sys::birth_stamp(sx);

  metadata::Batch batch;
  metadata::ObjectRecord rec;
  rec.stamp = stamp;
  rec.origin = node->ino;
  batch.put_object(sx.stx_ino, rec);
  if (node->in_group) {
    uint32_t links;
    {
      std::lock_guard<std::mutex> lock(node->m);
      links = node->group_links;
    }
    batch.put_link_group(node->group_layer, node->group_lower_ino,
                         metadata::LinkGroup{sx.stx_ino, links});
  }
  LFS_TRY(index_->commit(batch, node->in_group ? metadata::Durability::kSynced
                                                : metadata::Durability::kBuffered));

  auto install = [&] {
    {
      std::lock_guard<std::mutex> lock(node->m);
      node->origin_recorded = true;
      node->has_record = true;
      node->set_upper(upper_ref(std::move(upper)), sx.stx_ino, stamp);
    }
    // The copy joins the writable layer's size (an orphan copy does not: it
    // has no name there).
    if (!S_ISDIR(st.st_mode)) {
      node->counted_size = 0;
      if (!orphan) usage_set(node, static_cast<int64_t>(sx.stx_size));
    }
  };

  if (node->in_group) {
    if (::renameat2(staging, tmp.c_str(), layers_->links_fd(), lname.c_str(), RENAME_NOREPLACE) <
        0) {
      Error e = errno_error();
      LFS_LOG_ERROR("copy-up of %s into the links area: %s", name.c_str(), strerror(e.code));
      return e;
    }
    guard.disarm();
    install();
    // Also give it its name in the upper tree (best effort: other names of the
    // group reach the copy through the index anyway).
    if (!orphan) {
      DirLock dl(parent.get());
      InodePtr p2;
      std::string n2;
      {
        std::lock_guard<std::mutex> lock(node->m);
        p2 = node->parent;
        n2 = node->name;
      }
      auto pfd = parent->upper_fd();
      if (!pfd.ok()) {
        LFS_LOG_WARN("linking the copy of %s at its name: %s", n2.c_str(), strerror(pfd.error()));
      } else if (p2 == parent && !node->dead.load()) {
        // As for any copy-up, the parent's times are put back afterwards: the name
        // was already there in the merged view, so the parent did not change.
        auto ptimes = sys::statx_at(pfd->get(), "", STATX_ATIME | STATX_MTIME);
        if (::linkat(layers_->links_fd(), lname.c_str(), pfd->get(), n2.c_str(), 0) < 0) {
          if (errno != EEXIST) {
            LFS_LOG_WARN("linking the copy of %s at its name: %s", n2.c_str(), strerror(errno));
          }
        } else if (ptimes.ok()) {
          struct timespec ts[2] = {{ptimes->stx_atime.tv_sec, ptimes->stx_atime.tv_nsec},
                                   {ptimes->stx_mtime.tv_sec, ptimes->stx_mtime.tv_nsec}};
          ignore_error(sys::set_times(pfd->get(), ts), "parent times are best effort");
          // Its ctime moved (a new name, then the times put back).
          if (attr_invalidator_) attr_invalidator_(parent);
        }
      }
    }
    return {};
  }

  if (orphan) {
    // No name left in the merged view: the copy stays in staging until the
    // Inode dies (or the next mount removes it).
    guard.disarm();
    {
      std::lock_guard<std::mutex> lock(node->m);
      node->orphan_name = tmp;
      node->staging_fd_for_orphan = staging;
    }
    install();
    return {};
  }

  {
    DirLock dl(parent.get());
    {
      std::lock_guard<std::mutex> lock(node->m);
      if (node->parent != parent || node->dead.load()) {
        // Moved or removed while we copied: retry on the next request.
        return Error{EAGAIN};
      }
      name = node->name;
    }
    LFS_ASSIGN(FdPin ppin, parent->upper_fd());
    const int pfd = ppin.get();
    auto ptimes = sys::statx_at(pfd, "", STATX_ATIME | STATX_MTIME);
    if (::renameat2(staging, tmp.c_str(), pfd, name.c_str(), RENAME_NOREPLACE) < 0) {
      Error e = errno_error();
      LFS_LOG_ERROR("copy-up of %s: publishing failed: %s", name.c_str(), strerror(e.code));
      return e;
    }
    guard.disarm();
    install();
    if (ptimes.ok()) {
      struct timespec ts[2] = {{ptimes->stx_atime.tv_sec, ptimes->stx_atime.tv_nsec},
                               {ptimes->stx_mtime.tv_sec, ptimes->stx_mtime.tv_nsec}};
      ignore_error(sys::set_times(pfd, ts), "parent times are best effort");
    }
    // The parent's ctime moved under the kernel's cached attributes (a new
    // name in it, then its times put back): what the next stat says must be
    // what a remount would say.
    if (attr_invalidator_) attr_invalidator_(parent);
  }
  if (dir_fd.valid()) {
    struct timespec ts[2] = {st.st_atim, st.st_mtim};
    ignore_error(check_sys_void(::futimens(dir_fd.get(), ts)), "directory times are best effort");
    // Its ctime, and st_nlink once it merges two layers, changed under the
    // kernel's cached attributes.
    if (attr_invalidator_) attr_invalidator_(node);
  }
  return {};
}

}  // namespace layerfs
