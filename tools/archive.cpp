// OCI layer tars (tools/archive.h): extracting them safely into a layer tree
// while computing their diffID, and writing trees back as deterministic tars.
//
// Extraction reads the input through two libarchive readers in one pass: the
// first only decompresses (format "raw"), and every uncompressed byte it gives
// is hashed and copied (zstd) before the second reader, which parses the tar,
// sees it. So the diffID covers exactly the bytes the tree was made from, and
// no uncompressed copy of the layer is ever written to disk.
//
// Safety: every entry's parent is reached from the tree's root fd one
// component at a time with O_NOFOLLOW, so no entry can be written through a
// symlink, and names with ".." or a leading "/" are refused before anything
// is created. Objects are created with openat/mkdirat/symlinkat/mknodat/linkat
// relative to that parent fd and never followed afterwards.
#include "tools/archive.h"

#include <archive.h>
#include <archive_entry.h>
#include <dirent.h>
#include <fcntl.h>
#include <limits.h>
#include <openssl/evp.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/xattr.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstring>
#include <map>
#include <set>
#include <utility>
#include <vector>

namespace layerfs::ctl {
namespace {

constexpr size_t kBufferSize = 256 * 1024;
constexpr const char* kWhiteoutPrefix = ".wh.";
constexpr const char* kWhiteoutMetaPrefix = ".wh..wh.";
constexpr const char* kOpaqueMarker = ".wh..wh..opq";

std::string errno_text(int e) {
  return std::strerror(e);
}

bool starts_with(const std::string& s, const char* prefix) {
  return s.rfind(prefix, 0) == 0;
}

// xattrs that hold another union filesystem's (or layerfs's own) bookkeeping:
// never part of a layer's content.
bool is_private_xattr(const std::string& name) {
  for (const char* p : {"trusted.overlay.", "user.overlay.", "trusted.layerfs.", "user.layerfs.",
                        "trusted.fuseoverlayfs.", "user.fuseoverlayfs."}) {
    if (starts_with(name, p)) return true;
  }
  return false;
}

class Fd {
 public:
  Fd() = default;
  explicit Fd(int fd) : fd_(fd) {}
  Fd(Fd&& o) noexcept : fd_(std::exchange(o.fd_, -1)) {}
  Fd& operator=(Fd&& o) noexcept {
    if (this != &o) {
      reset();
      fd_ = std::exchange(o.fd_, -1);
    }
    return *this;
  }
  ~Fd() { reset(); }
  void reset() {
    if (fd_ >= 0) ::close(fd_);
    fd_ = -1;
  }
  int get() const { return fd_; }
  explicit operator bool() const { return fd_ >= 0; }

 private:
  int fd_ = -1;
};

class Sha256 {
 public:
  Sha256() : ctx_(EVP_MD_CTX_new()) {
    if (!ctx_ || EVP_DigestInit_ex(ctx_, EVP_sha256(), nullptr) != 1) {
      throw Error("cannot initialise SHA-256 (OpenSSL)");
    }
  }
  ~Sha256() { EVP_MD_CTX_free(ctx_); }
  Sha256(const Sha256&) = delete;
  Sha256& operator=(const Sha256&) = delete;
  void update(const void* data, size_t size) {
    if (EVP_DigestUpdate(ctx_, data, size) != 1) throw Error("SHA-256 failed (OpenSSL)");
  }
  std::string digest() {
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int len = 0;
    if (EVP_DigestFinal_ex(ctx_, md, &len) != 1) throw Error("SHA-256 failed (OpenSSL)");
    static const char* kHex = "0123456789abcdef";
    std::string out = "sha256:";
    for (unsigned int i = 0; i < len; ++i) {
      out += kHex[md[i] >> 4];
      out += kHex[md[i] & 15];
    }
    return out;
  }

 private:
  EVP_MD_CTX* ctx_;
};

struct ReadArchive {
  archive* a = archive_read_new();
  ~ReadArchive() {
    if (a) archive_read_free(a);
  }
};

struct WriteArchive {
  archive* a = archive_write_new();
  ~WriteArchive() {
    if (a) archive_write_free(a);
  }
};

std::string archive_text(archive* a) {
  const char* s = archive_error_string(a);
  return s ? s : "unknown error";
}

void add_write_filter(archive* a, Compression c, const std::string& path) {
  int r = ARCHIVE_OK;
  switch (c) {
    case Compression::kNone:
      r = archive_write_add_filter_none(a);
      break;
    case Compression::kGzip:
      r = archive_write_add_filter_gzip(a);
      // No name or time in the gzip header, so the same tar compresses to the
      // same bytes.
      if (r == ARCHIVE_OK) archive_write_set_filter_option(a, "gzip", "timestamp", nullptr);
      break;
    case Compression::kZstd:
      r = archive_write_add_filter_zstd(a);
      break;
  }
  if (r != ARCHIVE_OK) throw Error("cannot compress " + path + ": " + archive_text(a));
}

// Calls `progress` at most a few times a second, and always for the end.
class Throttle {
 public:
  explicit Throttle(const Progress& p) : progress_(p) {}
  void report(uint64_t done, uint64_t total, bool final = false) {
    if (!progress_) return;
    auto now = std::chrono::steady_clock::now();
    if (!final && now - last_ < std::chrono::milliseconds(100)) return;
    last_ = now;
    progress_(done, total);
  }

 private:
  const Progress& progress_;
  std::chrono::steady_clock::time_point last_{};
};

// ---------------------------------------------------------------------------
// Reading: the decompressing source

// The uncompressed bytes of the input, hashed and copied as they go by.
struct RawSource {
  archive* raw = nullptr;   // the decompressing reader
  archive* copy = nullptr;  // zstd writer of the raw copy
  std::string copy_path;
  Sha256 sha;
  uint64_t bytes = 0;
  uint64_t input_size = 0;
  Throttle* throttle = nullptr;
  std::string error;
  std::vector<char> buf = std::vector<char>(kBufferSize);

  // Next chunk into buf: its size, 0 at the end, -1 on error (in `error`).
  ssize_t pull() {
    la_ssize_t n = archive_read_data(raw, buf.data(), buf.size());
    if (n < 0) {
      error = archive_text(raw);
      return -1;
    }
    if (n == 0) return 0;
    sha.update(buf.data(), static_cast<size_t>(n));
    if (archive_write_data(copy, buf.data(), static_cast<size_t>(n)) != n) {
      error = "cannot write " + copy_path + ": " + archive_text(copy);
      return -1;
    }
    bytes += static_cast<uint64_t>(n);
    if (throttle) {
      la_int64_t in = archive_filter_bytes(raw, -1);
      throttle->report(in > 0 ? static_cast<uint64_t>(in) : 0, input_size);
    }
    return n;
  }
};

la_ssize_t tar_read_callback(archive* a, void* client, const void** buffer) {
  auto* src = static_cast<RawSource*>(client);
  ssize_t n;
  try {
    n = src->pull();
  } catch (const std::exception& e) {
    src->error = e.what();
    n = -1;
  }
  if (n < 0) {
    archive_set_error(a, EIO, "%s", src->error.c_str());
    return -1;
  }
  *buffer = src->buf.data();
  return n;
}

// ---------------------------------------------------------------------------
// Reading: applying entries to the tree

struct Refused : Error {
  using Error::Error;
};

// Removes `name` in directory `dirfd` and everything below it, never
// following symlinks.
void remove_at(int dirfd, const std::string& name) {
  struct stat st;
  if (::fstatat(dirfd, name.c_str(), &st, AT_SYMLINK_NOFOLLOW) != 0) return;
  if (!S_ISDIR(st.st_mode)) {
    if (::unlinkat(dirfd, name.c_str(), 0) != 0) {
      throw Error("cannot remove " + name + ": " + errno_text(errno));
    }
    return;
  }
  Fd fd(::openat(dirfd, name.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC));
  if (!fd) throw Error("cannot open " + name + ": " + errno_text(errno));
  std::vector<std::string> names;
  {
    int dup = ::dup(fd.get());
    DIR* d = dup >= 0 ? ::fdopendir(dup) : nullptr;
    if (!d) {
      if (dup >= 0) ::close(dup);
      throw Error("cannot read " + name + ": " + errno_text(errno));
    }
    while (struct dirent* e = ::readdir(d)) {
      std::string n = e->d_name;
      if (n != "." && n != "..") names.push_back(n);
    }
    ::closedir(d);
  }
  for (const auto& n : names) remove_at(fd.get(), n);
  if (::unlinkat(dirfd, name.c_str(), AT_REMOVEDIR) != 0) {
    throw Error("cannot remove " + name + ": " + errno_text(errno));
  }
}

class Extractor {
 public:
  Extractor(int root_fd, std::string input) : root_(root_fd), input_(std::move(input)) {}

  void apply(archive* a, archive_entry* e);
  // Directory modes and times, set last (children change a directory's mtime,
  // and a read-only directory must stay writable while it fills).
  void finish();
  uint64_t entries() const { return entries_; }

 private:
  struct DirAttrs {
    mode_t mode;
    timespec times[2];
  };

  [[noreturn]] void refuse(const std::string& name, const std::string& why) const {
    throw Refused(input_ + ": refusing entry \"" + name + "\": " + why);
  }
  [[noreturn]] void fail(const std::string& name, const std::string& what, int err) const {
    throw Error(input_ + ": cannot " + what + " \"" + name + "\": " + errno_text(err));
  }
  std::vector<std::string> split(const std::string& name, const std::string& shown) const;
  Fd open_dirs(const std::vector<std::string>& comps, size_t count, bool create,
               const std::string& shown) const;
  void set_owner(int dirfd, const std::string& base, int fd, archive_entry* e,
                 const std::string& shown) const;
  void set_xattrs(int dirfd, const std::string& base, int fd, archive_entry* e,
                  const std::string& shown) const;
  void set_times(int dirfd, const std::string& base, int fd, archive_entry* e,
                 const std::string& shown) const;
  static void entry_times(archive_entry* e, timespec out[2]);
  void forget_dirs_below(const std::string& rel);

  int root_;
  std::string input_;
  bool is_root_ = ::geteuid() == 0;
  uint64_t entries_ = 0;
  std::map<std::string, DirAttrs> dirs_;  // relative path ("" = root) -> attributes
};

// The components of an entry's name, "." components dropped. Refuses what
// could land outside the tree or cannot be a name.
std::vector<std::string> Extractor::split(const std::string& name, const std::string& shown) const {
  if (name.empty()) refuse(shown, "empty name");
  if (name.size() >= PATH_MAX) refuse(shown.substr(0, 64) + "...", "name too long");
  if (name[0] == '/') refuse(shown, "absolute name");
  std::string s = name;
  while (s.size() > 1 && s.back() == '/') s.pop_back();  // directories may end in "/"
  std::vector<std::string> comps;
  size_t start = 0;
  while (true) {
    size_t slash = s.find('/', start);
    std::string c = s.substr(start, slash == std::string::npos ? std::string::npos : slash - start);
    if (c.empty()) refuse(shown, "empty path component");
    if (c == "..") refuse(shown, "\"..\" would lead outside the layer");
    if (c.size() > NAME_MAX) refuse(shown, "path component too long");
    if (c != ".") comps.push_back(c);
    if (slash == std::string::npos) break;
    start = slash + 1;
  }
  return comps;
}

// Opens the directory made of the first `count` components, from the root,
// never through a symlink; creates missing ones (0755, as Docker) if asked.
Fd Extractor::open_dirs(const std::vector<std::string>& comps, size_t count, bool create,
                        const std::string& shown) const {
  Fd cur(::fcntl(root_, F_DUPFD_CLOEXEC, 0));
  if (!cur) fail(shown, "open the layer tree for", errno);
  std::string so_far;
  for (size_t i = 0; i < count; ++i) {
    const std::string& c = comps[i];
    so_far += (so_far.empty() ? "" : "/") + c;
    int fd = ::openat(cur.get(), c.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    if (fd < 0 && errno == ENOENT && create) {
      if (::mkdirat(cur.get(), c.c_str(), 0755) != 0 && errno != EEXIST) {
        fail(shown, "create the directory " + so_far + " for", errno);
      }
      fd = ::openat(cur.get(), c.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    }
    if (fd < 0) {
      int err = errno;
      struct stat st;
      if (::fstatat(cur.get(), c.c_str(), &st, AT_SYMLINK_NOFOLLOW) == 0) {
        if (S_ISLNK(st.st_mode)) refuse(shown, "it would pass through the symlink " + so_far);
        if (!S_ISDIR(st.st_mode)) refuse(shown, so_far + " is not a directory");
      }
      if (err == ENOENT) refuse(shown, so_far + " does not exist");
      fail(shown, "open " + so_far + " for", err);
    }
    cur = Fd(fd);
  }
  return cur;
}

void Extractor::set_owner(int dirfd, const std::string& base, int fd, archive_entry* e,
                          const std::string& shown) const {
  uid_t uid = static_cast<uid_t>(archive_entry_uid(e));
  gid_t gid = static_cast<gid_t>(archive_entry_gid(e));
  int r = fd >= 0 ? ::fchown(fd, uid, gid)
                  : ::fchownat(dirfd, base.c_str(), uid, gid, AT_SYMLINK_NOFOLLOW);
  // Without root the files stay the importer's, as with an unprivileged tar.
  if (r != 0 && (is_root_ || errno != EPERM)) fail(shown, "set the owner of", errno);
}

void Extractor::set_xattrs(int dirfd, const std::string& base, int fd, archive_entry* e,
                           const std::string& shown) const {
  if (archive_entry_xattr_reset(e) == 0) return;
  const char* name;
  const void* value;
  size_t size;
  // Symlinks and special files have no fd of their own: reach them through the
  // parent's fd, without following the last component.
  std::string via = "/proc/self/fd/" + std::to_string(dirfd) + "/" + base;
  while (archive_entry_xattr_next(e, &name, &value, &size) == ARCHIVE_OK) {
    std::string n = name;
    if (is_private_xattr(n)) continue;
    int r = fd >= 0 ? ::fsetxattr(fd, name, value, size, 0)
                    : ::lsetxattr(via.c_str(), name, value, size, 0);
    if (r != 0) {
      int err = errno;
      // An unprivileged import cannot set trusted.* or security.*; as Docker
      // does, go on without them rather than refuse the layer.
      if (!is_root_ && (err == EPERM || err == ENOTSUP)) continue;
      fail(shown, "set the extended attribute " + n + " of", err);
    }
  }
}

void Extractor::entry_times(archive_entry* e, timespec out[2]) {
  out[1].tv_sec = archive_entry_mtime(e);
  out[1].tv_nsec = archive_entry_mtime_nsec(e);
  if (archive_entry_atime_is_set(e)) {
    out[0].tv_sec = archive_entry_atime(e);
    out[0].tv_nsec = archive_entry_atime_nsec(e);
  } else {
    out[0] = out[1];
  }
}

void Extractor::set_times(int dirfd, const std::string& base, int fd, archive_entry* e,
                          const std::string& shown) const {
  timespec ts[2];
  entry_times(e, ts);
  int r = fd >= 0 ? ::futimens(fd, ts) : ::utimensat(dirfd, base.c_str(), ts, AT_SYMLINK_NOFOLLOW);
  if (r != 0) fail(shown, "set the times of", errno);
}

void Extractor::forget_dirs_below(const std::string& rel) {
  auto it = dirs_.lower_bound(rel);
  while (it != dirs_.end() && (it->first == rel || starts_with(it->first, (rel + "/").c_str()))) {
    it = dirs_.erase(it);
  }
}

void Extractor::apply(archive* a, archive_entry* e) {
  const char* raw_name = archive_entry_pathname(e);
  std::string name = raw_name ? raw_name : "";
  const std::string shown = name.size() > 200 ? name.substr(0, 200) + "..." : name;
  std::vector<std::string> comps = split(name, shown);
  const char* hardlink = archive_entry_hardlink(e);
  const mode_t type = archive_entry_filetype(e);
  const mode_t perm = archive_entry_perm(e) & 07777;

  if (comps.empty()) {  // "." or "./": the layer's root directory itself
    if (hardlink || type != AE_IFDIR) refuse(shown, "the layer's root must be a directory");
    set_owner(root_, ".", root_, e, shown);
    set_xattrs(root_, ".", root_, e, shown);
    DirAttrs d{perm, {}};
    entry_times(e, d.times);
    dirs_[""] = d;
    ++entries_;
    return;
  }

  const std::string& base = comps.back();
  if (base == kWhiteoutPrefix) refuse(shown, "\".wh.\" names nothing to white out");
  if (starts_with(base, kWhiteoutPrefix)) {
    if (hardlink || type != AE_IFREG) refuse(shown, "a whiteout must be a regular file");
    // AUFS's own bookkeeping (.wh..wh.plnk and the like) is not layer content;
    // Docker skips it too.
    if (starts_with(base, kWhiteoutMetaPrefix) && base != kOpaqueMarker) return;
  }

  std::string rel;
  for (const auto& c : comps) rel += (rel.empty() ? "" : "/") + c;
  Fd parent = open_dirs(comps, comps.size() - 1, /*create=*/true, shown);
  const int pfd = parent.get();

  // OCI apply: a directory over a directory keeps its content; anything else
  // replaces what was there.
  struct stat st;
  bool keep_dir = false;
  if (::fstatat(pfd, base.c_str(), &st, AT_SYMLINK_NOFOLLOW) == 0) {
    if (S_ISDIR(st.st_mode) && !hardlink && type == AE_IFDIR) {
      keep_dir = true;
    } else {
      remove_at(pfd, base);
      forget_dirs_below(rel);
    }
  } else if (errno != ENOENT) {
    fail(shown, "look at", errno);
  }

  if (hardlink) {
    std::string target = hardlink;
    const std::string tshown = target.size() > 200 ? target.substr(0, 200) + "..." : target;
    std::vector<std::string> tcomps;
    try {
      tcomps = split(target, tshown);
    } catch (const Refused&) {
      refuse(shown, "hard link to \"" + tshown + "\" outside the layer");
    }
    if (tcomps.empty()) refuse(shown, "hard link to the layer's root");
    Fd tparent = open_dirs(tcomps, tcomps.size() - 1, /*create=*/false, shown);
    struct stat tst;
    if (::fstatat(tparent.get(), tcomps.back().c_str(), &tst, AT_SYMLINK_NOFOLLOW) != 0) {
      refuse(shown, "hard link to \"" + tshown + "\", which is not in the layer");
    }
    if (S_ISDIR(tst.st_mode)) refuse(shown, "hard link to a directory");
    if (::linkat(tparent.get(), tcomps.back().c_str(), pfd, base.c_str(), 0) != 0) {
      fail(shown, "create the hard link", errno);
    }
    ++entries_;
    return;
  }

  switch (type) {
    case AE_IFREG: {
      Fd fd(
          ::openat(pfd, base.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600));
      if (!fd) fail(shown, "create", errno);
      const void* buf;
      size_t size;
      la_int64_t offset;
      while (true) {
        int r = archive_read_data_block(a, &buf, &size, &offset);
        if (r == ARCHIVE_EOF) break;
        if (r < ARCHIVE_WARN) {
          throw Error(input_ + ": damaged or truncated archive at \"" + shown +
                      "\": " + archive_text(a));
        }
        const char* p = static_cast<const char*>(buf);
        while (size > 0) {
          ssize_t w = ::pwrite(fd.get(), p, size, offset);
          if (w < 0) {
            if (errno == EINTR) continue;
            fail(shown, "write", errno);
          }
          p += w;
          size -= static_cast<size_t>(w);
          offset += w;
        }
      }
      // A sparse file's trailing hole.
      if (archive_entry_size_is_set(e) && ::ftruncate(fd.get(), archive_entry_size(e)) != 0) {
        fail(shown, "write", errno);
      }
      set_owner(pfd, base, fd.get(), e, shown);
      if (::fchmod(fd.get(), perm) != 0) fail(shown, "set the mode of", errno);
      set_xattrs(pfd, base, fd.get(), e, shown);
      set_times(pfd, base, fd.get(), e, shown);
      break;
    }
    case AE_IFDIR: {
      if (!keep_dir && ::mkdirat(pfd, base.c_str(), 0700) != 0) fail(shown, "create", errno);
      Fd fd(::openat(pfd, base.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC));
      if (!fd) fail(shown, "open", errno);
      set_owner(pfd, base, fd.get(), e, shown);
      set_xattrs(pfd, base, fd.get(), e, shown);
      DirAttrs d{perm, {}};
      entry_times(e, d.times);
      dirs_[rel] = d;
      break;
    }
    case AE_IFLNK: {
      const char* target = archive_entry_symlink(e);
      if (!target || !*target) refuse(shown, "symlink without a target");
      if (::symlinkat(target, pfd, base.c_str()) != 0) fail(shown, "create the symlink", errno);
      set_owner(pfd, base, -1, e, shown);
      set_xattrs(pfd, base, -1, e, shown);
      set_times(pfd, base, -1, e, shown);
      break;
    }
    case AE_IFCHR:
    case AE_IFBLK:
    case AE_IFIFO: {
      dev_t rdev = type == AE_IFIFO ? 0 : archive_entry_rdev(e);
      if (::mknodat(pfd, base.c_str(), type | 0600, rdev) != 0) fail(shown, "create", errno);
      set_owner(pfd, base, -1, e, shown);
      // Just made by us in a directory only we write to: not a symlink.
      if (::fchmodat(pfd, base.c_str(), perm, 0) != 0) fail(shown, "set the mode of", errno);
      set_xattrs(pfd, base, -1, e, shown);
      set_times(pfd, base, -1, e, shown);
      break;
    }
    default:
      refuse(shown, "unsupported file type");
  }
  ++entries_;
}

void Extractor::finish() {
  // Deepest first: setting a parent's mtime must come after its children's.
  std::vector<std::pair<std::string, DirAttrs>> order(dirs_.begin(), dirs_.end());
  std::sort(order.begin(), order.end(), [](const auto& x, const auto& y) {
    auto depth = [](const std::string& s) {
      return s.empty() ? 0 : 1 + std::count(s.begin(), s.end(), '/');
    };
    return depth(x.first) > depth(y.first);
  });
  for (const auto& [rel, d] : order) {
    std::vector<std::string> comps;
    if (!rel.empty()) comps = split(rel, rel);
    Fd fd;
    try {
      fd = open_dirs(comps, comps.size(), /*create=*/false, rel);
    } catch (const Refused&) {
      continue;  // replaced by something else later in the archive
    }
    if (::fchmod(fd.get(), d.mode) != 0) fail(rel, "set the mode of", errno);
    if (::futimens(fd.get(), d.times) != 0) fail(rel, "set the times of", errno);
  }
}

}  // namespace

Compression parse_compression(const std::string& name) {
  if (name == "none") return Compression::kNone;
  if (name == "gzip" || name == "gz") return Compression::kGzip;
  if (name == "zstd" || name == "zst") return Compression::kZstd;
  throw Error("invalid compression \"" + name + "\": use zstd, gzip or none", 125);
}

ExtractResult extract_layer_tar(const std::string& tar_path, const std::string& tree,
                                const std::string& raw_copy_path, const Progress& progress) {
  Fd in(::open(tar_path.c_str(), O_RDONLY | O_CLOEXEC));
  if (!in) throw Error("cannot open " + tar_path + ": " + errno_text(errno));
  struct stat st;
  if (::fstat(in.get(), &st) != 0)
    throw Error("cannot stat " + tar_path + ": " + errno_text(errno));
  if (!S_ISREG(st.st_mode)) throw Error(tar_path + " is not a regular file");
  if (st.st_size == 0) throw Error(tar_path + ": empty file, not a layer tar");
  Fd root(::open(tree.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC));
  if (!root) throw Error("cannot open " + tree + ": " + errno_text(errno));

  Throttle throttle(progress);
  RawSource src;
  src.input_size = static_cast<uint64_t>(st.st_size);
  src.throttle = &throttle;
  src.copy_path = raw_copy_path;

  ReadArchive raw;
  archive_read_support_filter_all(raw.a);
  archive_read_support_format_raw(raw.a);
  if (archive_read_open_fd(raw.a, in.get(), kBufferSize) != ARCHIVE_OK) {
    throw Error(tar_path + ": " + archive_text(raw.a));
  }
  archive_entry* rawe;
  if (archive_read_next_header(raw.a, &rawe) != ARCHIVE_OK) {
    throw Error(tar_path + ": not a layer tar: " + archive_text(raw.a));
  }
  src.raw = raw.a;

  WriteArchive copy;
  archive_write_set_format_raw(copy.a);
  add_write_filter(copy.a, Compression::kZstd, raw_copy_path);
  archive_write_set_bytes_in_last_block(copy.a, 1);
  if (archive_write_open_filename(copy.a, raw_copy_path.c_str()) != ARCHIVE_OK) {
    throw Error("cannot create " + raw_copy_path + ": " + archive_text(copy.a));
  }
  {
    archive_entry* ce = archive_entry_new();
    archive_entry_set_pathname(ce, "layer.tar");
    archive_entry_set_filetype(ce, AE_IFREG);
    archive_entry_set_perm(ce, 0644);
    int r = archive_write_header(copy.a, ce);
    archive_entry_free(ce);
    if (r != ARCHIVE_OK) throw Error("cannot write " + raw_copy_path + ": " + archive_text(copy.a));
  }
  src.copy = copy.a;

  Extractor ex(root.get(), tar_path);
  ReadArchive tar;
  archive_read_support_format_tar(tar.a);
  if (archive_read_open(tar.a, &src, nullptr, tar_read_callback, nullptr) != ARCHIVE_OK) {
    throw Error(tar_path + ": not a layer tar: " + archive_text(tar.a));
  }
  archive_entry* e;
  while (true) {
    int r = archive_read_next_header(tar.a, &e);
    if (r == ARCHIVE_EOF) break;
    if (r < ARCHIVE_WARN) {
      if (src.bytes == 0) throw Error(tar_path + ": not a layer tar: " + archive_text(tar.a));
      throw Error(tar_path + ": damaged or truncated archive: " + archive_text(tar.a));
    }
    ex.apply(tar.a, e);
  }
  // The tar's end may be followed by padding: it is part of the diffID too.
  while (true) {
    ssize_t n = src.pull();
    if (n < 0) throw Error(tar_path + ": damaged or truncated archive: " + src.error);
    if (n == 0) break;
  }
  if (archive_write_close(copy.a) != ARCHIVE_OK) {
    throw Error("cannot write " + raw_copy_path + ": " + archive_text(copy.a));
  }
  ex.finish();
  throttle.report(src.input_size, src.input_size, /*final=*/true);

  ExtractResult res;
  res.diff_id = src.sha.digest();
  res.tar_size = src.bytes;
  res.entries = ex.entries();
  return res;
}

// ---------------------------------------------------------------------------
// TarWriter

struct TarWriter::Impl {
  std::string out_path;
  WriteArchive w;
  bool finished = false;
  std::map<std::pair<dev_t, ino_t>, std::string> links;  // inode -> first name written
  std::vector<char> buf = std::vector<char>(kBufferSize);
  std::function<void(uint64_t)> on_data;  // bytes of file content written

  void write_header(archive_entry* e, const std::string& name) {
    int r = archive_write_header(w.a, e);
    if (r < ARCHIVE_WARN) {
      throw Error("cannot write \"" + name + "\" to " + out_path + ": " + archive_text(w.a));
    }
  }
  // An empty root-owned file, 0600, at the epoch: a whiteout or opaque
  // marker, the same bytes whatever it was converted from.
  void write_marker(const std::string& name);
};

namespace {

// Fills `e` with the xattrs of `fd` (or of `path`, not followed, when fd < 0),
// sorted by name, private ones left out.
void read_xattrs(archive_entry* e, int fd, const std::string& path) {
  std::vector<char> names(4096);
  while (true) {
    ssize_t n = fd >= 0 ? ::flistxattr(fd, names.data(), names.size())
                        : ::llistxattr(path.c_str(), names.data(), names.size());
    if (n >= 0) {
      names.resize(static_cast<size_t>(n));
      break;
    }
    if (errno == ERANGE) {
      names.resize(names.size() * 4);
      continue;
    }
    if (errno == ENOTSUP) return;
    throw Error("cannot list the extended attributes of " + path + ": " + errno_text(errno));
  }
  std::vector<std::string> sorted;
  for (size_t i = 0; i < names.size();) {
    std::string n(names.data() + i);
    i += n.size() + 1;
    if (!n.empty() && !is_private_xattr(n)) sorted.push_back(n);
  }
  std::sort(sorted.begin(), sorted.end());
  for (const auto& n : sorted) {
    std::vector<char> value(256);
    while (true) {
      ssize_t v = fd >= 0 ? ::fgetxattr(fd, n.c_str(), value.data(), value.size())
                          : ::lgetxattr(path.c_str(), n.c_str(), value.data(), value.size());
      if (v >= 0) {
        value.resize(static_cast<size_t>(v));
        break;
      }
      if (errno == ERANGE) {
        value.resize(value.size() * 4 + 65536);
        continue;
      }
      if (errno == ENODATA) {
        value.clear();
        break;
      }
      throw Error("cannot read the extended attribute " + n + " of " + path + ": " +
                  errno_text(errno));
    }
    archive_entry_xattr_add_entry(e, n.c_str(), value.data(), value.size());
  }
}

struct EntryPtr {
  archive_entry* e = archive_entry_new();
  ~EntryPtr() { archive_entry_free(e); }
};

}  // namespace

TarWriter::TarWriter(const std::string& out_path, Compression compression) : impl_(new Impl) {
  impl_->out_path = out_path;
  archive* a = impl_->w.a;
  // Restricted PAX: plain ustar headers unless a name, size, owner or xattr
  // needs an extended one, much as Go's archive/tar (Docker, umoci) writes.
  archive_write_set_format_pax_restricted(a);
  archive_write_set_format_option(a, "pax", "xattrheader", "SCHILY");
  try {
    add_write_filter(a, compression, out_path);
  } catch (...) {
    delete impl_;
    throw;
  }
  // No padding to tar's 10 KiB records: the archive ends after its two zero
  // blocks (or the compressor's end).
  archive_write_set_bytes_in_last_block(a, 1);
  if (archive_write_open_filename(a, out_path.c_str()) != ARCHIVE_OK) {
    std::string msg = "cannot create " + out_path + ": " + archive_text(a);
    delete impl_;
    throw Error(msg);
  }
}

TarWriter::~TarWriter() {
  if (!impl_->finished) {
    archive_write_fail(impl_->w.a);
    ::unlink(impl_->out_path.c_str());
  }
  delete impl_;
}

void TarWriter::add(const std::string& name, const std::string& fs_path) {
  struct stat st;
  if (::lstat(fs_path.c_str(), &st) != 0) {
    throw Error("cannot read " + fs_path + ": " + errno_text(errno));
  }
  if (S_ISSOCK(st.st_mode)) return;  // tar has no sockets; Docker leaves them out too
  EntryPtr ep;
  archive_entry* e = ep.e;
  archive_entry_set_pathname(e, name.c_str());
  archive_entry_set_uid(e, st.st_uid);
  archive_entry_set_gid(e, st.st_gid);
  archive_entry_set_perm(e, st.st_mode & 07777);
  // Whole seconds and no atime/ctime, as Docker writes layers: the same tree
  // gives the same tar whenever it is read.
  archive_entry_set_mtime(e, st.st_mtim.tv_sec, 0);

  if (!S_ISDIR(st.st_mode) && st.st_nlink > 1) {
    auto [it, fresh] = impl_->links.emplace(std::make_pair(st.st_dev, st.st_ino), name);
    if (!fresh) {
      archive_entry_set_filetype(e, AE_IFREG);
      archive_entry_set_hardlink(e, it->second.c_str());
      archive_entry_set_size(e, 0);
      impl_->write_header(e, name);
      return;
    }
  }

  if (S_ISREG(st.st_mode)) {
    Fd fd(::open(fs_path.c_str(), O_RDONLY | O_NOFOLLOW | O_CLOEXEC));
    if (!fd) throw Error("cannot open " + fs_path + ": " + errno_text(errno));
    struct stat fst;
    if (::fstat(fd.get(), &fst) != 0 || !S_ISREG(fst.st_mode)) {
      throw Error(fs_path + " changed while it was being read");
    }
    archive_entry_set_filetype(e, AE_IFREG);
    archive_entry_set_size(e, fst.st_size);
    read_xattrs(e, fd.get(), fs_path);
    impl_->write_header(e, name);
    int64_t left = fst.st_size;
    while (left > 0) {
      ssize_t n = ::read(fd.get(), impl_->buf.data(),
                         std::min<size_t>(impl_->buf.size(), static_cast<size_t>(left)));
      if (n < 0) {
        if (errno == EINTR) continue;
        throw Error("cannot read " + fs_path + ": " + errno_text(errno));
      }
      if (n == 0) throw Error(fs_path + " shrank while it was being read");
      if (archive_write_data(impl_->w.a, impl_->buf.data(), static_cast<size_t>(n)) != n) {
        throw Error("cannot write " + impl_->out_path + ": " + archive_text(impl_->w.a));
      }
      left -= n;
      if (impl_->on_data) impl_->on_data(static_cast<uint64_t>(n));
    }
    return;
  }

  if (S_ISDIR(st.st_mode)) {
    archive_entry_set_filetype(e, AE_IFDIR);
  } else if (S_ISLNK(st.st_mode)) {
    std::vector<char> target(static_cast<size_t>(st.st_size) + 2);
    ssize_t n = ::readlink(fs_path.c_str(), target.data(), target.size());
    if (n < 0) throw Error("cannot read the symlink " + fs_path + ": " + errno_text(errno));
    if (static_cast<size_t>(n) >= target.size()) {
      throw Error(fs_path + " changed while it was being read");
    }
    archive_entry_set_filetype(e, AE_IFLNK);
    archive_entry_set_symlink(e, std::string(target.data(), static_cast<size_t>(n)).c_str());
  } else if (S_ISCHR(st.st_mode)) {
    archive_entry_set_filetype(e, AE_IFCHR);
    archive_entry_set_rdev(e, st.st_rdev);
  } else if (S_ISBLK(st.st_mode)) {
    archive_entry_set_filetype(e, AE_IFBLK);
    archive_entry_set_rdev(e, st.st_rdev);
  } else if (S_ISFIFO(st.st_mode)) {
    archive_entry_set_filetype(e, AE_IFIFO);
  } else {
    throw Error(fs_path + ": unsupported file type");
  }
  read_xattrs(e, -1, fs_path);
  impl_->write_header(e, name);
}

void TarWriter::Impl::write_marker(const std::string& name) {
  EntryPtr ep;
  archive_entry_set_pathname(ep.e, name.c_str());
  archive_entry_set_filetype(ep.e, AE_IFREG);
  archive_entry_set_perm(ep.e, 0600);
  archive_entry_set_size(ep.e, 0);
  archive_entry_set_mtime(ep.e, 0, 0);
  write_header(ep.e, name);
}

void TarWriter::add_whiteout(const std::string& name) {
  auto slash = name.find_last_of('/');
  std::string dir = slash == std::string::npos ? "" : name.substr(0, slash + 1);
  std::string base = slash == std::string::npos ? name : name.substr(slash + 1);
  impl_->write_marker(dir + kWhiteoutPrefix + base);
}

void TarWriter::add_opaque(const std::string& dir) {
  impl_->write_marker(dir.empty() ? std::string(kOpaqueMarker) : dir + "/" + kOpaqueMarker);
}

void TarWriter::on_data(std::function<void(uint64_t bytes)> f) {
  impl_->on_data = std::move(f);
}

void TarWriter::finish() {
  if (impl_->finished) return;
  if (archive_write_close(impl_->w.a) != ARCHIVE_OK) {
    throw Error("cannot write " + impl_->out_path + ": " + archive_text(impl_->w.a));
  }
  impl_->finished = true;
}

namespace {

struct TreeItem {
  enum Kind { kPath, kWhiteout, kOpaque } kind;
  std::string name;      // for kWhiteout: the name whited out; kOpaque: the directory
  std::string fs_path;   // kPath only
  std::string sort_key;  // the name the tar entry will have
};

bool has_opaque_xattr(const std::string& path) {
  for (const char* x : {"trusted.overlay.opaque", "user.overlay.opaque"}) {
    char v[4];
    ssize_t n = ::lgetxattr(path.c_str(), x, v, sizeof v);
    if (n == 1 && v[0] == 'y') return true;
  }
  return false;
}

std::string whiteout_name(const std::string& name) {
  auto slash = name.find_last_of('/');
  if (slash == std::string::npos) return kWhiteoutPrefix + name;
  return name.substr(0, slash + 1) + kWhiteoutPrefix + name.substr(slash + 1);
}

void collect(const std::string& dir, const std::string& rel, std::vector<TreeItem>* items,
             uint64_t* content_bytes) {
  DIR* d = ::opendir(dir.c_str());
  if (!d) throw Error("cannot read " + dir + ": " + errno_text(errno));
  std::vector<std::string> names;
  while (struct dirent* ent = ::readdir(d)) {
    std::string n = ent->d_name;
    if (n != "." && n != "..") names.push_back(n);
  }
  ::closedir(d);
  for (const auto& n : names) {
    std::string path = dir + "/" + n;
    std::string name = rel.empty() ? n : rel + "/" + n;
    struct stat st;
    if (::lstat(path.c_str(), &st) != 0)
      throw Error("cannot read " + path + ": " + errno_text(errno));
    if (S_ISCHR(st.st_mode) && st.st_rdev == makedev(0, 0)) {
      items->push_back({TreeItem::kWhiteout, name, "", whiteout_name(name)});
      continue;
    }
    items->push_back({TreeItem::kPath, name, path, name});
    if (S_ISREG(st.st_mode)) *content_bytes += static_cast<uint64_t>(st.st_size);
    if (S_ISDIR(st.st_mode)) {
      if (has_opaque_xattr(path)) {
        items->push_back({TreeItem::kOpaque, name, "", name + "/" + kOpaqueMarker});
      }
      collect(path, name, items, content_bytes);
    }
  }
}

}  // namespace

void write_tree_tar(const std::string& tree, const std::string& out_path, Compression compression,
                    const Progress& progress) {
  struct stat st;
  if (::stat(tree.c_str(), &st) != 0) throw Error("cannot read " + tree + ": " + errno_text(errno));
  if (!S_ISDIR(st.st_mode)) throw Error(tree + " is not a directory");
  std::vector<TreeItem> items;
  uint64_t total = 0;
  if (has_opaque_xattr(tree)) items.push_back({TreeItem::kOpaque, "", "", kOpaqueMarker});
  collect(tree, "", &items, &total);
  // Sorted by entry name, so a parent always comes before its children and
  // the same tree always gives the same bytes. A converted whiteout or opaque
  // marker that the tree also holds in OCI form is written once.
  std::stable_sort(items.begin(), items.end(),
                   [](const TreeItem& a, const TreeItem& b) { return a.sort_key < b.sort_key; });
  std::set<std::string> written;
  Throttle throttle(progress);
  uint64_t done = 0;
  TarWriter w(out_path, compression);
  w.on_data([&](uint64_t n) {
    done += n;
    throttle.report(done, total);
  });
  for (const auto& it : items) {
    if (!written.insert(it.sort_key).second) continue;
    switch (it.kind) {
      case TreeItem::kPath:
        w.add(it.name, it.fs_path);
        break;
      case TreeItem::kWhiteout:
        w.add_whiteout(it.name);
        break;
      case TreeItem::kOpaque:
        w.add_opaque(it.name);
        break;
    }
  }
  w.finish();
  throttle.report(total, total, /*final=*/true);
}

std::string sha256_file(const std::string& path) {
  Fd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
  if (!fd) throw Error("cannot open " + path + ": " + errno_text(errno));
  Sha256 sha;
  std::vector<char> buf(kBufferSize);
  while (true) {
    ssize_t n = ::read(fd.get(), buf.data(), buf.size());
    if (n < 0) {
      if (errno == EINTR) continue;
      throw Error("cannot read " + path + ": " + errno_text(errno));
    }
    if (n == 0) break;
    sha.update(buf.data(), static_cast<size_t>(n));
  }
  return sha.digest();
}

}  // namespace layerfs::ctl
