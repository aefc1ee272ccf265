// The metadata database of a layerctl store: a small ordered key/value map
// (keys like "layer/sha256:...", values are JSON documents written by
// tools/), kept in RocksDB behind this header. metadata/FORMAT.md describes
// it next to the mount index.
//
// One process opens it read-write at a time (tools/store.cpp serialises
// writers with a lock file); readers open it read-only and see the state of
// the last completed write.
#pragma once

#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "fs/result.h"

namespace layerfs::metadata {

inline constexpr const char* kStoreFormat = "layerctl-store-1";

class StoreDb {
 public:
  // Opens the database in directory `path`. With `create`, a missing or empty
  // directory becomes a new database (read-write only). Fails, with a message
  // in *why, for: ENOENT no database there; EINVAL not a layerctl store
  // database; ENOTSUP another format; EBUSY opened read-write elsewhere; EIO
  // damaged. Never modifies existing data when it fails.
  static Result<std::unique_ptr<StoreDb>> open(const std::string& path, bool read_only,
                                               bool create, std::string* why);
  ~StoreDb();
  StoreDb(const StoreDb&) = delete;
  StoreDb& operator=(const StoreDb&) = delete;

  Result<std::optional<std::string>> get(std::string_view key) const;
  // Every (key, value) whose key starts with `prefix`, in key order.
  Result<std::vector<std::pair<std::string, std::string>>> scan(std::string_view prefix) const;

  // A value to write, or nullopt to delete the key.
  using Change = std::pair<std::string, std::optional<std::string>>;
  // Applies all changes atomically and durably (synced before it returns).
  // EROFS on a read-only handle.
  Result<void> write(const std::vector<Change>& changes);

 private:
  struct Impl;
  explicit StoreDb(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace layerfs::metadata
