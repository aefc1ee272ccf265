// Test-only access to the RocksDB database below an index, for the refusal
// paths that the public API rightly cannot produce (a foreign RocksDB database,
// an index of another format version, a damaged value). layerfs itself never
// calls this; unit tests do, since only metadata/*.cpp may include RocksDB.
#pragma once

#include <string>
#include <string_view>

#include "fs/result.h"

namespace layerfs::metadata::testing {

// Writes one raw key/value pair (keys as in metadata/keys.h) straight into the
// RocksDB database in `path`, synced. When `create_db`, an empty RocksDB
// database is created there first if none exists. No Index may have `path`
// open. Returns EIO when RocksDB fails.
Result<void> raw_put(const std::string& path, bool create_db, std::string_view key,
                     std::string_view value);
// Deletes one raw key from the database in `path`, synced; same rules.
Result<void> raw_delete(const std::string& path, std::string_view key);

}  // namespace layerfs::metadata::testing
