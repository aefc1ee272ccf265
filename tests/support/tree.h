// Test support: snapshots of whole trees, their comparison with a readable diff, and the
// reference merge — a plain directory holding what a union of layers must show, computed here
// independently of layerfs (layers applied top-down, honouring every whiteout and opaque form).
#pragma once

#include <sys/stat.h>

#include <functional>
#include <map>
#include <string>
#include <string_view>
#include <vector>

namespace layerfs::test {

// What a scan records of one path.
struct NodeInfo {
  mode_t mode = 0;  // type and permission bits
  uid_t uid = 0;
  gid_t gid = 0;
  off_t size = 0;
  blkcnt_t blocks = 0;
  dev_t dev = 0;
  ino_t ino = 0;
  nlink_t nlink = 0;
  dev_t rdev = 0;
  timespec atime{}, mtime{}, ctime{};
  // Regular files: the content itself when small, otherwise a digest that does not depend on
  // where the holes are ("<N bytes, digest ...>"). Symlinks: the target.
  std::string content;
  std::map<std::string, std::string> xattrs;
};

// Keyed by path relative to the scanned root; the root itself is ".".
using Snapshot = std::map<std::string, NodeInfo>;

struct ScanOptions {
  bool content = true;
  bool xattrs = true;
};

Snapshot scan_tree(const std::string& root, const ScanOptions& opts = {});

struct CompareOptions {
  bool modes = true;
  bool owners = true;
  bool xattrs = true;
  bool links = true;  // which names share an inode (hard link structure)
  bool rdev = true;
  bool mtimes = false;
  bool atimes = false;
  bool ctimes = false;
  bool inodes = false;     // raw st_ino equality
  bool nlink = false;      // st_nlink of non-directories
  bool dir_sizes = false;  // st_size of directories (file systems differ here)
  bool root = true;        // compare the attributes of "." too
  // Paths (relative) to leave out, with everything below them.
  std::vector<std::string> ignore;
};

// Everything compared, for "must not have changed at all" checks (atime excluded).
CompareOptions strict_compare();

// Empty when equal; otherwise one line per difference (at most `max_lines`, then a count).
std::string diff_trees(const Snapshot& expected, const Snapshot& actual,
                       const CompareOptions& opts = {}, std::string_view expected_name = "expected",
                       std::string_view actual_name = "actual", size_t max_lines = 60);

// A listing for failure messages: "path type mode uid:gid size [content]".
std::string describe(const Snapshot& snap, size_t max_lines = 200);
std::string type_name(mode_t mode);

// Names of xattrs that carry union metadata of other tools and never show through a union.
bool is_union_private_xattr(std::string_view name);

// Writes into `ref_dir` (existing, empty) the merged view of `layers` (top-most first): a higher
// entry hides lower ones, a non-directory ends the merge below it, directories merge; whiteouts
// (char 0/0, `.wh.NAME`) hide lower names; opaque directories (trusted.overlay.opaque=y,
// user.overlay.opaque=y, `.wh..wh..opq`) hide lower content. Content, holes, modes, owners,
// times, xattrs (minus union-private ones), symlink targets, device numbers and hard links
// within a layer are reproduced.
void build_reference(const std::vector<std::string>& layers, const std::string& ref_dir);

}  // namespace layerfs::test
