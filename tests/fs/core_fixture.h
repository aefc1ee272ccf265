// Shared fixture of the merge-core unit tests (unit_core): temporary layer
// trees, a layerfs::Filesystem opened on them, and helpers to build layer
// content and to look at what lands on disk and in the index.
//
// Header-only on purpose: tests/CMakeLists.txt compiles exactly the
// tests/fs/test_*.cpp files into unit_core, so a separate .cpp would not be
// built. Everything here is therefore inline.
//
// Rules the helpers enforce, because the core relies on them:
//  - umask(0) once per process, as the daemon does at startup;
//  - every Inode (and every handle holding one) dies before its Filesystem:
//    Stack::close() refuses to close while a test still holds one, and a test
//    declares its Stack before any InodePtr so that unwinding drops them first.
#pragma once

#include <doctest/doctest.h>
#include <fcntl.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/xattr.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <string_view>
#include <vector>

#include "tests/support/temp_dir.h"
#include "fs/filesystem.h"
#include "fs/ino.h"
#include "fs/layers.h"
#include "fs/options.h"
#include "fs/result.h"
#include "fs/unique_fd.h"
#include "metadata/index.h"

// Lists of names print as such in failed checks.
namespace doctest {
template <>
struct StringMaker<std::vector<std::string>> {
  static String convert(const std::vector<std::string>& v) {
    std::string out = "{";
    for (size_t i = 0; i < v.size(); ++i) out += (i ? ", \"" : "\"") + v[i] + "\"";
    out += "}";
    return String(out.c_str());
  }
};
}  // namespace doctest

namespace layerfs::coretest {

using test::needs_root;

// The daemon runs with umask 0 so that the modes it is asked for reach the
// upper layer unchanged; the tests must see the same.
inline void init_process() {
  static const bool done = [] {
    ::umask(0);
    return true;
  }();
  (void)done;
}

inline std::string err_text(int e) {
  return std::to_string(e) + " (" + std::strerror(e) + ")";
}

// The value of `r`, or a failed test naming `what` and the errno.
template <class T>
T must(Result<T> r, const char* what) {
  REQUIRE_MESSAGE(r.ok(), what, " failed: ", err_text(r.error()));
  return std::move(r).value();
}
inline void must(Result<void> r, const char* what) {
  REQUIRE_MESSAGE(r.ok(), what, " failed: ", err_text(r.error()));
}
#define MUST(expr) ::layerfs::coretest::must((expr), #expr)

// Fails the test unless the syscall-style return value is >= 0.
#define SYS(expr)                                                                         \
  do {                                                                                    \
    int lfs_sys_rv_ = static_cast<int>(expr);                                             \
    REQUIRE_MESSAGE(lfs_sys_rv_ >= 0, #expr, ": ", ::layerfs::coretest::err_text(errno)); \
  } while (0)

// ---------------------------------------------------------------------------
// Temporary directories and mounts.

// A fresh directory under /tmp, removed with everything in it (the process
// set-up runs first).
class TempDir : public test::TempDir {
 public:
  TempDir() : test::TempDir(tag()) {}

 private:
  static const char* tag() {
    init_process();
    return "core";
  }
};

using test::TmpfsMount;

// ---------------------------------------------------------------------------
// Building layer content (absolute paths; missing parents are made 0755).

inline void mkdirs(const std::string& path, mode_t mode = 0755) {
  std::string cur;
  size_t i = 0;
  while (i < path.size()) {
    size_t j = path.find('/', i + 1);
    if (j == std::string::npos) j = path.size();
    cur = path.substr(0, j);
    if (!cur.empty() && ::mkdir(cur.c_str(), mode) != 0) {
      REQUIRE_MESSAGE(errno == EEXIST, "mkdir ", cur, ": ", err_text(errno));
    }
    i = j;
  }
}

inline std::string parent_of(const std::string& path) {
  size_t k = path.rfind('/');
  return k == std::string::npos || k == 0 ? std::string("/") : path.substr(0, k);
}

inline void write_file(const std::string& path, std::string_view content, mode_t mode = 0644) {
  mkdirs(parent_of(path));
  UniqueFd fd(::open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, mode));
  REQUIRE_MESSAGE(fd.valid(), "create ", path, ": ", err_text(errno));
  size_t done = 0;
  while (done < content.size()) {
    ssize_t n = ::write(fd.get(), content.data() + done, content.size() - done);
    REQUIRE_MESSAGE(n > 0, "write ", path, ": ", err_text(errno));
    done += static_cast<size_t>(n);
  }
  SYS(::fchmod(fd.get(), mode));
}

inline std::string read_fd_all(int fd) {
  std::string out;
  char buf[65536];
  off_t off = 0;
  for (;;) {
    ssize_t n = ::pread(fd, buf, sizeof buf, off);
    REQUIRE_MESSAGE(n >= 0, "pread: ", err_text(errno));
    if (n == 0) break;
    out.append(buf, static_cast<size_t>(n));
    off += n;
  }
  return out;
}

inline std::string read_file(const std::string& path) {
  UniqueFd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NOFOLLOW));
  REQUIRE_MESSAGE(fd.valid(), "open ", path, ": ", err_text(errno));
  return read_fd_all(fd.get());
}

inline void make_dir(const std::string& path, mode_t mode = 0755) {
  mkdirs(parent_of(path));
  SYS(::mkdir(path.c_str(), mode));
  SYS(::chmod(path.c_str(), mode));
}

inline void make_symlink(const std::string& target, const std::string& path) {
  mkdirs(parent_of(path));
  SYS(::symlink(target.c_str(), path.c_str()));
}

inline void make_node(const std::string& path, mode_t mode, dev_t dev = 0) {
  mkdirs(parent_of(path));
  SYS(::mknod(path.c_str(), mode, dev));
}

// Kernel overlayfs's whiteout: a character device 0/0.
inline void make_whiteout(const std::string& path) {
  make_node(path, S_IFCHR | 0, makedev(0, 0));
}

inline void make_hardlink(const std::string& existing, const std::string& path) {
  mkdirs(parent_of(path));
  SYS(::link(existing.c_str(), path.c_str()));
}

inline void set_xattr(const std::string& path, const std::string& name, std::string_view value) {
  SYS(::lsetxattr(path.c_str(), name.c_str(), value.data(), value.size(), 0));
}

inline std::optional<std::string> disk_xattr(const std::string& path, const std::string& name) {
  char buf[4096];
  ssize_t n = ::lgetxattr(path.c_str(), name.c_str(), buf, sizeof buf);
  if (n < 0) {
    REQUIRE_MESSAGE(errno == ENODATA, "lgetxattr ", path, " ", name, ": ", err_text(errno));
    return std::nullopt;
  }
  return std::string(buf, static_cast<size_t>(n));
}

inline std::vector<std::string> disk_xattr_names(const std::string& path) {
  char buf[8192];
  ssize_t n = ::llistxattr(path.c_str(), buf, sizeof buf);
  REQUIRE_MESSAGE(n >= 0, "llistxattr ", path, ": ", err_text(errno));
  std::vector<std::string> names;
  for (ssize_t i = 0; i < n;) {
    std::string name(buf + i);
    i += static_cast<ssize_t>(name.size()) + 1;
    if (!name.empty()) names.push_back(name);
  }
  std::sort(names.begin(), names.end());
  return names;
}

inline void set_times(const std::string& path, time_t atime, time_t mtime, long nsec = 123456789) {
  struct timespec ts[2] = {{atime, nsec}, {mtime, nsec + 1}};
  SYS(::utimensat(AT_FDCWD, path.c_str(), ts, AT_SYMLINK_NOFOLLOW));
}

inline void set_owner(const std::string& path, uid_t uid, gid_t gid) {
  SYS(::lchown(path.c_str(), uid, gid));
}

inline bool exists(const std::string& path) {
  struct stat st;
  return ::lstat(path.c_str(), &st) == 0;
}

inline struct stat lstat_of(const std::string& path) {
  struct stat st;
  REQUIRE_MESSAGE(::lstat(path.c_str(), &st) == 0, "lstat ", path, ": ", err_text(errno));
  return st;
}

// Names in a directory on disk (no "." / ".."), sorted.
inline std::vector<std::string> disk_names(const std::string& dir) {
  std::vector<std::string> out;
  std::error_code ec;
  for (const auto& e : std::filesystem::directory_iterator(dir, ec)) {
    out.push_back(e.path().filename().string());
  }
  REQUIRE_MESSAGE(!ec, "reading ", dir, ": ", ec.message());
  std::sort(out.begin(), out.end());
  return out;
}

// Every path below `root`, relative, sorted; symlinks are not followed.
inline std::vector<std::string> disk_tree(const std::string& root) {
  std::vector<std::string> out;
  std::function<void(const std::string&, const std::string&)> walk = [&](const std::string& abs,
                                                                         const std::string& rel) {
    for (const auto& name : disk_names(abs)) {
      std::string r = rel.empty() ? name : rel + "/" + name;
      out.push_back(r);
      struct stat st = lstat_of(abs + "/" + name);
      if (S_ISDIR(st.st_mode)) walk(abs + "/" + name, r);
    }
  };
  walk(root, "");
  std::sort(out.begin(), out.end());
  return out;
}

// A description of everything below `root` that a change to the layer would
// alter (content, type, owner, mode, size, inode, links, mtime, ctime,
// device, link target, xattrs). atime is left out: reading may update it.
inline std::map<std::string, std::string> snapshot(const std::string& root) {
  std::map<std::string, std::string> out;
  auto describe = [&](const std::string& abs) {
    struct stat st = lstat_of(abs);
    std::string d = std::to_string(st.st_mode) + " " + std::to_string(st.st_uid) + ":" +
                    std::to_string(st.st_gid) + " size=" + std::to_string(st.st_size) +
                    " ino=" + std::to_string(st.st_ino) + " nlink=" + std::to_string(st.st_nlink) +
                    " m=" + std::to_string(st.st_mtim.tv_sec) + "." +
                    std::to_string(st.st_mtim.tv_nsec) + " c=" + std::to_string(st.st_ctim.tv_sec) +
                    "." + std::to_string(st.st_ctim.tv_nsec) +
                    " rdev=" + std::to_string(st.st_rdev);
    if (S_ISREG(st.st_mode)) {
      if (st.st_size <= (1 << 20)) {
        d += " data=" + read_file(abs);
      } else {
        d += " hash=" + std::to_string(std::hash<std::string>()(read_file(abs)));
      }
    }
    if (S_ISLNK(st.st_mode)) {
      char buf[4096];
      ssize_t n = ::readlink(abs.c_str(), buf, sizeof buf);
      REQUIRE(n >= 0);
      d += " target=" + std::string(buf, static_cast<size_t>(n));
    }
    for (const auto& x : disk_xattr_names(abs)) {
      d += " x:" + x + "=" + disk_xattr(abs, x).value_or("?");
    }
    return d;
  };
  out[""] = describe(root);
  for (const auto& rel : disk_tree(root)) out[rel] = describe(root + "/" + rel);
  return out;
}

// ---------------------------------------------------------------------------
// Sorting helpers for comparisons.

inline std::vector<std::string> sorted(std::vector<std::string> v) {
  std::sort(v.begin(), v.end());
  return v;
}

inline std::vector<std::string> entry_names(const std::vector<DirEntry>& entries) {
  std::vector<std::string> v;
  for (const auto& e : entries) v.push_back(e.name);
  return sorted(std::move(v));
}

// ---------------------------------------------------------------------------
// I/O through the Filesystem.

inline std::string read_handle(Filesystem& fs, FileHandle& fh) {
  auto fd = must(fs.read_fd(fh), "read_fd");
  return read_fd_all(fd->get());
}

inline void write_handle(Filesystem& fs, FileHandle& fh, std::string_view data, off_t off = 0) {
  auto fd = must(fs.write_fd(fh), "write_fd");
  size_t done = 0;
  while (done < data.size()) {
    ssize_t n =
        ::pwrite(fd->get(), data.data() + done, data.size() - done, off + static_cast<off_t>(done));
    REQUIRE_MESSAGE(n > 0, "pwrite: ", err_text(errno));
    done += static_cast<size_t>(n);
  }
}

inline std::string fs_read(Filesystem& fs, const InodePtr& node) {
  auto fh = must(fs.open(node, O_RDONLY), "open O_RDONLY");
  return read_handle(fs, *fh);
}

inline void fs_write(Filesystem& fs, const InodePtr& node, std::string_view data, off_t off = 0) {
  auto fh = must(fs.open(node, O_WRONLY), "open O_WRONLY");
  write_handle(fs, *fh, data, off);
}

// ---------------------------------------------------------------------------
// A layer stack in a temporary directory and a Filesystem on it.

class Stack {
 public:
  // T/lower1 .. T/lowerN (lower1 = top-most) and, with `with_upper`, T/upper
  // and T/work. Nothing is opened until open().
  explicit Stack(int lowers = 2, bool with_upper = true) {
    init_process();
    tmp_.emplace();
    for (int i = 1; i <= lowers; ++i) {
      std::string p = tmp_->path() + "/lower" + std::to_string(i);
      make_dir(p);
      paths_.lowerdirs.push_back(p);
    }
    if (with_upper) {
      paths_.upperdir = tmp_->path() + "/upper";
      paths_.workdir = tmp_->path() + "/work";
      make_dir(*paths_.upperdir);
      make_dir(*paths_.workdir, 0700);
    }
  }
  // Layers at the given (existing, canonical) paths.
  explicit Stack(CanonicalPaths paths) : paths_(std::move(paths)) { init_process(); }
  ~Stack() { fs_.reset(); }  // before the temporary directory goes
  Stack(const Stack&) = delete;
  Stack& operator=(const Stack&) = delete;

  const std::string& dir() const {
    REQUIRE(tmp_.has_value());
    return tmp_->path();
  }
  // Lower layer n (1 = top-most), optionally joined with a relative path.
  std::string L(int n, std::string_view rel = "") const {
    return join(paths_.lowerdirs.at(static_cast<size_t>(n - 1)), rel);
  }
  std::string U(std::string_view rel = "") const { return join(*paths_.upperdir, rel); }
  std::string W(std::string_view rel = "") const { return join(*paths_.workdir, rel); }
  const CanonicalPaths& paths() const { return paths_; }

  // Opens layers and Filesystem; on failure returns the error and *why.
  static Result<std::unique_ptr<Filesystem>> open_fs(const CanonicalPaths& paths,
                                                     const FsOptions& opts, std::string* why) {
    auto layers = LayerStack::open(paths, why);
    if (!layers.ok()) return Error{layers.error()};
    return Filesystem::open(std::move(layers).value(), opts, why);
  }

  void open(FsOptions opts = {}) {
    REQUIRE(!fs_);
    opts_ = opts;
    std::string why;
    auto r = open_fs(paths_, opts_, &why);
    REQUIRE_MESSAGE(r.ok(), "opening the Filesystem: ", err_text(r.error()), ": ", why);
    fs_ = std::move(r).value();
  }

  // Closes the Filesystem. The test must have dropped every Inode and handle
  // it held (only the root may remain).
  void close() {
    REQUIRE(fs_);
    REQUIRE_MESSAGE(fs_->table().size() == 1,
                    "Inodes still alive when closing the Filesystem: ", fs_->table().size());
    fs_.reset();
  }
  void reopen() {
    close();
    open(opts_);
  }
  bool is_open() const { return fs_ != nullptr; }

  Filesystem& fs() {
    REQUIRE(fs_);
    return *fs_;
  }
  InodePtr root() { return fs().root(); }

  // Walks a relative path ("a/b/c"; "" = the root) from the root.
  Result<InodePtr> find(std::string_view path) {
    InodePtr cur = root();
    size_t i = 0;
    while (i < path.size()) {
      size_t j = path.find('/', i);
      if (j == std::string_view::npos) j = path.size();
      if (j > i) {
        auto next = fs().lookup(cur, path.substr(i, j - i));
        if (!next.ok()) return Error{next.error()};
        cur = std::move(next).value();
      }
      i = j + 1;
    }
    return cur;
  }
  InodePtr get(std::string_view path) {
    auto r = find(path);
    REQUIRE_MESSAGE(r.ok(), "lookup of '", std::string(path), "': ", err_text(r.error()));
    return std::move(r).value();
  }
  int lookup_error(std::string_view path) { return find(path).error(); }

  struct stat attr(std::string_view path) {
    return must(fs().getattr(get(path)), "getattr");
  }
  std::vector<std::string> names(std::string_view path) {
    return entry_names(must(fs().list(get(path)), "list"));
  }
  std::string read(std::string_view path) { return fs_read(fs(), get(path)); }
  void write(std::string_view path, std::string_view data, off_t off = 0) {
    fs_write(fs(), get(path), data, off);
  }

  // The index.
  metadata::Index& index() {
    REQUIRE(fs().index() != nullptr);
    return *fs().index();
  }
  uint64_t upper_ino(std::string_view rel) { return lstat_of(U(rel)).st_ino; }
  // Whiteout names recorded for upper directory `rel`.
  std::vector<std::string> whiteouts(std::string_view rel) {
    return must(index().whiteouts(upper_ino(rel)), "Index::whiteouts");
  }
  std::optional<metadata::ObjectRecord> record(std::string_view rel) {
    return must(index().object(upper_ino(rel)), "Index::object");
  }
  std::vector<std::string> staging() { return disk_names(W("staging")); }

 private:
  static std::string join(const std::string& base, std::string_view rel) {
    if (rel.empty()) return base;
    return base + "/" + std::string(rel);
  }

  std::optional<TempDir> tmp_;  // first: removed last
  CanonicalPaths paths_;
  FsOptions opts_;
  std::unique_ptr<Filesystem> fs_;
};

// st_ino of an object first seen at `path` in layer `layer`.
inline uint64_t ino_at(uint32_t layer, const std::string& path) {
  return ino::encode(layer, lstat_of(path).st_ino);
}

inline const Caller kRoot{0, 0};

}  // namespace layerfs::coretest
