// The layerctl store: one root directory holding layers, stacks and volumes,
// with its records in a small database (metadata/store_db.h). tools/STORE.md
// describes the layout and every record.
//
//   ROOT/lock            flock: shared for commands that only read, exclusive
//                        for commands that change anything
//   ROOT/store/          the record database
//   ROOT/layers/<hex>/   a layer: tree/ (its files, usable as a layerfs lower,
//                        whiteouts as .wh. entries) and layer.tar.zst (the
//                        layer's tar as imported, so export gives its bytes)
//   ROOT/stacks/<name>/  a stack's writable layer: upper/ and work/
//   ROOT/volumes/<name>/ a volume: _data/
//   ROOT/tmp/            work in progress, named <pid>-<what>-<random>;
//                        anything whose process is gone is removed by the
//                        next command that changes the store
//
// Safety: a command that changes the store builds its result in ROOT/tmp
// without the lock where it can, then takes the exclusive lock to move it
// into place and write its records in one atomic, synced database write. A
// command killed half-way leaves at most a leftover in ROOT/tmp.
#pragma once

#include <nlohmann/json.hpp>

#include <memory>
#include <optional>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

namespace layerfs::metadata {
class StoreDb;
}

namespace layerfs::ctl {

using json = nlohmann::json;

// A failure reported to the user: the message (Docker's wording where Docker
// has one) and the exit status.
class Error : public std::runtime_error {
 public:
  explicit Error(const std::string& message, int exit_code = 1)
      : std::runtime_error(message), code_(exit_code) {}
  int exit_code() const { return code_; }

 private:
  int code_;
};

// $LAYERFS_ROOT, else /var/lib/layerfs.
std::string default_root();

enum class Access { kRead, kWrite };

class Store {
 public:
  // Opens the store at `root` (made absolute). kWrite creates the layout when
  // missing, takes the exclusive lock and removes dead work in ROOT/tmp;
  // kRead takes the shared lock, and a store that does not exist yet reads
  // as empty. Waits for the lock. Throws Error.
  static std::unique_ptr<Store> open(const std::string& root, Access access);
  ~Store();
  Store(const Store&) = delete;
  Store& operator=(const Store&) = delete;

  const std::string& root() const { return root_; }
  Access access() const { return access_; }

  std::string layer_dir(const std::string& layer_id) const;  // ROOT/layers/<hex>
  std::string stack_dir(const std::string& name) const;      // ROOT/stacks/<name>
  std::string volume_dir(const std::string& name) const;     // ROOT/volumes/<name>
  std::string tmp_dir() const { return root_ + "/tmp"; }

  // A new empty directory ROOT/tmp/<pid>-<what>-<random> (kWrite, or a store
  // that exists). The caller moves it into place or removes it.
  std::string make_temp(const std::string& what) const;

  // Records (JSON documents under string keys, see STORE.md).
  std::optional<json> get(const std::string& key) const;
  // Every record whose key starts with `prefix`, in key order.
  std::vector<std::pair<std::string, json>> list(const std::string& prefix) const;
  // Writes and deletes (nullopt) atomically and durably. kWrite only.
  void write(const std::vector<std::pair<std::string, std::optional<json>>>& changes);

  // Drops the lock and the database while the caller waits for something slow
  // (an import, a mount), then takes them again; records may have changed
  // meanwhile. kWrite only.
  void release();
  void reacquire();

 private:
  Store(std::string root, Access access);
  void lock_and_open();
  void clean_tmp() const;

  std::string root_;
  Access access_;
  int lock_fd_ = -1;
  std::unique_ptr<metadata::StoreDb> db_;  // null: kRead on a store that does not exist
};

// Removes a directory tree without following symlinks or crossing into other
// filesystems. Missing is fine.
void remove_tree(const std::string& path);

// RFC 3339 UTC time with seconds, as Docker prints CreatedAt.
std::string now_rfc3339();

// A random 64-hex-digit name (anonymous volumes, as Docker makes them).
std::string random_hex_id();

}  // namespace layerfs::ctl
