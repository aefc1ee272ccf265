// The differential random-operation tester's engine (see engine.h): generating the layers and
// the operations from the seed, applying each operation to the mount and to the reference
// directory, and comparing results and trees.
#include "tests/difftest/engine.h"

#include <dirent.h>
#include <fcntl.h>
#include <linux/fs.h>
#include <stdio.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/xattr.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <map>
#include <memory>
#include <random>
#include <set>
#include <sstream>
#include <stdexcept>
#include <utility>
#include <vector>

#include "tests/support/mount.h"
#include "tests/support/tmptree.h"
#include "tests/support/tree.h"

namespace layerfs::difftest {
namespace {

using test::Entry;

// Few names, so that random paths collide often with each other and with the lowers' entries:
// most operations then hit something that exists, in one layer or several.
constexpr const char* kNames[] = {"a", "b", "c", "d", "e"};
constexpr size_t kNameCount = sizeof kNames / sizeof kNames[0];

// Deterministic on every platform: mt19937_64's output is specified by the standard, the
// standard distributions are not, so only modulo is used on it.
class Rng {
 public:
  explicit Rng(uint64_t seed) : gen_(seed) {}
  uint64_t below(uint64_t n) { return n == 0 ? 0 : gen_() % n; }
  bool chance(unsigned percent) { return below(100) < percent; }
  template <typename T, size_t N>
  T pick(const T (&items)[N]) {
    return items[below(N)];
  }
  uint64_t next() { return gen_(); }

 private:
  std::mt19937_64 gen_;
};

std::string random_path(Rng& r, int max_depth = 3) {
  // Shallow paths are likelier, so that the top directories see most of the traffic.
  int depth = 1;
  while (depth < max_depth && r.chance(40)) ++depth;
  std::string p;
  for (int i = 0; i < depth; ++i) {
    if (!p.empty()) p += '/';
    p += kNames[r.below(kNameCount)];
  }
  return p;
}

// Sizes and offsets: mostly inside the first pages, sometimes past a hole of a few MiB.
off_t random_offset(Rng& r) {
  uint64_t k = r.below(100);
  if (k < 75) return static_cast<off_t>(r.below(8192));
  if (k < 95) return static_cast<off_t>(r.below(256 << 10));
  return static_cast<off_t>((1 << 20) + r.below(2 << 20));
}

enum class Kind {
  kCreate,
  kWrite,
  kTruncate,
  kRename,
  kLink,
  kUnlink,
  kMkdir,
  kRmdir,
  kChmod,
  kChown,
  kSetxattr,
  kRemovexattr,
  kSymlink,
  kMmapWrite,
  kRead,
  kStat,
  kReaddir,
  kReadlink,
  kMknod,  // a FIFO or a socket node
  // Descriptors held open across other operations (renames, unlinks, copy-ups, writes through
  // other names): what an open file sees after its name changed layer under it.
  kHeldOpen,
  kHeldRead,
  kHeldWrite,
  kHeldTruncate,
  kHeldFstat,
  kHeldClose,
  kHeldReaddir,  // rewind and list a held directory: the listing after changes in it
};

// Descriptors held open between operations, per tree; -1 is a free slot.
constexpr size_t kHeldSlots = 3;
using Held = std::array<int, kHeldSlots>;

struct Op {
  Kind kind = Kind::kStat;
  std::string a, b;  // paths relative to the root; b: rename/link destination, symlink target
  int flags = 0;
  mode_t mode = 0;
  off_t offset = 0;  // write/mmap offset, truncate size
  size_t len = 0;
  uint32_t data_seed = 0;
  uid_t uid = 0;
  gid_t gid = 0;
  std::string name, value;  // xattr
  size_t slot = 0;          // held descriptor
  // Set the mtimes of the paths and their parents to kStampTime first, to see afterwards which
  // ones the operation changed.
  bool stamp = false;
};

// Far from any clock reading, so that "changed" never depends on timestamp granularity.
constexpr time_t kStampTime = 1000000000;

std::string flag_names(int flags, std::initializer_list<std::pair<int, const char*>> known) {
  std::string out;
  for (auto [bit, name] : known) {
    if (flags & bit) out += std::string(out.empty() ? "" : "|") + name;
  }
  return out.empty() ? "0" : out;
}

std::string octal(mode_t m) {
  char buf[16];
  std::snprintf(buf, sizeof buf, "0%o", static_cast<unsigned>(m));
  return buf;
}

std::string describe(const Op& op) {
  std::ostringstream os;
  switch (op.kind) {
    case Kind::kCreate:
      os << "create " << op.a << " "
         << flag_names(op.flags, {{O_EXCL, "O_EXCL"}, {O_TRUNC, "O_TRUNC"}}) << " "
         << octal(op.mode);
      break;
    case Kind::kWrite:
      os << "write " << op.a << " " << op.len << " bytes "
         << ((op.flags & O_APPEND) ? std::string("O_APPEND") : "at " + std::to_string(op.offset));
      break;
    case Kind::kTruncate:
      os << "truncate " << op.a << " " << op.offset;
      break;
    case Kind::kRename:
      os << "rename " << op.a << " -> " << op.b << " "
         << flag_names(op.flags, {{RENAME_NOREPLACE, "RENAME_NOREPLACE"},
                                  {RENAME_EXCHANGE, "RENAME_EXCHANGE"}});
      break;
    case Kind::kLink:
      os << "link " << op.a << " -> " << op.b;
      break;
    case Kind::kUnlink:
      os << "unlink " << op.a;
      break;
    case Kind::kMkdir:
      os << "mkdir " << op.a << " " << octal(op.mode);
      break;
    case Kind::kRmdir:
      os << "rmdir " << op.a;
      break;
    case Kind::kChmod:
      os << "chmod " << op.a << " " << octal(op.mode);
      break;
    case Kind::kChown:
      os << "lchown " << op.a << " " << op.uid << ":" << op.gid;
      break;
    case Kind::kSetxattr:
      os << "lsetxattr " << op.a << " " << op.name << "=" << op.value << " "
         << flag_names(op.flags,
                       {{XATTR_CREATE, "XATTR_CREATE"}, {XATTR_REPLACE, "XATTR_REPLACE"}});
      break;
    case Kind::kRemovexattr:
      os << "lremovexattr " << op.a << " " << op.name;
      break;
    case Kind::kSymlink:
      os << "symlink " << op.a << " -> \"" << op.b << "\"";
      break;
    case Kind::kMmapWrite:
      os << "mmap write " << op.a << " " << op.len << " bytes at " << op.offset << " mod size";
      break;
    case Kind::kRead:
      os << "read " << op.a;
      break;
    case Kind::kStat:
      os << "lstat " << op.a;
      break;
    case Kind::kReaddir:
      os << "readdir " << op.a;
      break;
    case Kind::kReadlink:
      os << "readlink " << op.a;
      break;
    case Kind::kMknod:
      os << "mknod " << op.a << " " << (S_ISFIFO(op.mode) ? "fifo " : "socket ")
         << octal(op.mode & 07777);
      break;
    case Kind::kHeldOpen:
      os << "fd" << op.slot << " = open " << op.a << " "
         << ((op.flags & O_ACCMODE) == O_RDONLY   ? "O_RDONLY"
             : (op.flags & O_ACCMODE) == O_WRONLY ? "O_WRONLY"
                                                  : "O_RDWR")
         << ((op.flags & O_APPEND) ? "|O_APPEND" : "");
      break;
    case Kind::kHeldRead:
      os << "pread fd" << op.slot << " " << op.len << " at " << op.offset;
      break;
    case Kind::kHeldWrite:
      os << "pwrite fd" << op.slot << " " << op.len << " at " << op.offset;
      break;
    case Kind::kHeldTruncate:
      os << "ftruncate fd" << op.slot << " " << op.offset;
      break;
    case Kind::kHeldFstat:
      os << "fstat fd" << op.slot;
      break;
    case Kind::kHeldClose:
      os << "close fd" << op.slot;
      break;
    case Kind::kHeldReaddir:
      os << "rewind and getdents fd" << op.slot;
      break;
  }
  return os.str();
}

// What an operation returned: the errno (0 for success) and, for operations that return data,
// a rendering of it.
struct Outcome {
  int err = 0;
  std::string data;
  bool operator==(const Outcome&) const = default;
};

std::string render(const Outcome& o) {
  return test::errno_name(o.err) + (o.data.empty() ? "" : " [" + o.data + "]");
}

uint64_t fnv1a(const char* p, size_t n, uint64_t h = 1469598103934665603ull) {
  for (size_t i = 0; i < n; ++i) {
    h ^= static_cast<unsigned char>(p[i]);
    h *= 1099511628211ull;
  }
  return h;
}

// The attributes of one path both trees must agree on after every operation. Directories'
// sizes and link counts are left to the whole-tree check: sizes of directories differ between
// filesystems, and link counts of merged directories are 1 on the mount (see check_trees).
std::string stat_summary(const struct stat& st) {
  std::ostringstream os;
  os << test::type_name(st.st_mode);
  if (!S_ISLNK(st.st_mode)) os << " " << octal(st.st_mode & 07777);
  os << " " << st.st_uid << ":" << st.st_gid;
  if (!S_ISDIR(st.st_mode)) os << " size " << st.st_size << " nlink " << st.st_nlink;
  return os.str();
}

Outcome lstat_outcome(const std::string& p) {
  struct stat st;
  if (::lstat(p.c_str(), &st) != 0) return {errno, {}};
  return {0, stat_summary(st)};
}

class FdCloser {
 public:
  explicit FdCloser(int fd) : fd_(fd) {}
  ~FdCloser() {
    if (fd_ >= 0) ::close(fd_);
  }
  FdCloser(const FdCloser&) = delete;
  FdCloser& operator=(const FdCloser&) = delete;

 private:
  int fd_;
};

std::string digest(const char* p, size_t n) {
  char out[64];
  std::snprintf(out, sizeof out, "%zu bytes, digest %016llx", n,
                static_cast<unsigned long long>(fnv1a(p, n)));
  return out;
}

// Every open: FIFOs are in the trees, and opening one must not wait for a peer (O_NONBLOCK makes
// a FIFO open for writing fail with ENXIO instead; it changes nothing for regular files).
constexpr int kOpenExtra = O_NONBLOCK;

Outcome apply_op(const Op& op, const std::string& root, Held& held) {
  const std::string p = root + "/" + op.a;
  const std::string q = root + "/" + op.b;
  auto res = [](long rv) { return Outcome{rv < 0 ? errno : 0, {}}; };
  switch (op.kind) {
    case Kind::kCreate: {
      int fd = ::open(p.c_str(), O_WRONLY | O_CREAT | O_CLOEXEC | kOpenExtra | op.flags, op.mode);
      if (fd < 0) return {errno, {}};
      return res(::close(fd));
    }
    case Kind::kWrite: {
      int fd = ::open(p.c_str(), O_WRONLY | O_CLOEXEC | kOpenExtra | op.flags);
      if (fd < 0) return {errno, {}};
      FdCloser c(fd);
      const std::string data = test::pattern(op.len, op.data_seed);
      ssize_t n = (op.flags & O_APPEND) ? ::write(fd, data.data(), data.size())
                                        : ::pwrite(fd, data.data(), data.size(), op.offset);
      if (n < 0) return {errno, {}};
      return {0, "wrote " + std::to_string(n)};
    }
    case Kind::kTruncate:
      return res(::truncate(p.c_str(), op.offset));
    case Kind::kRename:
      return res(::renameat2(AT_FDCWD, p.c_str(), AT_FDCWD, q.c_str(), op.flags));
    case Kind::kLink:
      return res(::link(p.c_str(), q.c_str()));
    case Kind::kUnlink:
      return res(::unlink(p.c_str()));
    case Kind::kMkdir:
      return res(::mkdir(p.c_str(), op.mode));
    case Kind::kRmdir:
      return res(::rmdir(p.c_str()));
    case Kind::kChmod:
      return res(::chmod(p.c_str(), op.mode));
    case Kind::kChown:
      return res(::lchown(p.c_str(), op.uid, op.gid));
    case Kind::kSetxattr:
      return res(
          ::lsetxattr(p.c_str(), op.name.c_str(), op.value.data(), op.value.size(), op.flags));
    case Kind::kRemovexattr:
      return res(::lremovexattr(p.c_str(), op.name.c_str()));
    case Kind::kSymlink:
      return res(::symlink(op.b.c_str(), p.c_str()));
    case Kind::kMmapWrite: {
      int fd = ::open(p.c_str(), O_RDWR | O_CLOEXEC | kOpenExtra);
      if (fd < 0) return {errno, {}};
      FdCloser c(fd);
      struct stat st;
      if (::fstat(fd, &st) != 0) return {errno, {}};
      if (!S_ISREG(st.st_mode)) return {0, "not a regular file"};
      if (st.st_size == 0) return {0, "empty"};
      const size_t size = static_cast<size_t>(st.st_size);
      const size_t off = static_cast<size_t>(op.offset) % size;
      const std::string data = test::pattern(std::min(op.len, size - off), op.data_seed);
      void* m = ::mmap(nullptr, size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
      if (m == MAP_FAILED) return {errno, "mmap"};
      std::memcpy(static_cast<char*>(m) + off, data.data(), data.size());
      int e = ::msync(m, size, MS_SYNC) != 0 ? errno : 0;
      ::munmap(m, size);
      return {e,
              e ? "msync" : "wrote " + std::to_string(data.size()) + " at " + std::to_string(off)};
    }
    case Kind::kRead: {
      int fd = ::open(p.c_str(), O_RDONLY | O_CLOEXEC | kOpenExtra);
      if (fd < 0) return {errno, {}};
      FdCloser c(fd);
      uint64_t h = fnv1a(nullptr, 0);
      size_t total = 0;
      char buf[65536];
      for (;;) {
        ssize_t n = ::read(fd, buf, sizeof buf);
        if (n < 0) return {errno, "after " + std::to_string(total) + " bytes"};
        if (n == 0) break;
        h = fnv1a(buf, static_cast<size_t>(n), h);
        total += static_cast<size_t>(n);
      }
      char out[64];
      std::snprintf(out, sizeof out, "%zu bytes, digest %016llx", total,
                    static_cast<unsigned long long>(h));
      return {0, out};
    }
    case Kind::kStat:
      return lstat_outcome(p);
    case Kind::kReaddir: {
      DIR* d = ::opendir(p.c_str());
      if (!d) return {errno, {}};
      std::vector<std::string> names;
      errno = 0;
      while (struct dirent* de = ::readdir(d)) names.emplace_back(de->d_name);
      int e = errno;
      ::closedir(d);
      std::sort(names.begin(), names.end());
      std::string out;
      for (const auto& n : names) out += (out.empty() ? "" : " ") + n;
      return {e, out};
    }
    case Kind::kMknod:
      return res(::mknod(p.c_str(), op.mode, 0));
    case Kind::kReadlink: {
      char buf[4096];
      ssize_t n = ::readlink(p.c_str(), buf, sizeof buf);
      if (n < 0) return {errno, {}};
      return {0, std::string(buf, static_cast<size_t>(n))};
    }
    case Kind::kHeldOpen: {
      if (held[op.slot] >= 0) ::close(held[op.slot]);
      held[op.slot] = ::open(p.c_str(), op.flags | O_CLOEXEC | kOpenExtra);
      return {held[op.slot] < 0 ? errno : 0, {}};
    }
    case Kind::kHeldRead: {
      std::string buf(op.len, '\0');
      ssize_t n = ::pread(held[op.slot], buf.data(), buf.size(), op.offset);
      if (n < 0) return {errno, {}};
      return {0, digest(buf.data(), static_cast<size_t>(n))};
    }
    case Kind::kHeldWrite: {
      const std::string data = test::pattern(op.len, op.data_seed);
      ssize_t n = ::pwrite(held[op.slot], data.data(), data.size(), op.offset);
      if (n < 0) return {errno, {}};
      return {0, "wrote " + std::to_string(n)};
    }
    case Kind::kHeldTruncate:
      return res(::ftruncate(held[op.slot], op.offset));
    case Kind::kHeldFstat: {
      struct stat st;
      if (::fstat(held[op.slot], &st) != 0) return {errno, {}};
      return {0, stat_summary(st)};
    }
    case Kind::kHeldClose: {
      int fd = std::exchange(held[op.slot], -1);
      return res(::close(fd));
    }
    case Kind::kHeldReaddir: {
      const int fd = held[op.slot];
      if (::lseek(fd, 0, SEEK_SET) < 0) return {errno, "lseek"};
      std::vector<std::string> names;
      alignas(8) char buf[8192];
      for (;;) {
        ssize_t n = ::getdents64(fd, buf, sizeof buf);
        if (n < 0) return {errno, {}};
        if (n == 0) break;
        for (ssize_t off = 0; off < n;) {
          auto* de = reinterpret_cast<struct dirent64*>(buf + off);
          names.emplace_back(de->d_name);
          off += de->d_reclen;
        }
      }
      std::sort(names.begin(), names.end());
      std::string out;
      for (const auto& n : names) out += (out.empty() ? "" : " ") + n;
      return {0, out};
    }
  }
  return {EINVAL, "unknown operation"};
}

// The lowers (two or three), generated from the seed: files (some sparse, some with xattrs),
// directories, symlinks and hard links at colliding paths in every layer, plus whiteouts and
// opaque directories, in each form other tools write, in all but the bottom one, so that the
// merge has something to hide and to combine.
//
// Unless `hidden_links`, hard links are made only where both names show in the merged view:
// layerfs reports st_nlink of a lower hard-link group as the lower's count, also when some names
// are hidden by higher layers (a known bug, see "difftest finding" in
// tests/mount/test_difftest.cpp), which would fail every seed that makes such a group.
std::vector<std::vector<Entry>> make_lowers(Rng& r, bool hidden_links, bool for_user) {
  static constexpr mode_t kFileModes[] = {0644, 0600, 0755, 0444, 0640};
  static constexpr mode_t kDirModes[] = {0755, 0700, 0775, 0555};
  static constexpr std::pair<uid_t, gid_t> kOwners[] = {{0, 0}, {1000, 1000}, {7, 8}};
  static constexpr test::OpaqueForm kOpaqueForms[] = {
      test::OpaqueForm::kTrustedXattr, test::OpaqueForm::kUserXattr, test::OpaqueForm::kWhFile};
  std::vector<std::vector<Entry>> layers(2 + r.below(2));
  // Per layer: path -> 'f' file, 'd' directory, 'o' other; and its opaque directories.
  std::vector<std::map<std::string, char>> all_kinds(layers.size());
  std::vector<std::set<std::string>> opaques(layers.size());
  // Whether a higher layer than `layer` hides `path` (shadows it, or an ancestor of it with a
  // non-directory, a whiteout or an opaque directory).
  auto hidden = [&](size_t layer, const std::string& path) {
    for (size_t h = 0; h < layer; ++h) {
      if (all_kinds[h].count(path)) return true;
      for (size_t s = path.find('/'); s != std::string::npos; s = path.find('/', s + 1)) {
        const std::string anc = path.substr(0, s);
        auto it = all_kinds[h].find(anc);
        if (it != all_kinds[h].end() && (it->second != 'd' || opaques[h].count(anc))) return true;
      }
    }
    return false;
  };
  for (size_t layer = 0; layer < layers.size(); ++layer) {
    auto& kinds = all_kinds[layer];
    std::vector<std::string> files;
    auto& out = layers[layer];
    const uint64_t count = 12 + r.below(12);
    for (uint64_t i = 0; i < count; ++i) {
      const std::string path = random_path(r);
      if (kinds.count(path)) continue;
      // build() makes missing parents as directories; a parent that is a file here cannot be.
      bool parents_ok = true;
      for (size_t s = path.find('/'); s != std::string::npos; s = path.find('/', s + 1)) {
        auto it = kinds.find(path.substr(0, s));
        if (it != kinds.end() && it->second != 'd') parents_ok = false;
      }
      if (!parents_ok) continue;
      for (size_t s = path.find('/'); s != std::string::npos; s = path.find('/', s + 1)) {
        kinds.emplace(path.substr(0, s), 'd');
      }
      const auto owner = r.pick(kOwners);
      const uint64_t k = r.below(100);
      if (k < 50) {
        Entry e = test::file(path, test::pattern(r.below(3000), static_cast<uint32_t>(r.next())),
                             r.pick(kFileModes));
        if (r.chance(10)) {
          e.sparse(static_cast<off_t>((1 << 20) + r.below(1 << 20)))
              .data_at(static_cast<off_t>(r.below(2 << 20)), "sparse data");
        }
        if (r.chance(20)) e.xattr("user.x", "lower" + std::to_string(layer));
        e.owner(owner.first, owner.second);
        // Set-id files, writable by others or not: a non-owner's write must clear the bits.
        if (for_user && r.chance(25)) {
          static constexpr mode_t kSetId[] = {04755, 02755, 06777, 04666, 02770};
          e.mode(r.pick(kSetId));
        }
        out.push_back(std::move(e));
        kinds[path] = 'f';
        files.push_back(path);
      } else if (k < 75) {
        Entry e = test::dir(path, r.pick(kDirModes));
        if (r.chance(15)) e.xattr("user.y", "dir" + std::to_string(layer));
        e.owner(owner.first, owner.second);
        // Sticky and world-writable directories, a set-group-ID one.
        if (for_user && r.chance(35)) {
          static constexpr mode_t kShared[] = {01777, 0777, 02777, 01770};
          e.mode(r.pick(kShared));
        }
        out.push_back(std::move(e));
        kinds[path] = 'd';
      } else if (k < 87) {
        out.push_back(test::sym(path, random_path(r, 2)));
        kinds[path] = 'o';
      } else if (k < 94 && !files.empty()) {
        const std::string& target = files[r.below(files.size())];
        if (!hidden_links && (hidden(layer, path) || hidden(layer, target))) continue;
        out.push_back(test::hardlink(path, target));
        kinds[path] = 'f';
      } else if (k >= 94 && k < 96) {
        out.push_back(test::fifo(path, r.pick(kFileModes)));
        kinds[path] = 'o';
      } else if (layer + 1 < layers.size() && k < 98) {
        out.push_back(r.chance(50) ? test::whiteout(path) : test::wh_file(path));
        kinds[path] = 'o';  // also keeps NAME itself out of this layer
      } else if (layer + 1 < layers.size()) {
        out.push_back(test::opaque(path, r.pick(kOpaqueForms)));
        kinds[path] = 'd';
        opaques[layer].insert(path);
      }
    }
  }
  return layers;
}

// Runs the operations of a scope as Config's unprivileged user: the effective uid and gid
// (and so the filesystem ids) and no supplementary groups; the saved ids stay 0, so the
// destructor can switch back (and regain the capabilities). Raw system calls change only the
// calling thread's credentials, where glibc's wrappers would change every thread's.
class UserScope {
 public:
  explicit UserScope(const Config& cfg) : active_(cfg.as_user) {
    if (!active_) return;
    int n = ::getgroups(0, nullptr);
    groups_.resize(n > 0 ? static_cast<size_t>(n) : 0);
    if (n > 0 && ::getgroups(n, groups_.data()) < 0) test::throw_errno("getgroups");
    if (::syscall(SYS_setgroups, 0, nullptr) != 0) test::throw_errno("setgroups");
    if (::syscall(SYS_setresgid, -1, cfg.user_gid, -1) != 0) test::throw_errno("setresgid");
    if (::syscall(SYS_setresuid, -1, cfg.user_uid, -1) != 0) test::throw_errno("setresuid");
  }
  ~UserScope() {
    if (!active_) return;
    // Failing to become root again would make every later check wrong: stop at once.
    if (::syscall(SYS_setresuid, -1, 0, -1) != 0 || ::syscall(SYS_setresgid, -1, 0, -1) != 0 ||
        ::syscall(SYS_setgroups, groups_.size(), groups_.data()) != 0) {
      std::perror("difftest: switching back to root");
      std::abort();
    }
  }
  UserScope(const UserScope&) = delete;
  UserScope& operator=(const UserScope&) = delete;

 private:
  bool active_;
  std::vector<gid_t> groups_;
};

class Runner {
 public:
  explicit Runner(const Config& cfg)
      : cfg_(cfg),
        ops_rng_(cfg.seed),
        // Its own stream, so that remounting more or less often does not change the operations.
        remount_rng_(cfg.seed ^ 0x5eedf00dcafe1234ull),
        tmp_(cfg.tmp_prefix) {}

  Result run() {
    try {
      setup();
      for (uint64_t i = 0; i < cfg_.ops && result_.ok; ++i) {
        step(i);
        if (!result_.ok) break;
        if (!cfg_.verbose && (i + 1) % 100000 == 0) {
          log_line("seed " + std::to_string(cfg_.seed) + ": " + std::to_string(i + 1) +
                   " operations, " + std::to_string(result_.remounts) + " remounts, ok so far");
        }
        bool last = i + 1 == cfg_.ops;
        if (cfg_.remount_every && !last && remount_rng_.below(cfg_.remount_every) == 0) {
          remount(i);
          if (result_.ok) check_trees(i, "after a remount");
        } else if (last || (cfg_.check_every && (i + 1) % cfg_.check_every == 0)) {
          check_trees(i, "");
        }
      }
    } catch (const std::exception& e) {
      fail(result_.ops_run ? result_.ops_run - 1 : UINT64_MAX,
           std::string("exception: ") + e.what());
    }
    close_held();
    if (mount_) {
      if (!mount_->unmount() && result_.ok) {
        fail(result_.ops_run - 1, "unmount at the end: " + mount_->problem());
      }
      mount_.reset();
      if (result_.ok) check_layers(result_.ops_run - 1, "after the final unmount");
    }
    return result_;
  }

 private:
  void log_line(const std::string& s) {
    if (cfg_.log) *cfg_.log << s << "\n" << std::flush;
  }

  void fail(uint64_t index, const std::string& what) {
    if (!result_.ok) return;
    result_.ok = false;
    result_.failed_op = index;
    result_.failure = what;
    if (mount_) {
      std::string log = mount_->log();
      if (log.size() > 4096) log = "[...]" + log.substr(log.size() - 4096);
      if (!log.empty()) result_.failure += "\nlayerfs daemon output:\n" + log;
    }
  }

  test::MountSpec spec() const {
    test::MountSpec s;
    s.lowers = lowers_;
    s.upper = upper_;
    s.work = work_;
    if (cfg_.as_user) s.options.push_back("allow_other");
    return s;
  }

  void setup() {
    auto layers = make_lowers(ops_rng_, cfg_.hidden_lower_links, cfg_.as_user);
    for (size_t i = 0; i < layers.size(); ++i) {
      lowers_.push_back(tmp_.mkdir("l" + std::to_string(i)));
      test::build(lowers_.back(), layers[i]);
    }
    upper_ = tmp_.mkdir("upper");
    work_ = tmp_.mkdir("work");
    mnt_ = tmp_.mkdir("mnt");
    ref_ = tmp_.mkdir("ref");
    std::vector<std::string> all{upper_};
    all.insert(all.end(), lowers_.begin(), lowers_.end());
    test::build_reference(all, ref_);
    for (const auto& l : lowers_) lower_snapshots_.push_back(test::scan_tree(l));
    mount_ = std::make_unique<test::Mount>(mnt_, spec());
    check_trees(UINT64_MAX, "right after mounting (before any operation)");
  }

  // Both trees' held descriptors, closed alike (a remount needs the mount unused).
  void close_held() {
    for (Held* h : {&held_mnt_, &held_ref_}) {
      for (int& fd : *h) {
        if (fd >= 0) ::close(std::exchange(fd, -1));
      }
    }
  }

  void remount(uint64_t index) {
    close_held();
    if (!mount_->unmount()) {
      fail(index, "unmount for a remount: " + mount_->problem());
      return;
    }
    mount_.reset();
    check_layers(index, "at a remount");
    if (!result_.ok) return;
    mount_ = std::make_unique<test::Mount>(mnt_, spec());
    ++result_.remounts;
    if (cfg_.verbose) log_line("-- remounted");
  }

  // A path for an operation: half the time one that exists in the reference (any depth), else
  // a random one of the small name space (which often exists too).
  std::string pick_path() {
    if (!existing_.empty() && ops_rng_.chance(50))
      return existing_[ops_rng_.below(existing_.size())];
    return random_path(ops_rng_);
  }
  // Preferably (`percent` of the time) an existing path of type `type`: a few existing paths are
  // tried; otherwise any path.
  std::string pick_typed(mode_t type, unsigned percent) {
    if (!existing_.empty() && ops_rng_.chance(percent)) {
      for (int attempt = 0; attempt < 4; ++attempt) {
        const std::string& p = existing_[ops_rng_.below(existing_.size())];
        struct stat st;
        if (::lstat((ref_ + "/" + p).c_str(), &st) == 0 && (st.st_mode & S_IFMT) == type) return p;
      }
    }
    return pick_path();
  }
  // A destination: an existing directory plus a name, or a random path; kept shallow enough.
  std::string pick_destination() {
    if (!existing_.empty() && ops_rng_.chance(30)) {
      const std::string& base = existing_[ops_rng_.below(existing_.size())];
      if (std::count(base.begin(), base.end(), '/') < 5) {
        return base + "/" + kNames[ops_rng_.below(kNameCount)];
      }
    }
    return pick_path();
  }

  Op generate() {
    static constexpr mode_t kModes[] = {0644, 0600, 0755, 0700, 0444, 0640, 0555, 04755, 02755};
    static constexpr std::pair<uid_t, gid_t> kOwners[] = {{0, 0}, {1000, 1000}, {7, 8}, {1000, 0}};
    Rng& r = ops_rng_;
    Op op;
    // Weights in percent.
    static constexpr std::pair<Kind, unsigned> kWeights[] = {
        {Kind::kCreate, 10},
        {Kind::kWrite, 14},
        {Kind::kTruncate, 6},
        {Kind::kRename, 12},
        {Kind::kLink, 5},
        {Kind::kUnlink, 8},
        {Kind::kMkdir, 8},
        {Kind::kRmdir, 5},
        {Kind::kChmod, 4},
        {Kind::kChown, 3},
        {Kind::kSetxattr, 4},
        {Kind::kRemovexattr, 2},
        {Kind::kSymlink, 4},
        {Kind::kMmapWrite, 5},
        {Kind::kRead, 4},
        {Kind::kStat, 3},
        {Kind::kReaddir, 2},
        {Kind::kReadlink, 1},
        {Kind::kMknod, 2},
        // Descriptors held across operations.
        {Kind::kHeldOpen, 4},
        {Kind::kHeldRead, 3},
        {Kind::kHeldWrite, 3},
        {Kind::kHeldTruncate, 1},
        {Kind::kHeldFstat, 2},
        {Kind::kHeldClose, 2},
        {Kind::kHeldReaddir, 2},
    };
    static constexpr unsigned kTotal = [] {
      unsigned t = 0;
      for (auto [kind, weight] : kWeights) t += weight;
      return t;
    }();
    uint64_t w = r.below(kTotal);
    for (auto [kind, weight] : kWeights) {
      if (w < weight) {
        op.kind = kind;
        break;
      }
      w -= weight;
    }
    bool want_dir = false;  // kHeldOpen of a directory
    switch (op.kind) {
      // Operations on file content mostly get a regular file, so that they do more than fail
      // with EISDIR.
      case Kind::kWrite:
      case Kind::kTruncate:
      case Kind::kMmapWrite:
      case Kind::kRead:
      case Kind::kLink:
        op.a = pick_typed(S_IFREG, 70);
        break;
      case Kind::kHeldOpen:
        // Directories too, for kHeldReaddir.
        want_dir = r.chance(35);
        op.a = want_dir ? pick_typed(S_IFDIR, 80) : pick_typed(S_IFREG, 70);
        break;
      case Kind::kRmdir:
      case Kind::kReaddir:
        op.a = pick_typed(S_IFDIR, 60);
        break;
      case Kind::kReadlink:
        op.a = pick_typed(S_IFLNK, 60);
        break;
      default:
        op.a = pick_path();
        break;
    }
    op.slot = static_cast<size_t>(r.below(kHeldSlots));
    switch (op.kind) {
      case Kind::kCreate:
        op.flags = (r.chance(25) ? O_EXCL : 0) | (r.chance(25) ? O_TRUNC : 0);
        op.mode = r.pick(kModes) & 0777;
        break;
      case Kind::kWrite:
        op.flags = r.chance(15) ? O_APPEND : 0;
        op.offset = random_offset(r);
        op.len = 1 + static_cast<size_t>(r.chance(5) ? r.below(64 << 10) : r.below(4096));
        op.data_seed = static_cast<uint32_t>(r.next());
        break;
      case Kind::kTruncate:
        op.offset = random_offset(r);
        break;
      case Kind::kRename: {
        op.b = pick_destination();
        uint64_t k = r.below(100);
        op.flags = k < 70 ? 0 : k < 85 ? RENAME_NOREPLACE : RENAME_EXCHANGE;
        break;
      }
      case Kind::kLink:
        op.b = pick_destination();
        break;
      case Kind::kMkdir:
        op.a = pick_destination();
        op.mode = r.pick(kModes) & 0777;
        break;
      case Kind::kChmod:
        op.mode = r.pick(kModes);
        break;
      case Kind::kChown: {
        auto o = r.pick(kOwners);
        op.uid = o.first;
        op.gid = o.second;
        break;
      }
      case Kind::kSetxattr: {
        op.name = r.chance(50) ? "user.x" : "user.y";
        op.value = "v" + std::to_string(r.below(1000));
        uint64_t k = r.below(100);
        op.flags = k < 60 ? 0 : k < 80 ? XATTR_CREATE : XATTR_REPLACE;
        break;
      }
      case Kind::kMknod:
        op.a = pick_destination();
        op.mode = (r.chance(70) ? S_IFIFO : S_IFSOCK) | (r.pick(kModes) & 0777);
        break;
      case Kind::kRemovexattr:
        op.name = r.chance(50) ? "user.x" : "user.y";
        break;
      case Kind::kSymlink:
        op.a = pick_destination();
        // Relative targets without "..": whatever follows them stays inside the tree.
        op.b = random_path(r, 2);
        break;
      case Kind::kMmapWrite:
        op.offset = static_cast<off_t>(r.below(16384));
        op.len = 1 + static_cast<size_t>(r.below(600));
        op.data_seed = static_cast<uint32_t>(r.next());
        break;
      case Kind::kHeldOpen: {
        static constexpr int kOpenFlags[] = {O_RDONLY, O_RDONLY, O_RDWR,
                                             O_RDWR,   O_WRONLY, O_WRONLY | O_APPEND};
        op.flags = r.pick(kOpenFlags);
        if (want_dir) op.flags = O_RDONLY;  // directories open read-only only
        break;
      }
      case Kind::kHeldRead:
        op.offset = random_offset(r);
        op.len = 1 + static_cast<size_t>(r.below(8192));
        break;
      case Kind::kHeldWrite:
        op.offset = random_offset(r);
        op.len = 1 + static_cast<size_t>(r.below(4096));
        op.data_seed = static_cast<uint32_t>(r.next());
        break;
      case Kind::kHeldTruncate:
        op.offset = random_offset(r);
        break;
      default:
        break;
    }
    op.stamp = r.chance(15);
    return op;
  }

  // The paths whose mtimes an operation is checked on: its paths and their parents.
  static std::vector<std::string> stamp_paths(const Op& op) {
    std::vector<std::string> out;
    if (op.kind >= Kind::kHeldRead) return out;
    for (const std::string* rel : {&op.a, &op.b}) {
      if (rel->empty() || (op.kind == Kind::kSymlink && rel == &op.b)) continue;
      out.push_back(*rel);
      auto slash = rel->rfind('/');
      out.push_back(slash == std::string::npos ? "." : rel->substr(0, slash));
    }
    std::sort(out.begin(), out.end());
    out.erase(std::unique(out.begin(), out.end()), out.end());
    return out;
  }

  // Stamping: the same utimensat on both trees, which must give the same result.
  bool stamp(uint64_t index, const Op& op) {
    const timespec t[2] = {{kStampTime, 0}, {kStampTime, 0}};
    for (const auto& rel : stamp_paths(op)) {
      int em =
          ::utimensat(AT_FDCWD, (mnt_ + "/" + rel).c_str(), t, AT_SYMLINK_NOFOLLOW) ? errno : 0;
      int er =
          ::utimensat(AT_FDCWD, (ref_ + "/" + rel).c_str(), t, AT_SYMLINK_NOFOLLOW) ? errno : 0;
      if (em != er) {
        fail(index, "before operation #" + std::to_string(index) + ", utimensat " + rel +
                        ": the mount gave " + test::errno_name(em) + ", the reference " +
                        test::errno_name(er));
        return false;
      }
    }
    return true;
  }

  // After a stamped operation: each stamped path's mtime changed on the mount exactly when it
  // did in the reference (POSIX says which operations change which times; copy-up must not
  // change any).
  void check_stamps(uint64_t index, const Op& op) {
    for (const auto& rel : stamp_paths(op)) {
      struct stat sm, sr;
      if (::lstat((mnt_ + "/" + rel).c_str(), &sm) != 0 ||
          ::lstat((ref_ + "/" + rel).c_str(), &sr) != 0) {
        continue;  // existence is compared elsewhere
      }
      // A path that names another object than before (renamed over, re-created) has a fresh
      // mtime in both trees, which compares the same way.
      bool cm = sm.st_mtim.tv_sec != kStampTime, cr = sr.st_mtim.tv_sec != kStampTime;
      if (cm != cr) {
        fail(index, "after operation #" + std::to_string(index) + " (" + describe(op) +
                        "), mtime of " + rel +
                        (cr ? " changed in the reference but not on the mount"
                            : " changed on the mount but not in the reference"));
        return;
      }
    }
  }

  void step(uint64_t index) {
    existing_ = test::list_tree(ref_);
    const Op op = generate();
    if (op.stamp && !stamp(index, op)) return;
    Outcome m, r;
    {
      UserScope as(cfg_);
      m = apply_op(op, mnt_, held_mnt_);
      r = apply_op(op, ref_, held_ref_);
    }
    ++result_.ops_run;
    if (cfg_.verbose) log_line("#" + std::to_string(index) + " " + describe(op) + ": " + render(r));
    if (!(m == r)) {
      fail(index, "operation #" + std::to_string(index) + " (" + describe(op) +
                      "): the mount gave " + render(m) + ", the reference " + render(r));
      return;
    }
    // The paths the operation touched, at once, so that a divergence is reported at the
    // operation that caused it rather than at the next whole-tree check.
    for (const std::string* rel : {&op.a, &op.b}) {
      if (rel->empty() || (op.kind == Kind::kSymlink && rel == &op.b)) continue;
      if (op.kind >= Kind::kHeldRead) continue;  // no path
      const Outcome ms = lstat_outcome(mnt_ + "/" + *rel);
      const Outcome rs = lstat_outcome(ref_ + "/" + *rel);
      if (!(ms == rs)) {
        fail(index, "after operation #" + std::to_string(index) + " (" + describe(op) +
                        "), lstat " + *rel + ": the mount gives " + render(ms) +
                        ", the reference " + render(rs));
        return;
      }
    }
    if (op.stamp) check_stamps(index, op);
  }

  // What layerfs promises of the layers themselves, checked while unmounted: the lowers were
  // never modified (content, modes, owners, times, xattrs, inodes), and the upper is a plain
  // tree — no whiteout devices, no .wh.* names (the operations never make such names), no
  // union-private xattrs.
  void check_layers(uint64_t index, const std::string& when) {
    std::string problems;
    for (size_t i = 0; i < lowers_.size(); ++i) {
      std::string diff = test::diff_trees(lower_snapshots_[i], test::scan_tree(lowers_[i]),
                                          test::strict_compare(), "before", "now");
      if (!diff.empty()) problems += "lower " + std::to_string(i) + " was modified:\n" + diff;
    }
    for (const auto& [rel, n] : test::scan_tree(upper_, {.content = false, .xattrs = true})) {
      const std::string name =
          rel.substr(rel.rfind('/') == std::string::npos ? 0 : rel.rfind('/') + 1);
      if (S_ISCHR(n.mode) && n.rdev == 0) problems += "  upper " + rel + ": whiteout device\n";
      if (name.rfind(".wh.", 0) == 0) problems += "  upper " + rel + ": .wh.* name\n";
      for (const auto& [x, v] : n.xattrs) {
        if (test::is_union_private_xattr(x)) problems += "  upper " + rel + ": xattr " + x + "\n";
      }
    }
    if (!problems.empty()) fail(index, "the layers are wrong " + when + ":\n" + problems);
  }

  // Compares the whole trees and checks that no object's st_ino on the mount changed.
  void check_trees(uint64_t index, const std::string& when) {
    ++result_.checks;
    test::Snapshot r = test::scan_tree(ref_);
    test::Snapshot m = test::scan_tree(mnt_);
    test::CompareOptions o;
    o.nlink = true;  // st_nlink of non-directories (diff_trees never compares directories')
    // Times are not compared: the two trees are changed at slightly different moments.
    std::string diff = test::diff_trees(r, m, o, "reference", "mount");
    for (const auto& [path, re] : r) {
      auto it = m.find(path);
      if (it == m.end() || !S_ISDIR(re.mode) || !S_ISDIR(it->second.mode)) continue;
      // Documented difference (fs/DESIGN.md, "Choices where other tools differ"): a directory
      // merged from several layers reports st_nlink 1, as kernel overlayfs does; a directory
      // in one layer reports its real count, which must then be the reference's.
      if (it->second.nlink != 1 && it->second.nlink != re.nlink) {
        diff += "  " + path + ": directory nlink: reference " + std::to_string(re.nlink) +
                ", mount " + std::to_string(it->second.nlink) + "\n";
      }
    }
    diff += check_inodes(r, m);
    // Listings on the mount give each entry's st_ino as d_ino (fs/DESIGN.md, "Identity").
    for (const auto& [path, me] : m) {
      if (!S_ISDIR(me.mode)) continue;
      for (const auto& [name, d_ino] : test::read_dir_raw(mnt_ + "/" + path)) {
        if (name == "." || name == "..") continue;
        auto it = m.find(path == "." ? name : path + "/" + name);
        if (it != m.end() && it->second.ino != d_ino) {
          diff += "  " + it->first + ": d_ino " + std::to_string(d_ino) + " but st_ino " +
                  std::to_string(it->second.ino) + "\n";
        }
      }
    }
    if (!diff.empty()) {
      std::string at =
          when.empty() ? "at the check after operation #" + std::to_string(index) : when;
      if (!when.empty() && index != UINT64_MAX)
        at += " (after operation #" + std::to_string(index) + ")";
      fail(index, "the trees differ " + at + ":\n" + diff);
    }
  }

  // An object of the reference is known by its inode number and birth time (inode numbers are
  // reused after a deletion, birth times tell the objects apart). The mount's st_ino for it must
  // stay what it was the first time the object was seen, for as long as it exists.
  std::string check_inodes(const test::Snapshot& r, const test::Snapshot& m) {
    std::string out;
    std::map<std::pair<ino_t, int64_t>, ino_t> seen;
    for (const auto& [path, re] : r) {
      if (path == ".") continue;
      auto it = m.find(path);
      if (it == m.end()) continue;
      struct statx stx;
      if (::statx(AT_FDCWD, (ref_ + "/" + path).c_str(), AT_SYMLINK_NOFOLLOW,
                  STATX_BTIME | STATX_INO, &stx) != 0 ||
          !(stx.stx_mask & STATX_BTIME)) {
        continue;
      }
      const std::pair<ino_t, int64_t> id{
          stx.stx_ino,
          static_cast<int64_t>(stx.stx_btime.tv_sec) * 1000000000 + stx.stx_btime.tv_nsec};
      auto known = ino_of_.find(id);
      if (known != ino_of_.end() && known->second != it->second.ino) {
        out += "  " + path + ": st_ino on the mount changed from " + std::to_string(known->second) +
               " to " + std::to_string(it->second.ino) + " while the object existed\n";
      }
      seen[id] = it->second.ino;
    }
    // Objects no longer in the tree are forgotten; the others keep their first number.
    for (auto& [id, ino] : seen) {
      auto known = ino_of_.find(id);
      if (known != ino_of_.end()) ino = known->second;
    }
    ino_of_ = std::move(seen);
    return out;
  }

  Config cfg_;
  Rng ops_rng_, remount_rng_;
  test::TempDir tmp_;  // declared before the mount: outlives it
  std::vector<std::string> lowers_;
  std::vector<test::Snapshot> lower_snapshots_;  // as built, before the first mount
  std::string upper_, work_, mnt_, ref_;
  std::unique_ptr<test::Mount> mount_;
  Held held_mnt_{-1, -1, -1}, held_ref_{-1, -1, -1};
  std::vector<std::string> existing_;  // the reference's paths before the current operation
  std::map<std::pair<ino_t, int64_t>, ino_t> ino_of_;
  Result result_;
};

}  // namespace

Result run(const Config& cfg) {
  try {
    Runner runner(cfg);
    return runner.run();
  } catch (const std::exception& e) {
    Result r;
    r.ok = false;
    r.failure = std::string("setting up: ") + e.what();
    return r;
  }
}

std::string replay_command(const Config& cfg, const Result& r) {
  std::string cmd = "layerfs_difftest --seed " + std::to_string(cfg.seed);
  uint64_t ops = r.failed_op == UINT64_MAX ? 0 : r.failed_op + 1;
  cmd += " --ops " + std::to_string(ops);
  if (cfg.remount_every) cmd += " --remount-every " + std::to_string(cfg.remount_every);
  if (cfg.hidden_lower_links) cmd += " --hidden-link-names";
  if (cfg.as_user) {
    cmd += " --as-user " + std::to_string(cfg.user_uid) + ":" + std::to_string(cfg.user_gid);
  }
  cmd += " --check-every 1 --verbose";
  return cmd;
}

}  // namespace layerfs::difftest
