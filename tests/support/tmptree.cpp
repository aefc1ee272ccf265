// Temporary directories, tree building and small syscall helpers for the tests (see tmptree.h).
#include "tests/support/tmptree.h"

#include <dirent.h>
#include <fcntl.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/xattr.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <sstream>
#include <stdexcept>
#include <system_error>

namespace layerfs::test {

void throw_errno(const std::string& what) {
  throw_error(errno, what);
}

void throw_error(int err, const std::string& what) {
  throw std::system_error(err, std::generic_category(), what);
}

std::string errno_name(int err) {
  if (err == 0) return "0 (success)";
  const char* name = strerrorname_np(err);
  std::string out = name ? name : std::to_string(err);
  out += " (";
  out += strerror(err);
  out += ")";
  return out;
}

// ---- TempDir --------------------------------------------------------------------------------

TempDir::TempDir(std::string_view prefix) {
  std::string tmpl = "/tmp/" + std::string(prefix) + ".";
#ifdef LAYERFS_TEST_RUN_TAG
  if (prefix == "layerfs-test") tmpl += std::string(LAYERFS_TEST_RUN_TAG) + ".";
#endif
  tmpl += "XXXXXX";
  if (!mkdtemp(tmpl.data())) throw_errno("mkdtemp " + tmpl);
  path_ = tmpl;
  // Tests that switch to another user must be able to reach the trees inside.
  if (::chmod(path_.c_str(), 0755) != 0) throw_errno("chmod " + path_);
}

TempDir::~TempDir() {
  try {
    int left = detach_mounts_below(path_);
    if (left > 0) {
      std::fprintf(stderr, "TempDir: detached %d mount(s) left below %s\n", left, path_.c_str());
    }
    remove_tree(path_);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "TempDir: cleaning %s failed: %s\n", path_.c_str(), e.what());
  }
}

std::string TempDir::operator/(std::string_view rel) const {
  return path_ + "/" + std::string(rel);
}

namespace {

void mkdir_p(const std::string& path, mode_t mode) {
  struct stat st;
  if (::lstat(path.c_str(), &st) == 0) {
    if (!S_ISDIR(st.st_mode)) throw_error(ENOTDIR, "mkdir_p " + path);
    return;
  }
  auto slash = path.rfind('/');
  if (slash != std::string::npos && slash > 0) mkdir_p(path.substr(0, slash), 0755);
  if (::mkdir(path.c_str(), mode) != 0 && errno != EEXIST) throw_errno("mkdir " + path);
  if (::chmod(path.c_str(), mode) != 0) throw_errno("chmod " + path);
}

// Decodes the octal escapes (\040 ...) of /proc/self/mountinfo fields.
std::string unescape_mountinfo(const std::string& s) {
  std::string out;
  for (size_t i = 0; i < s.size(); ++i) {
    if (s[i] == '\\' && i + 3 < s.size()) {
      int v = 0;
      bool ok = true;
      for (int k = 1; k <= 3; ++k) {
        char c = s[i + k];
        if (c < '0' || c > '7') ok = false;
        v = v * 8 + (c - '0');
      }
      if (ok) {
        out.push_back(static_cast<char>(v));
        i += 3;
        continue;
      }
    }
    out.push_back(s[i]);
  }
  return out;
}

std::vector<std::string> mountpoints_below(const std::string& dir) {
  std::vector<std::string> out;
  for (const auto& m : read_mountinfo()) {
    if (m.mountpoint == dir || m.mountpoint.rfind(dir + "/", 0) == 0) out.push_back(m.mountpoint);
  }
  return out;
}

void remove_at(int dirfd, const char* name, dev_t dev, const std::string& shown);

void remove_children(int fd, dev_t dev, const std::string& shown) {
  int dup_fd = ::dup(fd);
  if (dup_fd < 0) throw_errno("dup");
  DIR* d = ::fdopendir(dup_fd);
  if (!d) {
    int e = errno;
    ::close(dup_fd);
    throw_error(e, "fdopendir " + shown);
  }
  std::vector<std::string> names;
  while (dirent* de = ::readdir(d)) {
    if (std::strcmp(de->d_name, ".") == 0 || std::strcmp(de->d_name, "..") == 0) continue;
    names.emplace_back(de->d_name);
  }
  ::closedir(d);
  for (const auto& n : names) remove_at(fd, n.c_str(), dev, shown + "/" + n);
}

void remove_at(int dirfd, const char* name, dev_t dev, const std::string& shown) {
  struct stat st;
  if (::fstatat(dirfd, name, &st, AT_SYMLINK_NOFOLLOW) != 0) {
    if (errno == ENOENT) return;
    throw_errno("stat " + shown);
  }
  if (S_ISDIR(st.st_mode)) {
    if (st.st_dev != dev) {
      std::fprintf(stderr, "remove_tree: not crossing into another filesystem at %s\n",
                   shown.c_str());
      return;
    }
    int fd = ::openat(dirfd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    if (fd < 0) throw_errno("open " + shown);
    try {
      remove_children(fd, dev, shown);
    } catch (...) {
      ::close(fd);
      throw;
    }
    ::close(fd);
    if (::unlinkat(dirfd, name, AT_REMOVEDIR) != 0 && errno != ENOENT) {
      throw_errno("rmdir " + shown);
    }
  } else if (::unlinkat(dirfd, name, 0) != 0 && errno != ENOENT) {
    throw_errno("unlink " + shown);
  }
}

}  // namespace

std::string TempDir::mkdir(std::string_view rel, mode_t mode) const {
  std::string p = *this / rel;
  mkdir_p(p, mode);
  return p;
}

std::vector<MountEntry> read_mountinfo() {
  std::vector<MountEntry> out;
  std::ifstream in("/proc/self/mountinfo");
  std::string line;
  while (std::getline(in, line)) {
    std::istringstream ls(line);
    std::string id, parent, devno;
    MountEntry m;
    ls >> id >> parent >> devno >> m.root >> m.mountpoint >> m.options;
    m.id = std::atoi(id.c_str());
    std::string field;
    while (ls >> field && field != "-") {
    }
    ls >> m.fstype >> m.source >> m.super_options;
    m.root = unescape_mountinfo(m.root);
    m.mountpoint = unescape_mountinfo(m.mountpoint);
    m.source = unescape_mountinfo(m.source);
    out.push_back(std::move(m));
  }
  return out;
}

int detach_mounts_below(const std::string& dir) {
  int count = 0;
  // Stacked mounts show up once each; a bounded number of rounds handles them all.
  for (int round = 0; round < 64; ++round) {
    auto mps = mountpoints_below(dir);
    if (mps.empty()) break;
    std::sort(mps.begin(), mps.end(),
              [](const std::string& a, const std::string& b) { return a.size() > b.size(); });
    for (const auto& mp : mps) {
      if (::umount2(mp.c_str(), MNT_DETACH) == 0) ++count;
    }
  }
  return count;
}

void remove_tree(const std::string& path) {
  struct stat st;
  if (::lstat(path.c_str(), &st) != 0) {
    if (errno == ENOENT) return;
    throw_errno("stat " + path);
  }
  remove_at(AT_FDCWD, path.c_str(), st.st_dev, path);
}

// ---- Entry ----------------------------------------------------------------------------------

Entry::Entry(Kind kind, std::string path) : kind_(kind), path_(std::move(path)) {}

Entry& Entry::mode(mode_t m) {
  mode_ = m;
  return *this;
}
Entry& Entry::owner(uid_t uid, gid_t gid) {
  owner_ = {uid, gid};
  return *this;
}
Entry& Entry::mtime(time_t sec, long nsec) {
  mtime_ = timespec{sec, nsec};
  return *this;
}
Entry& Entry::atime(time_t sec, long nsec) {
  atime_ = timespec{sec, nsec};
  return *this;
}
Entry& Entry::xattr(std::string name, std::string value) {
  xattrs_.emplace_back(std::move(name), std::move(value));
  return *this;
}
Entry& Entry::sparse(off_t size) {
  sparse_size_ = size;
  return *this;
}
Entry& Entry::data_at(off_t offset, std::string data) {
  extents_.emplace_back(offset, std::move(data));
  return *this;
}

Entry file(std::string path, std::string content, mode_t mode) {
  Entry e(Entry::Kind::kFile, std::move(path));
  e.content_ = std::move(content);
  e.mode_ = mode;
  return e;
}
Entry dir(std::string path, mode_t mode) {
  Entry e(Entry::Kind::kDir, std::move(path));
  e.mode_ = mode;
  return e;
}
Entry sym(std::string path, std::string target) {
  Entry e(Entry::Kind::kSymlink, std::move(path));
  e.content_ = std::move(target);
  return e;
}
Entry hardlink(std::string path, std::string existing) {
  Entry e(Entry::Kind::kHardlink, std::move(path));
  e.content_ = std::move(existing);
  return e;
}
Entry fifo(std::string path, mode_t mode) {
  return Entry(Entry::Kind::kFifo, std::move(path)).mode(mode);
}
Entry chardev(std::string path, unsigned major, unsigned minor) {
  Entry e(Entry::Kind::kCharDev, std::move(path));
  e.rdev_ = makedev(major, minor);
  e.mode_ = 0644;
  return e;
}
Entry blockdev(std::string path, unsigned major, unsigned minor) {
  Entry e(Entry::Kind::kBlockDev, std::move(path));
  e.rdev_ = makedev(major, minor);
  e.mode_ = 0644;
  return e;
}
Entry socket(std::string path) {
  return Entry(Entry::Kind::kSocket, std::move(path)).mode(0755);
}
Entry whiteout(std::string path) {
  return Entry(Entry::Kind::kWhiteoutDev, std::move(path));
}
Entry wh_file(std::string path) {
  return Entry(Entry::Kind::kWhiteoutFile, std::move(path));
}
Entry opaque(std::string path, OpaqueForm form) {
  Entry e(Entry::Kind::kOpaque, std::move(path));
  e.opaque_form_ = form;
  return e;
}

namespace {

std::string parent_of(const std::string& p) {
  auto slash = p.rfind('/');
  return slash == std::string::npos ? std::string() : p.substr(0, slash);
}

std::string base_of(const std::string& p) {
  auto slash = p.rfind('/');
  return slash == std::string::npos ? p : p.substr(slash + 1);
}

void write_all(int fd, std::string_view data, off_t offset, const std::string& what) {
  size_t done = 0;
  while (done < data.size()) {
    ssize_t n = ::pwrite(fd, data.data() + done, data.size() - done, offset + done);
    if (n < 0) {
      if (errno == EINTR) continue;
      throw_errno("write " + what);
    }
    done += static_cast<size_t>(n);
  }
}

}  // namespace

void build(const std::string& root, const std::vector<Entry>& entries) {
  using K = Entry::Kind;
  for (const Entry& e : entries) {
    const std::string full = root + "/" + e.path_;
    const std::string parent = parent_of(full);
    mkdir_p(parent, 0755);
    switch (e.kind_) {
      case K::kFile: {
        int fd = ::open(full.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
        if (fd < 0) throw_errno("create " + full);
        Fd owned(fd);
        write_all(fd, e.content_, 0, full);
        if (e.sparse_size_ && ::ftruncate(fd, *e.sparse_size_) != 0) {
          throw_errno("ftruncate " + full);
        }
        for (const auto& [off, data] : e.extents_) write_all(fd, data, off, full);
        break;
      }
      case K::kDir:
        mkdir_p(full, e.mode_.value_or(0755));
        break;
      case K::kSymlink:
        if (::symlink(e.content_.c_str(), full.c_str()) != 0) throw_errno("symlink " + full);
        break;
      case K::kHardlink: {
        std::string src = root + "/" + e.content_;
        if (::link(src.c_str(), full.c_str()) != 0) throw_errno("link " + src + " " + full);
        break;
      }
      case K::kFifo:
        if (::mknod(full.c_str(), S_IFIFO | 0600, 0) != 0) throw_errno("mkfifo " + full);
        break;
      case K::kCharDev:
        if (::mknod(full.c_str(), S_IFCHR | 0600, e.rdev_) != 0) throw_errno("mknod " + full);
        break;
      case K::kBlockDev:
        if (::mknod(full.c_str(), S_IFBLK | 0600, e.rdev_) != 0) throw_errno("mknod " + full);
        break;
      case K::kSocket:
        if (::mknod(full.c_str(), S_IFSOCK | 0600, 0) != 0) throw_errno("mknod sock " + full);
        break;
      case K::kWhiteoutDev:
        if (::mknod(full.c_str(), S_IFCHR | 0000, makedev(0, 0)) != 0) {
          throw_errno("mknod whiteout " + full);
        }
        break;
      case K::kWhiteoutFile: {
        std::string wh = parent + "/.wh." + base_of(full);
        int fd = ::open(wh.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
        if (fd < 0) throw_errno("create " + wh);
        ::close(fd);
        break;
      }
      case K::kOpaque:
        mkdir_p(full, 0755);
        if (e.opaque_form_ == OpaqueForm::kWhFile) {
          std::string marker = full + "/.wh..wh..opq";
          int fd = ::open(marker.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
          if (fd < 0) throw_errno("create " + marker);
          ::close(fd);
        } else {
          const char* name = e.opaque_form_ == OpaqueForm::kTrustedXattr ? "trusted.overlay.opaque"
                                                                         : "user.overlay.opaque";
          if (::lsetxattr(full.c_str(), name, "y", 1, 0) != 0) throw_errno("setxattr " + full);
        }
        break;
    }
  }
  // Owners before modes: chown clears set-id bits.
  for (const Entry& e : entries) {
    if (e.kind_ == K::kWhiteoutFile || e.kind_ == K::kOpaque) continue;
    const std::string full = root + "/" + e.path_;
    if (e.owner_ && ::lchown(full.c_str(), e.owner_->first, e.owner_->second) != 0) {
      throw_errno("lchown " + full);
    }
    if (e.mode_ && e.kind_ != K::kSymlink && e.kind_ != K::kWhiteoutDev &&
        ::chmod(full.c_str(), *e.mode_) != 0) {
      throw_errno("chmod " + full);
    }
    for (const auto& [name, value] : e.xattrs_) {
      if (::lsetxattr(full.c_str(), name.c_str(), value.data(), value.size(), 0) != 0) {
        throw_errno("setxattr " + name + " " + full);
      }
    }
  }
  // Times last: every creation that could touch a directory's mtime is done by now.
  for (const Entry& e : entries) {
    if (!e.mtime_ && !e.atime_) continue;
    const std::string full = root + "/" + e.path_;
    timespec ts[2] = {e.atime_.value_or(timespec{0, UTIME_OMIT}),
                      e.mtime_.value_or(timespec{0, UTIME_OMIT})};
    if (::utimensat(AT_FDCWD, full.c_str(), ts, AT_SYMLINK_NOFOLLOW) != 0) {
      throw_errno("utimensat " + full);
    }
  }
}

// ---- File helpers -------------------------------------------------------------------------

std::string read_file(const std::string& path) {
  Fd fd = open_fd(path, O_RDONLY);
  std::string out;
  char buf[65536];
  for (;;) {
    ssize_t n = ::read(fd.get(), buf, sizeof buf);
    if (n < 0) {
      if (errno == EINTR) continue;
      throw_errno("read " + path);
    }
    if (n == 0) break;
    out.append(buf, static_cast<size_t>(n));
  }
  return out;
}

void write_file(const std::string& path, std::string_view data, mode_t mode) {
  Fd fd = open_fd(path, O_WRONLY | O_CREAT | O_TRUNC, mode);
  write_all(fd.get(), data, 0, path);
}

void append_file(const std::string& path, std::string_view data) {
  Fd fd = open_fd(path, O_WRONLY | O_APPEND);
  size_t done = 0;
  while (done < data.size()) {
    ssize_t n = ::write(fd.get(), data.data() + done, data.size() - done);
    if (n < 0) {
      if (errno == EINTR) continue;
      throw_errno("append " + path);
    }
    done += static_cast<size_t>(n);
  }
}

void pwrite_file(const std::string& path, off_t offset, std::string_view data) {
  Fd fd = open_fd(path, O_WRONLY);
  write_all(fd.get(), data, offset, path);
}

struct stat lstat_path(const std::string& path) {
  struct stat st;
  if (::lstat(path.c_str(), &st) != 0) throw_errno("lstat " + path);
  return st;
}

struct stat stat_path(const std::string& path) {
  struct stat st;
  if (::stat(path.c_str(), &st) != 0) throw_errno("stat " + path);
  return st;
}

std::optional<struct stat> try_lstat(const std::string& path) {
  struct stat st;
  if (::lstat(path.c_str(), &st) != 0) return std::nullopt;
  return st;
}

bool exists(const std::string& path) {
  return try_lstat(path).has_value();
}

std::string read_link(const std::string& path) {
  std::string buf(4096, '\0');
  ssize_t n = ::readlink(path.c_str(), buf.data(), buf.size());
  if (n < 0) throw_errno("readlink " + path);
  buf.resize(static_cast<size_t>(n));
  return buf;
}

std::vector<std::pair<std::string, ino_t>> read_dir_raw(const std::string& path) {
  DIR* d = ::opendir(path.c_str());
  if (!d) throw_errno("opendir " + path);
  std::vector<std::pair<std::string, ino_t>> out;
  errno = 0;
  while (dirent* de = ::readdir(d)) {
    out.emplace_back(de->d_name, de->d_ino);
    errno = 0;
  }
  int e = errno;
  ::closedir(d);
  if (e != 0) throw_error(e, "readdir " + path);
  return out;
}

std::vector<std::string> list_dir(const std::string& path) {
  std::vector<std::string> out;
  for (auto& [name, ino] : read_dir_raw(path)) {
    if (name != "." && name != "..") out.push_back(name);
  }
  std::sort(out.begin(), out.end());
  return out;
}

std::vector<std::string> xattr_names(const std::string& path) {
  std::vector<std::string> out;
  for (int attempt = 0; attempt < 8; ++attempt) {
    ssize_t size = ::llistxattr(path.c_str(), nullptr, 0);
    if (size < 0) throw_errno("listxattr " + path);
    std::string buf(static_cast<size_t>(size), '\0');
    ssize_t n = ::llistxattr(path.c_str(), buf.data(), buf.size());
    if (n < 0) {
      if (errno == ERANGE) continue;
      throw_errno("listxattr " + path);
    }
    buf.resize(static_cast<size_t>(n));
    size_t pos = 0;
    while (pos < buf.size()) {
      size_t end = buf.find('\0', pos);
      if (end == std::string::npos) end = buf.size();
      if (end > pos) out.push_back(buf.substr(pos, end - pos));
      pos = end + 1;
    }
    std::sort(out.begin(), out.end());
    return out;
  }
  throw_error(ERANGE, "listxattr keeps growing " + path);
}

std::optional<std::string> get_xattr(const std::string& path, const std::string& name) {
  for (int attempt = 0; attempt < 8; ++attempt) {
    ssize_t size = ::lgetxattr(path.c_str(), name.c_str(), nullptr, 0);
    if (size < 0) {
      if (errno == ENODATA) return std::nullopt;
      throw_errno("getxattr " + name + " " + path);
    }
    std::string buf(static_cast<size_t>(size), '\0');
    ssize_t n = ::lgetxattr(path.c_str(), name.c_str(), buf.data(), buf.size());
    if (n < 0) {
      if (errno == ERANGE) continue;
      if (errno == ENODATA) return std::nullopt;
      throw_errno("getxattr " + name + " " + path);
    }
    buf.resize(static_cast<size_t>(n));
    return buf;
  }
  throw_error(ERANGE, "getxattr keeps growing " + path);
}

std::map<std::string, std::string> list_xattrs(const std::string& path) {
  std::map<std::string, std::string> out;
  for (const auto& name : xattr_names(path)) {
    auto v = get_xattr(path, name);
    if (v) out[name] = *v;
  }
  return out;
}

namespace {
void list_tree_rec(const std::string& base, const std::string& rel, std::vector<std::string>& out) {
  std::string dirpath = rel.empty() ? base : base + "/" + rel;
  for (const auto& name : list_dir(dirpath)) {
    std::string r = rel.empty() ? name : rel + "/" + name;
    out.push_back(r);
    struct stat st = lstat_path(base + "/" + r);
    if (S_ISDIR(st.st_mode)) list_tree_rec(base, r, out);
  }
}
}  // namespace

std::vector<std::string> list_tree(const std::string& dir) {
  std::vector<std::string> out;
  list_tree_rec(dir, "", out);
  std::sort(out.begin(), out.end());
  return out;
}

size_t count_entries(const std::string& dir) {
  return list_tree(dir).size();
}

std::string pattern(size_t size, uint32_t seed) {
  std::string out(size, '\0');
  uint32_t x = seed * 2654435761u + 1;
  for (size_t i = 0; i < size; ++i) {
    x ^= x << 13;
    x ^= x >> 17;
    x ^= x << 5;
    out[i] = static_cast<char>(x & 0xff);
  }
  return out;
}

// ---- sys --------------------------------------------------------------------------------

namespace sys {
int unlink(const std::string& p) {
  return err_of(::unlink(p.c_str()));
}
int rmdir(const std::string& p) {
  return err_of(::rmdir(p.c_str()));
}
int mkdir(const std::string& p, mode_t mode) {
  return err_of(::mkdir(p.c_str(), mode));
}
int rename(const std::string& from, const std::string& to) {
  return err_of(::rename(from.c_str(), to.c_str()));
}
int renameat2(const std::string& from, const std::string& to, unsigned flags) {
  return err_of(::renameat2(AT_FDCWD, from.c_str(), AT_FDCWD, to.c_str(), flags));
}
int link(const std::string& from, const std::string& to) {
  return err_of(::link(from.c_str(), to.c_str()));
}
int symlink(const std::string& target, const std::string& p) {
  return err_of(::symlink(target.c_str(), p.c_str()));
}
int chmod(const std::string& p, mode_t mode) {
  return err_of(::chmod(p.c_str(), mode));
}
int lchown(const std::string& p, uid_t uid, gid_t gid) {
  return err_of(::lchown(p.c_str(), uid, gid));
}
int truncate(const std::string& p, off_t size) {
  return err_of(::truncate(p.c_str(), size));
}
int mknod(const std::string& p, mode_t mode, dev_t dev) {
  return err_of(::mknod(p.c_str(), mode, dev));
}
int utimens(const std::string& p, timespec atime, timespec mtime) {
  timespec ts[2] = {atime, mtime};
  return err_of(::utimensat(AT_FDCWD, p.c_str(), ts, AT_SYMLINK_NOFOLLOW));
}
int setxattr(const std::string& p, const std::string& name, std::string_view value, int flags) {
  return err_of(::lsetxattr(p.c_str(), name.c_str(), value.data(), value.size(), flags));
}
int removexattr(const std::string& p, const std::string& name) {
  return err_of(::lremovexattr(p.c_str(), name.c_str()));
}
int open_close(const std::string& p, int flags, mode_t mode) {
  int fd = ::open(p.c_str(), flags | O_CLOEXEC, mode);
  if (fd < 0) return errno;
  ::close(fd);
  return 0;
}
int write(const std::string& p, std::string_view data, int flags) {
  int fd = ::open(p.c_str(), flags | O_CLOEXEC, 0644);
  if (fd < 0) return errno;
  Fd owned(fd);
  size_t done = 0;
  while (done < data.size()) {
    ssize_t n = ::write(fd, data.data() + done, data.size() - done);
    if (n < 0) {
      if (errno == EINTR) continue;
      return errno;
    }
    done += static_cast<size_t>(n);
  }
  return err_of(::close(owned.release()));
}
int lstat(const std::string& p) {
  struct stat st;
  return err_of(::lstat(p.c_str(), &st));
}
}  // namespace sys

// ---- Fd -----------------------------------------------------------------------------------

Fd& Fd::operator=(Fd&& o) noexcept {
  if (this != &o) {
    if (fd_ >= 0) ::close(fd_);
    fd_ = o.release();
  }
  return *this;
}

Fd::~Fd() {
  if (fd_ >= 0) ::close(fd_);
}

int Fd::release() {
  int fd = fd_;
  fd_ = -1;
  return fd;
}

Fd open_fd(const std::string& path, int flags, mode_t mode) {
  int fd = ::open(path.c_str(), flags | O_CLOEXEC, mode);
  if (fd < 0) throw_errno("open " + path);
  return Fd(fd);
}

}  // namespace layerfs::test
