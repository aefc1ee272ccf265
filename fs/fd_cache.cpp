// The bounded fd cache and reopenable fds (see fs/fd_cache.h for why).
#include "fs/fd_cache.h"

#include <fcntl.h>
#include <sys/stat.h>

#include <algorithm>
#include <cerrno>
#include <cstring>

namespace layerfs {

namespace {

// Large enough for every filesystem's handles (MAX_HANDLE_SZ is 128).
constexpr size_t kMaxHandleBytes = 128;

// The handle of `fd`'s object and the id of the mount it is on.
bool handle_of(int fd, std::vector<unsigned char>* out, int* mnt_id) {
  std::vector<unsigned char> buf(sizeof(struct file_handle) + kMaxHandleBytes);
  auto* fh = reinterpret_cast<struct file_handle*>(buf.data());
  fh->handle_bytes = kMaxHandleBytes;
  if (::name_to_handle_at(fd, "", fh, mnt_id, AT_EMPTY_PATH) < 0) return false;
  buf.resize(sizeof(struct file_handle) + fh->handle_bytes);
  *out = std::move(buf);
  return true;
}

int open_handle(int mount_fd, const std::vector<unsigned char>& handle, int flags) {
  // open_by_handle_at does not modify the handle; the cast only satisfies its
  // non-const prototype.
  auto* fh = reinterpret_cast<struct file_handle*>(const_cast<unsigned char*>(handle.data()));
  return ::open_by_handle_at(mount_fd, fh, flags | O_CLOEXEC);
}

}  // namespace

HandleMount probe_handle_mount(int root_fd) {
  HandleMount hm;
  std::vector<unsigned char> h;
  int mnt_id = -1;
  if (!handle_of(root_fd, &h, &mnt_id)) return hm;
  int fd = open_handle(root_fd, h, O_PATH | O_DIRECTORY);
  if (fd < 0) return hm;
  struct stat a, b;
  bool same = ::fstat(fd, &a) == 0 && ::fstat(root_fd, &b) == 0 && a.st_ino == b.st_ino &&
              a.st_dev == b.st_dev;
  ::close(fd);
  if (!same) return hm;
  hm.fd = root_fd;
  hm.mnt_id = mnt_id;
  return hm;
}

size_t fd_budget_for_limit(uint64_t soft_limit) {
  // Reserve: open file handles of the kernel's users, RocksDB (its own
  // max_open_files), the layer roots, the FUSE device and libraries.
  constexpr uint64_t kReserve = 64;
  constexpr uint64_t kMin = 16, kMax = 16384;
  uint64_t half = soft_limit / 2;
  uint64_t b = half > kReserve ? half - kReserve : 0;
  return static_cast<size_t>(std::clamp(b, kMin, kMax));
}

FdCache& FdCache::process() {
  // Leaked on purpose: Inodes may outlive static destruction order at exit.
  static FdCache* cache = new FdCache(4096);
  return *cache;
}

void FdCache::set_capacity(size_t capacity) {
  std::vector<std::shared_ptr<UniqueFd>> evicted;
  {
    std::lock_guard<std::mutex> lock(m_);
    capacity_ = capacity;
    evict_locked(&evicted);
  }
}

size_t FdCache::capacity() const {
  std::lock_guard<std::mutex> lock(m_);
  return capacity_;
}

size_t FdCache::cached() const {
  std::lock_guard<std::mutex> lock(m_);
  return lru_.size();
}

uint64_t FdCache::reopens() const {
  std::lock_guard<std::mutex> lock(m_);
  return reopens_;
}

std::shared_ptr<UniqueFd> FdCache::lookup(Entry* e) {
  std::lock_guard<std::mutex> lock(m_);
  if (!e->fd) return nullptr;
  if (e->in_lru && e->pos != lru_.begin()) lru_.splice(lru_.begin(), lru_, e->pos);
  return e->fd;
}

void FdCache::evict_locked(std::vector<std::shared_ptr<UniqueFd>>* out) {
  while (lru_.size() > capacity_) {
    Entry* victim = lru_.back();
    lru_.pop_back();
    victim->in_lru = false;
    out->push_back(std::move(victim->fd));
    victim->fd.reset();
  }
}

std::shared_ptr<UniqueFd> FdCache::insert(Entry* e, std::shared_ptr<UniqueFd> fd) {
  std::vector<std::shared_ptr<UniqueFd>> evicted;  // closed after the lock is released
  std::lock_guard<std::mutex> lock(m_);
  if (e->fd) {
    evicted.push_back(std::move(fd));  // another thread was first: keep its fd
    return e->fd;
  }
  e->fd = fd;
  if (!e->permanent) {
    lru_.push_front(e);
    e->pos = lru_.begin();
    e->in_lru = true;
    evict_locked(&evicted);
  }
  // Even if `e` itself was evicted (capacity 0), the caller's reference keeps
  // the fd open for as long as it uses it.
  return fd;
}

std::shared_ptr<UniqueFd> FdCache::make_permanent(Entry* e, std::shared_ptr<UniqueFd> fd) {
  std::shared_ptr<UniqueFd> spare;  // closed after the lock
  std::lock_guard<std::mutex> lock(m_);
  if (e->in_lru) {
    lru_.erase(e->pos);
    e->in_lru = false;
  }
  e->permanent = true;
  if (e->fd) {
    spare = std::move(fd);
  } else {
    e->fd = std::move(fd);
  }
  return e->fd;
}

void FdCache::erase(Entry* e) {
  std::shared_ptr<UniqueFd> fd;  // closed after the lock
  std::lock_guard<std::mutex> lock(m_);
  if (e->in_lru) {
    lru_.erase(e->pos);
    e->in_lru = false;
  }
  fd = std::move(e->fd);
}

ReopenableFd ReopenableFd::pinned(UniqueFd fd) {
  ReopenableFd r;
  r.e_ = std::make_unique<FdCache::Entry>();
  r.e_->fd = std::make_shared<UniqueFd>(std::move(fd));
  r.e_->permanent = true;
  return r;
}

ReopenableFd ReopenableFd::make(UniqueFd fd, int open_flags, const HandleMount& mount,
                                FdCache* cache) {
  if (!mount.usable() || cache == nullptr) return pinned(std::move(fd));
  std::vector<unsigned char> handle;
  int mnt_id = -1;
  // No handle (no export support for this object) or another mount below the
  // layer root (the handle would not decode on the layer's mount): pin.
  if (!handle_of(fd.get(), &handle, &mnt_id) || mnt_id != mount.mnt_id) {
    return pinned(std::move(fd));
  }
  ReopenableFd r;
  r.e_ = std::make_unique<FdCache::Entry>();
  r.e_->cache = cache;
  r.e_->mount_fd = mount.fd;
  r.e_->open_flags = open_flags & ~O_CLOEXEC;
  r.e_->handle = std::move(handle);
  cache->insert(r.e_.get(), std::make_shared<UniqueFd>(std::move(fd)));
  return r;
}

ReopenableFd& ReopenableFd::operator=(ReopenableFd&& o) noexcept {
  if (this != &o) {
    release();
    e_ = std::move(o.e_);
  }
  return *this;
}

ReopenableFd::~ReopenableFd() {
  release();
}

void ReopenableFd::release() {
  if (e_ && e_->cache) e_->cache->erase(e_.get());
  e_.reset();
}

Result<FdPin> ReopenableFd::pin() const {
  if (!e_) return Error{EBADF};
  // Pinned from the start: fd is immutable, no lock needed.
  if (!e_->cache) return FdPin(e_->fd);
  if (auto fd = e_->cache->lookup(e_.get())) return FdPin(std::move(fd));
  int raw = open_handle(e_->mount_fd, e_->handle, e_->open_flags);
  if (raw < 0) return errno_error();
  {
    std::lock_guard<std::mutex> lock(e_->cache->m_);
    ++e_->cache->reopens_;
  }
  return FdPin(e_->cache->insert(e_.get(), std::make_shared<UniqueFd>(raw)));
}

Result<void> ReopenableFd::pin_forever() {
  if (!e_) return Error{EBADF};
  if (!e_->cache) return {};
  if (auto fd = e_->cache->lookup(e_.get())) {
    e_->cache->make_permanent(e_.get(), std::move(fd));
    return {};
  }
  int raw = open_handle(e_->mount_fd, e_->handle, e_->open_flags);
  if (raw < 0) return errno_error();
  e_->cache->make_permanent(e_.get(), std::make_shared<UniqueFd>(raw));
  return {};
}

}  // namespace layerfs
