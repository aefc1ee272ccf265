// Attributes, symlinks, extended attributes and statfs (cf. overlayfs
// inode.c / xattrs.c).
//
// Attributes come from the top-most copy of the object: the upper one when it
// exists, else the top-most lower one. What the mount presents differs from it
// only in st_ino (fs/ino.h), in st_nlink of a lower hard-link group (the count
// of its names in the merged view, kept in the index) and in st_nlink of a
// directory merged from several layers, which is 1 as for kernel overlayfs
// ("unknown"; find(1) and fts understand it), since counting would need the
// merged listing on every stat. An object with no name left in the merged view
// (still open) reports st_nlink 0.
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <sys/xattr.h>
#include <unistd.h>

#include "fs/fs_internal.h"
#include "fs/sys.h"
#include "fs/xattr.h"

namespace layerfs {

Result<struct stat> Filesystem::stat_real(const InodePtr& node) {
  if (node->has_upper()) {
    LFS_ASSIGN(FdPin ufd, node->upper_fd());
    return sys::stat_at(ufd.get(), "");
  }
  if (node->is_dir()) {
    if (node->lowers.empty()) return Error{EIO};
    LFS_ASSIGN(FdPin lfd, node->lowers[0].fd.pin());
    return sys::stat_at(lfd.get(), "");
  }
  LFS_ASSIGN(FdPin lfd, lower_fd_of(node));
  return sys::stat_at(lfd.get(), node->lower_name);
}

Result<void> touch_ctime(int fd) {
  return check_sys_void(::fchownat(fd, "", static_cast<uid_t>(-1), static_cast<gid_t>(-1),
                                   AT_EMPTY_PATH | AT_SYMLINK_NOFOLLOW));
}

Result<struct stat> Filesystem::getattr(const InodePtr& node) {
  LFS_ASSIGN(struct stat st, stat_real(node));
  return present_attr(node, st);
}

struct stat Filesystem::present_attr(const InodePtr& node, struct stat st) {
  st.st_ino = node->ino;
  if (node->dead.load()) {
    // No name left in the merged view (fstat of a file still open after its last name went):
    // 0, as on any filesystem, whatever the layer's copy says (a lower file keeps its name in
    // the lower; a merged directory would say 1).
    st.st_nlink = 0;
  } else if (node->in_group) {
    std::lock_guard<std::mutex> lock(node->m);
    st.st_nlink = node->group_links;
  } else if (node->is_dir()) {
    size_t layers = node->lowers.size() + (node->has_upper() ? 1 : 0);
    if (layers > 1) st.st_nlink = 1;
  }
  return st;
}

Result<struct stat> Filesystem::setattr(const InodePtr& node, const SetAttr& attr, FileHandle* fh) {
  LFS_TRY(check_writable());
  if (attr.size && node->is_dir()) return Error{EISDIR};
  if (attr.size && !S_ISREG(node->type)) return Error{EINVAL};
  if (!node->has_upper()) {
    if (attr.size && *attr.size == 0) {
      LFS_TRY(copy_up(node, CopyData::kNone));
    } else if (attr.size) {
      LFS_TRY(copy_up(node, CopyData::kPrefix, static_cast<uint64_t>(*attr.size)));
    } else {
      LFS_TRY(copy_up(node));
    }
  }
  LFS_ASSIGN(FdPin upin, node->upper_fd());
  const int ufd = upin.get();
  const std::string path = sys::fd_path(ufd);  // valid while upin lives
  if (attr.uid || attr.gid) {
    uid_t uid = attr.uid ? *attr.uid : static_cast<uid_t>(-1);
    gid_t gid = attr.gid ? *attr.gid : static_cast<gid_t>(-1);
    LFS_TRY(check_sys_void(::fchownat(ufd, "", uid, gid, AT_EMPTY_PATH | AT_SYMLINK_NOFOLLOW)));
  }
  if (attr.mode && !S_ISLNK(node->type)) {
    LFS_TRY(check_sys_void(::chmod(path.c_str(), *attr.mode & 07777)));
  }
  if (attr.size) {
    std::shared_ptr<UniqueFd> wfd;
    if (fh) {
      std::lock_guard<std::mutex> lock(fh->m);
      if (fh->on_upper && (fh->flags & O_ACCMODE) != O_RDONLY) wfd = fh->fd;
    }
    if (wfd) {
      LFS_TRY(check_sys_void(::ftruncate(wfd->get(), *attr.size)));
    } else {
      LFS_TRY(check_sys_void(::truncate(path.c_str(), *attr.size)));
    }
    usage_set(node, *attr.size);
  }
  if (attr.atime || attr.mtime) {
    struct timespec ts[2];
    ts[0] = attr.atime ? *attr.atime : timespec{0, UTIME_OMIT};
    ts[1] = attr.mtime ? *attr.mtime : timespec{0, UTIME_OMIT};
    LFS_TRY(check_sys_void(::utimensat(AT_FDCWD, path.c_str(), ts, 0)));
  }
  if (!attr.mode && !attr.uid && !attr.gid && !attr.size && !attr.atime && !attr.mtime) {
    // chown(f, -1, -1): the change time moves, as on the upper filesystem.
    LFS_TRY(touch_ctime(ufd));
  }
  return getattr(node);
}

Result<std::string> Filesystem::readlink(const InodePtr& node) {
  if (!S_ISLNK(node->type)) return Error{EINVAL};
  if (node->has_upper()) {
    LFS_ASSIGN(FdPin ufd, node->upper_fd());
    return sys::read_link_at(ufd.get(), "");
  }
  LFS_ASSIGN(FdPin lfd, lower_fd_of(node));
  return sys::read_link_at(lfd.get(), node->lower_name);
}

Result<struct statvfs> Filesystem::statfs() {
  const Layer& l = layers_->has_upper() ? layers_->upper() : layers_->lowers()[0];
  struct statvfs sv;
  if (::statvfs(sys::fd_path(l.root.get()).c_str(), &sv) < 0) return errno_error();
  return sv;
}

Result<Filesystem::XattrTarget> Filesystem::xattr_path(const InodePtr& node) {
  if (node->has_upper()) {
    LFS_ASSIGN(FdPin ufd, node->upper_fd());
    std::string p = sys::fd_path(ufd.get());
    return XattrTarget{std::move(ufd), std::move(p), true};
  }
  if (node->is_dir()) {
    if (node->lowers.empty()) return Error{EIO};
    LFS_ASSIGN(FdPin lfd, node->lowers[0].fd.pin());
    std::string p = sys::fd_path(lfd.get());
    return XattrTarget{std::move(lfd), std::move(p), true};
  }
  LFS_ASSIGN(FdPin lfd, lower_fd_of(node));
  std::string p = sys::fd_path(lfd.get(), node->lower_name);
  return XattrTarget{std::move(lfd), std::move(p), false};
}

Result<std::string> Filesystem::getxattr(const InodePtr& node, const std::string& name) {
  if (is_private_xattr(name)) return Error{ENODATA};
  LFS_ASSIGN(auto t, xattr_path(node));
  return get_xattr(t.path, name, t.follow);
}

Result<std::vector<std::string>> Filesystem::listxattr(const InodePtr& node) {
  LFS_ASSIGN(auto t, xattr_path(node));
  LFS_ASSIGN(auto names, list_xattrs(t.path, t.follow));
  std::vector<std::string> out;
  for (auto& n : names) {
    if (!is_private_xattr(n)) out.push_back(std::move(n));
  }
  return out;
}

Result<void> Filesystem::setxattr(const InodePtr& node, const std::string& name,
                                  std::string_view value, int flags) {
  if (is_private_xattr(name)) return Error{EPERM};
  LFS_TRY(check_writable());
  LFS_TRY(copy_up(node));
  LFS_ASSIGN(FdPin ufd, node->upper_fd());
  std::string path = sys::fd_path(ufd.get());
  if (::setxattr(path.c_str(), name.c_str(), value.data(), value.size(), flags) < 0) {
    return errno_error();
  }
  return {};
}

Result<void> Filesystem::removexattr(const InodePtr& node, const std::string& name) {
  if (is_private_xattr(name)) return Error{ENODATA};
  LFS_TRY(check_writable());
  if (!node->has_upper()) {
    // Nothing to remove: fail without copying up.
    LFS_TRY(getxattr(node, name));
    LFS_TRY(copy_up(node));
  }
  LFS_ASSIGN(FdPin ufd, node->upper_fd());
  std::string path = sys::fd_path(ufd.get());
  if (::removexattr(path.c_str(), name.c_str()) < 0) return errno_error();
  return {};
}

}  // namespace layerfs
