// The layers of a store: import, list, inspect, remove, export. Layers are
// identified as OCI does, by their diffID (sha256 of the uncompressed tar),
// and may carry a unique name. Every function opens the store itself, taking
// the exclusive lock only for the moment it changes records (an import
// extracts into ROOT/tmp first).
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "tools/archive.h"
#include "tools/store.h"

namespace layerfs::ctl {

struct LayerInfo {
  std::string id;  // "sha256:<hex>"
  std::optional<std::string> name;
  std::string created;  // RFC 3339
  int64_t size = 0;     // Docker's classic rule (tools/size.h)
  uint64_t tar_size = 0;
  std::string source;
  std::vector<std::string> stacks;  // stacks using it (filled by list/inspect)

  json to_json() const;  // the fields above, as `layer inspect` prints
};

struct ImportOptions {
  std::optional<std::string> name;  // must not name another layer (Error)
  Progress progress;                // may be empty
};

// Imports a layer from a directory (a layer tree: its .wh. entries, 0/0
// devices and overlay opaque xattrs are whiteouts), a tar, a .tar.gz or a
// .tar.zst (detected from the content, not the name). A directory is first
// written as a tar (write_tree_tar), so its diffID is that tar's. Importing a
// layer that is already in the store returns it (a new name is added if it
// has none; a different name is an Error). Errors leave the store unchanged.
LayerInfo import_layer(const std::string& root, const std::string& path,
                       const ImportOptions& options);

// Registers a tar that a stack commit produced (tools/stacks.h): like
// import_layer on that file, with source "commit:<stack>".
LayerInfo import_committed_layer(const std::string& root, const std::string& tar_path,
                                 const std::string& stack, const ImportOptions& options);

// Every layer, by creation time.
std::vector<LayerInfo> list_layers(const Store& store);

// A layer by full id, by id without "sha256:", by a unique prefix of at least
// 12 hex digits, or by name. Error "No such layer: REF" otherwise (or when a
// prefix is ambiguous).
LayerInfo find_layer(const Store& store, const std::string& ref);

// Removes a layer and returns what it was. Refused (Error naming the stacks)
// while a stack uses it.
LayerInfo remove_layer(const std::string& root, const std::string& ref);

// Writes the layer as an OCI layer tar: the bytes it was imported with,
// compressed as asked. `out_path` is written to a temporary name beside it
// and renamed when complete.
void export_layer(const std::string& root, const std::string& ref, const std::string& out_path,
                  Compression compression, const Progress& progress);

// The directories of the layers as a layerfs lowerdir list: `layer_ids` is
// bottom-most first (a stack's order); the result is top-most first, the
// order layerfs wants. Every layer must exist (Error otherwise).
std::vector<std::string> layer_trees_top_first(const Store& store,
                                               const std::vector<std::string>& layer_ids);

}  // namespace layerfs::ctl
