// The table of live Inodes, keyed by presented st_ino, so that every name of
// one object (hard links, a lower file and its copy) maps to one Inode and one
// FUSE node id. It holds weak references: an Inode lives while the kernel
// knows it (Inode::kernel_ref), an open handle or a child refers to it, or a
// request is using it.
//
// Locking: sharded; a shard's mutex is held only inside these functions and
// never while taking an Inode's mutex (Inode::dead is atomic for that reason).
#pragma once

#include <cstdint>
#include <memory>
#include <mutex>
#include <unordered_map>

#include "fs/inode.h"

namespace layerfs {

class InodeTable {
 public:
  InodeTable() = default;
  InodeTable(const InodeTable&) = delete;
  InodeTable& operator=(const InodeTable&) = delete;
  // Every Inode must be gone before the table is destroyed.
  ~InodeTable() = default;

  // A new Inode (not yet in the table) whose last reference removes it from
  // the table.
  InodePtr make(uint64_t ino, mode_t type);
  // The live Inode with this ino that still has a name, or null.
  InodePtr find(uint64_t ino);
  // Puts `fresh` in the table and returns it, unless a live Inode with the same
  // ino that still has a name is there: then returns that one instead.
  InodePtr insert_or_get(const InodePtr& fresh);
  // Makes `node` the table's Inode for its ino (used when an object is
  // re-created under a number a dead Inode still holds).
  void replace(const InodePtr& node);

  size_t size();

 private:
  struct Entry {
    Inode* raw;
    std::weak_ptr<Inode> weak;
  };
  struct Shard {
    std::mutex m;
    std::unordered_map<uint64_t, Entry> map;
  };
  static constexpr size_t kShards = 64;
  Shard& shard(uint64_t ino) { return shards_[(ino ^ (ino >> 17) ^ (ino >> 48)) % kShards]; }
  void forget(Inode* raw);

  Shard shards_[kShards];
  std::atomic<uint64_t> next_generation_{1};
};

}  // namespace layerfs
