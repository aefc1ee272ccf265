#include "tools/store.h"

#include <dirent.h>
#include <fcntl.h>
#include <signal.h>
#include <sys/file.h>
#include <sys/mount.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <ctime>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <vector>

#include "metadata/store_db.h"
#include "tools/mountinfo.h"

namespace layerfs::ctl {
namespace {

std::string errno_text(int e) { return std::strerror(e); }

void make_dir(const std::string& path, mode_t mode) {
  if (::mkdir(path.c_str(), mode) != 0 && errno != EEXIST) {
    throw Error("cannot create " + path + ": " + errno_text(errno));
  }
}

std::string hex_of(const std::string& layer_id) {
  auto colon = layer_id.find(':');
  return colon == std::string::npos ? layer_id : layer_id.substr(colon + 1);
}

}  // namespace

std::string default_root() {
  const char* env = std::getenv("LAYERFS_ROOT");
  if (env && *env) return env;
  return "/var/lib/layerfs";
}

Store::Store(std::string root, Access access) : root_(std::move(root)), access_(access) {}

std::unique_ptr<Store> Store::open(const std::string& root_arg, Access access) {
  if (root_arg.empty()) throw Error("the store root is empty");
  std::string root = std::filesystem::absolute(root_arg).lexically_normal().string();
  while (root.size() > 1 && root.back() == '/') root.pop_back();
  std::unique_ptr<Store> s(new Store(root, access));
  if (access == Access::kWrite) {
    std::error_code ec;
    std::filesystem::create_directories(root, ec);
    if (ec) throw Error("cannot create the store at " + root + ": " + ec.message());
    for (const char* sub : {"layers", "stacks", "volumes", "tmp"}) make_dir(root + "/" + sub, 0700);
  }
  s->lock_and_open();
  if (access == Access::kWrite) s->clean_tmp();
  return s;
}

void Store::lock_and_open() {
  struct stat st;
  if (::stat(root_.c_str(), &st) != 0) {
    if (access_ == Access::kRead && errno == ENOENT) return;  // empty store
    throw Error("cannot use the store at " + root_ + ": " + errno_text(errno));
  }
  if (!S_ISDIR(st.st_mode)) throw Error("the store root " + root_ + " is not a directory");
  const std::string lock_path = root_ + "/lock";
  int flags = O_RDWR | O_CLOEXEC | (access_ == Access::kWrite ? O_CREAT : 0);
  lock_fd_ = ::open(lock_path.c_str(), flags, 0600);
  if (lock_fd_ < 0 && access_ == Access::kRead && errno == ENOENT) return;  // never written
  if (lock_fd_ < 0 && access_ == Access::kRead && errno == EACCES) {
    lock_fd_ = ::open(lock_path.c_str(), O_RDONLY | O_CLOEXEC);
  }
  if (lock_fd_ < 0) throw Error("cannot open " + lock_path + ": " + errno_text(errno));
  int op = access_ == Access::kWrite ? LOCK_EX : LOCK_SH;
  while (::flock(lock_fd_, op) != 0) {
    if (errno != EINTR) throw Error("cannot lock " + lock_path + ": " + errno_text(errno));
  }
  std::string why;
  const std::string db_path = root_ + "/store";
  auto db = metadata::StoreDb::open(db_path, access_ == Access::kRead,
                                    access_ == Access::kWrite, &why);
  if (!db.ok()) {
    if (access_ == Access::kRead && db.error() == ENOENT) return;  // nothing written yet
    throw Error("cannot open the store's records: " + why);
  }
  db_ = std::move(db).value();
}

Store::~Store() {
  db_.reset();
  if (lock_fd_ >= 0) ::close(lock_fd_);
}

void Store::release() {
  if (access_ != Access::kWrite) throw Error("internal error: release() on a read-only store");
  db_.reset();
  if (lock_fd_ >= 0) ::close(lock_fd_);
  lock_fd_ = -1;
}

void Store::reacquire() {
  if (lock_fd_ >= 0) return;
  lock_and_open();
}

std::string Store::layer_dir(const std::string& layer_id) const {
  return root_ + "/layers/" + hex_of(layer_id);
}
std::string Store::stack_dir(const std::string& name) const { return root_ + "/stacks/" + name; }
std::string Store::volume_dir(const std::string& name) const { return root_ + "/volumes/" + name; }

std::string Store::make_temp(const std::string& what) const {
  make_dir(tmp_dir(), 0700);
  std::string tmpl = tmp_dir() + "/" + std::to_string(::getpid()) + "-" + what + "-XXXXXX";
  if (::mkdtemp(tmpl.data()) == nullptr) {
    throw Error("cannot create a work directory in " + tmp_dir() + ": " + errno_text(errno));
  }
  return tmpl;
}

void Store::clean_tmp() const {
  DIR* d = ::opendir(tmp_dir().c_str());
  if (!d) return;
  std::vector<std::string> dead;
  while (struct dirent* e = ::readdir(d)) {
    std::string n = e->d_name;
    if (n == "." || n == "..") continue;
    pid_t pid = static_cast<pid_t>(std::atoi(n.c_str()));
    bool alive = pid > 0 && (::kill(pid, 0) == 0 || errno == EPERM);
    if (!alive) dead.push_back(n);
  }
  ::closedir(d);
  if (dead.empty()) return;
  // Work that mounts something (a commit reads stacks through temporary
  // mounts) may have died with it mounted: detach those first, innermost
  // first, so that nothing is left mounted and the removal can proceed.
  std::vector<std::string> mounted;
  for (const auto& m : read_mountinfo()) mounted.push_back(m.mountpoint);
  std::sort(mounted.begin(), mounted.end(),
            [](const std::string& a, const std::string& b) { return a.size() > b.size(); });
  for (const auto& n : dead) {
    const std::string dir = tmp_dir() + "/" + n;
    for (const auto& m : mounted) {
      if (m.rfind(dir + "/", 0) == 0) ::umount2(m.c_str(), MNT_DETACH);
    }
    remove_tree(dir);
  }
}

std::optional<json> Store::get(const std::string& key) const {
  if (!db_) return std::nullopt;
  auto v = db_->get(key);
  if (!v.ok()) throw Error("cannot read the store's records (" + errno_text(v.error()) + ")");
  if (!v.value()) return std::nullopt;
  try {
    return json::parse(*v.value());
  } catch (const json::exception& e) {
    throw Error("the store's record " + key + " is damaged: " + e.what());
  }
}

std::vector<std::pair<std::string, json>> Store::list(const std::string& prefix) const {
  std::vector<std::pair<std::string, json>> out;
  if (!db_) return out;
  auto rows = db_->scan(prefix);
  if (!rows.ok()) throw Error("cannot read the store's records (" + errno_text(rows.error()) + ")");
  for (auto& [k, v] : rows.value()) {
    try {
      out.emplace_back(k, json::parse(v));
    } catch (const json::exception& e) {
      throw Error("the store's record " + k + " is damaged: " + e.what());
    }
  }
  return out;
}

void Store::write(const std::vector<std::pair<std::string, std::optional<json>>>& changes) {
  if (access_ != Access::kWrite || !db_) throw Error("internal error: write to a read-only store");
  std::vector<metadata::StoreDb::Change> raw;
  for (const auto& [k, v] : changes) {
    raw.emplace_back(k, v ? std::optional<std::string>(v->dump()) : std::nullopt);
  }
  auto r = db_->write(raw);
  if (!r.ok()) throw Error("cannot write the store's records (" + errno_text(r.error()) + ")");
}

namespace {

// Removes entry `name` of `dirfd` and everything below it, never following a
// symlink and never entering another filesystem (a mount inside is left, and
// so is its parent).
void remove_at(int dirfd, const std::string& name, dev_t dev) {
  struct stat st;
  if (::fstatat(dirfd, name.c_str(), &st, AT_SYMLINK_NOFOLLOW) != 0) return;
  if (!S_ISDIR(st.st_mode)) {
    ::unlinkat(dirfd, name.c_str(), 0);
    return;
  }
  if (st.st_dev != dev) return;
  if ((st.st_mode & 0700) != 0700) ::fchmodat(dirfd, name.c_str(), 0700, 0);
  int fd = ::openat(dirfd, name.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
  if (fd < 0) return;
  DIR* d = ::fdopendir(fd);
  if (!d) {
    ::close(fd);
    return;
  }
  std::vector<std::string> names;
  while (struct dirent* e = ::readdir(d)) {
    std::string n = e->d_name;
    if (n != "." && n != "..") names.push_back(n);
  }
  for (const auto& n : names) remove_at(::dirfd(d), n, dev);
  ::closedir(d);
  ::unlinkat(dirfd, name.c_str(), AT_REMOVEDIR);
}

}  // namespace

void remove_tree(const std::string& path) {
  struct stat st;
  if (::lstat(path.c_str(), &st) != 0) return;
  std::string parent = path.substr(0, path.find_last_of('/'));
  std::string name = path.substr(path.find_last_of('/') + 1);
  if (parent.empty()) parent = "/";
  int pfd = ::open(parent.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (pfd < 0) return;
  remove_at(pfd, name, st.st_dev);
  ::close(pfd);
}

std::string now_rfc3339() {
  std::time_t t = std::time(nullptr);
  std::tm tm;
  ::gmtime_r(&t, &tm);
  char buf[32];
  std::strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%SZ", &tm);
  return buf;
}

std::string random_hex_id() {
  unsigned char bytes[32];
  size_t got = 0;
  while (got < sizeof bytes) {
    ssize_t n = ::getrandom(bytes + got, sizeof bytes - got, 0);
    if (n < 0) {
      if (errno == EINTR) continue;
      throw Error("cannot get random bytes: " + errno_text(errno));
    }
    got += static_cast<size_t>(n);
  }
  static const char* kHex = "0123456789abcdef";
  std::string out;
  for (unsigned char b : bytes) {
    out += kHex[b >> 4];
    out += kHex[b & 15];
  }
  return out;
}

}  // namespace layerfs::ctl
