// Helpers shared by the layer tests (test_archive.cpp, test_layer_store.cpp):
// writing tars entry by entry with any name (malicious ones included), running
// commands, snapshotting trees for comparison and counting sizes the way the
// tests expect them, independently of tools/.
#pragma once

#include <archive.h>
#include <archive_entry.h>
#include <dirent.h>
#include <fcntl.h>
#include <poll.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/wait.h>
#include <sys/xattr.h>
#include <unistd.h>

#include <cstring>
#include <fstream>
#include <functional>
#include <map>
#include <set>
#include <sstream>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

namespace layerfs::test {

// One tar entry as a test wants it, whatever it says.
struct TarEntry {
  std::string name;
  char type = 'f';   // f file, d dir, l symlink, h hard link, c char, b block, p fifo
  std::string data;  // file content, or link target
  mode_t mode = 0644;
  uid_t uid = 0;
  gid_t gid = 0;
  time_t mtime = 1600000000;
  unsigned major = 0, minor = 0;
  std::vector<std::pair<std::string, std::string>> xattrs;
};

inline TarEntry tfile(std::string name, std::string data, mode_t mode = 0644) {
  return TarEntry{std::move(name), 'f', std::move(data), mode};
}
inline TarEntry tdir(std::string name, mode_t mode = 0755) {
  return TarEntry{std::move(name), 'd', "", mode};
}
inline TarEntry tsym(std::string name, std::string target) {
  return TarEntry{std::move(name), 'l', std::move(target), 0777};
}
inline TarEntry tlink(std::string name, std::string target) {
  return TarEntry{std::move(name), 'h', std::move(target), 0644};
}

// Writes `entries` as a PAX tar (libarchive does not sanitise names when
// writing), compressed with "none", "gzip" or "zstd".
inline void write_tar(const std::string& path, const std::vector<TarEntry>& entries,
                      const std::string& compression = "none") {
  archive* a = archive_write_new();
  archive_write_set_format_pax_restricted(a);
  if (compression == "gzip") archive_write_add_filter_gzip(a);
  if (compression == "zstd") archive_write_add_filter_zstd(a);
  if (archive_write_open_filename(a, path.c_str()) != ARCHIVE_OK) {
    throw std::runtime_error("cannot write " + path);
  }
  for (const auto& t : entries) {
    archive_entry* e = archive_entry_new();
    archive_entry_set_pathname(e, t.name.c_str());
    archive_entry_set_perm(e, t.mode);
    archive_entry_set_uid(e, t.uid);
    archive_entry_set_gid(e, t.gid);
    archive_entry_set_mtime(e, t.mtime, 0);
    for (const auto& [k, v] : t.xattrs)
      archive_entry_xattr_add_entry(e, k.c_str(), v.data(), v.size());
    switch (t.type) {
      case 'f':
        archive_entry_set_filetype(e, AE_IFREG);
        archive_entry_set_size(e, static_cast<la_int64_t>(t.data.size()));
        break;
      case 'd':
        archive_entry_set_filetype(e, AE_IFDIR);
        break;
      case 'l':
        archive_entry_set_filetype(e, AE_IFLNK);
        archive_entry_set_symlink(e, t.data.c_str());
        break;
      case 'h':
        archive_entry_set_filetype(e, AE_IFREG);
        archive_entry_set_hardlink(e, t.data.c_str());
        archive_entry_set_size(e, 0);
        break;
      case 'c':
      case 'b':
        archive_entry_set_filetype(e, t.type == 'c' ? AE_IFCHR : AE_IFBLK);
        archive_entry_set_rdev(e, makedev(t.major, t.minor));
        break;
      case 'p':
        archive_entry_set_filetype(e, AE_IFIFO);
        break;
    }
    if (archive_write_header(a, e) < ARCHIVE_WARN) {
      std::string msg = archive_error_string(a) ? archive_error_string(a) : "?";
      archive_entry_free(e);
      archive_write_free(a);
      throw std::runtime_error("cannot write entry " + t.name + ": " + msg);
    }
    if (t.type == 'f' && !t.data.empty()) archive_write_data(a, t.data.data(), t.data.size());
    archive_entry_free(e);
  }
  archive_write_close(a);
  archive_write_free(a);
}

struct Run {
  int status = -1;  // exit code, or 128 + signal
  std::string out, err;
};

// Runs argv with stdin from /dev/null, collecting stdout and stderr.
inline Run run(const std::vector<std::string>& argv) {
  int out[2], err[2];
  if (::pipe2(out, O_CLOEXEC) != 0 || ::pipe2(err, O_CLOEXEC) != 0) {
    throw std::runtime_error("pipe");
  }
  pid_t pid = ::fork();
  if (pid < 0) throw std::runtime_error("fork");
  if (pid == 0) {
    int devnull = ::open("/dev/null", O_RDONLY);
    ::dup2(devnull, 0);
    ::dup2(out[1], 1);
    ::dup2(err[1], 2);
    std::vector<char*> args;
    for (const auto& s : argv) args.push_back(const_cast<char*>(s.c_str()));
    args.push_back(nullptr);
    ::execvp(args[0], args.data());
    _exit(127);
  }
  ::close(out[1]);
  ::close(err[1]);
  Run r;
  pollfd fds[2] = {{out[0], POLLIN, 0}, {err[0], POLLIN, 0}};
  int open_fds = 2;
  char buf[65536];
  while (open_fds > 0) {
    if (::poll(fds, 2, -1) < 0) {
      if (errno == EINTR) continue;
      break;
    }
    for (int i = 0; i < 2; ++i) {
      if (fds[i].fd < 0 || !(fds[i].revents & (POLLIN | POLLHUP | POLLERR))) continue;
      ssize_t n = ::read(fds[i].fd, buf, sizeof buf);
      if (n <= 0) {
        ::close(fds[i].fd);
        fds[i].fd = -1;
        --open_fds;
      } else {
        (i == 0 ? r.out : r.err).append(buf, static_cast<size_t>(n));
      }
    }
  }
  int st = 0;
  ::waitpid(pid, &st, 0);
  r.status = WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
  return r;
}

inline std::string sha256sum(const std::string& path) {
  Run r = run({"sha256sum", path});
  if (r.status != 0 || r.out.size() < 64) throw std::runtime_error("sha256sum " + path);
  return "sha256:" + r.out.substr(0, 64);
}

inline std::string slurp(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

inline void spit(const std::string& path, const std::string& data, mode_t mode = 0644) {
  int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, mode);
  if (fd < 0) throw std::runtime_error("cannot create " + path);
  if (!data.empty() && ::write(fd, data.data(), data.size()) != static_cast<ssize_t>(data.size())) {
    ::close(fd);
    throw std::runtime_error("cannot write " + path);
  }
  ::close(fd);
}

// Every path below `root` (not `root` itself) with what a layer must keep of
// it: type, mode, owner, mtime (seconds), size and content or link target,
// device numbers, xattrs, and which earlier path it is a hard link of.
inline std::map<std::string, std::string> snapshot(const std::string& root,
                                                   bool with_root = false) {
  std::map<std::string, std::string> snap;
  std::map<std::pair<dev_t, ino_t>, std::string> inodes;
  std::vector<std::string> names;
  // Sorted walk, so the first name of an inode is the same on both sides.
  std::function<void(const std::string&)> walk = [&](const std::string& rel) {
    std::string dir = rel.empty() ? root : root + "/" + rel;
    DIR* d = ::opendir(dir.c_str());
    if (!d) throw std::runtime_error("cannot read " + dir);
    std::set<std::string> entries;
    while (struct dirent* e = ::readdir(d)) {
      std::string n = e->d_name;
      if (n != "." && n != "..") entries.insert(n);
    }
    ::closedir(d);
    for (const auto& n : entries) {
      std::string r = rel.empty() ? n : rel + "/" + n;
      names.push_back(r);
      struct stat st;
      if (::lstat((root + "/" + r).c_str(), &st) == 0 && S_ISDIR(st.st_mode)) walk(r);
    }
  };
  if (with_root) names.push_back(".");
  walk("");
  for (const auto& r : names) {
    std::string path = r == "." ? root : root + "/" + r;
    struct stat st;
    if (::lstat(path.c_str(), &st) != 0) throw std::runtime_error("cannot lstat " + path);
    std::ostringstream o;
    o << std::oct << st.st_mode << std::dec << " " << st.st_uid << ":" << st.st_gid;
    if (!S_ISDIR(st.st_mode) && !S_ISLNK(st.st_mode)) o << " mtime=" << st.st_mtim.tv_sec;
    if (S_ISDIR(st.st_mode)) o << " mtime=" << st.st_mtim.tv_sec;
    if (!S_ISDIR(st.st_mode) && st.st_nlink > 1) {
      auto [it, fresh] = inodes.emplace(std::make_pair(st.st_dev, st.st_ino), r);
      if (!fresh) o << " hardlink-of=" << it->second;
    }
    if (S_ISREG(st.st_mode)) o << " size=" << st.st_size << " data=" << slurp(path);
    if (S_ISLNK(st.st_mode)) {
      char buf[4096];
      ssize_t n = ::readlink(path.c_str(), buf, sizeof buf);
      o << " -> " << std::string(buf, n > 0 ? static_cast<size_t>(n) : 0);
    }
    if (S_ISCHR(st.st_mode) || S_ISBLK(st.st_mode)) {
      o << " rdev=" << major(st.st_rdev) << "," << minor(st.st_rdev);
    }
    char list[4096];
    ssize_t n = ::llistxattr(path.c_str(), list, sizeof list);
    std::set<std::string> xnames;
    for (ssize_t i = 0; i < n;) {
      std::string x(list + i);
      i += static_cast<ssize_t>(x.size()) + 1;
      xnames.insert(x);
    }
    for (const auto& x : xnames) {
      char v[4096];
      ssize_t vn = ::lgetxattr(path.c_str(), x.c_str(), v, sizeof v);
      o << " xattr:" << x << "=" << std::string(v, vn > 0 ? static_cast<size_t>(vn) : 0);
    }
    snap[r] = o.str();
  }
  return snap;
}

inline std::string describe(const std::map<std::string, std::string>& snap) {
  std::string out;
  for (const auto& [k, v] : snap) out += k + ": " + v + "\n";
  return out;
}

// Docker's classic size, counted here on its own: st_size of every
// non-directory, each inode once.
inline int64_t classic_size(const std::string& root) {
  int64_t total = 0;
  std::set<std::pair<dev_t, ino_t>> seen;
  std::function<void(const std::string&)> walk = [&](const std::string& dir) {
    DIR* d = ::opendir(dir.c_str());
    if (!d) return;
    std::vector<std::string> entries;
    while (struct dirent* e = ::readdir(d)) {
      std::string n = e->d_name;
      if (n != "." && n != "..") entries.push_back(n);
    }
    ::closedir(d);
    for (const auto& n : entries) {
      std::string p = dir + "/" + n;
      struct stat st;
      if (::lstat(p.c_str(), &st) != 0) continue;
      if (S_ISDIR(st.st_mode)) {
        walk(p);
      } else if (seen.insert({st.st_dev, st.st_ino}).second) {
        total += st.st_size;
      }
    }
  };
  walk(root);
  return total;
}

inline bool path_exists(const std::string& p) {
  struct stat st;
  return ::lstat(p.c_str(), &st) == 0;
}

}  // namespace layerfs::test
