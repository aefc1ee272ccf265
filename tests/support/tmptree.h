// Test support: fresh temporary directories, a compact way to build layer trees (files, dirs,
// links, special files, xattrs, owners, times and the whiteout forms of other tools), and thin
// syscall wrappers that return an errno instead of -1 so tests can compare outcomes.
//
// Nothing here depends on doctest or on FUSE, so unit tests may use it too. Harness failures
// throw std::system_error / std::runtime_error, which doctest reports as a failed test.
#pragma once

#include <fcntl.h>
#include <sys/stat.h>
#include <sys/types.h>

#include <cerrno>
#include <cstdint>
#include <ctime>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace layerfs::test {

// Throws std::system_error with the current errno and a description.
[[noreturn]] void throw_errno(const std::string& what);
// Throws std::system_error for a given errno.
[[noreturn]] void throw_error(int err, const std::string& what);

// "ENOENT (No such file or directory)" style name for messages; "0" for success.
std::string errno_name(int err);

// A directory made with mkdtemp under /tmp (/tmp/layerfs-test.[TAG.]XXXXXX). The destructor detaches
// any mount still below it (a failed test must not leave mounts behind) and removes the tree
// without ever crossing into another filesystem.
class TempDir {
 public:
  explicit TempDir(std::string_view prefix = "layerfs-test");
  ~TempDir();
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;

  const std::string& path() const { return path_; }
  // path() + "/" + rel.
  std::string operator/(std::string_view rel) const;
  // Creates path()/rel (and missing parents) and returns its full path.
  std::string mkdir(std::string_view rel, mode_t mode = 0755) const;

 private:
  std::string path_;
};

// One line of /proc/self/mountinfo (escapes decoded).
struct MountEntry {
  int id = -1;       // mount id, unique while mounted
  std::string root;  // path inside the mounted filesystem
  std::string mountpoint;
  std::string options;  // per-mount options (rw,nosuid,...)
  std::string fstype;   // "overlay", "fuse.layerfs", ...
  std::string source;
  std::string super_options;  // filesystem options (user_id=0,allow_other,...)
};
std::vector<MountEntry> read_mountinfo();

// Lazily unmounts every mount at or below `dir` (deepest first). Returns how many there were.
int detach_mounts_below(const std::string& dir);
// Removes a tree; never descends into a directory on another device than `path` itself.
void remove_tree(const std::string& path);

// ---- Building trees ------------------------------------------------------------------------

enum class OpaqueForm {
  kTrustedXattr,  // trusted.overlay.opaque="y" (kernel overlayfs)
  kUserXattr,     // user.overlay.opaque="y" (overlayfs userxattr, fuse-overlayfs)
  kWhFile,        // DIR/.wh..wh..opq (OCI / AUFS)
};

// One thing to create in a tree. Paths are relative to the tree root; missing parent directories
// are created with mode 0755. Attributes are applied after every entry exists: owners, modes and
// xattrs first, then times (directories last, deepest first) so later creations do not disturb
// them.
class Entry {
 public:
  enum class Kind {
    kFile,
    kDir,
    kSymlink,
    kHardlink,
    kFifo,
    kCharDev,
    kBlockDev,
    kSocket,
    kWhiteoutDev,   // char device 0/0 named NAME
    kWhiteoutFile,  // empty file .wh.NAME in the same directory
    kOpaque,        // marks the directory PATH opaque (it is created when missing)
  };

  Entry(Kind kind, std::string path);

  // Modifiers (chainable).
  Entry& mode(mode_t m);
  Entry& owner(uid_t uid, gid_t gid);
  Entry& mtime(time_t sec, long nsec = 0);
  Entry& atime(time_t sec, long nsec = 0);
  Entry& times(time_t sec) { return mtime(sec).atime(sec); }
  Entry& xattr(std::string name, std::string value);
  // Regular files: makes the file `size` bytes long (the rest is a hole) and writes `data` at
  // `offset`; may be given several times.
  Entry& sparse(off_t size);
  Entry& data_at(off_t offset, std::string data);

  Kind kind() const { return kind_; }
  const std::string& path() const { return path_; }

 private:
  friend void build(const std::string& root, const std::vector<Entry>& entries);
  friend Entry file(std::string path, std::string content, mode_t mode);
  friend Entry dir(std::string path, mode_t mode);
  friend Entry sym(std::string path, std::string target);
  friend Entry hardlink(std::string path, std::string existing);
  friend Entry chardev(std::string path, unsigned major, unsigned minor);
  friend Entry blockdev(std::string path, unsigned major, unsigned minor);
  friend Entry opaque(std::string path, OpaqueForm form);

  Kind kind_;
  std::string path_;
  std::string content_;  // file content, symlink target, hard link source
  std::optional<mode_t> mode_;
  std::optional<std::pair<uid_t, gid_t>> owner_;
  std::optional<timespec> mtime_, atime_;
  std::vector<std::pair<std::string, std::string>> xattrs_;
  std::optional<off_t> sparse_size_;
  std::vector<std::pair<off_t, std::string>> extents_;
  dev_t rdev_ = 0;
  OpaqueForm opaque_form_ = OpaqueForm::kTrustedXattr;
};

Entry file(std::string path, std::string content = "", mode_t mode = 0644);
Entry dir(std::string path, mode_t mode = 0755);
// (Not named "symlink": that would lose overload resolution against ::symlink.)
Entry sym(std::string path, std::string target);
// A second name for an entry created earlier in the same tree.
Entry hardlink(std::string path, std::string existing);
Entry fifo(std::string path, mode_t mode = 0644);
Entry chardev(std::string path, unsigned major, unsigned minor);
Entry blockdev(std::string path, unsigned major, unsigned minor);
Entry socket(std::string path);
// Whiteout forms: a char device 0/0 named like the hidden entry, or a `.wh.NAME` file.
Entry whiteout(std::string path);
Entry wh_file(std::string path);
Entry opaque(std::string path, OpaqueForm form = OpaqueForm::kTrustedXattr);

// Creates `entries` below `root` (which must exist). Throws on any failure.
void build(const std::string& root, const std::vector<Entry>& entries);

// ---- File helpers (throwing) ---------------------------------------------------------------

std::string read_file(const std::string& path);
// Creates or truncates.
void write_file(const std::string& path, std::string_view data, mode_t mode = 0644);
void append_file(const std::string& path, std::string_view data);
// Writes at an offset without truncating (file must exist).
void pwrite_file(const std::string& path, off_t offset, std::string_view data);
struct stat lstat_path(const std::string& path);
struct stat stat_path(const std::string& path);
std::optional<struct stat> try_lstat(const std::string& path);
bool exists(const std::string& path);  // lstat succeeds
std::string read_link(const std::string& path);
// Sorted names of a directory without "." and "..".
std::vector<std::string> list_dir(const std::string& path);
// Names exactly as readdir(3) returns them, in order, including "." and "..", with d_ino.
std::vector<std::pair<std::string, ino_t>> read_dir_raw(const std::string& path);
// All xattrs of a path (not following symlinks).
std::map<std::string, std::string> list_xattrs(const std::string& path);
std::vector<std::string> xattr_names(const std::string& path);
std::optional<std::string> get_xattr(const std::string& path, const std::string& name);
// Number of entries below `dir`, recursively (dir itself excluded).
size_t count_entries(const std::string& dir);
// Relative paths of every entry below `dir`, sorted (dir itself excluded).
std::vector<std::string> list_tree(const std::string& dir);
// Deterministic pseudo-random bytes.
std::string pattern(size_t size, uint32_t seed = 1);

// ---- Errno-returning syscall wrappers (0 on success) ---------------------------------------

// Returns 0 when rv >= 0, else errno (read right away, before anything else can change it).
inline int err_of(long rv) {
  return rv < 0 ? errno : 0;
}

namespace sys {
int unlink(const std::string& p);
int rmdir(const std::string& p);
int mkdir(const std::string& p, mode_t mode = 0755);
int rename(const std::string& from, const std::string& to);
int renameat2(const std::string& from, const std::string& to, unsigned flags);
int link(const std::string& from, const std::string& to);
int symlink(const std::string& target, const std::string& p);
int chmod(const std::string& p, mode_t mode);
int lchown(const std::string& p, uid_t uid, gid_t gid);
int truncate(const std::string& p, off_t size);
int mknod(const std::string& p, mode_t mode, dev_t dev = 0);
int utimens(const std::string& p, timespec atime, timespec mtime);  // no follow
int setxattr(const std::string& p, const std::string& name, std::string_view value, int flags = 0);
int removexattr(const std::string& p, const std::string& name);
// Opens with `flags` (O_CLOEXEC added) and closes again; returns the errno of the open.
int open_close(const std::string& p, int flags, mode_t mode = 0644);
// Creates/truncates and writes `data`; returns the first errno.
int write(const std::string& p, std::string_view data, int flags = O_WRONLY | O_CREAT | O_TRUNC);
// lstat: 0 or errno.
int lstat(const std::string& p);
}  // namespace sys

// An owned file descriptor for tests.
class Fd {
 public:
  Fd() = default;
  explicit Fd(int fd) : fd_(fd) {}
  Fd(Fd&& o) noexcept : fd_(o.release()) {}
  Fd& operator=(Fd&& o) noexcept;
  ~Fd();
  int get() const { return fd_; }
  int release();
  explicit operator bool() const { return fd_ >= 0; }

 private:
  int fd_ = -1;
};

// Opens or throws (O_CLOEXEC added).
Fd open_fd(const std::string& path, int flags, mode_t mode = 0644);

}  // namespace layerfs::test
