// The RocksDB implementation of metadata/index.h. This file is the boundary
// where rocksdb::Status becomes a Result: NotFound becomes an empty optional,
// anything unexpected is logged and becomes EIO (ENOSPC for a full disk).
#include "metadata/index.h"

#include <dirent.h>
#include <fcntl.h>
#include <rocksdb/cache.h>
#include <rocksdb/db.h>
#include <rocksdb/env.h>
#include <rocksdb/filter_policy.h>
#include <rocksdb/iterator.h>
#include <rocksdb/options.h>
#include <rocksdb/table.h>
#include <rocksdb/write_batch.h>
#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <cctype>
#include <condition_variable>
#include <cstdarg>
#include <cstdio>
#include <cstring>
#include <map>
#include <mutex>
#include <set>
#include <shared_mutex>
#include <thread>
#include <utility>

#include "fs/log.h"
#include "fs/unique_fd.h"
#include "metadata/keys.h"
#include "metadata/records.h"
#include "metadata/testing.h"

namespace layerfs::metadata {

// ---------------------------------------------------------------------------
// Batch

void Batch::put_object(uint64_t upper_ino, const ObjectRecord& rec) {
  Op op{OpKind::kPutObject};
  op.a = upper_ino;
  op.object = rec;
  ops_.push_back(std::move(op));
}

void Batch::forget_object(uint64_t upper_ino) {
  Op op{OpKind::kForgetObject};
  op.a = upper_ino;
  ops_.push_back(std::move(op));
}

void Batch::add_whiteout(uint64_t dir_ino, std::string_view name) {
  Op op{OpKind::kAddWhiteout};
  op.a = dir_ino;
  op.name = name;
  ops_.push_back(std::move(op));
}

void Batch::remove_whiteout(uint64_t dir_ino, std::string_view name) {
  Op op{OpKind::kRemoveWhiteout};
  op.a = dir_ino;
  op.name = name;
  ops_.push_back(std::move(op));
}

void Batch::put_link_group(uint32_t layer, uint64_t lower_ino, const LinkGroup& group) {
  Op op{OpKind::kPutLinkGroup};
  op.a = lower_ino;
  op.layer = layer;
  op.group = group;
  ops_.push_back(std::move(op));
}

void Batch::remove_link_group(uint32_t layer, uint64_t lower_ino) {
  Op op{OpKind::kRemoveLinkGroup};
  op.a = lower_ino;
  op.layer = layer;
  ops_.push_back(std::move(op));
}

void Batch::put_meta(std::string_view key, std::string_view value) {
  Op op{OpKind::kPutMeta};
  op.name = key;
  op.value = value;
  ops_.push_back(std::move(op));
}

// ---------------------------------------------------------------------------
// Helpers

namespace {

constexpr size_t kBlockCacheBytes = 8 << 20;
constexpr size_t kWriteBufferBytes = 8 << 20;
constexpr int kMaxOpenFiles = 128;
constexpr int kBackgroundJobs = 2;
constexpr uint64_t kManifestBytes = 4 << 20;
constexpr double kBloomBitsPerKey = 10;

// Used for the read-only probe of an existing database, so that probing
// creates no LOG file (and does not rotate the one of a running instance).
class NullLogger : public rocksdb::Logger {
 public:
  using rocksdb::Logger::Logv;
  void Logv(const char* /*format*/, va_list /*ap*/) override {}
};

// RocksDB's own messages of warning level and above, in layerfs's log (stderr or syslog)
// instead of a LOG file in the index directory. A file there shares the upper's filesystem:
// once a write to it failed (a full or failing disk), RocksDB 7.8 built with assertions aborts
// the daemon at the next message it logs, which is the report of that very error.
class ForwardingLogger : public rocksdb::Logger {
 public:
  ForwardingLogger() : rocksdb::Logger(rocksdb::InfoLogLevel::WARN_LEVEL) {}
  void Logv(const char* format, va_list ap) override {
    Logv(rocksdb::InfoLogLevel::WARN_LEVEL, format, ap);
  }
  void Logv(const rocksdb::InfoLogLevel level, const char* format, va_list ap) override {
    if (level < GetInfoLogLevel() || level == rocksdb::InfoLogLevel::HEADER_LEVEL) return;
    char buf[1024];
    std::vsnprintf(buf, sizeof buf, format, ap);
    if (level >= rocksdb::InfoLogLevel::ERROR_LEVEL) {
      LFS_LOG_ERROR("rocksdb: %s", buf);
    } else {
      LFS_LOG_WARN("rocksdb: %s", buf);
    }
  }
};

rocksdb::Options make_options(bool create) {
  rocksdb::Options o;
  o.create_if_missing = create;
  o.error_if_exists = false;
  o.paranoid_checks = true;
  o.wal_recovery_mode = rocksdb::WALRecoveryMode::kPointInTimeRecovery;
  // Each write reaches the WAL file (the kernel) before Write() returns, which
  // is what Durability::kBuffered promises.
  o.manual_wal_flush = false;
  // The WAL holds everything; flushing memtables at close only slows unmount.
  o.avoid_flush_during_shutdown = true;

  o.write_buffer_size = kWriteBufferBytes;
  o.max_write_buffer_number = 2;
  o.max_open_files = kMaxOpenFiles;
  o.max_background_jobs = kBackgroundJobs;
  o.max_manifest_file_size = kManifestBytes;
  o.level_compaction_dynamic_level_bytes = true;
  o.compression = rocksdb::kLZ4Compression;
  o.bottommost_compression = rocksdb::kLZ4Compression;

  o.info_log = std::make_shared<ForwardingLogger>();
  o.info_log_level = rocksdb::InfoLogLevel::WARN_LEVEL;
  o.stats_dump_period_sec = 0;
  o.stats_persist_period_sec = 0;
  o.skip_stats_update_on_db_open = true;

  rocksdb::BlockBasedTableOptions t;
  t.block_cache = rocksdb::NewLRUCache(kBlockCacheBytes);
  // object() runs on the lookup of every upper file and usually misses: the
  // whole-key Bloom filter answers most misses without reading a data block.
  t.filter_policy.reset(rocksdb::NewBloomFilterPolicy(kBloomBitsPerKey));
  t.whole_key_filtering = true;
  // Index and filter blocks count against the cache, so memory stays bounded
  // however large the index grows.
  t.cache_index_and_filter_blocks = true;
  t.pin_l0_filter_and_index_blocks_in_cache = true;
  o.table_factory.reset(rocksdb::NewBlockBasedTableFactory(t));
  return o;
}

std::string hex(std::string_view bytes) {
  static const char kDigits[] = "0123456789abcdef";
  std::string out;
  for (unsigned char c : bytes) {
    out.push_back(kDigits[c >> 4]);
    out.push_back(kDigits[c & 15]);
  }
  return out;
}

// In-process registry of the index directories currently open, by (dev, ino).
// RocksDB refuses a second handle on its own, but only after we would have
// probed the database read-only, and probing a database that another handle
// is writing is undefined; also, our cross-process lock test must not open the
// LOCK file while this process holds it (closing any fd of a file drops the
// process's fcntl locks on it).
class OpenRegistry {
 public:
  using Key = std::pair<dev_t, ino_t>;
  static bool reserve(Key key) {
    std::lock_guard lock(mu());
    return set().insert(key).second;
  }
  static void release(Key key) {
    std::lock_guard lock(mu());
    set().erase(key);
  }

 private:
  static std::mutex& mu() {
    static std::mutex m;
    return m;
  }
  static std::set<Key>& set() {
    static std::set<Key> s;
    return s;
  }
};

class Reservation {
 public:
  Reservation() = default;
  explicit Reservation(OpenRegistry::Key key) : key_(key), active_(true) {}
  Reservation(Reservation&& other) noexcept : key_(other.key_), active_(other.active_) {
    other.active_ = false;
  }
  Reservation& operator=(Reservation&& other) noexcept {
    if (this != &other) {
      if (active_) OpenRegistry::release(key_);
      key_ = other.key_;
      active_ = std::exchange(other.active_, false);
    }
    return *this;
  }
  ~Reservation() {
    if (active_) OpenRegistry::release(key_);
  }

 private:
  OpenRegistry::Key key_{};
  bool active_ = false;
};

// What a directory holds, judged by its entries alone.
enum class DirState { kEmpty, kHasDatabase, kForeign };

// Files RocksDB writes while creating a database before CURRENT exists; a
// directory holding only these is an interrupted creation, not foreign data.
bool creation_leftover(std::string_view name) {
  auto digits = [](std::string_view s) {
    if (s.empty()) return false;
    for (char c : s)
      if (!std::isdigit(static_cast<unsigned char>(c))) return false;
    return true;
  };
  if (name == "LOCK" || name == "LOG" || name == "IDENTITY") return true;
  if (name.starts_with("LOG.old.")) return true;
  if (name.starts_with("MANIFEST-")) return digits(name.substr(9));
  if (name.ends_with(".dbtmp")) {
    std::string_view stem = name.substr(0, name.size() - 6);
    if (stem.starts_with("OPTIONS-")) stem.remove_prefix(8);
    return digits(stem);
  }
  return false;
}

Result<DirState> inspect_dir(const std::string& path, std::string* foreign_name) {
  DIR* dir = opendir(path.c_str());
  if (dir == nullptr) return errno_error();
  DirState state = DirState::kEmpty;
  errno = 0;
  while (struct dirent* ent = readdir(dir)) {
    std::string_view name = ent->d_name;
    if (name == "." || name == "..") continue;
    if (name == "CURRENT") {
      state = DirState::kHasDatabase;
      break;
    }
    if (!creation_leftover(name) && foreign_name->empty()) *foreign_name = name;
    errno = 0;
  }
  int err = errno;
  closedir(dir);
  if (state == DirState::kHasDatabase) return state;
  if (err != 0) return Error{err};
  return foreign_name->empty() ? DirState::kEmpty : DirState::kForeign;
}

// Another process holding RocksDB's fcntl lock on LOCK. Only called when this
// process has no index open on the directory (see OpenRegistry).
bool locked_by_other_process(const std::string& path, pid_t* holder) {
  UniqueFd fd(::open((path + "/LOCK").c_str(), O_RDONLY | O_CLOEXEC | O_NOFOLLOW));
  if (!fd) return false;
  struct flock fl {};
  fl.l_type = F_WRLCK;
  fl.l_whence = SEEK_SET;
  if (fcntl(fd.get(), F_GETLK, &fl) < 0) return false;
  *holder = fl.l_pid;
  return fl.l_type != F_UNLCK;
}

bool is_lock_failure(const rocksdb::Status& s) {
  const std::string msg = s.ToString();
  return s.IsIOError() && msg.find("/LOCK") != std::string::npos &&
         (msg.find("lock hold by current process") != std::string::npos ||
          msg.find("While lock file") != std::string::npos);
}

// Maps a failed DB::Open / OpenForReadOnly.
Error open_failure(const std::string& path, const rocksdb::Status& s, std::string* why) {
  if (is_lock_failure(s)) {
    *why = path +
           " is in use by another layerfs process or index handle (RocksDB: " + s.ToString() + ")";
    return Error{EBUSY};
  }
  if (s.IsInvalidArgument()) {
    *why = path + " is not a layerfs index: RocksDB refused it (" + s.ToString() + ")";
    return Error{EINVAL};
  }
  if (s.IsNotSupported()) {
    *why = path + " uses RocksDB features this layerfs cannot read (" + s.ToString() + ")";
    return Error{ENOTSUP};
  }
  if (s.IsNoSpace()) {
    *why = path + ": no space left to open the index (RocksDB: " + s.ToString() + ")";
    return Error{ENOSPC};
  }
  *why = path + ": the index is damaged or unreadable (RocksDB: " + s.ToString() + ")";
  return Error{EIO};
}

enum class FormatState { kCurrent, kEmpty };

// Checks that `db` is a layerfs index of our version, or an empty database.
Result<FormatState> check_format(rocksdb::DB* db, const std::string& path, std::string* why) {
  std::string value;
  rocksdb::Status s =
      db->Get(rocksdb::ReadOptions(), keys::meta_key(keys::kMetaFormatVersion), &value);
  if (s.IsNotFound()) {
    std::unique_ptr<rocksdb::Iterator> it(db->NewIterator(rocksdb::ReadOptions()));
    it->SeekToFirst();
    if (!it->status().ok()) {
      *why =
          path + ": the index is damaged or unreadable (RocksDB: " + it->status().ToString() + ")";
      return Error{EIO};
    }
    if (!it->Valid()) return FormatState::kEmpty;
    *why = path + " is not a layerfs index: a RocksDB database without a format.version key";
    return Error{EINVAL};
  }
  if (!s.ok()) {
    *why = path + ": the index is damaged or unreadable (RocksDB: " + s.ToString() + ")";
    return Error{EIO};
  }
  uint64_t version = 0;
  bool numeric = !value.empty() && value.size() <= 10;
  for (char c : value) {
    if (!std::isdigit(static_cast<unsigned char>(c))) numeric = false;
    if (numeric) version = version * 10 + static_cast<uint64_t>(c - '0');
  }
  if (!numeric) {
    *why = path + ": the index is damaged: format.version is \"" + hex(value) + "\" (hex)";
    return Error{EIO};
  }
  if (version != kFormatVersion) {
    *why = path + " is a layerfs index of format version " + std::to_string(version) +
           "; this layerfs reads version " + std::to_string(kFormatVersion);
    return Error{ENOTSUP};
  }
  return FormatState::kCurrent;
}

// Reads the whole keyspace below `prefix` in order.
class PrefixScan {
 public:
  PrefixScan(rocksdb::DB* db, std::string prefix) : prefix_(std::move(prefix)) {
    rocksdb::ReadOptions ro;
    if (auto bound = keys::prefix_upper_bound(prefix_)) {
      bound_ = std::move(*bound);
      bound_slice_ = rocksdb::Slice(bound_);
      ro.iterate_upper_bound = &bound_slice_;
    }
    it_.reset(db->NewIterator(ro));
    it_->Seek(prefix_);
  }
  bool valid() const { return it_->Valid(); }
  void next() { it_->Next(); }
  std::string_view key() const { return std::string_view(it_->key().data(), it_->key().size()); }
  std::string_view value() const {
    return std::string_view(it_->value().data(), it_->value().size());
  }
  rocksdb::Status status() const { return it_->status(); }

 private:
  std::string prefix_;
  std::string bound_;
  rocksdb::Slice bound_slice_;
  std::unique_ptr<rocksdb::Iterator> it_;
};

}  // namespace

// ---------------------------------------------------------------------------
// Index

struct Index::Impl {
  std::string path;
  // Destroyed after the database is closed (members go in reverse order).
  Reservation reservation;
  std::unique_ptr<rocksdb::DB> db;

  // Most commits take it shared and rely on RocksDB for atomicity. A batch with
  // forget_object reads the whiteouts of the object and deletes what it read,
  // so it takes it exclusively: no whiteout may be added between the read and
  // the write.
  std::shared_mutex commit_mu;

  // Serializes alias allocation; guards alias_last.
  std::mutex alias_mu;
  uint64_t alias_last = 0;

  // Set when a write failed with an I/O error (not for a full disk, which RocksDB recovers
  // from once space is back). RocksDB 7.8 built with assertions aborts the process when a
  // file writer that failed is used again (its WAL writer at the next write, sync or close),
  // so from then on the index answers EIO without calling RocksDB, and at close the database
  // is left to the process exit: what was committed is in the WAL, the rest failed anyway.
  std::atomic<bool> broken{false};
  // Set when a write failed for lack of space. RocksDB then refuses every write until it has
  // recovered: on its own, in the background, once the free space reaches its reserved buffer
  // (the write buffer size, 8 MiB), or through Resume(), which the next write asks for. While
  // the background recovery waits, Resume() answers Busy, and writes fail with ENOSPC.
  std::atomic<bool> full{false};
  std::mutex resume_mu;

  // Set after a kBuffered commit, cleared when a sync starts.
  std::atomic<bool> unsynced{false};
  // The background syncer of sync_within(); sync_mu guards sync_stop.
  std::mutex sync_mu;
  std::condition_variable sync_cv;
  bool sync_stop = false;
  std::thread syncer;

  void mark_unsynced() {
    if (unsynced.exchange(true) || !syncer.joinable()) return;
    { std::lock_guard<std::mutex> lock(sync_mu); }  // a waiter between its check and its wait
    sync_cv.notify_one();
  }

  Result<void> sync() {
    if (broken.load()) return Error{EIO};
    LFS_TRY(resume_if_full());
    // Cleared first: a commit that sets it again after this point may have
    // missed the sync below, and gets the next one.
    unsynced.store(false);
    rocksdb::Status s = db->FlushWAL(/*sync=*/true);
    if (!s.ok()) {
      unsynced.store(true);
      return write_failed("WAL sync", s);
    }
    return {};
  }

  void stop_syncer() {
    {
      std::lock_guard<std::mutex> lock(sync_mu);
      sync_stop = true;
    }
    sync_cv.notify_one();
    if (syncer.joinable()) syncer.join();
  }

  // Resumes writing after a full disk, if needed. Fails (ENOSPC) while the disk is still full.
  Result<void> resume_if_full() {
    if (!full.load()) return {};
    std::lock_guard lock(resume_mu);
    if (!full.load()) return {};
    rocksdb::Status s = db->Resume();
    if (s.IsBusy()) return Error{ENOSPC};
    if (!s.ok()) return write_failed("resume after a full disk", s);
    full.store(false);
    LFS_LOG_INFO("index %s: writing again after a full disk", path.c_str());
    return {};
  }

  ~Impl() {
    stop_syncer();
    if (!db) return;
    if (broken.load()) {
      (void)db.release();  // deliberately not closed; see `broken`
      return;
    }
    // Memtables are not flushed (avoid_flush_during_shutdown): the WAL holds
    // their contents. One WAL fsync makes a clean unmount survive a power cut.
    rocksdb::Status s = db->FlushWAL(/*sync=*/true);
    if (!s.ok())
      LFS_LOG_ERROR("index %s: WAL sync at close: %s", path.c_str(), s.ToString().c_str());
    s = db->Close();
    if (!s.ok()) LFS_LOG_ERROR("index %s: close: %s", path.c_str(), s.ToString().c_str());
    db.reset();
  }

  // For a failed write: logs it, and marks the index broken after an I/O error.
  Error write_failed(const char* what, const rocksdb::Status& s) {
    LFS_LOG_ERROR("index %s: %s: %s", path.c_str(), what, s.ToString().c_str());
    if (s.IsNoSpace()) {
      full.store(true);
      return Error{ENOSPC};
    }
    if (!broken.exchange(true)) {
      LFS_LOG_ERROR("index %s: no further writes after an I/O error; remount to retry",
                    path.c_str());
    }
    return Error{EIO};
  }
  // For a failed read.
  Error failed(const char* what, const rocksdb::Status& s) const {
    LFS_LOG_ERROR("index %s: %s: %s", path.c_str(), what, s.ToString().c_str());
    return Error{s.IsNoSpace() ? ENOSPC : EIO};
  }
  Error corrupt(const char* what, std::string_view key) const {
    LFS_LOG_ERROR("index %s: damaged %s at key %s", path.c_str(), what, hex(key).c_str());
    return Error{EIO};
  }

  // The raw value of `key`, nullopt when absent.
  Result<std::optional<std::string>> get(const std::string& key, const char* what) const {
    std::string value;
    rocksdb::Status s = db->Get(rocksdb::ReadOptions(), key, &value);
    if (s.IsNotFound()) return std::optional<std::string>();
    if (!s.ok()) return failed(what, s);
    return std::optional<std::string>(std::move(value));
  }

  Result<std::optional<uint64_t>> get_number(const std::string& key, const char* what) const {
    LFS_ASSIGN(auto raw, get(key, what));
    if (!raw) return std::optional<uint64_t>();
    auto n = records::decode_number(*raw);
    if (!n.ok()) return corrupt(what, key);
    return std::optional<uint64_t>(*n);
  }

  Result<void> validate(const Batch& batch) const;
  Result<void> build(const Batch& batch, rocksdb::WriteBatch* wb) const;
};

Index::Index(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
Index::~Index() = default;

Result<std::unique_ptr<Index>> Index::open(const std::string& path, bool create, std::string* why) {
  std::string scratch;
  if (why == nullptr) why = &scratch;
  why->clear();

  struct stat st;
  if (::stat(path.c_str(), &st) < 0) {
    Error err = errno_error();
    if (err.code != ENOENT) {
      *why = path + ": " + std::strerror(err.code);
      return err;
    }
    if (!create) {
      *why = path + ": no layerfs index here (the directory does not exist)";
      return Error{ENOENT};
    }
    if (::mkdir(path.c_str(), 0700) < 0 && errno != EEXIST) {
      Error mk = errno_error();
      *why = "cannot create " + path + ": " + std::strerror(mk.code);
      return mk;
    }
    if (::stat(path.c_str(), &st) < 0) {
      Error again = errno_error();
      *why = path + ": " + std::strerror(again.code);
      return again;
    }
  }
  if (!S_ISDIR(st.st_mode)) {
    *why = path + " is not a layerfs index: it is not a directory";
    return Error{EINVAL};
  }

  OpenRegistry::Key reg_key{st.st_dev, st.st_ino};
  if (!OpenRegistry::reserve(reg_key)) {
    *why = path + " is in use: this process already has the index open";
    return Error{EBUSY};
  }
  auto impl = std::make_unique<Impl>();
  impl->path = path;
  impl->reservation = Reservation(reg_key);

  std::string foreign;
  auto dir_state = inspect_dir(path, &foreign);
  if (!dir_state.ok()) {
    *why = "cannot read " + path + ": " + std::strerror(dir_state.error());
    return Error{dir_state.error()};
  }
  if (*dir_state == DirState::kForeign) {
    *why =
        path + " is not a layerfs index: it holds \"" + foreign + "\" but no RocksDB CURRENT file";
    return Error{EINVAL};
  }
  if (*dir_state == DirState::kEmpty && !create) {
    *why = path + ": no layerfs index here (the directory holds no database)";
    return Error{ENOENT};
  }

  if (*dir_state == DirState::kHasDatabase) {
    pid_t holder = 0;
    if (locked_by_other_process(path, &holder)) {
      *why = path + " is in use by another process (pid " + std::to_string(holder) + ")";
      return Error{EBUSY};
    }
    // Check read-only first, so that a database that turns out not to be ours
    // (or to be damaged) is never written to: a read-write open would replay
    // and rewrite its WAL.
    rocksdb::Options probe_opts = make_options(false);
    probe_opts.info_log = std::make_shared<NullLogger>();
    rocksdb::DB* probe_raw = nullptr;
    rocksdb::Status s = rocksdb::DB::OpenForReadOnly(probe_opts, path, &probe_raw);
    std::unique_ptr<rocksdb::DB> probe(probe_raw);
    if (!s.ok()) return open_failure(path, s, why);
    LFS_ASSIGN(FormatState state, check_format(probe.get(), path, why));
    if (state == FormatState::kEmpty && !create) {
      *why = path + ": no layerfs index here (an empty RocksDB database)";
      return Error{ENOENT};
    }
    s = probe->Close();
    if (!s.ok()) return open_failure(path, s, why);
  }

  rocksdb::DB* raw = nullptr;
  rocksdb::Status s =
      rocksdb::DB::Open(make_options(*dir_state != DirState::kHasDatabase), path, &raw);
  impl->db.reset(raw);
  if (!s.ok()) return open_failure(path, s, why);

  LFS_ASSIGN(FormatState state, check_format(impl->db.get(), path, why));
  if (state == FormatState::kEmpty) {
    if (!create) {
      *why = path + ": no layerfs index here (an empty RocksDB database)";
      return Error{ENOENT};
    }
    rocksdb::WriteOptions wo;
    wo.sync = true;
    s = impl->db->Put(wo, keys::meta_key(keys::kMetaFormatVersion), std::to_string(kFormatVersion));
    if (!s.ok()) {
      *why = path + ": cannot initialize the index (RocksDB: " + s.ToString() + ")";
      return Error{s.IsNoSpace() ? ENOSPC : EIO};
    }
  }

  const std::string counter_key = keys::meta_key(keys::kMetaAliasLast);
  auto counter = impl->get_number(counter_key, "alias counter");
  if (!counter.ok()) {
    *why = path + ": the index is damaged: unreadable alias counter";
    return Error{counter.error()};
  }
  impl->alias_last = counter->value_or(0);

  return std::unique_ptr<Index>(new Index(std::move(impl)));
}

Result<std::optional<ObjectRecord>> Index::object(uint64_t upper_ino) const {
  const std::string key = keys::object_key(upper_ino);
  LFS_ASSIGN(auto raw, impl_->get(key, "object record"));
  if (!raw) return std::optional<ObjectRecord>();
  auto rec = records::decode_object(*raw);
  if (!rec.ok()) return impl_->corrupt("object record", key);
  return std::optional<ObjectRecord>(std::move(rec).value());
}

Result<std::vector<std::string>> Index::whiteouts(uint64_t dir_ino) const {
  std::vector<std::string> names;
  PrefixScan scan(impl_->db.get(), keys::whiteout_prefix(dir_ino));
  for (; scan.valid(); scan.next()) {
    auto key = keys::decode_whiteout_key(scan.key());
    if (!key || key->dir_ino != dir_ino || !scan.value().empty())
      return impl_->corrupt("whiteout", scan.key());
    names.emplace_back(key->name);
  }
  if (!scan.status().ok()) return impl_->failed("whiteout scan", scan.status());
  return names;
}

Result<std::optional<LinkGroup>> Index::link_group(uint32_t layer, uint64_t lower_ino) const {
  const std::string key = keys::link_group_key(layer, lower_ino);
  LFS_ASSIGN(auto raw, impl_->get(key, "link group"));
  if (!raw) return std::optional<LinkGroup>();
  auto group = records::decode_link_group(*raw);
  if (!group.ok()) return impl_->corrupt("link group", key);
  return std::optional<LinkGroup>(*group);
}

Result<std::optional<std::string>> Index::meta(std::string_view key) const {
  if (key.empty()) return Error{EINVAL};
  return impl_->get(keys::meta_key(key), "meta");
}

Result<uint64_t> Index::alias(uint32_t layer, uint64_t ino) {
  const std::string key = keys::alias_key(layer, ino);
  // Most calls find an existing alias: read without the allocation lock.
  LFS_ASSIGN(auto found, impl_->get_number(key, "alias"));
  if (found) return *found;

  std::lock_guard lock(impl_->alias_mu);
  LFS_ASSIGN(found, impl_->get_number(key, "alias"));
  if (found) return *found;
  const uint64_t n = impl_->alias_last + 1;
  if (n == 0) return Error{EOVERFLOW};
  if (impl_->broken.load()) return Error{EIO};
  LFS_TRY(impl_->resume_if_full());
  rocksdb::WriteBatch wb;
  const std::string value = records::encode_number(n);
  rocksdb::Status s = wb.Put(key, value);
  if (s.ok()) s = wb.Put(keys::meta_key(keys::kMetaAliasLast), value);
  if (s.ok()) s = impl_->db->Write(rocksdb::WriteOptions(), &wb);
  if (!s.ok()) return impl_->write_failed("alias allocation", s);
  impl_->alias_last = n;
  return n;
}

Result<void> Index::Impl::validate(const Batch& batch) const {
  for (const Batch::Op& op : batch.ops()) {
    switch (op.kind) {
      case Batch::OpKind::kAddWhiteout:
      case Batch::OpKind::kRemoveWhiteout:
        if (!keys::valid_entry_name(op.name)) {
          LFS_LOG_ERROR("index %s: refusing a whiteout named %s (hex) in directory %llu",
                        path.c_str(), hex(op.name).c_str(), static_cast<unsigned long long>(op.a));
          return Error{EINVAL};
        }
        break;
      case Batch::OpKind::kPutMeta:
        if (op.name.empty() || op.name.starts_with(keys::kReservedMetaPrefix)) {
          LFS_LOG_ERROR("index %s: refusing to write meta key \"%s\" (empty or reserved)",
                        path.c_str(), op.name.c_str());
          return Error{EINVAL};
        }
        break;
      default:
        break;
    }
  }
  return {};
}

Result<void> Index::Impl::build(const Batch& batch, rocksdb::WriteBatch* wb) const {
  // Whiteouts added earlier in this batch are not in the database yet, but
  // forget_object must remove them too (ops apply in order).
  std::map<uint64_t, std::set<std::string>> added;
  rocksdb::Status s;
  for (const Batch::Op& op : batch.ops()) {
    switch (op.kind) {
      case Batch::OpKind::kPutObject:
        s = wb->Put(keys::object_key(op.a), records::encode_object(op.object));
        break;
      case Batch::OpKind::kForgetObject: {
        s = wb->Delete(keys::object_key(op.a));
        PrefixScan scan(db.get(), keys::whiteout_prefix(op.a));
        for (; s.ok() && scan.valid(); scan.next()) s = wb->Delete(scan.key());
        if (s.ok() && !scan.status().ok()) return failed("whiteout scan", scan.status());
        if (auto it = added.find(op.a); it != added.end()) {
          for (const std::string& name : it->second) {
            if (s.ok()) s = wb->Delete(keys::whiteout_key(op.a, name));
          }
          added.erase(it);
        }
        break;
      }
      case Batch::OpKind::kAddWhiteout:
        s = wb->Put(keys::whiteout_key(op.a, op.name), rocksdb::Slice());
        added[op.a].insert(op.name);
        break;
      case Batch::OpKind::kRemoveWhiteout:
        s = wb->Delete(keys::whiteout_key(op.a, op.name));
        if (auto it = added.find(op.a); it != added.end()) it->second.erase(op.name);
        break;
      case Batch::OpKind::kPutLinkGroup:
        s = wb->Put(keys::link_group_key(op.layer, op.a), records::encode_link_group(op.group));
        break;
      case Batch::OpKind::kRemoveLinkGroup:
        s = wb->Delete(keys::link_group_key(op.layer, op.a));
        break;
      case Batch::OpKind::kPutMeta:
        s = wb->Put(keys::meta_key(op.name), op.value);
        break;
    }
    if (!s.ok()) return failed("building a batch", s);
  }
  return {};
}

Result<void> Index::commit(const Batch& batch, Durability durability) {
  if (batch.empty()) return {};
  LFS_TRY(impl_->validate(batch));
  bool scans = false;
  for (const Batch::Op& op : batch.ops()) scans |= op.kind == Batch::OpKind::kForgetObject;

  std::shared_lock<std::shared_mutex> shared(impl_->commit_mu, std::defer_lock);
  std::unique_lock<std::shared_mutex> exclusive(impl_->commit_mu, std::defer_lock);
  if (scans) {
    exclusive.lock();
  } else {
    shared.lock();
  }

  if (impl_->broken.load()) return Error{EIO};
  LFS_TRY(impl_->resume_if_full());
  rocksdb::WriteBatch wb;
  LFS_TRY(impl_->build(batch, &wb));
  rocksdb::WriteOptions wo;
  wo.sync = durability == Durability::kSynced;
  wo.disableWAL = false;
  rocksdb::Status s = impl_->db->Write(wo, &wb);
  if (!s.ok()) return impl_->write_failed("commit", s);
  if (!wo.sync) impl_->mark_unsynced();
  return {};
}

Result<void> Index::sync() {
  return impl_->sync();
}

Result<void> Index::sync_if_needed() {
  if (!impl_->unsynced.load()) return {};
  return impl_->sync();
}

bool Index::unsynced() const {
  return impl_->unsynced.load();
}

void Index::sync_within(std::chrono::milliseconds interval) {
  Impl* impl = impl_.get();
  impl->syncer = std::thread([impl, interval] {
    std::unique_lock<std::mutex> lock(impl->sync_mu);
    for (;;) {
      impl->sync_cv.wait(lock, [impl] { return impl->sync_stop || impl->unsynced.load(); });
      // Commits arriving meanwhile share this sync.
      if (impl->sync_cv.wait_for(lock, interval, [impl] { return impl->sync_stop; })) return;
      lock.unlock();
      auto r = impl->unsynced.load() ? impl->sync() : Result<void>{};
      lock.lock();
      if (!r.ok()) {
        // Logged by write_failed. After an I/O error nothing more can be
        // synced; after a full disk, the next commit or sync retries.
        if (impl->broken.load()) return;
        impl->unsynced.store(false);
      }
    }
  });
}

Result<void> Index::for_each_object(
    const std::function<bool(uint64_t upper_ino, const ObjectRecord&)>& fn) const {
  PrefixScan scan(impl_->db.get(), keys::kind_prefix(keys::Kind::kObject));
  for (; scan.valid(); scan.next()) {
    auto ino = keys::decode_object_key(scan.key());
    if (!ino) return impl_->corrupt("object key", scan.key());
    auto rec = records::decode_object(scan.value());
    if (!rec.ok()) return impl_->corrupt("object record", scan.key());
    if (!fn(*ino, *rec)) return {};
  }
  if (!scan.status().ok()) return impl_->failed("object scan", scan.status());
  return {};
}

Result<void> Index::for_each_link_group(
    const std::function<bool(uint32_t layer, uint64_t lower_ino, const LinkGroup&)>& fn) const {
  PrefixScan scan(impl_->db.get(), keys::kind_prefix(keys::Kind::kLinkGroup));
  for (; scan.valid(); scan.next()) {
    auto key = keys::decode_link_group_key(scan.key());
    if (!key) return impl_->corrupt("link group key", scan.key());
    auto group = records::decode_link_group(scan.value());
    if (!group.ok()) return impl_->corrupt("link group", scan.key());
    if (!fn(key->layer, key->ino, *group)) return {};
  }
  if (!scan.status().ok()) return impl_->failed("link group scan", scan.status());
  return {};
}

Result<void> Index::scan_all(const Visitor& v) const {
  PrefixScan scan(impl_->db.get(), "");
  auto damaged = [&](const char* problem) {
    if (v.damaged) v.damaged(hex(scan.key()), problem);
  };
  for (; scan.valid(); scan.next()) {
    const std::string_view key = scan.key();
    const std::string_view value = scan.value();
    const char kind = key.empty() ? '\0' : key[0];
    switch (static_cast<keys::Kind>(kind)) {
      case keys::Kind::kObject: {
        auto ino = keys::decode_object_key(key);
        auto rec = records::decode_object(value);
        if (!ino)
          damaged("object key of the wrong length");
        else if (!rec.ok())
          damaged("object record that does not decode");
        else if (v.object)
          v.object(*ino, *rec);
        break;
      }
      case keys::Kind::kWhiteout: {
        auto wk = keys::decode_whiteout_key(key);
        if (!wk)
          damaged("whiteout key with an invalid name or length");
        else if (!value.empty())
          damaged("whiteout with a non-empty value");
        else if (v.whiteout)
          v.whiteout(wk->dir_ino, wk->name);
        break;
      }
      case keys::Kind::kLinkGroup: {
        auto lk = keys::decode_link_group_key(key);
        auto group = records::decode_link_group(value);
        if (!lk)
          damaged("link group key of the wrong length");
        else if (!group.ok())
          damaged("link group record that does not decode");
        else if (v.link_group)
          v.link_group(lk->layer, lk->ino, *group);
        break;
      }
      case keys::Kind::kAlias: {
        auto ak = keys::decode_alias_key(key);
        auto n = records::decode_number(value);
        if (!ak)
          damaged("alias key of the wrong length");
        else if (!n.ok())
          damaged("alias number that does not decode");
        else if (v.alias)
          v.alias(ak->layer, ak->ino, *n);
        break;
      }
      case keys::Kind::kMeta: {
        auto name = keys::decode_meta_key(key);
        if (!name)
          damaged("meta key without a name");
        else if (v.meta)
          v.meta(*name, value);
        break;
      }
      default:
        damaged("key of an unknown kind");
    }
  }
  if (!scan.status().ok()) return impl_->failed("index scan", scan.status());
  return {};
}

// ---------------------------------------------------------------------------
// Test hook (metadata/testing.h)

namespace testing {

namespace {

Result<void> raw_write(const std::string& path, bool create_db, std::string_view key,
                       const std::string_view* value) {
  rocksdb::DB* raw = nullptr;
  rocksdb::Status s = rocksdb::DB::Open(make_options(create_db), path, &raw);
  std::unique_ptr<rocksdb::DB> db(raw);
  if (s.ok()) {
    rocksdb::WriteOptions wo;
    wo.sync = true;
    const rocksdb::Slice k(key.data(), key.size());
    s = value ? db->Put(wo, k, rocksdb::Slice(value->data(), value->size())) : db->Delete(wo, k);
  }
  if (s.ok()) s = db->Close();
  if (!s.ok()) {
    LFS_LOG_ERROR("raw write %s: %s", path.c_str(), s.ToString().c_str());
    return Error{EIO};
  }
  return {};
}

}  // namespace

Result<void> raw_put(const std::string& path, bool create_db, std::string_view key,
                     std::string_view value) {
  return raw_write(path, create_db, key, &value);
}

Result<void> raw_delete(const std::string& path, std::string_view key) {
  return raw_write(path, false, key, nullptr);
}

}  // namespace testing

}  // namespace layerfs::metadata
