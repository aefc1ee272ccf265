// Tree snapshots, their comparison and the independent reference merge (see tree.h).
#include "tests/support/tree.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/xattr.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <optional>
#include <set>
#include <sstream>

#include "tests/support/tmptree.h"

namespace layerfs::test {

namespace {

constexpr size_t kLiteralLimit = 64 * 1024;
constexpr size_t kBlock = 64 * 1024;

uint64_t fnv1a(const char* p, size_t n, uint64_t h = 1469598103934665603ull) {
  for (size_t i = 0; i < n; ++i) {
    h ^= static_cast<unsigned char>(p[i]);
    h *= 1099511628211ull;
  }
  return h;
}

bool all_zero(const char* p, size_t n) {
  for (size_t i = 0; i < n; ++i) {
    if (p[i] != 0) return false;
  }
  return true;
}

// A digest over the non-zero 64 KiB blocks and their indices, so a hole and written zeros give
// the same result. Holes are skipped with SEEK_DATA/SEEK_HOLE where the file system has them.
std::string file_digest(const std::string& path, off_t size) {
  Fd fd = open_fd(path, O_RDONLY | O_NOFOLLOW);
  uint64_t h = fnv1a(reinterpret_cast<const char*>(&size), sizeof size);
  std::string buf(kBlock, '\0');
  off_t next_block = 0;  // first block index not yet hashed
  const off_t nblocks = (size + static_cast<off_t>(kBlock) - 1) / static_cast<off_t>(kBlock);
  off_t pos = 0;
  while (next_block < nblocks) {
    off_t data = ::lseek(fd.get(), pos, SEEK_DATA);
    off_t hole;
    if (data < 0) {
      if (errno == ENXIO) break;  // only a hole remains
      data = pos;                 // no SEEK_DATA support: read everything
      hole = size;
    } else {
      hole = ::lseek(fd.get(), data, SEEK_HOLE);
      if (hole < 0) hole = size;
    }
    off_t first = std::max(data / static_cast<off_t>(kBlock), next_block);
    off_t last =
        std::min((hole + static_cast<off_t>(kBlock) - 1) / static_cast<off_t>(kBlock), nblocks);
    for (off_t b = first; b < last; ++b) {
      off_t off = b * static_cast<off_t>(kBlock);
      size_t want = static_cast<size_t>(std::min<off_t>(kBlock, size - off));
      size_t got = 0;
      while (got < want) {
        ssize_t n = ::pread(fd.get(), buf.data() + got, want - got, off + got);
        if (n < 0) {
          if (errno == EINTR) continue;
          throw_errno("read " + path);
        }
        if (n == 0) break;
        got += static_cast<size_t>(n);
      }
      std::fill(buf.begin() + got, buf.begin() + want, '\0');
      if (!all_zero(buf.data(), want)) {
        h = fnv1a(reinterpret_cast<const char*>(&b), sizeof b, h);
        h = fnv1a(buf.data(), want, h);
      }
    }
    next_block = std::max(next_block, last);
    pos = next_block * static_cast<off_t>(kBlock);
    if (pos >= size) break;
  }
  char out[64];
  std::snprintf(out, sizeof out, "<%lld bytes, digest %016llx>", static_cast<long long>(size),
                static_cast<unsigned long long>(h));
  return out;
}

void scan_rec(const std::string& root, const std::string& rel, const ScanOptions& opts,
              Snapshot& out) {
  const std::string full = rel == "." ? root : root + "/" + rel;
  struct stat st = lstat_path(full);
  NodeInfo n;
  n.mode = st.st_mode;
  n.uid = st.st_uid;
  n.gid = st.st_gid;
  n.size = st.st_size;
  n.blocks = st.st_blocks;
  n.dev = st.st_dev;
  n.ino = st.st_ino;
  n.nlink = st.st_nlink;
  n.rdev = st.st_rdev;
  n.atime = st.st_atim;
  n.mtime = st.st_mtim;
  n.ctime = st.st_ctim;
  if (S_ISLNK(st.st_mode)) {
    n.content = read_link(full);
  } else if (S_ISREG(st.st_mode) && opts.content) {
    n.content = static_cast<size_t>(st.st_size) <= kLiteralLimit ? read_file(full)
                                                                 : file_digest(full, st.st_size);
  }
  if (opts.xattrs) n.xattrs = list_xattrs(full);
  out[rel] = std::move(n);
  if (S_ISDIR(st.st_mode)) {
    for (const auto& name : list_dir(full)) {
      scan_rec(root, rel == "." ? name : rel + "/" + name, opts, out);
    }
  }
}

std::string quote(const std::string& s, size_t limit = 48) {
  std::string out = "\"";
  for (size_t i = 0; i < s.size() && i < limit; ++i) {
    unsigned char c = static_cast<unsigned char>(s[i]);
    if (c == '\n') {
      out += "\\n";
    } else if (c == '"' || c == '\\') {
      out += '\\';
      out += static_cast<char>(c);
    } else if (c < 32 || c >= 127) {
      char buf[8];
      std::snprintf(buf, sizeof buf, "\\x%02x", c);
      out += buf;
    } else {
      out += static_cast<char>(c);
    }
  }
  if (s.size() > limit) out += "...";
  out += "\"";
  if (s.size() > limit) out += " (" + std::to_string(s.size()) + " bytes)";
  return out;
}

std::string octal(mode_t m) {
  char buf[16];
  std::snprintf(buf, sizeof buf, "%04o", static_cast<unsigned>(m & 07777));
  return buf;
}

std::string ts_str(const timespec& t) {
  char buf[48];
  std::snprintf(buf, sizeof buf, "%lld.%09ld", static_cast<long long>(t.tv_sec), t.tv_nsec);
  return buf;
}

bool ts_eq(const timespec& a, const timespec& b) {
  return a.tv_sec == b.tv_sec && a.tv_nsec == b.tv_nsec;
}

std::string xattrs_str(const std::map<std::string, std::string>& x) {
  std::string out = "{";
  bool first = true;
  for (const auto& [k, v] : x) {
    if (!first) out += ", ";
    first = false;
    out += k + "=" + quote(v, 24);
  }
  return out + "}";
}

std::string brief(const NodeInfo& n) {
  std::string out = type_name(n.mode);
  if (S_ISREG(n.mode)) out += ", " + std::to_string(n.size) + " bytes";
  if (S_ISLNK(n.mode)) out += " -> " + n.content;
  return out;
}

bool ignored(const std::string& path, const CompareOptions& opts) {
  for (const auto& ig : opts.ignore) {
    if (path == ig || path.rfind(ig + "/", 0) == 0) return true;
  }
  return false;
}

// For each non-directory path, the other paths of the snapshot sharing its inode.
std::map<std::string, std::vector<std::string>> link_groups(const Snapshot& s,
                                                            const CompareOptions& opts) {
  std::map<std::pair<dev_t, ino_t>, std::vector<std::string>> by_ino;
  for (const auto& [path, n] : s) {
    if (S_ISDIR(n.mode) || ignored(path, opts)) continue;
    by_ino[{n.dev, n.ino}].push_back(path);
  }
  std::map<std::string, std::vector<std::string>> out;
  for (const auto& [key, paths] : by_ino) {
    for (const auto& p : paths) {
      std::vector<std::string> others;
      for (const auto& q : paths) {
        if (q != p) others.push_back(q);
      }
      out[p] = others;
    }
  }
  return out;
}

std::string join(const std::vector<std::string>& v) {
  if (v.empty()) return "(none)";
  std::string out;
  for (const auto& s : v) out += (out.empty() ? "" : ", ") + s;
  return out;
}

}  // namespace

std::string type_name(mode_t mode) {
  switch (mode & S_IFMT) {
    case S_IFREG:
      return "file";
    case S_IFDIR:
      return "dir";
    case S_IFLNK:
      return "symlink";
    case S_IFIFO:
      return "fifo";
    case S_IFCHR:
      return "chardev";
    case S_IFBLK:
      return "blockdev";
    case S_IFSOCK:
      return "socket";
    default:
      return "unknown";
  }
}

Snapshot scan_tree(const std::string& root, const ScanOptions& opts) {
  Snapshot out;
  scan_rec(root, ".", opts, out);
  return out;
}

CompareOptions strict_compare() {
  CompareOptions o;
  o.mtimes = true;
  o.ctimes = true;
  o.inodes = true;
  o.nlink = true;
  o.dir_sizes = true;
  return o;
}

std::string diff_trees(const Snapshot& expected, const Snapshot& actual, const CompareOptions& opts,
                       std::string_view en, std::string_view an, size_t max_lines) {
  std::vector<std::string> lines;
  const std::string E(en), A(an);
  auto add = [&](const std::string& path, const std::string& what) {
    lines.push_back((path == "." ? std::string("(root)") : path) + ": " + what);
  };
  for (const auto& [path, e] : expected) {
    if (ignored(path, opts) || (path == "." && !opts.root)) continue;
    auto it = actual.find(path);
    if (it == actual.end()) {
      add(path, "only in " + E + " (" + brief(e) + ")");
      continue;
    }
    const NodeInfo& a = it->second;
    if ((e.mode & S_IFMT) != (a.mode & S_IFMT)) {
      add(path, "type: " + E + " " + type_name(e.mode) + ", " + A + " " + type_name(a.mode));
      continue;
    }
    if (opts.modes && (e.mode & 07777) != (a.mode & 07777) && !S_ISLNK(e.mode)) {
      add(path, "mode: " + E + " " + octal(e.mode) + ", " + A + " " + octal(a.mode));
    }
    if (opts.owners && (e.uid != a.uid || e.gid != a.gid)) {
      add(path, "owner: " + E + " " + std::to_string(e.uid) + ":" + std::to_string(e.gid) + ", " +
                    A + " " + std::to_string(a.uid) + ":" + std::to_string(a.gid));
    }
    if ((!S_ISDIR(e.mode) || opts.dir_sizes) && e.size != a.size) {
      add(path,
          "size: " + E + " " + std::to_string(e.size) + ", " + A + " " + std::to_string(a.size));
    }
    if ((S_ISREG(e.mode) || S_ISLNK(e.mode)) && e.content != a.content) {
      add(path, std::string(S_ISLNK(e.mode) ? "target" : "content") + ": " + E + " " +
                    quote(e.content) + ", " + A + " " + quote(a.content));
    }
    if (opts.rdev && (S_ISCHR(e.mode) || S_ISBLK(e.mode)) && e.rdev != a.rdev) {
      add(path, "rdev: " + E + " " + std::to_string(major(e.rdev)) + "," +
                    std::to_string(minor(e.rdev)) + ", " + A + " " + std::to_string(major(a.rdev)) +
                    "," + std::to_string(minor(a.rdev)));
    }
    if (opts.xattrs && e.xattrs != a.xattrs) {
      add(path,
          "xattrs: " + E + " " + xattrs_str(e.xattrs) + ", " + A + " " + xattrs_str(a.xattrs));
    }
    if (opts.mtimes && !ts_eq(e.mtime, a.mtime)) {
      add(path, "mtime: " + E + " " + ts_str(e.mtime) + ", " + A + " " + ts_str(a.mtime));
    }
    if (opts.atimes && !ts_eq(e.atime, a.atime)) {
      add(path, "atime: " + E + " " + ts_str(e.atime) + ", " + A + " " + ts_str(a.atime));
    }
    if (opts.ctimes && !ts_eq(e.ctime, a.ctime)) {
      add(path, "ctime: " + E + " " + ts_str(e.ctime) + ", " + A + " " + ts_str(a.ctime));
    }
    if (opts.inodes && e.ino != a.ino) {
      add(path,
          "st_ino: " + E + " " + std::to_string(e.ino) + ", " + A + " " + std::to_string(a.ino));
    }
    if (opts.nlink && !S_ISDIR(e.mode) && e.nlink != a.nlink) {
      add(path,
          "nlink: " + E + " " + std::to_string(e.nlink) + ", " + A + " " + std::to_string(a.nlink));
    }
  }
  for (const auto& [path, a] : actual) {
    if (ignored(path, opts)) continue;
    if (!expected.count(path)) add(path, "only in " + A + " (" + brief(a) + ")");
  }
  if (opts.links) {
    auto eg = link_groups(expected, opts);
    auto ag = link_groups(actual, opts);
    for (const auto& [path, others] : eg) {
      auto it = ag.find(path);
      if (it != ag.end() && it->second != others) {
        add(path, "hard links: " + E + " shares its inode with " + join(others) + "; " + A +
                      " with " + join(it->second));
      }
    }
  }
  if (lines.empty()) return {};
  std::sort(lines.begin(), lines.end());
  std::string out;
  for (size_t i = 0; i < lines.size() && i < max_lines; ++i) out += "  " + lines[i] + "\n";
  if (lines.size() > max_lines) {
    out += "  ... and " + std::to_string(lines.size() - max_lines) + " more differences\n";
  }
  return out;
}

std::string describe(const Snapshot& snap, size_t max_lines) {
  std::ostringstream os;
  size_t n = 0;
  for (const auto& [path, info] : snap) {
    if (n++ == max_lines) {
      os << "  ... " << (snap.size() - max_lines) << " more\n";
      break;
    }
    os << "  " << path << " " << type_name(info.mode) << " " << octal(info.mode) << " " << info.uid
       << ":" << info.gid;
    if (S_ISREG(info.mode)) os << " " << info.size << " " << quote(info.content, 24);
    if (S_ISLNK(info.mode)) os << " -> " << info.content;
    if (!info.xattrs.empty()) os << " " << xattrs_str(info.xattrs);
    os << "\n";
  }
  return os.str();
}

bool is_union_private_xattr(std::string_view name) {
  return name.rfind("trusted.overlay.", 0) == 0 || name.rfind("user.overlay.", 0) == 0;
}

// ---- Reference merge --------------------------------------------------------------------

namespace {

struct RefBuilder {
  // Hard links within a layer: (st_dev, st_ino) of the source -> path already made in ref.
  std::map<std::pair<dev_t, ino_t>, std::string> made;

  static bool is_whiteout_dev(const struct stat& st) {
    return S_ISCHR(st.st_mode) && st.st_rdev == makedev(0, 0);
  }

  static bool is_opaque(const std::string& dirpath) {
    for (const char* name : {"trusted.overlay.opaque", "user.overlay.opaque"}) {
      char v[8];
      ssize_t n = ::lgetxattr(dirpath.c_str(), name, v, sizeof v);
      if (n == 1 && v[0] == 'y') return true;
    }
    return exists(dirpath + "/.wh..wh..opq");
  }

  static void copy_xattrs(const std::string& from, const std::string& to) {
    for (const auto& [name, value] : list_xattrs(from)) {
      if (is_union_private_xattr(name)) continue;
      if (::lsetxattr(to.c_str(), name.c_str(), value.data(), value.size(), 0) != 0) {
        throw_errno("setxattr " + name + " " + to);
      }
    }
  }

  static void copy_times(const struct stat& st, const std::string& to) {
    timespec ts[2] = {st.st_atim, st.st_mtim};
    if (::utimensat(AT_FDCWD, to.c_str(), ts, AT_SYMLINK_NOFOLLOW) != 0) {
      throw_errno("utimensat " + to);
    }
  }

  static void copy_owner_mode(const struct stat& st, const std::string& to) {
    if (::lchown(to.c_str(), st.st_uid, st.st_gid) != 0) throw_errno("lchown " + to);
    if (!S_ISLNK(st.st_mode) && ::chmod(to.c_str(), st.st_mode & 07777) != 0) {
      throw_errno("chmod " + to);
    }
  }

  static void copy_data(const std::string& from, const std::string& to, off_t size) {
    Fd in = open_fd(from, O_RDONLY | O_NOFOLLOW);
    Fd out = open_fd(to, O_WRONLY | O_CREAT | O_EXCL, 0600);
    std::string buf(1 << 20, '\0');
    off_t pos = 0;
    while (pos < size) {
      off_t data = ::lseek(in.get(), pos, SEEK_DATA);
      if (data < 0) break;  // the rest is a hole
      off_t hole = ::lseek(in.get(), data, SEEK_HOLE);
      if (hole < 0) hole = size;
      for (off_t off = data; off < hole;) {
        ssize_t n = ::pread(in.get(), buf.data(),
                            static_cast<size_t>(std::min<off_t>(buf.size(), hole - off)), off);
        if (n < 0) throw_errno("read " + from);
        if (n == 0) break;
        if (::pwrite(out.get(), buf.data(), static_cast<size_t>(n), off) != n) {
          throw_errno("write " + to);
        }
        off += n;
      }
      pos = hole;
    }
    if (::ftruncate(out.get(), size) != 0) throw_errno("ftruncate " + to);
  }

  void copy_object(const std::string& from, const struct stat& st, const std::string& to) {
    auto key = std::make_pair(st.st_dev, st.st_ino);
    if (st.st_nlink > 1) {
      auto it = made.find(key);
      if (it != made.end()) {
        if (::link(it->second.c_str(), to.c_str()) != 0) throw_errno("link " + to);
        return;
      }
    }
    switch (st.st_mode & S_IFMT) {
      case S_IFREG:
        copy_data(from, to, st.st_size);
        break;
      case S_IFLNK:
        if (::symlink(read_link(from).c_str(), to.c_str()) != 0) throw_errno("symlink " + to);
        break;
      default:
        if (::mknod(to.c_str(), (st.st_mode & S_IFMT) | 0600, st.st_rdev) != 0) {
          throw_errno("mknod " + to);
        }
        break;
    }
    copy_owner_mode(st, to);
    copy_xattrs(from, to);
    copy_times(st, to);
    if (st.st_nlink > 1) made[key] = to;
  }

  // `srcs`: the directories merged at this path, top-most first, already cut below an opaque one.
  void merge_dir(const std::vector<std::string>& srcs, const std::string& dst) {
    std::set<std::string> names;
    for (const auto& s : srcs) {
      for (const auto& name : list_dir(s)) {
        if (name == ".wh..wh..opq") continue;
        if (name.rfind(".wh.", 0) == 0) continue;  // a whiteout, not an entry
        names.insert(name);
      }
    }
    for (const auto& name : names) {
      std::vector<std::string> dirs;  // directories to merge for this name
      std::optional<std::pair<std::string, struct stat>> nondir;
      for (const auto& s : srcs) {
        const std::string p = s + "/" + name;
        auto st = try_lstat(p);
        if (st && !is_whiteout_dev(*st)) {
          if (S_ISDIR(st->st_mode)) {
            dirs.push_back(p);
            if (is_opaque(p)) break;
            continue;
          }
          if (dirs.empty()) nondir = std::make_pair(p, *st);
          break;  // a non-directory ends the lookup below it
        }
        if (st || exists(s + "/.wh." + name)) break;  // whited out for the layers below
      }
      const std::string out = dst + "/" + name;
      if (!dirs.empty()) {
        struct stat top = lstat_path(dirs.front());
        if (::mkdir(out.c_str(), 0700) != 0) throw_errno("mkdir " + out);
        copy_owner_mode(top, out);
        copy_xattrs(dirs.front(), out);
        merge_dir(dirs, out);
        copy_times(top, out);
      } else if (nondir) {
        copy_object(nondir->first, nondir->second, out);
      }
    }
  }
};

}  // namespace

void build_reference(const std::vector<std::string>& layers, const std::string& ref_dir) {
  if (layers.empty()) throw std::invalid_argument("build_reference: no layers");
  std::vector<std::string> srcs;
  for (const auto& l : layers) {
    srcs.push_back(l);
    if (RefBuilder::is_opaque(l)) break;
  }
  RefBuilder b;
  struct stat top = lstat_path(srcs.front());
  RefBuilder::copy_owner_mode(top, ref_dir);
  RefBuilder::copy_xattrs(srcs.front(), ref_dir);
  b.merge_dir(srcs, ref_dir);
  RefBuilder::copy_times(top, ref_dir);
}

}  // namespace layerfs::test
