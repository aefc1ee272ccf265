#include "fs/usage.h"

#include <dirent.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstring>
#include <optional>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include "fs/log.h"
#include "fs/sys.h"

namespace layerfs {
namespace {

using InodeSet = std::set<std::pair<dev_t, ino_t>>;

void walk(int dfd, InodeSet* seen, int64_t* total) {
  std::vector<sys::RawDirent> entries;
  if (!sys::for_each_dirent(dfd, [&](const sys::RawDirent& d) { entries.push_back(d); }).ok()) {
    return;
  }
  for (const auto& e : entries) {
    struct stat st;
    if (::fstatat(dfd, e.name.c_str(), &st, AT_SYMLINK_NOFOLLOW) != 0) continue;
    if (S_ISDIR(st.st_mode)) {
      auto sub = sys::open_at(dfd, e.name, O_PATH | O_DIRECTORY | O_NOFOLLOW);
      if (sub.ok()) walk(sub.value().get(), seen, total);
      continue;
    }
    if (st.st_size <= 0) continue;
    if (st.st_nlink > 1 && !seen->insert({st.st_dev, st.st_ino}).second) continue;
    *total += st.st_size;
  }
}

// The last published count, when it is a final one.
std::optional<int64_t> read_final(int work_fd) {
  auto fd = sys::open_at(work_fd, "usage", O_RDONLY | O_NOFOLLOW);
  if (!fd.ok()) return std::nullopt;
  char buf[128];
  ssize_t n = ::read(fd.value().get(), buf, sizeof buf - 1);
  if (n <= 0) return std::nullopt;
  buf[n] = '\0';
  long long bytes = -1;
  char state[16] = {0};
  if (std::sscanf(buf, "bytes=%lld\nstate=%15s", &bytes, state) != 2) return std::nullopt;
  if (bytes < 0 || std::strcmp(state, "final") != 0) return std::nullopt;
  return bytes;
}

}  // namespace

Result<int64_t> UsageCounter::count(int upper_root_fd, int links_fd) {
  InodeSet seen;
  int64_t total = 0;
  walk(upper_root_fd, &seen, &total);
  if (links_fd >= 0) walk(links_fd, &seen, &total);
  return total;
}

UsageCounter::UsageCounter(int work_fd, int64_t bytes) : work_fd_(work_fd), bytes_(bytes) {}

Result<std::unique_ptr<UsageCounter>> UsageCounter::start(int work_fd, int upper_root_fd,
                                                          int links_fd) {
  int64_t bytes;
  if (auto final = read_final(work_fd)) {
    bytes = *final;
  } else {
    LFS_ASSIGN(bytes, count(upper_root_fd, links_fd));
  }
  std::unique_ptr<UsageCounter> u(new UsageCounter(work_fd, bytes));
  LFS_TRY(u->publish("live"));
  u->publisher_ = std::thread([p = u.get()] { p->run(); });
  return u;
}

UsageCounter::~UsageCounter() {
  {
    std::lock_guard<std::mutex> lock(m_);
    stopping_ = true;
  }
  cv_.notify_all();
  if (publisher_.joinable()) publisher_.join();
}

Result<void> UsageCounter::publish(const char* state) {
  int64_t bytes = bytes_.load(std::memory_order_relaxed);
  char text[96];
  int len = std::snprintf(text, sizeof text, "bytes=%lld\nstate=%s\n",
                          static_cast<long long>(bytes), state);
  LFS_ASSIGN(UniqueFd fd, sys::open_at(work_fd_, "usage.tmp",
                                       O_WRONLY | O_CREAT | O_TRUNC | O_NOFOLLOW, 0644));
  if (::write(fd.get(), text, len) != len) return errno_error();
  LFS_TRY(check_sys_void(::renameat(work_fd_, "usage.tmp", work_fd_, "usage")));
  published_ = bytes;
  return {};
}

void UsageCounter::run() {
  std::unique_lock<std::mutex> lock(m_);
  while (!stopping_) {
    cv_.wait_for(lock, std::chrono::seconds(1), [this] { return stopping_; });
    if (stopping_) break;
    if (bytes_.load(std::memory_order_relaxed) != published_) {
      auto r = publish("live");
      if (!r.ok()) LFS_LOG_WARN("cannot publish the usage count: %s", strerror(r.error()));
    }
  }
}

Result<void> UsageCounter::publish_now() {
  std::lock_guard<std::mutex> lock(m_);
  if (stopping_ || bytes_.load(std::memory_order_relaxed) == published_) return {};
  return publish("live");
}

Result<void> UsageCounter::stop() {
  {
    std::lock_guard<std::mutex> lock(m_);
    stopping_ = true;
  }
  cv_.notify_all();
  if (publisher_.joinable()) publisher_.join();
  return publish("final");
}

}  // namespace layerfs
