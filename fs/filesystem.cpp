// Mount-time setup of the merge: the index in the workdir, removal of crash
// leftovers from the staging area (cf. ovl_workdir_cleanup), and the root.
#include "fs/filesystem.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstring>
#include <set>

#include "fs/fs_internal.h"
#include "fs/log.h"
#include "fs/sys.h"

namespace layerfs {

Filesystem::Filesystem(std::unique_ptr<LayerStack> layers, const FsOptions& options)
    : layers_(std::move(layers)), options_(options), root_daemon_(::geteuid() == 0) {}

Filesystem::~Filesystem() {
  // Inodes the kernel still knew about keep themselves alive; release them so
  // that every Inode is gone before the table.
  root_.reset();
}

Result<std::unique_ptr<Filesystem>> Filesystem::open(std::unique_ptr<LayerStack> layers,
                                                     const FsOptions& options, std::string* why) {
  std::unique_ptr<Filesystem> fs(new Filesystem(std::move(layers), options));
  const LayerStack& ls = *fs->layers_;
  if (ls.has_upper()) {
    auto index = metadata::Index::open(ls.index_path(), true, why);
    if (!index.ok()) return Error{index.error()};
    fs->index_ = std::move(index).value();

    // Anything in staging is a copy that never got published.
    std::vector<std::string> leftovers;
    auto listed = sys::for_each_dirent(ls.staging_fd(), [&](const sys::RawDirent& d) {
      leftovers.push_back(d.name);
    });
    if (!listed.ok()) {
      *why = std::string("cannot read the workdir's staging area: ") + strerror(listed.error());
      return Error{listed.error()};
    }
    if (!leftovers.empty()) {
      metadata::Batch b;
      std::set<uint64_t> inos;
      for (const auto& n : leftovers) {
        auto st = sys::stat_if_exists(ls.staging_fd(), n);
        if (st.ok() && st.value()) {
          b.forget_object(st.value()->st_ino);
          inos.insert(st.value()->st_ino);
        }
      }
      // A hard-link group's copy is recorded in its group before it moves to
      // links/: a group naming a leftover goes back to "not copied up", as if
      // the copy-up had never started (its lower file shows meanwhile).
      auto scanned = fs->index_->for_each_link_group(
          [&](uint32_t layer, uint64_t lower_ino, const metadata::LinkGroup& g) {
            if (g.upper_ino != 0 && inos.count(g.upper_ino)) {
              b.put_link_group(layer, lower_ino, metadata::LinkGroup{0, g.links});
            }
            return true;
          });
      if (!scanned.ok()) {
        *why = std::string("cannot read the index: ") + strerror(scanned.error());
        return Error{scanned.error()};
      }
      auto committed = fs->index_->commit(b, metadata::Durability::kSynced);
      if (!committed.ok()) {
        *why = std::string("cannot update the index: ") + strerror(committed.error());
        return Error{committed.error()};
      }
      for (const auto& n : leftovers) {
        auto removed = remove_tree_at(ls.staging_fd(), n);
        if (!removed.ok()) {
          *why = "cannot remove staging/" + n + " from the workdir: " + strerror(removed.error());
          return Error{removed.error()};
        }
      }
      LFS_LOG_INFO("removed %zu unfinished copy-ups from the workdir", leftovers.size());
    }
  }
  if (ls.has_upper() && options.track_usage) {
    auto usage = UsageCounter::start(ls.work_fd(), ls.upper().root.get(), ls.links_fd());
    if (!usage.ok()) {
      *why = std::string("cannot count the writable layer's size: ") + strerror(usage.error());
      return Error{usage.error()};
    }
    fs->usage_ = std::move(usage).value();
  }
  auto root = fs->make_root();
  if (!root.ok()) {
    *why = std::string("cannot read the layer roots: ") + strerror(root.error());
    return Error{root.error()};
  }
  fs->root_ = std::move(root).value();
  return fs;
}

void Filesystem::usage_set(const InodePtr& node, int64_t size) {
  int64_t old = node->counted_size.exchange(size, std::memory_order_acq_rel);
  usage_add(size - old);
}

void Filesystem::usage_grow(const InodePtr& node, int64_t size) {
  int64_t old = node->counted_size.load(std::memory_order_acquire);
  while (old < size) {
    if (node->counted_size.compare_exchange_weak(old, size, std::memory_order_acq_rel)) {
      usage_add(size - old);
      return;
    }
  }
}

Result<void> Filesystem::shutdown() {
  Result<void> result;
  if (usage_) {
    auto r = usage_->stop();
    if (!r.ok()) result = r;
  }
  if (index_) {
    auto r = index_->sync();
    if (!r.ok()) result = r;
  }
  return result;
}

}  // namespace layerfs
