#include "fs/inode_table.h"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>

namespace layerfs {

void Inode::set_upper(ReopenableFd fd, uint64_t uino, uint64_t stamp) {
  upper_ino = uino;
  upper_stamp = stamp;
  upper_ = std::move(fd);
  has_upper_.store(true, std::memory_order_release);
  data_gen.fetch_add(1, std::memory_order_acq_rel);
}

Result<FdPin> Inode::upper_fd() const {
  if (!has_upper()) return Error{EIO};
  return upper_.pin();
}

Result<void> Inode::pin_upper() {
  if (!has_upper()) return {};
  // ReopenableFd::pin_forever takes the cache's lock; upper_ itself is not
  // modified, so concurrent readers are safe.
  return upper_.pin_forever();
}

InodePtr InodeTable::make(uint64_t ino, mode_t type) {
  auto* raw = new Inode(ino, type & S_IFMT);
  raw->generation = next_generation_.fetch_add(1);
  return InodePtr(raw, [this](Inode* p) {
    forget(p);
    if (!p->orphan_name.empty() && p->staging_fd_for_orphan >= 0) {
      ::unlinkat(p->staging_fd_for_orphan, p->orphan_name.c_str(), 0);
    }
    delete p;
  });
}

void InodeTable::forget(Inode* raw) {
  Shard& s = shard(raw->ino);
  std::lock_guard<std::mutex> lock(s.m);
  auto it = s.map.find(raw->ino);
  if (it != s.map.end() && it->second.raw == raw) s.map.erase(it);
}

InodePtr InodeTable::find(uint64_t ino) {
  Shard& s = shard(ino);
  std::lock_guard<std::mutex> lock(s.m);
  auto it = s.map.find(ino);
  if (it == s.map.end()) return nullptr;
  InodePtr p = it->second.weak.lock();
  if (p && p->dead.load()) return nullptr;
  return p;
}

InodePtr InodeTable::insert_or_get(const InodePtr& fresh) {
  Shard& s = shard(fresh->ino);
  InodePtr existing;  // released after the shard lock (its deleter takes it)
  std::lock_guard<std::mutex> lock(s.m);
  auto it = s.map.find(fresh->ino);
  if (it != s.map.end()) {
    existing = it->second.weak.lock();
    if (existing && !existing->dead.load()) return existing;
    it->second = Entry{fresh.get(), fresh};
    return fresh;
  }
  s.map.emplace(fresh->ino, Entry{fresh.get(), fresh});
  return fresh;
}

void InodeTable::replace(const InodePtr& node) {
  Shard& s = shard(node->ino);
  InodePtr old;
  std::lock_guard<std::mutex> lock(s.m);
  auto it = s.map.find(node->ino);
  if (it != s.map.end()) {
    old = it->second.weak.lock();
    it->second = Entry{node.get(), node};
  } else {
    s.map.emplace(node->ino, Entry{node.get(), node});
  }
}

size_t InodeTable::size() {
  size_t n = 0;
  for (auto& s : shards_) {
    std::lock_guard<std::mutex> lock(s.m);
    n += s.map.size();
  }
  return n;
}

}  // namespace layerfs
