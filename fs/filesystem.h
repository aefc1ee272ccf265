// The merge itself: every operation of the mount, on Inodes, returning Result.
// Knows nothing of FUSE (fs/fuse_ops.cpp adapts it) so unit tests drive it
// directly on temporary directories.
//
// Where each concern lives (cf. fs/overlayfs):
//   lookup.cpp     resolving a name through the layers, Inode creation
//   whiteout.cpp   index whiteouts, lower-format whiteouts and opaque markers
//   readdir.cpp    the merged listing
//   copy_up.cpp    copy-up of files, directories and hard-link groups
//   dir_ops.cpp    create, mkdir, mknod, symlink, link, unlink, rmdir, rename
//   inode_ops.cpp  getattr, setattr, readlink, xattrs, statfs
//   file_ops.cpp   open files and their I/O
//   filesystem.cpp mount-time setup (index, workdir cleanup, root)
//
// Concurrency: no global lock. The kernel already serialises changes within
// one directory (and renames), lookups may run in parallel with anything.
// Inode locks are described in fs/inode.h. No lock is held when a function of
// this class returns.
#pragma once

#include <fcntl.h>
#include <sys/stat.h>
#include <sys/statvfs.h>

#include <atomic>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <set>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "fs/inode.h"
#include "fs/inode_table.h"
#include "fs/layers.h"
#include "fs/result.h"
#include "fs/usage.h"
#include "metadata/index.h"

namespace layerfs {

// Who asks: new objects belong to this user and group.
struct Caller {
  uid_t uid = 0;
  gid_t gid = 0;
};

struct SetAttr {
  std::optional<mode_t> mode;
  std::optional<uid_t> uid;
  std::optional<gid_t> gid;
  std::optional<off_t> size;
  // Times: a value, or UTIME_NOW in tv_nsec.
  std::optional<struct timespec> atime;
  std::optional<struct timespec> mtime;
  // No field at all (chown(f, -1, -1)): only the change time moves.
};

// An open file. `fd` is shared so that a reader keeps the fd it replies from
// even if another thread switches the handle to the upper copy meanwhile.
struct FileHandle {
  InodePtr node;
  int flags = 0;
  std::mutex m;  // guards fd, on_upper, gen
  std::shared_ptr<UniqueFd> fd;
  bool on_upper = false;
  uint32_t gen = 0;  // node->data_gen when fd was opened
  // How the kernel does this open's reads and writes (Filesystem::start_io):
  // with the backing file `backing_id` (passthrough), or through the daemon (-1).
  int backing_id = -1;
};

struct DirEntry {
  std::string name;
  uint64_t ino;
  unsigned char type;  // DT_*
  // Where list() found the name: -1 in the upper, else the index in the
  // directory's lowers of the top-most layer holding it.
  int32_t from = -1;
};

struct DirHandle {
  InodePtr node;
  std::mutex m;
  std::vector<DirEntry> entries;  // snapshot taken at offset 0
  bool loaded = false;
  uint64_t names_gen = 0;  // node->names_gen before the snapshot was taken
};

struct FsOptions {
  bool read_only = false;  // refuse every change with EROFS
  // Keep the writable layer's size count and publish it in WORK/usage
  // (fs/usage.h). The daemon does; unit tests may not want the file.
  bool track_usage = false;
};

class Filesystem {
 public:
  // Takes over the layers; opens (creating if needed) the index in the
  // workdir, removes crash leftovers from the staging area and builds the
  // root. *why names the problem on failure.
  static Result<std::unique_ptr<Filesystem>> open(std::unique_ptr<LayerStack> layers,
                                                  const FsOptions& options, std::string* why);
  ~Filesystem();

  const InodePtr& root() const { return root_; }
  bool writable() const { return layers_->has_upper() && !options_.read_only; }
  InodeTable& table() { return table_; }
  const LayerStack& layers() const { return *layers_; }
  metadata::Index* index() { return index_.get(); }
  // The writable layer's size count, when kept (FsOptions::track_usage).
  UsageCounter* usage() { return usage_.get(); }
  // Unmount: publish the final size count and make the index durable.
  Result<void> shutdown();

  // --- names
  // The child `name` of directory `dir`, or ENOENT.
  Result<InodePtr> lookup(const InodePtr& dir, std::string_view name);
  // What a listing of `dir` taken when dir->names_gen was `names_gen` (even)
  // says about the name looked up: `from` as in DirEntry. While the
  // generation has not moved, the listing still holds: a name it found in
  // lower `from` is in neither the upper nor a layer above, and not whited
  // out, so the lookup starts in that layer instead of trying each above it.
  struct LookupHint {
    uint64_t names_gen = 0;
    int32_t from = -1;
  };
  // As lookup. With `hint`, starts where a listing found the name (when the
  // hint still holds). With `attr`, sets it to what getattr would answer when
  // the lookup itself read the object's attributes (nullopt otherwise), which
  // spares a LOOKUP or READDIRPLUS reply a second stat of the same object.
  Result<InodePtr> lookup(const InodePtr& dir, std::string_view name, const LookupHint* hint,
                          std::optional<struct stat>* attr);
  Result<std::vector<DirEntry>> list(const InodePtr& dir);

  // --- attributes (the returned stat carries the presented st_ino/st_nlink)
  Result<struct stat> getattr(const InodePtr& node);
  // getattr's answer from the real object's attributes `st`, already read.
  struct stat present_attr(const InodePtr& node, struct stat st);
  Result<struct stat> setattr(const InodePtr& node, const SetAttr& attr, FileHandle* fh);
  Result<std::string> readlink(const InodePtr& node);
  Result<struct statvfs> statfs();

  // --- extended attributes
  Result<std::string> getxattr(const InodePtr& node, const std::string& name);
  Result<std::vector<std::string>> listxattr(const InodePtr& node);
  Result<void> setxattr(const InodePtr& node, const std::string& name, std::string_view value,
                        int flags);
  Result<void> removexattr(const InodePtr& node, const std::string& name);

  // --- namespace
  Result<InodePtr> mknod(const InodePtr& dir, std::string_view name, mode_t mode, dev_t rdev,
                         const Caller& caller);
  Result<InodePtr> mkdir(const InodePtr& dir, std::string_view name, mode_t mode,
                         const Caller& caller);
  Result<InodePtr> symlink(const InodePtr& dir, std::string_view name, const std::string& target,
                           const Caller& caller);
  Result<InodePtr> link(const InodePtr& node, const InodePtr& dir, std::string_view name);
  Result<void> unlink(const InodePtr& dir, std::string_view name);
  Result<void> rmdir(const InodePtr& dir, std::string_view name);
  // flags: 0, RENAME_NOREPLACE or RENAME_EXCHANGE.
  Result<void> rename(const InodePtr& dir, std::string_view name, const InodePtr& newdir,
                      std::string_view newname, unsigned flags);

  // --- files
  Result<std::unique_ptr<FileHandle>> open(const InodePtr& node, int flags);
  struct Created {
    InodePtr node;
    std::unique_ptr<FileHandle> handle;
    struct stat attr;  // getattr's answer, read while creating
  };
  Result<Created> create(const InodePtr& dir, std::string_view name, mode_t mode, int flags,
                         const Caller& caller);
  // The fd to read from (switching the handle to the upper copy if the file
  // was copied up since it was opened).
  Result<std::shared_ptr<UniqueFd>> read_fd(FileHandle& fh);
  Result<std::shared_ptr<UniqueFd>> write_fd(FileHandle& fh);
  // After `n` bytes were written at `off` through `fh` (size accounting).
  void wrote(FileHandle& fh, off_t off, size_t n);
  Result<void> fsync(FileHandle& fh, bool datasync);

  // --- FUSE passthrough (fs/passthrough.h)
  // From now on opens of upper files may hand their reads and writes to the
  // kernel, with backing files registered on the FUSE device `dev_fd`.
  void enable_passthrough(int dev_fd);
  // Decides how the kernel does the reads and writes of a new open, just
  // before it is answered: returns the backing id of a passthrough open, or
  // -1 for I/O through the daemon. All opens of one inode get the same
  // answer while any is open (the kernel refuses a mix). *keep_cache: whether
  // the kernel's page cache of the file is still valid (false after
  // passthrough writes went around it).
  int start_io(FileHandle& fh, bool* keep_cache);
  // Undoes start_io (called once for each start_io): at release, or when the
  // open's answer could not be sent.
  void end_io(FileHandle& fh);

  Result<void> fallocate(FileHandle& fh, int mode, off_t offset, off_t length);
  Result<off_t> lseek(FileHandle& fh, off_t offset, int whence);
  Result<size_t> copy_file_range(FileHandle& in, off_t in_off, FileHandle& out, off_t out_off,
                                 size_t len, unsigned flags);
  // Directories.
  Result<std::unique_ptr<DirHandle>> opendir(const InodePtr& node);
  Result<void> fsyncdir(const InodePtr& node, bool datasync);

  // --- copy-up (public for tests and for the operations above)
  enum class CopyData { kAll, kNone, kPrefix };
  // Gives `node` an upper copy (and its ancestors first). kNone copies no
  // data (O_TRUNC open); kPrefix copies only the first `prefix` bytes.
  Result<void> copy_up(const InodePtr& node, CopyData data = CopyData::kAll, uint64_t prefix = 0);

  // Called with an Inode whose attributes changed without a request for it
  // (a directory copied up because of something below it), so the FUSE layer
  // can drop the kernel's cached attributes. Must not block.
  void set_attr_invalidator(std::function<void(const InodePtr&)> fn) {
    attr_invalidator_ = std::move(fn);
  }

  // Records whether the lowers of `dir` have a visible entry `name` (so that
  // removing `name` needs a whiteout). Public for tests.
  Result<bool> lower_has(const InodePtr& dir, std::string_view name);

 private:
  Filesystem(std::unique_ptr<LayerStack> layers, const FsOptions& options);

  // lookup.cpp
  struct Resolved;
  Result<InodePtr> make_root();
  Result<bool> resolve(const InodePtr& dir, const std::string& name, Resolved* out,
                       const LookupHint* hint = nullptr);
  Result<InodePtr> instantiate(const InodePtr& dir, const std::string& name, Resolved&& r);
  Result<std::vector<LowerDir>> lower_dirs_at(const std::string& lower_path);
  Result<uint64_t> present_ino(uint32_t layer, uint64_t real_ino);
  Result<std::optional<metadata::ObjectRecord>> live_record(uint64_t upper_ino, uint64_t stamp);
  Result<FdPin> lower_fd_of(const InodePtr& node);  // dir fd holding node's lower entry
  // An upper object's O_PATH fd in the form Inodes keep (fs/fd_cache.h).
  ReopenableFd upper_ref(UniqueFd fd) const {
    return ReopenableFd::make(std::move(fd), O_PATH | O_NOFOLLOW, layers_->handles(0));
  }

  // whiteout.cpp
  Result<void> load_whiteouts(const InodePtr& dir);
  Result<bool> is_whited_out(const InodePtr& dir, const std::string& name);
  struct LowerHit;
  // The top-most visible entry `name` in `dirs` (honouring lower-format
  // whiteouts); false when there is none.
  // `first`: the layers above it are known to hold neither the name nor a
  // whiteout for it.
  Result<bool> lower_lookup(const std::vector<LowerDir>& dirs, const std::string& name,
                            LowerHit* hit, size_t first = 0);
  // Adds a whiteout for `name` in `dir` (which has an upper) to `batch`,
  // writing the directory's object record first when it has none.
  void add_whiteout_to_batch(const InodePtr& dir, const std::string& name, metadata::Batch* batch);
  void note_whiteout(const InodePtr& dir, const std::string& name, bool present);

  // copy_up.cpp
  Result<void> copy_up_one(const InodePtr& node, CopyData data, uint64_t prefix);
  Result<void> publish(const InodePtr& node, const std::string& tmp, int tmp_fd_for_times);
  std::string temp_name();

  // dir_ops.cpp helpers
  // `known`: the object's statx when set_owner already took it (and changed
  // nothing since). `attr`, when given, receives getattr's answer for it.
  Result<InodePtr> new_upper_object(const InodePtr& dir, const std::string& name, int fd_hint,
                                    const std::optional<struct statx>& known,
                                    struct stat* attr = nullptr);
  // Gives the new object `name` the caller's owner and `mode`. Returns the
  // object's statx when it already was as it should be (so still current),
  // nullopt when it changed something or had nothing to check.
  Result<std::optional<struct statx>> set_owner(int dirfd, const std::string& name,
                                                const InodePtr& dir, const Caller& caller,
                                                mode_t mode);
  void touch_dir(const InodePtr& dir);
  // Bookkeeping after one name of `node` went away: link counts, and the
  // records of an upper object that has no name left.
  Result<void> drop_name(const InodePtr& node, bool upper_name_removed);
  // Drops the index records of `node`'s upper object (deleted or replaced).
  void forget_records(const InodePtr& node);
  Result<bool> is_empty_dir(const InodePtr& dir);

  // inode_ops.cpp
  Result<struct stat> stat_real(const InodePtr& node);
  // Path and follow flag naming the top-most copy of `node` for xattr calls;
  // the path (under /proc/self/fd) stays valid while `pin` lives.
  struct XattrTarget {
    FdPin pin;
    std::string path;
    bool follow;
  };
  Result<XattrTarget> xattr_path(const InodePtr& node);

  Result<void> check_writable() const {
    if (!writable()) return Error{EROFS};
    return {};
  }

  InodeTable table_;  // first: outlives every Inode
  std::unique_ptr<LayerStack> layers_;
  FsOptions options_;
  std::unique_ptr<metadata::Index> index_;
  InodePtr root_;
  std::atomic<uint64_t> temp_counter_{0};
  std::function<void(const InodePtr&)> attr_invalidator_;
  std::unique_ptr<UsageCounter> usage_;

  // Size accounting (no-ops without a UsageCounter).
  void usage_add(int64_t delta) {
    if (usage_ && delta != 0) usage_->add(delta);
  }
  // Sets what `node` contributes to `size`, counting the difference.
  void usage_set(const InodePtr& node, int64_t size);
  // Raises what `node` contributes to at least `size`.
  void usage_grow(const InodePtr& node, int64_t size);
  bool root_daemon_ = false;
  // The FUSE device for backing files, -1 without passthrough.
  std::atomic<int> passthrough_dev_{-1};
  std::atomic<bool> passthrough_refused_{false};  // logged once
  // Open passthrough handles that may write: their writes bypass wrote(), so
  // their sizes are counted at release and when the count is asked for.
  std::mutex pt_writers_mu_;
  std::set<FileHandle*> pt_writers_;
  void count_passthrough_writes(FileHandle& fh);

  // Whether FICLONE from each source filesystem (by st_dev) to the upper is
  // still worth trying: cleared at its first refusal that holds for the whole
  // filesystem (fs/copy_data.h), so small-file copy-ups stop asking.
  std::atomic<bool>* clone_possible(dev_t dev);
  std::mutex clone_mu_;
  std::unordered_map<dev_t, std::unique_ptr<std::atomic<bool>>> clone_possible_;
};

// Lock the directory mutexes of two directories in address order.
class DirPairLock {
 public:
  DirPairLock(Inode* a, Inode* b);
  ~DirPairLock();
  DirPairLock(const DirPairLock&) = delete;
  DirPairLock& operator=(const DirPairLock&) = delete;

 private:
  Inode* first_;
  Inode* second_;
};

}  // namespace layerfs
