// Mounted tests: several threads changing one merged directory at once (creates, deletions,
// copy-ups, renames) while others list it; the result must be what the operations add up to.
#include <doctest/doctest.h>
#include <fcntl.h>
#include <sys/stat.h>

#include <atomic>
#include <set>
#include <thread>

#include "tests/support/scenario.h"

using namespace layerfs::test;

namespace {

constexpr int kThreads = 4;

// Runs fn(t) on kThreads threads and returns the failures they reported.
std::string in_parallel(const std::function<std::string(int)>& fn) {
  std::vector<std::string> errors(kThreads);
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      try {
        errors[t] = fn(t);
      } catch (const std::exception& e) {
        errors[t] = std::string("exception: ") + e.what();
      }
    });
  }
  for (auto& th : threads) th.join();
  std::string out;
  for (int t = 0; t < kThreads; ++t) {
    if (!errors[t].empty()) out += "thread " + std::to_string(t) + ": " + errors[t] + "\n";
  }
  return out;
}

std::string name(const char* prefix, int t, int i) {
  return std::string(prefix) + std::to_string(t) + "_" + std::to_string(i);
}

}  // namespace

TEST_CASE("concurrency: creates, deletions and copy-ups in one merged directory") {
  constexpr int kPer = 100;
  std::vector<Entry> l0, l1;
  for (int t = 0; t < kThreads; ++t) {
    for (int i = 0; i < kPer; ++i) {
      (i % 2 ? l0 : l1).push_back(file("d/" + name("del", t, i), "d"));
      (i % 2 ? l1 : l0).push_back(file("d/" + name("mod", t, i), "m"));
    }
  }
  Scenario s({.lowers = {l0, l1}});
  auto work = [&](const std::string& root) {
    return [&, root](int t) -> std::string {
      for (int i = 0; i < kPer; ++i) {
        const std::string d = root + "/d/";
        if (int e = sys::write(d + name("new", t, i), name("new", t, i)); e) {
          return "create: " + errno_name(e);
        }
        if (int e = sys::unlink(d + name("del", t, i)); e) return "unlink: " + errno_name(e);
        if (int e = sys::write(d + name("mod", t, i), "changed", O_WRONLY | O_APPEND); e) {
          return "append: " + errno_name(e);
        }
      }
      return {};
    };
  };
  std::string failures = in_parallel(work(s.mnt()));
  CHECK_MESSAGE(failures.empty(), failures);
  for (int t = 0; t < kThreads; ++t) work(s.ref())(t);
  CHECK(list_dir(s.mnt("d")).size() == size_t(2 * kThreads * kPer));
  s.check_tree();
  s.remount();
  s.check_tree({}, "after remount");
}

TEST_CASE("concurrency: listing a directory while it changes") {
  std::vector<Entry> l0, l1;
  for (int i = 0; i < 200; ++i) {
    (i % 2 ? l0 : l1).push_back(file("d/stable" + std::to_string(i), ""));
  }
  Scenario s({.lowers = {l0, l1}});
  std::atomic<bool> stop{false};
  std::string writer_error;
  std::thread writer([&] {
    for (int i = 0; !stop && i < 100000; ++i) {
      const std::string p = s.mnt("d/churn" + std::to_string(i % 50));
      if (int e = sys::write(p, "x"); e) {
        writer_error = "create: " + errno_name(e);
        break;
      }
      if (int e = sys::unlink(p); e) {
        writer_error = "unlink: " + errno_name(e);
        break;
      }
    }
  });
  std::string problems;
  for (int round = 0; round < 40 && problems.empty(); ++round) {
    std::multiset<std::string> seen;
    for (auto& [n, ino] : read_dir_raw(s.mnt("d"))) seen.insert(n);
    for (int i = 0; i < 200; ++i) {
      size_t c = seen.count("stable" + std::to_string(i));
      if (c != 1) {
        problems += "round " + std::to_string(round) + ": stable" + std::to_string(i) + " listed " +
                    std::to_string(c) + " times\n";
      }
    }
    for (const auto& n : seen) {
      if (seen.count(n) > 1) {
        problems += "round " + std::to_string(round) + ": " + n + " listed twice\n";
        break;
      }
    }
  }
  stop = true;
  writer.join();
  CHECK_MESSAGE(problems.empty(), problems);
  CHECK_MESSAGE(writer_error.empty(), writer_error);
}

TEST_CASE("concurrency: renames of lower directories and files in parallel") {
  constexpr int kPer = 25;
  std::vector<Entry> l0, l1;
  for (int t = 0; t < kThreads; ++t) {
    for (int i = 0; i < kPer; ++i) {
      l0.push_back(file("src/" + name("dir", t, i) + "/a", "a"));
      l1.push_back(file("src/" + name("dir", t, i) + "/b", "b"));
      l1.push_back(file("src/" + name("file", t, i), "f"));
    }
  }
  Scenario s({.lowers = {l0, l1}, .upper = {dir("dst")}});
  auto work = [&](const std::string& root) {
    return [&, root](int t) -> std::string {
      for (int i = 0; i < kPer; ++i) {
        if (int e =
                sys::rename(root + "/src/" + name("dir", t, i), root + "/dst/" + name("dir", t, i));
            e) {
          return "rename dir: " + errno_name(e);
        }
        if (int e = sys::rename(root + "/src/" + name("file", t, i),
                                root + "/dst/" + name("dir", t, i) + "/file");
            e) {
          return "rename file: " + errno_name(e);
        }
      }
      return {};
    };
  };
  std::string failures = in_parallel(work(s.mnt()));
  CHECK_MESSAGE(failures.empty(), failures);
  for (int t = 0; t < kThreads; ++t) work(s.ref())(t);
  CHECK(list_dir(s.mnt("src")).empty());
  s.check_tree();
  s.remount();
  s.check_tree({}, "after remount");
}
