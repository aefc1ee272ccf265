// OCI layer tars: reading them safely into a layer tree, and writing them.
// Everything goes through libarchive (tar, gzip and zstd).
//
// A layer tree (ROOT/layers/<hex>/tree) holds a layer's files with OCI's
// whiteouts as they are in the tar: an empty file ".wh.NAME" deletes NAME from
// the layers below, ".wh..wh..opq" in a directory hides the layers' content
// below it. layerfs honours both in lower layers, so a tree is a lower as is.
#pragma once

#include <cstdint>
#include <functional>
#include <string>

#include "tools/store.h"

namespace layerfs::ctl {

enum class Compression { kNone, kGzip, kZstd };

// "none", "gzip", "zstd" (also "gz", "zst"); throws Error (exit 125) otherwise.
Compression parse_compression(const std::string& name);

// Called now and then with bytes done and the total (0 when unknown).
using Progress = std::function<void(uint64_t done, uint64_t total)>;

struct ExtractResult {
  std::string diff_id;    // "sha256:" + hex of the uncompressed tar's bytes
  uint64_t tar_size = 0;  // bytes of the uncompressed tar
  uint64_t entries = 0;   // entries extracted (whiteouts included)
};

// Extracts the (possibly gzip or zstd compressed; detected from the content)
// tar at `tar_path` into the empty directory `tree`, and writes the
// uncompressed tar's exact bytes, zstd-compressed, to `raw_copy_path`.
// Ownership, modes, times, xattrs, hard links, symlinks, devices and FIFOs are
// kept. Refused with Error, before or without writing outside `tree`:
// absolute names, ".." components, names reaching through a symlink (or a
// hard link target outside the tree), names with a NUL or empty component,
// ".wh." alone or ".wh..wh..opq" that is not a plain file, and a damaged or
// truncated archive. Applying follows OCI: a later entry replaces an earlier
// one of the same name (a directory over a directory keeps the content and
// takes the new attributes).
ExtractResult extract_layer_tar(const std::string& tar_path, const std::string& tree,
                                const std::string& raw_copy_path, const Progress& progress);

// Writes tars entry by entry, in the order given. Hard links are found by the
// source's (st_dev, st_ino): a second path of one inode becomes a hard-link
// entry to the first. PAX format; owners numeric, names not stored; xattrs
// kept (but not the overlay formats' private ones). Entries must be added
// parents first.
class TarWriter {
 public:
  // Writes to `out_path` (created or truncated), compressed as asked.
  TarWriter(const std::string& out_path, Compression compression);
  ~TarWriter();
  TarWriter(const TarWriter&) = delete;
  TarWriter& operator=(const TarWriter&) = delete;

  // Adds `name` (relative, no leading "./", directories without a trailing
  // slash) with the type, metadata and content of the object at `fs_path`
  // (lstat: a symlink is stored as a symlink).
  void add(const std::string& name, const std::string& fs_path);
  // Adds the OCI whiteout for `name` (".wh." + basename, in its directory).
  void add_whiteout(const std::string& name);
  // Adds the opaque marker of directory `dir` ("" = the root).
  void add_opaque(const std::string& dir);
  // Called with the bytes of file content as they are written (progress).
  void on_data(std::function<void(uint64_t bytes)> f);
  // Finishes the archive (writes its end); the destructor of an unfinished
  // writer removes the partial output.
  void finish();

 private:
  struct Impl;
  friend struct Impl;
  Impl* impl_;
};

// Writes the whole layer tree `tree` as a tar: entries sorted by name (so the
// same tree always gives the same bytes), whiteouts and opaque markers as
// they are, plus kernel overlayfs's forms converted to OCI's (a character
// device 0/0 NAME becomes ".wh.NAME"; trusted.overlay.opaque=y or
// user.overlay.opaque=y becomes ".wh..wh..opq").
void write_tree_tar(const std::string& tree, const std::string& out_path, Compression compression,
                    const Progress& progress);

// sha256 of a file's bytes, as "sha256:<hex>".
std::string sha256_file(const std::string& path);

}  // namespace layerfs::ctl
