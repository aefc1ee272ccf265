// The layerfs index: everything the merge needs that is not a plain file in
// the upper tree. Stored in RocksDB inside the workdir; metadata/FORMAT.md
// describes the keys and values. This header is the whole public API: no
// RocksDB type appears here, and only metadata/*.cpp include RocksDB.
//
// Identity of upper objects: records are keyed by the upper object's inode
// number (st_ino on the upper filesystem). Inode numbers get reused after an
// object is deleted, so every object record carries a `stamp` (the birth time
// of the upper object, see fs/ino.h). A reader that finds a record whose stamp
// differs from the live object's stamp must treat the records as stale.
//
// Thread safety: an Index may be used from many threads at once without
// external locking. Batches are not shared between threads.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "fs/result.h"

namespace layerfs::metadata {

// Bumped whenever the on-disk format changes incompatibly.
inline constexpr uint32_t kFormatVersion = 1;

// What the index knows about one upper object (file, directory, symlink...).
struct ObjectRecord {
  // Birth stamp of the upper object these records were written for; 0 when the
  // upper filesystem cannot tell (then records are trusted as they are).
  uint64_t stamp = 0;
  // The st_ino the mount presents for this object, when it was copied up (or
  // moved) from a lower layer and so keeps the lower object's identity.
  std::optional<uint64_t> origin;
  // Directory only: lower layers are hidden below it.
  bool opaque = false;
  // Directory only: the path in the lower layers ("/a/b", "" = the root) its
  // lower entries come from, when it was renamed away from that path.
  std::optional<std::string> redirect;

  bool operator==(const ObjectRecord&) const = default;
};

// A lower file with several hard links that has been copied up or had names
// removed: keeps the names one file (design-notes.md section 4).
struct LinkGroup {
  // Upper inode number of the shared copy (workdir/links/<layer>-<ino>), or 0
  // while the file has not been copied up.
  uint64_t upper_ino = 0;
  // Number of names the file has in the merged view.
  uint32_t links = 0;

  bool operator==(const LinkGroup&) const = default;
};

enum class Durability {
  kBuffered,  // survives the daemon being killed (written to the WAL)
  kSynced,    // survives a power cut (WAL fsynced before commit returns)
};

// A set of changes applied atomically by Index::commit(). Operations apply in
// the order they were added.
class Batch {
 public:
  // Replaces the object record of `upper_ino`.
  void put_object(uint64_t upper_ino, const ObjectRecord& rec);
  // Removes the object record of `upper_ino` and every whiteout recorded in it
  // (use when the upper object is deleted).
  void forget_object(uint64_t upper_ino);
  // Whiteouts: `name` in upper directory `dir_ino` hides lower entries.
  void add_whiteout(uint64_t dir_ino, std::string_view name);
  void remove_whiteout(uint64_t dir_ino, std::string_view name);
  // Link groups, keyed by (lower layer number, lower st_ino).
  void put_link_group(uint32_t layer, uint64_t lower_ino, const LinkGroup& group);
  void remove_link_group(uint32_t layer, uint64_t lower_ino);
  // Free-form mount metadata (layer fingerprints, counters...). Keys are short
  // ASCII names; keys starting with "format" are reserved for the index.
  void put_meta(std::string_view key, std::string_view value);

  bool empty() const { return ops_.empty(); }
  size_t size() const { return ops_.size(); }

  enum class OpKind { kPutObject, kForgetObject, kAddWhiteout, kRemoveWhiteout,
                      kPutLinkGroup, kRemoveLinkGroup, kPutMeta };
  struct Op {
    OpKind kind;
    uint64_t a = 0;      // upper_ino / dir_ino / lower_ino
    uint32_t layer = 0;  // link groups
    std::string name;    // whiteout name / meta key
    std::string value;   // meta value
    ObjectRecord object;
    LinkGroup group;
  };
  const std::vector<Op>& ops() const { return ops_; }

 private:
  std::vector<Op> ops_;
};

class Index {
 public:
  // Opens the index kept in directory `path`, creating it when `create` is
  // true and the directory holds no index yet.
  // Fails, with a message naming the problem in *why:
  //  - ENOENT: no index there and !create;
  //  - EBUSY: another process has it open;
  //  - ENOTSUP: written by an unknown format version;
  //  - EINVAL: the directory holds something that is not a layerfs index;
  //  - EIO: the index is corrupt or cannot be read.
  // Never modifies or deletes existing data when it fails.
  static Result<std::unique_ptr<Index>> open(const std::string& path, bool create,
                                             std::string* why);
  ~Index();
  Index(const Index&) = delete;
  Index& operator=(const Index&) = delete;

  // nullopt when the object has no record.
  Result<std::optional<ObjectRecord>> object(uint64_t upper_ino) const;
  // The whiteout names recorded in `dir_ino`, sorted by name.
  Result<std::vector<std::string>> whiteouts(uint64_t dir_ino) const;
  Result<std::optional<LinkGroup>> link_group(uint32_t layer, uint64_t lower_ino) const;
  Result<std::optional<std::string>> meta(std::string_view key) const;

  // A stable number standing for (layer, ino) when ino does not fit the st_ino
  // encoding (fs/ino.h). Returns the same number for the same pair forever,
  // different numbers for different pairs, counting up from 1. Allocation is
  // committed (kBuffered) before it returns.
  Result<uint64_t> alias(uint32_t layer, uint64_t ino);

  // Applies `batch` atomically: after a crash either all of it or none of it is
  // visible.
  Result<void> commit(const Batch& batch, Durability durability);
  // Makes everything committed so far survive a power cut.
  Result<void> sync();
  // sync(), only when a kBuffered commit happened since the last sync.
  Result<void> sync_if_needed();
  // From now on a kBuffered commit survives a power cut at most `interval`
  // after it returns: a background thread syncs the WAL that long after the
  // first commit that left it unsynced (until the index is closed). Call once.
  void sync_within(std::chrono::milliseconds interval);
  // True while a kBuffered commit waits for a sync.
  bool unsynced() const;

  // For checks and tests: visits every record; stop early by returning false.
  Result<void> for_each_object(
      const std::function<bool(uint64_t upper_ino, const ObjectRecord&)>& fn) const;
  Result<void> for_each_link_group(
      const std::function<bool(uint32_t layer, uint64_t lower_ino, const LinkGroup&)>& fn) const;

  // For a checker (fs/check.h): visits every key of the index in key order.
  // Unlike the for_each_* functions it does not stop at a damaged key or value:
  // each one goes to `damaged` (the key in hex and what is wrong with it) and
  // the scan goes on. A callback left empty skips that kind. Fails only when
  // RocksDB cannot read on.
  struct Visitor {
    std::function<void(uint64_t upper_ino, const ObjectRecord&)> object;
    std::function<void(uint64_t dir_ino, std::string_view name)> whiteout;
    std::function<void(uint32_t layer, uint64_t lower_ino, const LinkGroup&)> link_group;
    std::function<void(uint32_t layer, uint64_t ino, uint64_t alias)> alias;
    std::function<void(std::string_view name, std::string_view value)> meta;
    std::function<void(const std::string& key_hex, const std::string& problem)> damaged;
  };
  Result<void> scan_all(const Visitor& v) const;

 private:
  struct Impl;
  explicit Index(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace layerfs::metadata
