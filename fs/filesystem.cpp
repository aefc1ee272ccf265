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

namespace {

// "inode N born S" identity of a layer root: what the index's records depend on (origins and
// link groups are keyed by lower inode numbers and layer positions, object records by upper
// inode numbers), unlike its path, which may change without harm.
Result<std::string> root_identity(const Layer& layer) {
  auto stx = sys::statx_at(layer.root.get(), "", STATX_INO | STATX_BTIME);
  if (!stx.ok()) return Error{stx.error()};
  return std::to_string(stx.value().stx_ino) + ":" + std::to_string(sys::birth_stamp(stx.value()));
}

// The meta value recording the layers an index belongs to: "upper ID\nlower ID\n..." with
// the lowers top-most first.
Result<std::string> layer_identities(const LayerStack& ls, std::string* upper_id) {
  auto up = root_identity(ls.upper());
  if (!up.ok()) return Error{up.error()};
  *upper_id = up.value();
  std::string v = "upper " + up.value() + "\n";
  for (const auto& l : ls.lowers()) {
    auto id = root_identity(l);
    if (!id.ok()) return Error{id.error()};
    v += "lower " + id.value() + "\n";
  }
  return v;
}

// Refuses an index made for another upper directory or other lowers (fs/DESIGN.md, "Bad
// state"); records the layers in an index that has no record of them yet.
Result<void> check_layers(const LayerStack& ls, metadata::Index& index, std::string* why) {
  constexpr std::string_view kKey = "layers";
  std::string upper_id;
  auto now = layer_identities(ls, &upper_id);
  if (!now.ok()) {
    *why = std::string("cannot read the layer roots: ") + strerror(now.error());
    return Error{now.error()};
  }
  auto recorded = index.meta(kKey);
  if (!recorded.ok()) {
    *why = "cannot read the index " + ls.index_path() + ": " + strerror(recorded.error());
    return Error{recorded.error()};
  }
  if (!recorded.value()) {
    metadata::Batch b;
    b.put_meta(kKey, now.value());
    auto committed = index.commit(b, metadata::Durability::kSynced);
    if (!committed.ok()) {
      *why = std::string("cannot update the index: ") + strerror(committed.error());
      return Error{committed.error()};
    }
    return {};
  }
  const std::string& was = *recorded.value();
  if (was == now.value()) return {};
  std::string describe_was = was, describe_now = now.value();
  for (auto* d : {&describe_was, &describe_now}) {
    for (auto& c : *d) c = c == '\n' ? ';' : c;
  }
  if (was.rfind("upper " + upper_id + "\n", 0) != 0) {
    *why = "the workdir's index " + ls.index_path() + " belongs to another upper directory than " +
           ls.upper().path + " (recorded layer roots, as inode:birth: " + describe_was +
           " given: " + describe_now +
           "); mount the upper it was made with, or give this upper a new, empty workdir "
           "(deletions, opaque directories and renames recorded in the old index are then lost)";
  } else {
    *why = "the upper directory " + ls.upper().path +
           " was last used with other lower layers (recorded layer roots, as inode:birth: " +
           describe_was + " given: " + describe_now +
           "); its copied-up files keep the identities of the old lowers, so mount it with the "
           "same lowers in the same order (or commit its changes into a layer with layerctl)";
  }
  return Error{EINVAL};
}

}  // namespace

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
    // A workdir that an earlier mount used (it wrote WORK/usage after opening the index) must
    // still have its index: a new, empty one would silently bring back every deleted lower
    // file and undo opaque directories and renames.
    if (::faccessat(ls.work_fd(), "index/CURRENT", F_OK, AT_SYMLINK_NOFOLLOW) != 0 &&
        errno == ENOENT && ::faccessat(ls.work_fd(), "usage", F_OK, AT_SYMLINK_NOFOLLOW) == 0) {
      *why = "the index " + ls.index_path() +
             " is missing or incomplete (no CURRENT file), but an earlier mount used this "
             "workdir (its usage file exists); refusing to start a new index, which would undo "
             "the deletions, opaque directories and renames recorded in the lost one. Restore "
             "the index, or remove the usage file in the workdir to start anew";
      return Error{EINVAL};
    }
    auto index = metadata::Index::open(ls.index_path(), true, why);
    if (!index.ok()) return Error{index.error()};
    fs->index_ = std::move(index).value();
    fs->index_->sync_within(std::chrono::seconds(1));
    auto layers_ok = check_layers(ls, *fs->index_, why);
    if (!layers_ok.ok()) return Error{layers_ok.error()};

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
