// The writable layer's size as Docker's classic driver counts it (the sum of
// st_size of the upper layer's non-directories, each inode once; see
// tools/size.h), kept current as the daemon works so that `layerctl ps -s`
// never walks the tree.
//
// Published in WORK/usage, two lines:
//   bytes=N
//   state=live     while a daemon keeps it current (it holds WORK's flock)
//   state=final    written at unmount: exact until the next mount
// At mount the count starts from a final value; when there is none (first
// mount, or the last daemon died), the upper tree and WORK/links are counted
// once. The file is rewritten at most once a second while the count changes,
// and at once when asked (an fsync of the mount's root directory: what
// `layerctl ps -s` does before it reads the file, so it sees every write that
// finished before it asked).
#pragma once

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <memory>
#include <mutex>
#include <thread>

#include "fs/result.h"

namespace layerfs {

class UsageCounter {
 public:
  // Reads or computes the starting count and publishes it as live.
  static Result<std::unique_ptr<UsageCounter>> start(int work_fd, int upper_root_fd, int links_fd);
  ~UsageCounter();  // stops the publisher (stop() first to publish "final")

  void add(int64_t delta) { bytes_.fetch_add(delta, std::memory_order_relaxed); }
  int64_t bytes() const { return bytes_.load(std::memory_order_relaxed); }

  // Publishes the current count now (when it changed since last time).
  Result<void> publish_now();

  // Writes the final count (at unmount).
  Result<void> stop();

  // Counts the upper tree and links directory (also what start() does when
  // it has to).
  static Result<int64_t> count(int upper_root_fd, int links_fd);

 private:
  UsageCounter(int work_fd, int64_t bytes);
  Result<void> publish(const char* state);
  void run();

  int work_fd_;
  std::atomic<int64_t> bytes_;
  int64_t published_ = -1;
  std::mutex m_;
  std::condition_variable cv_;
  bool stopping_ = false;
  std::thread publisher_;
};

}  // namespace layerfs
