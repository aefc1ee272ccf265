#include "fs/layers.h"

#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstring>
#include <vector>

#include "fs/ino.h"
#include "fs/sys.h"

namespace layerfs {
namespace {

Result<Layer> open_layer(uint32_t number, const std::string& path, const char* what,
                         std::string* why) {
  Layer l;
  l.number = number;
  l.path = path;
  int fd = ::open(path.c_str(), O_PATH | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0) {
    Error e = errno_error();
    *why = std::string(what) + " " + path + ": " + strerror(e.code);
    return e;
  }
  l.root.reset(fd);
  struct stat st;
  if (::fstat(fd, &st) < 0) {
    Error e = errno_error();
    *why = std::string(what) + " " + path + ": " + strerror(e.code);
    return e;
  }
  l.dev = st.st_dev;
  // Without a readable root (or handle support) the layer's fds stay pinned.
  int hfd = ::openat(fd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (hfd >= 0) {
    l.handle_root.reset(hfd);
    l.handles = probe_handle_mount(hfd);
  }
  return l;
}

Result<UniqueFd> ensure_subdir(int dirfd, const char* name, const std::string& work,
                               std::string* why) {
  if (::mkdirat(dirfd, name, 0700) < 0 && errno != EEXIST) {
    Error e = errno_error();
    *why = "cannot create " + work + "/" + name + ": " + strerror(e.code);
    return e;
  }
  auto fd = sys::open_at(dirfd, name, O_PATH | O_DIRECTORY | O_NOFOLLOW);
  if (!fd.ok()) {
    *why = work + "/" + name + " is not a directory: " + strerror(fd.error());
    return Error{fd.error()};
  }
  return std::move(fd).value();
}

}  // namespace

Result<UniqueFd> lock_in_use(const std::string& path, const char* what, std::string_view busy,
                             std::string* why) {
  int fd = ::open(path.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0) {
    Error e = errno_error();
    *why = std::string(what) + " " + path + ": " + strerror(e.code);
    return e;
  }
  UniqueFd lock(fd);
  if (::flock(fd, LOCK_EX | LOCK_NB) < 0) {
    Error e = errno_error();
    if (e.code == EWOULDBLOCK) {
      *why = std::string(what) + " " + path + " " + std::string(busy);
      return Error{EBUSY};
    }
    *why = std::string("cannot lock ") + what + " " + path + ": " + strerror(e.code);
    return e;
  }
  return lock;
}

Result<std::unique_ptr<LayerStack>> LayerStack::open(const CanonicalPaths& paths,
                                                     std::string* why) {
  auto stack = std::make_unique<LayerStack>();
  if (paths.lowerdirs.empty()) {
    *why = "no lowerdir given";
    return Error{EINVAL};
  }
  if (paths.lowerdirs.size() >= ino::kMaxLayers) {
    *why = "too many lower layers (at most " + std::to_string(ino::kMaxLayers - 1) + ")";
    return Error{EINVAL};
  }
  uint32_t n = 1;
  for (const auto& p : paths.lowerdirs) {
    LFS_ASSIGN(Layer l, open_layer(n++, p, "lowerdir", why));
    stack->lowers_.push_back(std::move(l));
  }
  if (!paths.upperdir) return stack;

  LFS_ASSIGN(stack->upper_, open_layer(0, *paths.upperdir, "upperdir", why));
  constexpr std::string_view kBusy = "is already in use by another layerfs mount";
  LFS_ASSIGN(stack->upper_lock_, lock_in_use(*paths.upperdir, "upperdir", kBusy, why));
  LFS_ASSIGN(stack->work_lock_, lock_in_use(*paths.workdir, "workdir", kBusy, why));
  int wfd = ::open(paths.workdir->c_str(), O_PATH | O_DIRECTORY | O_CLOEXEC);
  if (wfd < 0) {
    Error e = errno_error();
    *why = "workdir " + *paths.workdir + ": " + strerror(e.code);
    return e;
  }
  stack->work_.reset(wfd);
  LFS_ASSIGN(stack->staging_, ensure_subdir(wfd, "staging", *paths.workdir, why));
  LFS_ASSIGN(stack->links_, ensure_subdir(wfd, "links", *paths.workdir, why));
  stack->index_path_ = *paths.workdir + "/index";
  return stack;
}

Result<void> remove_tree_at(int dirfd, const std::string& name) {
  if (::unlinkat(dirfd, name.c_str(), 0) == 0) return {};
  if (errno == ENOENT) return {};
  if (errno != EISDIR && errno != EPERM) return errno_error();
  LFS_ASSIGN(UniqueFd dfd, sys::open_at(dirfd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW));
  std::vector<std::string> names;
  LFS_TRY(
      sys::for_each_dirent(dfd.get(), [&](const sys::RawDirent& d) { names.push_back(d.name); }));
  for (const auto& n : names) LFS_TRY(remove_tree_at(dfd.get(), n));
  if (::unlinkat(dirfd, name.c_str(), AT_REMOVEDIR) < 0 && errno != ENOENT) return errno_error();
  return {};
}

}  // namespace layerfs
