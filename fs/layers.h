// The layer stack of one mount: an O_PATH fd per layer root, opened once at
// mount time, and the workdir's parts. Immutable after open(), so it is shared
// by every thread without locking.
//
// Workdir layout (all private to layerfs, never visible in the mount):
//   WORK/index/    the RocksDB index (metadata/FORMAT.md)
//   WORK/staging/  copies being built; anything left there at mount is a
//                  crash leftover and is removed
//   WORK/links/    the shared upper copy of each lower hard-link group,
//                  named "<layer>-<lower ino>" (design-notes.md section 4)
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "fs/fd_cache.h"
#include "fs/options.h"
#include "fs/result.h"
#include "fs/unique_fd.h"

namespace layerfs {

struct Layer {
  uint32_t number = 0;  // 0 = upper, 1..N = lowers top-most first
  std::string path;     // canonical path, for messages only
  UniqueFd root;        // O_PATH | O_DIRECTORY
  dev_t dev = 0;
  // Decoding file handles of this layer's objects (fs/fd_cache.h): a readable
  // fd of the root, and whether handles work there (checked at open).
  UniqueFd handle_root;
  HandleMount handles;
};

class LayerStack {
 public:
  // Opens every layer root and, with an upper, takes the "in use" locks on the
  // upper and work directories and prepares the workdir. On failure *why names
  // the problem and nothing has been changed on disk except creating the
  // workdir's subdirectories.
  static Result<std::unique_ptr<LayerStack>> open(const CanonicalPaths& paths, std::string* why);

  bool has_upper() const { return upper_.root.valid(); }
  const Layer& upper() const { return upper_; }
  const std::vector<Layer>& lowers() const { return lowers_; }
  size_t lower_count() const { return lowers_.size(); }
  // Where handles of layer `number` (0 = upper) decode; unusable when the
  // filesystem or the daemon's privileges do not allow reopening by handle.
  HandleMount handles(uint32_t number) const {
    if (number == 0) return upper_.handles;
    if (number >= 1 && number <= lowers_.size()) return lowers_[number - 1].handles;
    return {};
  }

  int work_fd() const { return work_.get(); }
  int staging_fd() const { return staging_.get(); }
  int links_fd() const { return links_.get(); }
  const std::string& index_path() const { return index_path_; }

 private:
  Layer upper_;
  std::vector<Layer> lowers_;
  UniqueFd work_;
  UniqueFd staging_;
  UniqueFd links_;
  UniqueFd upper_lock_;
  UniqueFd work_lock_;
  std::string index_path_;
};

// Removes `name` in `dirfd` and, for a directory, everything below it, without
// following symlinks. Used on the workdir only.
Result<void> remove_tree_at(int dirfd, const std::string& name);

// An O_RDONLY fd on directory `path` holding an exclusive flock: the "in use"
// marker a mount holds on its upper and work directories, released when the
// process exits, however it exits. Taken already: EBUSY, and `why` says
// "WHAT PATH BUSY".
Result<UniqueFd> lock_in_use(const std::string& path, const char* what, std::string_view busy,
                             std::string* why);

}  // namespace layerfs
