// layerfs_crashtest: kills the layerfs daemon with SIGKILL in the middle of
// storms of operations, many times over, and checks what the next mount shows.
// See tests/crash/README.md for what is checked and how to run the long form.
//
//   layerfs_crashtest --seed N --rounds R [--big-mib M] [--threads T]
//                     [--layerfs PATH] [--keep] [--verbose]
//
// Each round starts from an empty upper and workdir over the same lowers and
// runs two storms on them (the second on top of what the first left), each
// ended by a SIGKILL at a random moment, a new mount, and a check of every
// item the storm touched against a model of what may be there. After the
// second check the mount is unmounted cleanly and the index/upper checker
// (fs/check.h) must find nothing but what a crash leaves by design.
//
// Exit status: 0 all rounds passed; 1 a check failed (the message names the
// seed, the round and the item); 2 usage or set-up error.
#include <fcntl.h>
#include <signal.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <mutex>
#include <optional>
#include <random>
#include <set>
#include <sstream>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "fs/check.h"
#include "tests/support/can_mount.h"

namespace {

namespace fsys = std::filesystem;
using Clock = std::chrono::steady_clock;

struct Config {
  uint64_t seed = 1;
  int rounds = 10;
  int big_mib = 64;
  int threads = 4;
  std::string layerfs;
  bool keep = false;
  bool verbose = false;
};

[[noreturn]] void die(const std::string& msg) {
  std::fprintf(stderr, "layerfs_crashtest: %s\n", msg.c_str());
  std::exit(2);
}

struct Failure : std::runtime_error {
  using std::runtime_error::runtime_error;
};

// ---- small file helpers (errno-returning, no exceptions in the storm) -----

int write_all(int fd, const std::string& data, off_t off) {
  size_t done = 0;
  while (done < data.size()) {
    ssize_t n = ::pwrite(fd, data.data() + done, data.size() - done, off + done);
    if (n < 0) return errno;
    done += static_cast<size_t>(n);
  }
  return 0;
}

std::optional<std::string> read_file(const std::string& path, int* err = nullptr) {
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
  if (fd < 0) {
    if (err) *err = errno;
    return std::nullopt;
  }
  std::string out;
  char buf[1 << 16];
  for (;;) {
    ssize_t n = ::read(fd, buf, sizeof buf);
    if (n < 0) {
      if (err) *err = errno;
      ::close(fd);
      return std::nullopt;
    }
    if (n == 0) break;
    out.append(buf, static_cast<size_t>(n));
  }
  ::close(fd);
  return out;
}

void write_plain(const std::string& path, const std::string& data) {
  std::ofstream f(path, std::ios::binary | std::ios::trunc);
  f << data;
  if (!f) die("cannot write " + path);
}

bool exists(const std::string& path) {
  struct stat st;
  return ::lstat(path.c_str(), &st) == 0;
}

std::vector<std::string> list_dir(const std::string& path, int* err = nullptr) {
  std::vector<std::string> out;
  std::error_code ec;
  for (const auto& e : fsys::directory_iterator(path, ec)) out.push_back(e.path().filename());
  if (ec && err) *err = ec.value();
  std::sort(out.begin(), out.end());
  return out;
}

std::string content_of(const std::string& tag, size_t size) {
  std::string s;
  while (s.size() < size) s += tag + ";";
  s.resize(size);
  return s;
}

// ---- the mount -------------------------------------------------------------

bool mounted_at(const std::string& mp) {
  std::ifstream f("/proc/self/mountinfo");
  std::string line;
  bool found = false;
  while (std::getline(f, line)) {
    std::istringstream in(line);
    std::string id, parent, devno, root, point;
    in >> id >> parent >> devno >> root >> point;
    if (point == mp && line.find(" - fuse.layerfs ") != std::string::npos) found = true;
  }
  return found;
}

struct Layout {
  std::string dir, lower1, lower2, upper, work, mnt;
};

class Daemon {
 public:
  Daemon(const Config& cfg, const Layout& l) : mp_(l.mnt) {
    const std::string opts =
        "lowerdir=" + l.lower1 + ":" + l.lower2 + ",upperdir=" + l.upper + ",workdir=" + l.work;
    pid_ = ::fork();
    if (pid_ < 0) die("fork failed");
    if (pid_ == 0) {
      ::prctl(PR_SET_PDEATHSIG, SIGKILL);
      int null = ::open("/dev/null", O_RDWR);
      ::dup2(null, 0);
      if (!cfg.verbose) ::dup2(null, 1);
      std::vector<const char*> argv = {
          cfg.layerfs.c_str(), "layerfs-crashtest", mp_.c_str(), "-f", "-o", opts.c_str(), nullptr};
      ::execv(argv[0], const_cast<char* const*>(argv.data()));
      std::_Exit(127);
    }
    const auto deadline = Clock::now() + std::chrono::seconds(20);
    while (!mounted_at(mp_)) {
      int status;
      if (::waitpid(pid_, &status, WNOHANG) == pid_) die("layerfs exited before mounting");
      if (Clock::now() > deadline) die("layerfs did not mount within 20 s");
      std::this_thread::sleep_for(std::chrono::milliseconds(2));
    }
  }
  ~Daemon() {
    if (pid_ > 0) kill();
  }
  // SIGKILL, and wait until it is dead; the mount stays (dead) until
  // clear_dead_mount().
  void kill_only() {
    if (pid_ <= 0) return;
    ::kill(pid_, SIGKILL);
    ::waitpid(pid_, nullptr, 0);
    pid_ = -1;
  }
  void kill() {
    kill_only();
    clear_dead_mount();
  }
  void clear_dead_mount() {
    // The dead mount ("Transport endpoint is not connected") goes with a plain umount.
    if (::umount2(mp_.c_str(), 0) != 0) {
      std::fprintf(stderr, "umount of the dead mount: %s; detaching\n", strerror(errno));
      ::umount2(mp_.c_str(), MNT_DETACH);
    }
  }
  // A clean unmount; the daemon exits by itself.
  void unmount() {
    for (int i = 0; ::umount2(mp_.c_str(), 0) != 0; ++i) {
      if (errno != EBUSY || i > 200) throw Failure(std::string("umount: ") + strerror(errno));
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
    int status = 0;
    ::waitpid(pid_, &status, 0);
    pid_ = -1;
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0)
      throw Failure("the daemon did not exit cleanly after umount (status " +
                    std::to_string(status) + ")");
  }

 private:
  std::string mp_;
  pid_t pid_ = -1;
};

// ---- the model ---------------------------------------------------------------

// Items are owned by one thread each, so a thread knows the exact sequence of
// its operations; only the one running when the daemon died is uncertain.
struct FileItem {    // a lower file that is overwritten (same size) and renamed
  std::string name;  // s/fN (the other name is s/fN.r)
  size_t size = 0;
  std::set<std::string> may;  // contents it may show
  int at = 0;                 // 0: at name, 1: at name.r, -1: either (rename in flight)
  int version = 0;
};
struct UnlinkItem {  // a lower file that gets unlinked (a whiteout)
  std::string name;  // u/fN
  std::string lower;
  int state = 0;  // 0 present, 1 unlink in flight, 2 gone
};
struct DirItem {     // a lower directory renamed back and forth (a redirect)
  std::string name;  // dN (other name dN.r)
  std::vector<std::string> entries;
  int at = 0;  // 0, 1, -1
};
struct RmdirItem {   // a lower directory emptied, removed, made again (opaque)
  std::string name;  // r/dN
  std::vector<std::string> lower_entries;
  std::set<std::string> unlinked;  // done
  std::optional<std::string> unlinking;
  int state = 0;  // 0 lower dir, 1 rmdir in flight, 2 gone, 3 mkdir in flight, 4 opaque dir
  std::set<std::string> created;  // files made inside the opaque dir (done)
  std::optional<std::string> creating;
};
struct LinkItem {    // a lower file with two names (a hard-link group), written through either
  std::string name;  // h/hN (its other name h/hN.b)
  size_t size = 0;
  std::set<std::string> may;
  int version = 0;
};
struct NewFile {     // created in the upper only
  std::string name;  // new/tT-N
  std::string data;
  bool fsynced = false;
  bool done = false;  // the whole create-write(-fsync)-close returned
};

struct Big {
  std::string name = "big";
  size_t size = 0;
  std::set<std::string> block0;  // contents block 0 may show
  int version = 0;
};

constexpr size_t kBlock = 4096;

struct ThreadModel {
  std::vector<FileItem> files;
  std::vector<UnlinkItem> unlinks;
  std::vector<DirItem> dirs;
  std::vector<RmdirItem> rmdirs;
  std::vector<NewFile> created;
  std::vector<LinkItem> links;
  bool owns_big = false;
};

struct World {
  Config cfg;
  Layout l;
  std::vector<ThreadModel> threads;
  Big big;
  std::string big_lower_block0;
};

constexpr int kFilesPerThread = 8;
constexpr int kUnlinksPerThread = 4;
constexpr int kDirsPerThread = 2;
constexpr int kRmdirsPerThread = 1;

void build_lowers(World& w) {
  const Layout& l = w.l;
  for (const auto& d : {l.lower1, l.lower2, l.upper, l.work, l.mnt}) fsys::create_directories(d);
  for (const auto& d : {"s", "u", "r"}) fsys::create_directories(l.lower1 + "/" + d);
  fsys::create_directories(l.lower2 + "/r");
  fsys::create_directories(l.lower2 + "/u");
  fsys::create_directories(l.lower1 + "/h");
  std::mt19937_64 rng(w.cfg.seed);
  w.threads.resize(static_cast<size_t>(w.cfg.threads));
  for (int t = 0; t < w.cfg.threads; ++t) {
    ThreadModel& m = w.threads[static_cast<size_t>(t)];
    for (int i = 0; i < kFilesPerThread; ++i) {
      FileItem f;
      f.name = "s/f" + std::to_string(t) + "_" + std::to_string(i);
      f.size = 100 + rng() % 20000;
      std::string data = content_of("lower " + f.name, f.size);
      write_plain(l.lower1 + "/" + f.name, data);
      f.may = {data};
      m.files.push_back(f);
    }
    for (int i = 0; i < kUnlinksPerThread; ++i) {
      UnlinkItem u;
      u.name = "u/f" + std::to_string(t) + "_" + std::to_string(i);
      u.lower = content_of("lower " + u.name, 50 + rng() % 500);
      // Half of them in the lower layer below, so that the whiteout hides
      // a lower name under a merged directory.
      write_plain((i % 2 ? l.lower2 : l.lower1) + "/" + u.name, u.lower);
      m.unlinks.push_back(u);
    }
    for (int i = 0; i < kDirsPerThread; ++i) {
      DirItem d;
      d.name = "d" + std::to_string(t) + "_" + std::to_string(i);
      const std::string base = (i % 2 ? l.lower2 : l.lower1) + "/" + d.name;
      fsys::create_directories(base + "/sub");
      for (const auto& e : {"a", "b", "sub/c"}) write_plain(base + "/" + e, d.name + "/" + e);
      d.entries = {"a", "b", "sub"};
      m.dirs.push_back(d);
    }
    for (int i = 0; i < kRmdirsPerThread; ++i) {
      RmdirItem r;
      r.name = "r/d" + std::to_string(t) + "_" + std::to_string(i);
      fsys::create_directories(l.lower1 + "/" + r.name);
      fsys::create_directories(l.lower2 + "/" + r.name);
      write_plain(l.lower1 + "/" + r.name + "/x", "x");
      write_plain(l.lower2 + "/" + r.name + "/y", "y");  // merged from below
      r.lower_entries = {"x", "y"};
      m.rmdirs.push_back(r);
    }
  }
  for (int t = 0; t < w.cfg.threads; ++t) {
    LinkItem h;
    h.name = "h/h" + std::to_string(t);
    h.size = 3000 + rng() % 3000;
    const std::string data = content_of("lower " + h.name, h.size);
    write_plain(l.lower1 + "/" + h.name, data);
    fsys::create_hard_link(l.lower1 + "/" + h.name, l.lower1 + "/" + h.name + ".b");
    h.may = {data};
    w.threads[static_cast<size_t>(t)].links.push_back(h);
  }
  w.threads[0].owns_big = true;
  // The big file: a pattern that differs per block, so a misplaced block shows.
  w.big.size = static_cast<size_t>(w.cfg.big_mib) << 20;
  {
    int fd = ::open((l.lower2 + "/big").c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0) die("cannot create the big lower file");
    std::string chunk(1 << 20, '\0');
    for (size_t off = 0; off < w.big.size; off += chunk.size()) {
      for (size_t b = 0; b < chunk.size(); b += kBlock) {
        const std::string tag = "big block " + std::to_string((off + b) / kBlock);
        std::memcpy(chunk.data() + b, content_of(tag, kBlock).data(), kBlock);
      }
      if (write_all(fd, chunk, static_cast<off_t>(off)) != 0) die("cannot write the big file");
    }
    ::close(fd);
  }
  w.big_lower_block0 = content_of("big block 0", kBlock);
}

// Puts the model back at the lower state (a round starts from an empty upper).
void reset_model(World& w) {
  for (auto& m : w.threads) {
    for (auto& f : m.files) {
      f.may = {content_of("lower " + f.name, f.size)};
      f.at = 0;
    }
    for (auto& u : m.unlinks) u.state = 0;
    for (auto& d : m.dirs) d.at = 0;
    for (auto& r : m.rmdirs) r = RmdirItem{r.name, r.lower_entries, {}, {}, 0, {}, {}};
    for (auto& h : m.links) h.may = {content_of("lower " + h.name, h.size)};
    m.created.clear();
  }
  w.big.block0 = {w.big_lower_block0};
}

// ---- the storm -------------------------------------------------------------

struct Storm {
  World& w;
  int round;
  int phase;
  std::atomic<bool> stop{false};
  std::atomic<bool> killed{false};
  std::atomic<uint64_t> ops{0};
  std::mutex mu;
  std::vector<std::string> errors;  // operations that failed while the daemon lived

  std::string m(const std::string& rel) const { return w.l.mnt + "/" + rel; }

  // Renames a FileItem or DirItem from its name to NAME.r or back; `at` is -1
  // while the rename is in flight (after a kill: either name).
  template <class Item>
  bool flip(Item& it) {
    if (it.at < 0) return true;
    const std::string from = m(it.name + (it.at ? ".r" : "")),
                      to = m(it.name + (it.at ? "" : ".r"));
    const int was = it.at;
    it.at = -1;
    if (::rename(from.c_str(), to.c_str()) != 0) return false;
    it.at = 1 - was;
    return true;
  }

  // Returns false once the mount is gone (the daemon was killed).
  static thread_local bool first_;

  bool op(int t, std::mt19937_64& rng) {
    ThreadModel& tm = w.threads[static_cast<size_t>(t)];
    // The big file's owner starts each storm with it, so that kills often
    // land in the middle of its copy-up.
    const int kind = first_ && tm.owns_big ? 7 : static_cast<int>(rng() % 8);
    first_ = false;
    switch (kind) {
      case 0: {  // overwrite a lower file in place, sometimes with fsync
        FileItem& f = tm.files[rng() % tm.files.size()];
        if (f.at < 0) return true;
        const std::string path = m(f.name + (f.at ? ".r" : ""));
        const std::string data = content_of("t" + std::to_string(t) + " r" + std::to_string(round) +
                                                " p" + std::to_string(phase) + " v" +
                                                std::to_string(++f.version) + " " + f.name,
                                            f.size);
        const bool sync = rng() % 2;
        f.may.insert(data);  // from the open on, the new content may show
        int fd = ::open(path.c_str(), O_WRONLY | O_CLOEXEC);
        if (fd < 0) return false;
        int e = write_all(fd, data, 0);
        if (!e && sync && ::fsync(fd) != 0) e = errno;
        ::close(fd);
        if (e) return false;
        f.may = {data};  // write returned: the daemon wrote it to the upper copy
        return true;
      }
      case 1:  // rename a lower file back and forth
        return flip(tm.files[rng() % tm.files.size()]);
      case 2: {  // unlink a lower file
        for (auto& u : tm.unlinks) {
          if (u.state != 0) continue;
          u.state = 1;
          if (::unlink(m(u.name).c_str()) != 0) return false;
          u.state = 2;
          return true;
        }
        return true;
      }
      case 3:  // rename a lower directory back and forth
        return flip(tm.dirs[rng() % tm.dirs.size()]);
      case 4: {  // empty, remove and make again a lower directory; fill it
        RmdirItem& r = tm.rmdirs[rng() % tm.rmdirs.size()];
        if (r.state == 0) {
          for (const auto& e : r.lower_entries) {
            if (r.unlinked.count(e)) continue;
            r.unlinking = e;
            if (::unlink(m(r.name + "/" + e).c_str()) != 0) return false;
            r.unlinked.insert(e);
            r.unlinking.reset();
            return true;
          }
          r.state = 1;
          if (::rmdir(m(r.name).c_str()) != 0) return false;
          r.state = 2;
        } else if (r.state == 2) {
          r.state = 3;
          if (::mkdir(m(r.name).c_str(), 0755) != 0) return false;
          r.state = 4;
        } else if (r.state == 4 && r.created.size() < 4) {
          const std::string n = "n" + std::to_string(r.created.size());
          r.creating = n;
          int fd =
              ::open(m(r.name + "/" + n).c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
          if (fd < 0) return false;
          ::close(fd);
          r.created.insert(n);
          r.creating.reset();
        }
        return true;
      }
      case 5: {  // create a file in the upper, half of them fsynced
        NewFile nf;
        nf.name = "new/t" + std::to_string(t) + "-" + std::to_string(tm.created.size()) + "-r" +
                  std::to_string(round) + "p" + std::to_string(phase);
        nf.data = content_of(nf.name, 1 + rng() % 30000);
        nf.fsynced = rng() % 2;
        tm.created.push_back(nf);
        NewFile& n = tm.created.back();
        int fd = ::open(m(n.name).c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
        if (fd < 0) return false;
        int e = write_all(fd, n.data, 0);
        if (!e && n.fsynced && ::fsync(fd) != 0) e = errno;
        ::close(fd);
        if (e) return false;
        n.done = true;
        return true;
      }
      case 6: {  // write a hard-linked lower file through one of its names
        LinkItem& h = tm.links[rng() % tm.links.size()];
        const std::string data = content_of("t" + std::to_string(t) + " r" + std::to_string(round) +
                                                " p" + std::to_string(phase) + " v" +
                                                std::to_string(++h.version) + " " + h.name,
                                            h.size);
        h.may.insert(data);
        int fd = ::open(m(h.name + (rng() % 2 ? ".b" : "")).c_str(), O_WRONLY | O_CLOEXEC);
        if (fd < 0) return false;
        int e = write_all(fd, data, 0);
        ::close(fd);
        if (e) return false;
        h.may = {data};
        return true;
      }
      default: {  // the big file: copy-up (once per upper) and a block rewrite
        if (!tm.owns_big) return true;
        const std::string data = content_of(
            "big v" + std::to_string(++w.big.version) + " r" + std::to_string(round), kBlock);
        w.big.block0.insert(data);
        int fd = ::open(m(w.big.name).c_str(), O_WRONLY | O_CLOEXEC);
        if (fd < 0) return false;
        int e = write_all(fd, data, 0);
        ::close(fd);
        if (e) return false;
        w.big.block0 = {data};
        return true;
      }
    }
  }

  void run_thread(int t) {
    std::mt19937_64 rng(w.cfg.seed * 1000003 + static_cast<uint64_t>(round) * 7919 +
                        static_cast<uint64_t>(phase) * 131 + static_cast<uint64_t>(t));
    first_ = true;
    while (!stop.load()) {
      errno = 0;
      if (!op(t, rng)) {
        const int e = errno;
        if (!killed.load()) {
          std::lock_guard<std::mutex> lock(mu);
          errors.push_back("thread " + std::to_string(t) + ": an operation failed with " +
                           strerror(e) + " before the daemon was killed");
        }
        return;
      }
      ops.fetch_add(1);
    }
  }
};

thread_local bool Storm::first_ = false;

// ---- the checks after a crash ----------------------------------------------

// Whether `got` is one of `may`, or a write torn by the kill: the daemon gets
// SIGKILL inside its pwrite(2) to the upper file, which the kernel then ends
// at a page boundary (as for any writer killed in write(2) on a local
// filesystem), so the file holds the first pages of one content and the rest
// of another.
bool allowed_content(const std::string& got, const std::set<std::string>& may) {
  if (may.count(got)) return true;
  for (const auto& a : may) {
    for (const auto& b : may) {
      if (a == b || a.size() != got.size() || b.size() != got.size()) continue;
      for (size_t k = 4096; k < got.size(); k += 4096) {
        if (got.compare(0, k, a, 0, k) == 0 && got.compare(k, std::string::npos, b, k) == 0)
          return true;
      }
    }
  }
  return false;
}

struct Verifier {
  World& w;
  std::string where;
  std::vector<std::string> problems;
  int cut = 0;           // operations the kill interrupted (their outcome was open)
  bool big_cut = false;  // among them, a write (and maybe the copy-up) of the big file

  std::string m(const std::string& rel) const { return w.l.mnt + "/" + rel; }
  void bad(const std::string& what) { problems.push_back(where + ": " + what); }

  void file(FileItem& f) {
    cut += (f.may.size() > 1) + (f.at < 0);
    const bool a = exists(m(f.name)), b = exists(m(f.name + ".r"));
    if (a && b) return bad(f.name + " shows under both of its names after a rename");
    if (!a && !b) return bad(f.name + " shows under neither of its names after a rename");
    if (f.at == 0 && !a) return bad(f.name + " was renamed but the rename never ran");
    if (f.at == 1 && !b) return bad(f.name + ".r: a completed rename was lost");
    f.at = a ? 0 : 1;
    auto got = read_file(m(f.name + (f.at ? ".r" : "")));
    if (!got) return bad(f.name + ": cannot read");
    if (!allowed_content(*got, f.may)) {
      return bad(f.name + ": content (" + std::to_string(got->size()) + " bytes, starting \"" +
                 got->substr(0, 40) + "\") is none of the " + std::to_string(f.may.size()) +
                 " it may have: a partial copy-up or a lost write");
    }
    f.may = {*got};
  }

  void unlinked(UnlinkItem& u) {
    cut += u.state == 1;
    auto got = read_file(m(u.name));
    if (u.state == 0 && got != u.lower)
      bad(u.name + ": a file never unlinked is missing or changed");
    if (u.state == 2 && got) bad(u.name + ": a completed unlink came back (whiteout lost)");
    if (u.state == 1) {
      if (got && *got != u.lower) bad(u.name + ": neither unlinked nor its lower content");
      u.state = got ? 0 : 2;
    }
  }

  void dir(DirItem& d) {
    cut += d.at < 0;
    const bool a = exists(m(d.name)), b = exists(m(d.name + ".r"));
    if (a == b)
      return bad(d.name + ": a renamed directory shows under " + (a ? "both" : "neither") +
                 " of its names");
    if ((d.at == 0 && !a) || (d.at == 1 && !b))
      return bad(d.name + ": a completed rename was lost");
    d.at = a ? 0 : 1;
    const std::string p = m(d.name + (d.at ? ".r" : ""));
    if (list_dir(p) != d.entries)
      return bad(d.name + ": the renamed directory lost its lower content");
    if (read_file(p + "/sub/c") != d.name + "/sub/c")
      bad(d.name + "/sub/c is wrong after the rename");
  }

  void rmdir_item(RmdirItem& r) {
    const std::string p = m(r.name);
    cut += (r.state == 1 || r.state == 3) + r.unlinking.has_value() + r.creating.has_value();
    const bool there = exists(p);
    auto names = list_dir(p);
    if (r.state <= 1) {
      if (!there) {
        if (r.state == 0) return bad(r.name + ": a directory never removed is gone");
        r.state = 2;
        return;
      }
      r.state = 0;
      std::set<std::string> expect(r.lower_entries.begin(), r.lower_entries.end());
      for (const auto& e : r.unlinked) expect.erase(e);
      std::set<std::string> got(names.begin(), names.end());
      if (r.unlinking && !got.count(*r.unlinking)) {
        expect.erase(*r.unlinking);
        r.unlinked.insert(*r.unlinking);
      }
      r.unlinking.reset();
      if (got != expect)
        bad(r.name + ": shows " + std::to_string(got.size()) +
            " entries, not what its completed unlinks left");
      return;
    }
    if (r.state == 2 || r.state == 3) {
      if (there && r.state == 2) return bad(r.name + ": a removed directory came back");
      if (there && !names.empty())
        return bad(r.name + ": the new (opaque) directory shows lower entries");
      r.state = there ? 4 : 2;
      return;
    }
    // An opaque directory: only what was created in it, never the lower x/y.
    if (!there) return bad(r.name + ": a created directory is gone");
    std::set<std::string> got(names.begin(), names.end());
    std::set<std::string> allowed = r.created;
    if (r.creating) allowed.insert(*r.creating);
    for (const auto& n : got) {
      if (!allowed.count(n)) return bad(r.name + "/" + n + " shows in an opaque directory");
    }
    for (const auto& n : r.created) {
      if (!got.count(n)) return bad(r.name + "/" + n + ": a completed create was lost");
    }
    r.created = got;
    r.creating.reset();
  }

  void linked(LinkItem& h) {
    cut += h.may.size() > 1;
    auto a = read_file(m(h.name)), b = read_file(m(h.name + ".b"));
    if (!a || !b) return bad(h.name + ": a name of a hard-linked file is missing");
    if (*a != *b) return bad(h.name + ": the two names of a hard-linked file differ");
    struct stat sa, sb;
    if (::lstat(m(h.name).c_str(), &sa) != 0 || ::lstat(m(h.name + ".b").c_str(), &sb) != 0 ||
        sa.st_ino != sb.st_ino || sa.st_nlink != 2) {
      return bad(h.name + ": the two names are no longer one file with two links");
    }
    if (!allowed_content(*a, h.may))
      return bad(h.name + ": content is none of the ones it may have");
    h.may = {*a};
  }

  void created(NewFile& n) {
    int err = 0;
    auto got = read_file(m(n.name), &err);
    if (n.done) {
      if (!got)
        return bad(n.name + ": a created" + std::string(n.fsynced ? ", fsynced" : "") +
                   " file is missing (" + strerror(err) + ")");
      if (*got != n.data)
        return bad(n.name + ": a created" + std::string(n.fsynced ? ", fsynced" : "") +
                   " file has " + std::to_string(got->size()) + " bytes, not its " +
                   std::to_string(n.data.size()));
      return;
    }
    ++cut;
    // In flight: absent, or created and written only in part: a prefix.
    if (got && n.data.compare(0, got->size(), *got) != 0)
      bad(n.name + ": a file being written shows bytes it was never given");
    n.data = got ? *got : std::string();
    n.done = got.has_value();
    n.fsynced = false;
    if (!got) n.name.clear();
  }

  void big() {
    if (w.big.block0.size() > 1) {
      ++cut;
      big_cut = true;
    }
    int fd = ::open(m(w.big.name).c_str(), O_RDONLY | O_CLOEXEC);
    int lfd = ::open((w.l.lower2 + "/big").c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0 || lfd < 0) {
      if (fd >= 0) ::close(fd);
      if (lfd >= 0) ::close(lfd);
      return bad("big: cannot open");
    }
    struct stat st;
    ::fstat(fd, &st);
    if (static_cast<size_t>(st.st_size) != w.big.size) {
      bad("big: size " + std::to_string(st.st_size) + " instead of " + std::to_string(w.big.size) +
          ": a partial copy-up is visible");
    } else {
      std::string a(1 << 20, '\0'), b(1 << 20, '\0');
      for (size_t off = 0; off < w.big.size; off += a.size()) {
        ssize_t n1 = ::pread(fd, a.data(), a.size(), static_cast<off_t>(off));
        ssize_t n2 = ::pread(lfd, b.data(), b.size(), static_cast<off_t>(off));
        if (n1 != n2 || n1 <= 0) {
          bad("big: short read at " + std::to_string(off));
          break;
        }
        if (off == 0) {
          const std::string b0 = a.substr(0, kBlock);
          if (!w.big.block0.count(b0)) bad("big: block 0 is none of the versions written");
          w.big.block0 = {b0};
          std::memcpy(a.data(), b.data(), kBlock);
        }
        if (std::memcmp(a.data(), b.data(), static_cast<size_t>(n1)) != 0) {
          bad("big: the MiB at " + std::to_string(off >> 20) +
              " differs from the lower file: a partial copy-up is visible");
          break;
        }
      }
    }
    ::close(fd);
    ::close(lfd);
  }

  void all() {
    for (auto& tm : w.threads) {
      for (auto& f : tm.files) file(f);
      for (auto& u : tm.unlinks) unlinked(u);
      for (auto& d : tm.dirs) dir(d);
      for (auto& r : tm.rmdirs) rmdir_item(r);
      for (auto& h : tm.links) linked(h);
      for (auto& n : tm.created) {
        if (!n.name.empty()) created(n);
      }
      std::erase_if(tm.created, [](const NewFile& n) { return n.name.empty(); });
    }
    big();
    auto staging = list_dir(w.l.work + "/staging");
    if (!staging.empty())
      bad("the workdir's staging area holds " + std::to_string(staging.size()) +
          " entries after the mount");
  }
};

void fail_if(const std::vector<std::string>& problems, const std::string& repro) {
  if (problems.empty()) return;
  std::string msg;
  for (const auto& p : problems) msg += "  " + p + "\n";
  throw Failure("round failed:\n" + msg + "reproduce with: " + repro);
}

struct RoundStats {
  uint64_t ops = 0;
  int harmless = 0;
  int cut = 0;
  int big_cut = 0;
};

void wipe(const std::string& dir) {
  for (const auto& e : fsys::directory_iterator(dir)) fsys::remove_all(e.path());
}

RoundStats run_round(World& w, int round, const std::string& repro) {
  RoundStats stats;
  wipe(w.l.upper);
  wipe(w.l.work);
  reset_model(w);
  std::mt19937_64 rng(w.cfg.seed * 31 + static_cast<uint64_t>(round));
  auto daemon = std::make_unique<Daemon>(w.cfg, w.l);
  fsys::create_directories(w.l.mnt + "/new");
  for (int phase = 1; phase <= 2; ++phase) {
    Storm storm{w, round, phase};
    std::vector<std::thread> threads;
    for (int t = 0; t < w.cfg.threads; ++t)
      threads.emplace_back([&storm, t] { storm.run_thread(t); });
    // Kill between 1 and 400 ms in (longer for a big file larger than 128 MiB,
    // so that its copy-up also completes sometimes); a third of the kills in
    // the first 150 ms, where the big file's copy-up runs.
    const uint64_t longest = std::max<uint64_t>(400, static_cast<uint64_t>(w.cfg.big_mib) * 3);
    const auto delay =
        std::chrono::milliseconds(rng() % 3 == 0 ? 1 + rng() % 150 : 20 + rng() % (longest - 20));
    std::this_thread::sleep_for(delay);
    // The storm goes on until the kill makes its operations fail
    // (ENOTCONN); the dead mount is removed only once every thread stopped,
    // so that none of them reaches the bare mountpoint.
    storm.killed = true;
    daemon->kill_only();
    storm.stop = true;
    for (auto& th : threads) th.join();
    daemon->clear_dead_mount();
    stats.ops += storm.ops.load();
    fail_if(storm.errors, repro);
    daemon = std::make_unique<Daemon>(w.cfg, w.l);
    Verifier v{w, "round " + std::to_string(round) + " storm " + std::to_string(phase) +
                      " (killed after " + std::to_string(delay.count()) + " ms, " +
                      std::to_string(storm.ops.load()) + " operations)"};
    v.all();
    stats.cut += v.cut;
    stats.big_cut += v.big_cut;
    fail_if(v.problems, repro);
  }
  daemon->unmount();
  daemon.reset();
  layerfs::check::Options o;
  o.upper = w.l.upper;
  o.work = w.l.work;
  o.lowers = {w.l.lower1, w.l.lower2};
  std::string why;
  auto rep = layerfs::check::check(o, &why);
  if (!rep.ok()) throw Failure("the checker could not run: " + why);
  std::vector<std::string> problems;
  for (const auto& f : rep->findings) {
    if (f.harmless) {
      ++stats.harmless;
      if (w.cfg.verbose)
        std::printf("  check (harmless): %s: %s\n", layerfs::check::kind_name(f.kind),
                    f.what.c_str());
      continue;
    }
    problems.push_back("round " + std::to_string(round) +
                       ": check: " + layerfs::check::kind_name(f.kind) + ": " + f.what);
  }
  fail_if(problems, repro);
  return stats;
}

Config parse(int argc, char** argv) {
  Config c;
  if (const char* bin = std::getenv("LAYERFS_BIN")) c.layerfs = bin;
#ifdef LAYERFS_BUILD_BINARY
  if (c.layerfs.empty()) c.layerfs = LAYERFS_BUILD_BINARY;
#endif
  auto num = [&](int& i) -> long long {
    if (i + 1 >= argc) die(std::string("missing value for ") + argv[i]);
    char* end = nullptr;
    long long v = std::strtoll(argv[++i], &end, 10);
    if (!*argv[i] || *end || v < 0)
      die(std::string("bad number for ") + argv[i - 1] + ": " + argv[i]);
    return v;
  };
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    if (a == "--seed")
      c.seed = static_cast<uint64_t>(num(i));
    else if (a == "--rounds")
      c.rounds = static_cast<int>(num(i));
    else if (a == "--big-mib")
      c.big_mib = static_cast<int>(num(i));
    else if (a == "--threads")
      c.threads = std::max(1, static_cast<int>(num(i)));
    else if (a == "--layerfs" && i + 1 < argc)
      c.layerfs = argv[++i];
    else if (a == "--keep")
      c.keep = true;
    else if (a == "--verbose")
      c.verbose = true;
    else
      die("unknown argument " + a +
          "\nusage: layerfs_crashtest --seed N --rounds R [--big-mib M] [--threads T] "
          "[--layerfs PATH] [--keep] [--verbose]");
  }
  if (c.big_mib < 1) die("--big-mib must be at least 1");
  if (c.layerfs.empty()) die("no layerfs binary: give --layerfs PATH or set LAYERFS_BIN");
  return c;
}

}  // namespace

int main(int argc, char** argv) {
  World w;
  w.cfg = parse(argc, argv);
  if (int rc = layerfs::test::check_can_mount("layerfs_crashtest")) return rc;
  ::umask(0);
  char tmpl[] = "/tmp/layerfs-crashtest.XXXXXX";
  if (!::mkdtemp(tmpl)) die("mkdtemp failed");
  w.l.dir = tmpl;
  w.l.lower1 = w.l.dir + "/lower1";
  w.l.lower2 = w.l.dir + "/lower2";
  w.l.upper = w.l.dir + "/upper";
  w.l.work = w.l.dir + "/work";
  w.l.mnt = w.l.dir + "/mnt";
  build_lowers(w);
  const std::string repro_base = std::string(argv[0]) + " --seed " + std::to_string(w.cfg.seed) +
                                 " --big-mib " + std::to_string(w.cfg.big_mib) + " --threads " +
                                 std::to_string(w.cfg.threads);
  int status = 0;
  const auto start = Clock::now();
  uint64_t ops = 0;
  int harmless = 0, cut = 0, big_cut = 0;
  for (int round = 1; round <= w.cfg.rounds; ++round) {
    try {
      RoundStats s = run_round(w, round, repro_base + " --rounds " + std::to_string(round));
      ops += s.ops;
      harmless += s.harmless;
      cut += s.cut;
      big_cut += s.big_cut;
      if (w.cfg.verbose)
        std::printf("round %d: %llu operations\n", round, (unsigned long long)s.ops);
    } catch (const Failure& e) {
      std::fprintf(stderr, "layerfs_crashtest: seed %llu: %s\n", (unsigned long long)w.cfg.seed,
                   e.what());
      status = 1;
      break;
    } catch (const std::exception& e) {
      std::fprintf(stderr, "layerfs_crashtest: seed %llu round %d: %s\n",
                   (unsigned long long)w.cfg.seed, round, e.what());
      status = 2;
      break;
    }
  }
  if (mounted_at(w.l.mnt)) ::umount2(w.l.mnt.c_str(), MNT_DETACH);
  const double secs = std::chrono::duration<double>(Clock::now() - start).count();
  if (status == 0) {
    std::printf(
        "layerfs_crashtest: seed %llu: %d rounds (%d kills), %llu operations, %d cut "
        "short by a kill (%d kills during a write of the big file), %d harmless "
        "findings of the checker, %.1f s: passed\n",
        (unsigned long long)w.cfg.seed, w.cfg.rounds, 2 * w.cfg.rounds, (unsigned long long)ops,
        cut, big_cut, harmless, secs);
  }
  if (!w.cfg.keep || status == 0) {
    std::error_code ec;
    fsys::remove_all(w.l.dir, ec);
  } else {
    std::fprintf(stderr, "layerfs_crashtest: kept %s\n", w.l.dir.c_str());
  }
  return status;
}
