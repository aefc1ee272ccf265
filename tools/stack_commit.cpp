// Committing a stack (tools/stacks.h commit_stack): its changes become a new
// OCI layer. layerfs keeps whiteouts, opaque directories and renames in its
// index rather than in the upper tree, so the upper alone is not a layer.
// Instead the stack's merged view M is compared with a read-only mount L of
// its layers alone, as Docker's "naive diff" compares two trees, but exactly:
// an entry counts as changed when it lives in the upper directory, when it is
// another object than in L (layerfs gives a lower object the same st_ino in
// both mounts, and a copied-up one keeps it), or when its metadata differs.
#include <dirent.h>
#include <fcntl.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/xattr.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <map>
#include <set>

#include "tools/layer_store.h"
#include "tools/stack_internal.h"
#include "tools/stacks.h"

namespace layerfs::ctl {

using namespace stack_detail;

namespace {

std::string errno_text(int e) {
  return std::strerror(e);
}

std::vector<std::string> list_names(const std::string& dir) {
  std::vector<std::string> out;
  DIR* d = ::opendir(dir.c_str());
  if (!d) throw Error("cannot list " + dir + ": " + errno_text(errno));
  errno = 0;
  while (struct dirent* e = ::readdir(d)) {
    if (std::strcmp(e->d_name, ".") == 0 || std::strcmp(e->d_name, "..") == 0) continue;
    out.emplace_back(e->d_name);
  }
  int e = errno;
  ::closedir(d);
  if (e != 0) throw Error("cannot list " + dir + ": " + errno_text(e));
  std::sort(out.begin(), out.end());
  return out;
}

struct stat lstat_or_throw(const std::string& path) {
  struct stat st;
  if (::lstat(path.c_str(), &st) != 0)
    throw Error("cannot read " + path + ": " + errno_text(errno));
  return st;
}

std::map<std::string, std::string> xattrs_of(const std::string& path) {
  std::map<std::string, std::string> out;
  std::vector<char> names(1024);
  ssize_t n;
  while ((n = ::llistxattr(path.c_str(), names.data(), names.size())) < 0) {
    if (errno != ERANGE) return out;
    names.resize(names.size() * 4);
  }
  for (ssize_t i = 0; i < n;) {
    std::string name(names.data() + i);
    i += static_cast<ssize_t>(name.size()) + 1;
    std::vector<char> value(256);
    ssize_t v;
    while ((v = ::lgetxattr(path.c_str(), name.c_str(), value.data(), value.size())) < 0) {
      if (errno != ERANGE) break;
      value.resize(value.size() * 4 + 65536);
    }
    out[name] = v < 0 ? std::string() : std::string(value.data(), static_cast<size_t>(v));
  }
  return out;
}

std::string link_target(const std::string& path, const struct stat& st) {
  std::vector<char> buf(static_cast<size_t>(st.st_size) + 2);
  ssize_t n = ::readlink(path.c_str(), buf.data(), buf.size());
  return n < 0 ? std::string() : std::string(buf.data(), static_cast<size_t>(n));
}

// The same metadata as the layer below would give, so no new entry needed.
bool same_metadata(const std::string& mp, const std::string& lp, const struct stat& m,
                   const struct stat& l) {
  if (m.st_mode != l.st_mode || m.st_uid != l.st_uid || m.st_gid != l.st_gid) return false;
  if (m.st_mtim.tv_sec != l.st_mtim.tv_sec || m.st_mtim.tv_nsec != l.st_mtim.tv_nsec) return false;
  if (!S_ISDIR(m.st_mode)) {
    if (m.st_size != l.st_size || m.st_nlink != l.st_nlink || m.st_rdev != l.st_rdev) return false;
  }
  if (S_ISLNK(m.st_mode) && link_target(mp, m) != link_target(lp, l)) return false;
  return xattrs_of(mp) == xattrs_of(lp);
}

struct Item {
  enum class Kind { kAdd, kWhiteout, kOpaque } kind;
  std::string path;  // relative
  bool include = true;
  std::pair<dev_t, ino_t> key{};  // kAdd: the inode, for hard-link groups
  bool multi_link = false;        // kAdd: a non-directory with more than one name
};

class Differ {
 public:
  Differ(std::string m_root, std::string l_root, const std::string& upper)
      : m_(std::move(m_root)), l_(std::move(l_root)) {
    m_dev_ = lstat_or_throw(m_).st_dev;
    upper_fd_ = ::open(upper.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    if (upper_fd_ < 0) throw Error("cannot open " + upper + ": " + errno_text(errno));
  }
  ~Differ() {
    if (upper_fd_ >= 0) ::close(upper_fd_);
  }
  Differ(const Differ&) = delete;
  Differ& operator=(const Differ&) = delete;

  std::vector<Item> run() {
    walk_dir("", upper_fd_);
    // A changed file with several names: every name of it goes in, or the
    // names left out would show the old file (another inode) below.
    std::set<std::pair<dev_t, ino_t>> groups;
    for (const auto& it : items_) {
      if (it.kind == Item::Kind::kAdd && it.include && it.multi_link) groups.insert(it.key);
    }
    std::vector<Item> out;
    for (auto& it : items_) {
      if (!it.include && groups.count(it.key)) it.include = true;
      if (it.include) out.push_back(std::move(it));
    }
    return out;
  }

 private:
  std::string mpath(const std::string& rel) const { return rel.empty() ? m_ : m_ + "/" + rel; }
  std::string lpath(const std::string& rel) const { return rel.empty() ? l_ : l_ + "/" + rel; }
  static std::string join(const std::string& rel, const std::string& name) {
    return rel.empty() ? name : rel + "/" + name;
  }

  void add_entry(const std::string& rel, const struct stat& st, bool include) {
    const bool multi = !S_ISDIR(st.st_mode) && st.st_nlink > 1;
    if (!include && !multi) return;
    Item it{Item::Kind::kAdd, rel, include, {st.st_dev, st.st_ino}, multi};
    items_.push_back(std::move(it));
  }

  // `rel` and everything below it, as M shows it.
  void add_tree(const std::string& rel, const struct stat& st) {
    if (st.st_dev != m_dev_) return;  // something mounted inside the stack
    add_entry(rel, st, true);
    if (!S_ISDIR(st.st_mode)) return;
    for (const auto& n : list_names(mpath(rel))) {
      const std::string child = join(rel, n);
      add_tree(child, lstat_or_throw(mpath(child)));
    }
  }

  // Directory `rel`, present as a directory in both M and L; `upper_fd` is
  // the upper's directory at `rel` (or -1 when the upper has none).
  void walk_dir(const std::string& rel, int upper_fd) {
    const auto mnames = list_names(mpath(rel));
    const auto lnames = list_names(lpath(rel));
    std::vector<std::string> all;
    std::set_union(mnames.begin(), mnames.end(), lnames.begin(), lnames.end(),
                   std::back_inserter(all));
    const std::set<std::string> in_m(mnames.begin(), mnames.end());
    const std::set<std::string> in_l(lnames.begin(), lnames.end());
    for (const auto& name : all) {
      const std::string child = join(rel, name);
      if (!in_m.count(name)) {
        items_.push_back({Item::Kind::kWhiteout, child});
        continue;
      }
      const struct stat ms = lstat_or_throw(mpath(child));
      if (ms.st_dev != m_dev_) continue;  // something mounted inside the stack
      if (!in_l.count(name)) {
        add_tree(child, ms);
        continue;
      }
      const struct stat ls = lstat_or_throw(lpath(child));
      if ((ms.st_mode & S_IFMT) != (ls.st_mode & S_IFMT)) {
        // A directory replaces whatever was there with its whole tree; a
        // non-directory replaces a directory (and so hides its content).
        add_tree(child, ms);
        continue;
      }
      struct stat us;
      const bool in_upper =
          upper_fd >= 0 && ::fstatat(upper_fd, name.c_str(), &us, AT_SYMLINK_NOFOLLOW) == 0;
      const bool changed =
          in_upper || ms.st_ino != ls.st_ino || !same_metadata(mpath(child), lpath(child), ms, ls);
      if (!S_ISDIR(ms.st_mode)) {
        add_entry(child, ms, changed);
        continue;
      }
      int child_upper = -1;
      if (in_upper && S_ISDIR(us.st_mode)) {
        child_upper =
            ::openat(upper_fd, name.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
        if (child_upper < 0) {
          throw Error("cannot open the upper directory of " + child + ": " + errno_text(errno));
        }
      }
      try {
        if (changed) add_entry(child, ms, true);
        if (in_upper && shares_nothing(child)) {
          // A directory made anew over one of the layers (rmdir + mkdir, or
          // a rename over it): an opaque marker and its own content say it
          // more briefly than a whiteout for each old name.
          items_.push_back({Item::Kind::kOpaque, child});
          for (const auto& n : list_names(mpath(child))) {
            const std::string c = join(child, n);
            add_tree(c, lstat_or_throw(mpath(c)));
          }
        } else {
          walk_dir(child, child_upper);
        }
      } catch (...) {
        if (child_upper >= 0) ::close(child_upper);
        throw;
      }
      if (child_upper >= 0) ::close(child_upper);
    }
  }

  // Whether directory `rel` in M holds none of what L holds there (no entry of
  // M is one of L's objects, under its name or another): L has entries, and
  // M shows none of them.
  bool shares_nothing(const std::string& rel) {
    const auto lnames = list_names(lpath(rel));
    if (lnames.empty()) return false;
    std::set<ino_t> lower;
    for (const auto& n : lnames) lower.insert(lstat_or_throw(lpath(join(rel, n))).st_ino);
    for (const auto& n : list_names(mpath(rel))) {
      struct stat ms;
      if (::lstat(mpath(join(rel, n)).c_str(), &ms) == 0 && lower.count(ms.st_ino)) return false;
    }
    return true;
  }

  std::string m_, l_;
  dev_t m_dev_ = 0;
  int upper_fd_ = -1;
  std::vector<Item> items_;
};

// Mounts made for the commit, undone however it ends.
class Scratch {
 public:
  explicit Scratch(std::string dir) : dir_(std::move(dir)) {}
  ~Scratch() {
    for (auto it = mounts_.rbegin(); it != mounts_.rend(); ++it) {
      try {
        unmount_tree(*it);
      } catch (const Error&) {
        ::umount2(it->c_str(), MNT_DETACH);
      }
    }
    if (!work_.empty()) wait_workdir_free(work_);
    remove_tree(dir_);
  }
  Scratch(const Scratch&) = delete;
  Scratch& operator=(const Scratch&) = delete;

  std::string make_dir(const std::string& name) {
    const std::string p = dir_ + "/" + name;
    if (::mkdir(p.c_str(), 0700) != 0) throw Error("cannot create " + p + ": " + errno_text(errno));
    return p;
  }
  void mounted(const std::string& path) { mounts_.push_back(path); }
  void uses_workdir(const std::string& work) { work_ = work; }
  const std::string& dir() const { return dir_; }

 private:
  std::string dir_;
  std::vector<std::string> mounts_;
  std::string work_;
};

}  // namespace

std::string commit_stack(const std::string& root, const std::string& name,
                         const std::optional<std::string>& layer_name, const Progress& progress) {
  check_stack_name(name);
  auto store = Store::open(root, Access::kWrite);
  json rec = get_stack_record(*store, name);
  const auto mounts = read_mountinfo();
  for (const auto& m : mounts) {
    if (m.fstype == "fuse.layerfs" && (m.source == commit_mount_source(store->root(), name) ||
                                       m.source == base_mount_source(store->root(), name))) {
      throw Error("stack " + name + " is being committed already");
    }
  }
  std::vector<std::string> ids;
  for (const auto& l : rec.value("layers", json::array())) ids.push_back(l.get<std::string>());
  const std::vector<std::string> lowers = layer_trees_top_first(*store, ids);
  const std::string upper = store->stack_dir(name) + "/upper";
  const std::string work = store->stack_dir(name) + "/work";

  Scratch scratch(store->make_temp("commit"));
  // M: the stack's own view. A mounted stack is looked at through a
  // non-recursive bind, which shows it without the volumes, binds and tmpfs
  // mounted inside it (they are not part of the stack, as in Docker).
  const std::string view = scratch.make_dir("merged");
  if (auto at = stack_mountpoint(mounts, store->root(), name)) {
    if (::mount(at->c_str(), view.c_str(), nullptr, MS_BIND, nullptr) != 0) {
      throw Error("cannot bind " + *at + " at " + view + ": " + errno_text(errno));
    }
    scratch.mounted(view);
    ::mount(nullptr, view.c_str(), nullptr, MS_PRIVATE, nullptr);
  } else {
    run_layerfs(commit_mount_source(store->root(), name), view,
                layerfs_options(lowers, upper, work, {"ro"}));
    scratch.mounted(view);
    scratch.uses_workdir(work);
  }
  // L: the layers alone.
  const std::string base = scratch.make_dir("base");
  run_layerfs(base_mount_source(store->root(), name), base, layerfs_options(lowers, "", "", {}));
  scratch.mounted(base);
  // The rest takes long and needs no lock: the stack stays busy (mounted) so
  // nothing removes it meanwhile.
  store.reset();

  const std::string tar_path = scratch.dir() + "/layer.tar";
  {
    Differ differ(view, base, upper);
    const std::vector<Item> items = differ.run();
    TarWriter tar(tar_path, Compression::kNone);
    uint64_t done = 0;
    if (progress) {
      tar.on_data([&](uint64_t n) {
        done += n;
        progress(done, 0);
      });
    }
    for (const auto& it : items) {
      switch (it.kind) {
        case Item::Kind::kAdd:
          tar.add(it.path, view + "/" + it.path);
          break;
        case Item::Kind::kWhiteout:
          tar.add_whiteout(it.path);
          break;
        case Item::Kind::kOpaque:
          tar.add_opaque(it.path);
          break;
      }
    }
    tar.finish();
  }
  ImportOptions opts;
  opts.name = layer_name;
  opts.progress = progress;
  return import_committed_layer(root, tar_path, name, opts).id;
}

}  // namespace layerfs::ctl
