// RocksDB behind metadata/store_db.h. Small on purpose: a layerctl store holds
// at most thousands of records, read and written by short-lived commands.
#include "metadata/store_db.h"

#include <dirent.h>
#include <sys/stat.h>
#include <unistd.h>

#include <rocksdb/db.h>
#include <rocksdb/options.h>
#include <rocksdb/write_batch.h>

#include <cstring>

namespace layerfs::metadata {
namespace {

constexpr const char* kFormatKey = "\x01format";

bool dir_has_entries(const std::string& path, bool* has_current) {
  *has_current = false;
  DIR* d = ::opendir(path.c_str());
  if (!d) return false;
  bool any = false;
  while (struct dirent* e = ::readdir(d)) {
    std::string n = e->d_name;
    if (n == "." || n == "..") continue;
    any = true;
    if (n == "CURRENT") *has_current = true;
  }
  ::closedir(d);
  return any;
}

rocksdb::Options options(bool create) {
  rocksdb::Options o;
  o.create_if_missing = create;
  o.paranoid_checks = true;
  o.write_buffer_size = 1 << 20;
  o.max_open_files = 64;
  o.keep_log_file_num = 2;
  o.max_log_file_size = 1 << 20;
  o.stats_dump_period_sec = 0;
  o.stats_persist_period_sec = 0;
  return o;
}

}  // namespace

struct StoreDb::Impl {
  std::unique_ptr<rocksdb::DB> db;
  bool read_only = false;
  std::string path;
  ~Impl() {
    if (db) {
      if (!read_only) db->FlushWAL(true).PermitUncheckedError();
      db->Close().PermitUncheckedError();
    }
  }
};

StoreDb::StoreDb(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
StoreDb::~StoreDb() = default;

Result<std::unique_ptr<StoreDb>> StoreDb::open(const std::string& path, bool read_only,
                                               bool create, std::string* why) {
  std::string scratch;
  if (!why) why = &scratch;
  struct stat st;
  if (::stat(path.c_str(), &st) < 0) {
    if (errno != ENOENT || !create || read_only) {
      *why = path + ": no store database here";
      return Error{ENOENT};
    }
    if (::mkdir(path.c_str(), 0700) < 0 && errno != EEXIST) {
      Error e = errno_error();
      *why = "cannot create " + path + ": " + strerror(e.code);
      return e;
    }
  }
  bool has_current = false;
  bool nonempty = dir_has_entries(path, &has_current);
  if (nonempty && !has_current) {
    *why = path + " is not a layerctl store database";
    return Error{EINVAL};
  }
  if (!has_current && (read_only || !create)) {
    *why = path + ": no store database here";
    return Error{ENOENT};
  }

  auto impl = std::make_unique<Impl>();
  impl->path = path;
  impl->read_only = read_only;
  rocksdb::DB* raw = nullptr;
  rocksdb::Status s = read_only ? rocksdb::DB::OpenForReadOnly(options(false), path, &raw)
                                : rocksdb::DB::Open(options(create), path, &raw);
  impl->db.reset(raw);
  if (!s.ok()) {
    std::string msg = s.ToString();
    if (s.IsIOError() && msg.find("lock") != std::string::npos) {
      *why = path + " is in use by another process";
      return Error{EBUSY};
    }
    *why = path + ": the store database is damaged or unreadable (" + msg + ")";
    return Error{EIO};
  }
  std::string format;
  s = impl->db->Get(rocksdb::ReadOptions(), kFormatKey, &format);
  if (s.IsNotFound()) {
    if (has_current) {
      // An existing RocksDB database that is not ours (ours always has the key).
      *why = path + " is not a layerctl store database";
      return Error{EINVAL};
    }
    rocksdb::WriteOptions wo;
    wo.sync = true;
    s = impl->db->Put(wo, kFormatKey, kStoreFormat);
    if (!s.ok()) {
      *why = path + ": cannot initialise the store database (" + s.ToString() + ")";
      return Error{EIO};
    }
  } else if (!s.ok()) {
    *why = path + ": the store database is damaged (" + s.ToString() + ")";
    return Error{EIO};
  } else if (format != kStoreFormat) {
    *why = path + " holds a store database of format '" + format + "'; this layerctl reads '" +
           kStoreFormat + "'";
    return Error{ENOTSUP};
  }
  return std::unique_ptr<StoreDb>(new StoreDb(std::move(impl)));
}

Result<std::optional<std::string>> StoreDb::get(std::string_view key) const {
  std::string value;
  rocksdb::Status s = impl_->db->Get(rocksdb::ReadOptions(), rocksdb::Slice(key.data(), key.size()),
                                     &value);
  if (s.IsNotFound()) return std::optional<std::string>();
  if (!s.ok()) return Error{EIO};
  return std::optional<std::string>(std::move(value));
}

Result<std::vector<std::pair<std::string, std::string>>> StoreDb::scan(
    std::string_view prefix) const {
  std::vector<std::pair<std::string, std::string>> out;
  std::unique_ptr<rocksdb::Iterator> it(impl_->db->NewIterator(rocksdb::ReadOptions()));
  for (it->Seek(rocksdb::Slice(prefix.data(), prefix.size())); it->Valid(); it->Next()) {
    std::string_view k(it->key().data(), it->key().size());
    if (k.substr(0, prefix.size()) != prefix) break;
    out.emplace_back(std::string(k), it->value().ToString());
  }
  if (!it->status().ok()) return Error{EIO};
  return out;
}

Result<void> StoreDb::write(const std::vector<Change>& changes) {
  if (impl_->read_only) return Error{EROFS};
  rocksdb::WriteBatch wb;
  for (const auto& [key, value] : changes) {
    if (!key.empty() && key[0] == '\x01') return Error{EINVAL};  // reserved
    rocksdb::Status s = value ? wb.Put(key, *value) : wb.Delete(key);
    if (!s.ok()) return Error{EIO};
  }
  rocksdb::WriteOptions wo;
  wo.sync = true;
  rocksdb::Status s = impl_->db->Write(wo, &wb);
  if (!s.ok()) return Error{s.IsNoSpace() ? ENOSPC : EIO};
  return {};
}

}  // namespace layerfs::metadata
