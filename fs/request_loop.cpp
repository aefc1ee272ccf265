#include "fs/request_loop.h"

#include <pthread.h>
#include <signal.h>
#include <time.h>

#include <cerrno>
#include <condition_variable>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <mutex>
#include <vector>

#include "fs/log.h"

namespace layerfs {
namespace {

// Opcodes of the FUSE protocol (stable ABI; libfuse does not install
// fuse_kernel.h) whose requests are known to block on the disk.
constexpr uint32_t kOpFsync = 20;
constexpr uint32_t kOpFsyncdir = 30;

// Interrupts the leader's read() when the loop stops without an unmount (a
// SIGTERM handled by libfuse only marks the session as exited).
constexpr int kWakeSignal = SIGUSR1;

void on_wake_signal(int) {}

timespec millis(long ms) {
  return timespec{ms / 1000, (ms % 1000) * 1000000L};
}

struct Worker {
  pthread_t thread{};
  fuse_buf buf{};
  bool started = false;
  // The rest is guarded by Loop::m_.
  uint64_t busy = 0;  // sequence number of the request being answered; 0 = none
  bool exited = false;
};

class Loop {
 public:
  Loop(fuse_session* se, unsigned max_threads) : se_(se), max_threads_(max_threads) {}
  ~Loop() {
    for (auto& w : workers_) std::free(w->buf.mem);
  }

  int run();

 private:
  struct Start {
    Loop* loop;
    Worker* worker;
  };
  static void* thread_main(void* arg);
  void work(Worker* me);
  bool start_thread_locked();
  void vacate_locked();
  void stop_locked() {
    stopping_ = true;
    cv_.notify_all();
  }

  fuse_session* const se_;
  const unsigned max_threads_;

  std::mutex m_;
  std::condition_variable cv_;
  Worker* leader_ = nullptr;  // the only thread allowed to read; nullptr = vacant
  unsigned idle_ = 0;         // followers waiting for the place
  bool stopping_ = false;
  int error_ = 0;
  uint64_t seq_ = 0;  // requests received so far
  std::vector<std::unique_ptr<Worker>> workers_;
};

void* Loop::thread_main(void* arg) {
  std::unique_ptr<Start> start(static_cast<Start*>(arg));
  sigset_t wake;
  sigemptyset(&wake);
  sigaddset(&wake, kWakeSignal);
  pthread_sigmask(SIG_UNBLOCK, &wake, nullptr);
  start->loop->work(start->worker);
  return nullptr;
}

// Creates one more worker (it takes the leader's place if vacant). Every
// signal but the wake signal stays blocked in it, so the process's signals go
// to the monitor.
bool Loop::start_thread_locked() {
  if (workers_.size() >= max_threads_) return false;
  auto w = std::make_unique<Worker>();
  auto* start = new Start{this, w.get()};
  sigset_t all, old;
  sigfillset(&all);
  pthread_sigmask(SIG_BLOCK, &all, &old);
  int rc = pthread_create(&w->thread, nullptr, &Loop::thread_main, start);
  pthread_sigmask(SIG_SETMASK, &old, nullptr);
  if (rc != 0) {
    delete start;
    LFS_LOG_ERROR("request loop: cannot start a thread: %s", strerror(rc));
    return false;
  }
  w->started = true;
  workers_.push_back(std::move(w));
  return true;
}

// The leader is (or will be) busy for long: let a follower, or a new thread,
// read instead. When neither is possible the place stays vacant until a
// thread finishes its request and takes it.
void Loop::vacate_locked() {
  leader_ = nullptr;
  if (stopping_) return;
  if (idle_ > 0) {
    cv_.notify_one();
  } else {
    start_thread_locked();
  }
}

void Loop::work(Worker* me) {
  std::unique_lock<std::mutex> lk(m_);
  for (;;) {
    while (!stopping_ && leader_ != me) {
      if (leader_ == nullptr) {
        leader_ = me;
        break;
      }
      ++idle_;
      cv_.wait(lk);
      --idle_;
    }
    if (stopping_) break;

    lk.unlock();
    int res = fuse_session_receive_buf(se_, &me->buf);
    lk.lock();
    if (res == -EINTR || res == -EAGAIN) continue;  // the wake signal, or nothing after all
    if (res <= 0) {
      // 0: the session ended (unmounted); below 0: /dev/fuse failed.
      if (res < 0) {
        error_ = res;
        LFS_LOG_ERROR("request loop: reading /dev/fuse: %s", strerror(-res));
      }
      stop_locked();
      break;
    }

    me->busy = ++seq_;
    uint32_t opcode = 0;
    if (!(me->buf.flags & FUSE_BUF_IS_FD) && me->buf.mem && res >= 8) {
      std::memcpy(&opcode, static_cast<const char*>(me->buf.mem) + 4, sizeof opcode);
    }
    if (opcode == kOpFsync || opcode == kOpFsyncdir) vacate_locked();
    lk.unlock();
    fuse_session_process_buf(se_, &me->buf);
    lk.lock();
    me->busy = 0;
    if (fuse_session_exited(se_)) {
      stop_locked();
      break;
    }
  }
  if (leader_ == me) leader_ = nullptr;
  me->exited = true;
}

int Loop::run() {
  struct sigaction sa;
  std::memset(&sa, 0, sizeof sa);
  sa.sa_handler = on_wake_signal;  // no SA_RESTART: read() returns EINTR
  sigemptyset(&sa.sa_mask);
  if (sigaction(kWakeSignal, &sa, nullptr) != 0) return -errno;

  {
    std::lock_guard<std::mutex> lk(m_);
    if (!start_thread_locked()) return -EAGAIN;
  }

  // The monitor: replace a leader that stays on one request for a tick.
  uint64_t last_seq = 0;
  Worker* last_leader = nullptr;
  uint64_t last_busy = 0;
  unsigned quiet_ticks = 0;
  for (;;) {
    // 1 ms while requests flow; 20 ms after a quiet spell, 100 ms after
    // seconds of it (an idle daemon wakes ten times a second).
    timespec tick = millis(quiet_ticks > 100 ? 100 : quiet_ticks > 20 ? 20 : 1);
    nanosleep(&tick, nullptr);  // a signal cuts it short: checked below
    std::lock_guard<std::mutex> lk(m_);
    if (stopping_) break;
    if (fuse_session_exited(se_)) {
      stop_locked();
      break;
    }
    if (seq_ != last_seq) {
      last_seq = seq_;
      quiet_ticks = 0;
    } else if (quiet_ticks < 1000) {
      ++quiet_ticks;
    }
    if (leader_ && leader_ == last_leader && leader_->busy != 0 && leader_->busy == last_busy) {
      vacate_locked();
    }
    last_leader = leader_;
    last_busy = leader_ ? leader_->busy : 0;
  }

  // Stopping: followers have been woken; threads answering a request finish
  // it; the one waiting in read() is interrupted (again and again, in case the
  // signal came just before it entered read()).
  for (;;) {
    bool all_exited = true;
    {
      std::lock_guard<std::mutex> lk(m_);
      for (auto& w : workers_) {
        if (w->exited) continue;
        all_exited = false;
        if (w->busy == 0) pthread_kill(w->thread, kWakeSignal);
      }
    }
    if (all_exited) break;
    timespec t = millis(5);
    nanosleep(&t, nullptr);
  }
  for (auto& w : workers_) {
    if (w->started) pthread_join(w->thread, nullptr);
  }
  return error_;
}

}  // namespace

int run_request_loop(fuse_session* se, unsigned max_threads) {
  Loop loop(se, max_threads == 0 ? 1 : max_threads);
  return loop.run();
}

}  // namespace layerfs
