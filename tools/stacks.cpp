// Stacks (tools/stacks.h): creating, mounting with volume, bind and tmpfs
// mounts inside, unmounting, removing and listing them. Commit is in
// tools/stack_commit.cpp, the mount flags in tools/stack_flags.cpp.
#include "tools/stacks.h"

#include <dirent.h>
#include <fcntl.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <map>
#include <set>

#include "tools/layer_store.h"
#include "tools/output.h"
#include "tools/size.h"
#include "tools/stack_internal.h"
#include "tools/volumes.h"

namespace layerfs::ctl {

using namespace stack_detail;

namespace {

std::string errno_text(int e) {
  return std::strerror(e);
}

// Closes a file descriptor at the end of a scope.
class FdGuard {
 public:
  explicit FdGuard(int fd = -1) : fd_(fd) {}
  ~FdGuard() {
    if (fd_ >= 0) ::close(fd_);
  }
  FdGuard(const FdGuard&) = delete;
  FdGuard& operator=(const FdGuard&) = delete;
  int get() const { return fd_; }
  void reset(int fd) {
    if (fd_ >= 0) ::close(fd_);
    fd_ = fd;
  }

 private:
  int fd_;
};

std::vector<std::string> string_list(const json& rec, const char* key) {
  std::vector<std::string> out;
  if (rec.contains(key) && rec[key].is_array()) {
    for (const auto& v : rec[key]) {
      if (v.is_string()) out.push_back(v.get<std::string>());
    }
  }
  return out;
}

// Opens the target of a mount inside the stack mounted at `root_fd`, walking
// one component at a time and never following a symlink, so that a link
// inside the stack cannot send a mount elsewhere on the host. With `create`,
// missing directories are made (0755) and a missing last component becomes a
// directory, or an empty file when `file` is set. Returns an O_PATH fd.
int open_target(int root_fd, const std::string& target, bool create, bool file) {
  std::vector<std::string> parts;
  size_t start = 1;
  while (start <= target.size()) {
    size_t p = target.find('/', start);
    if (p == std::string::npos) p = target.size();
    if (p > start) parts.push_back(target.substr(start, p - start));
    start = p + 1;
  }
  if (parts.empty()) throw Error("invalid mount target " + target);
  int dir = ::dup(root_fd);
  if (dir < 0) throw Error("dup: " + errno_text(errno));
  FdGuard cur(dir);
  for (size_t i = 0; i < parts.size(); ++i) {
    const std::string& name = parts[i];
    if (name == "." || name == "..") throw Error("invalid mount target " + target);
    const bool last = i + 1 == parts.size();
    if (last) {
      if (create) {
        if (file) {
          int f = ::openat(cur.get(), name.c_str(),
                           O_WRONLY | O_CREAT | O_NOFOLLOW | O_CLOEXEC | O_NONBLOCK, 0644);
          if (f >= 0) {
            ::close(f);
          } else if (errno != EISDIR && errno != ELOOP && errno != EEXIST) {
            throw Error("cannot create the mount target " + target +
                        " inside the stack: " + errno_text(errno));
          }
        } else if (::mkdirat(cur.get(), name.c_str(), 0755) != 0 && errno != EEXIST) {
          throw Error("cannot create the mount target " + target +
                      " inside the stack: " + errno_text(errno));
        }
      }
      int fd = ::openat(cur.get(), name.c_str(), O_PATH | O_NOFOLLOW | O_CLOEXEC);
      if (fd < 0) {
        throw Error("cannot open the mount target " + target +
                    " inside the stack: " + errno_text(errno));
      }
      struct stat st;
      if (::fstat(fd, &st) != 0 || S_ISLNK(st.st_mode) || (file && S_ISDIR(st.st_mode)) ||
          (!file && !S_ISDIR(st.st_mode))) {
        ::close(fd);
        throw Error("the mount target " + target + " inside the stack is " +
                    (file ? "not a file" : "not a directory"));
      }
      return fd;
    }
    int next = ::openat(cur.get(), name.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    if (next < 0 && errno == ENOENT && create) {
      if (::mkdirat(cur.get(), name.c_str(), 0755) != 0 && errno != EEXIST) {
        throw Error("cannot create " + name + " for the mount target " + target +
                    " inside the stack: " + errno_text(errno));
      }
      next = ::openat(cur.get(), name.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    }
    if (next < 0) {
      int e = errno;
      if (e == ELOOP || e == ENOTDIR) {
        throw Error("the mount target " + target + " inside the stack goes through " + name +
                    ", which is not a directory");
      }
      throw Error("cannot open the mount target " + target + " inside the stack: " + errno_text(e));
    }
    cur.reset(next);
  }
  throw Error("invalid mount target " + target);
}

std::string fd_path(int fd) {
  return "/proc/self/fd/" + std::to_string(fd);
}

// Splits mount options into mount(2) flags and the data string.
void split_mount_options(const std::string& options, unsigned long* flags, std::string* data) {
  static const std::map<std::string, std::pair<unsigned long, bool>> kFlags = {
      {"ro", {MS_RDONLY, true}},
      {"rw", {MS_RDONLY, false}},
      {"nosuid", {MS_NOSUID, true}},
      {"suid", {MS_NOSUID, false}},
      {"nodev", {MS_NODEV, true}},
      {"dev", {MS_NODEV, false}},
      {"noexec", {MS_NOEXEC, true}},
      {"exec", {MS_NOEXEC, false}},
      {"sync", {MS_SYNCHRONOUS, true}},
      {"async", {MS_SYNCHRONOUS, false}},
      {"noatime", {MS_NOATIME, true}},
      {"atime", {MS_NOATIME, false}},
      {"nodiratime", {MS_NODIRATIME, true}},
      {"diratime", {MS_NODIRATIME, false}},
      {"relatime", {MS_RELATIME, true}},
      {"norelatime", {MS_RELATIME, false}},
      {"strictatime", {MS_STRICTATIME, true}},
      {"nostrictatime", {MS_STRICTATIME, false}},
      {"dirsync", {MS_DIRSYNC, true}},
  };
  size_t start = 0;
  while (start <= options.size()) {
    size_t p = options.find(',', start);
    if (p == std::string::npos) p = options.size();
    std::string o = options.substr(start, p - start);
    start = p + 1;
    if (o.empty()) continue;
    auto f = kFlags.find(o);
    if (f != kFlags.end()) {
      if (f->second.second) {
        *flags |= f->second.first;
      } else {
        *flags &= ~f->second.first;
      }
    } else {
      *data += (data->empty() ? "" : ",") + o;
    }
  }
}

unsigned long propagation_flag(const std::string& p) {
  if (p == "private") return MS_PRIVATE;
  if (p == "rshared") return MS_SHARED | MS_REC;
  if (p == "shared") return MS_SHARED;
  if (p == "rslave") return MS_SLAVE | MS_REC;
  if (p == "slave") return MS_SLAVE;
  return MS_PRIVATE | MS_REC;  // rprivate, Docker's default
}

// What one mount inside the stack resolved to.
struct Resolved {
  MountSpec spec;
  std::string volume;  // kVolume: the volume's name
  bool anonymous = false;
  VolumeMountSource source;
};

// Mounts `r` at its target in the stack mounted at `mp_fd`.
void mount_one(int mp_fd, const Resolved& r) {
  const MountSpec& s = r.spec;
  enum class How { kBind, kTmpfs } how = How::kBind;
  std::string src;
  std::string data_options;
  std::string propagation = s.propagation;
  if (s.type == MountSpec::Type::kTmpfs) {
    how = How::kTmpfs;
    data_options = s.options;
  } else if (s.type == MountSpec::Type::kBind) {
    src = s.source;
  } else {
    switch (r.source.kind) {
      case VolumeMountSource::Kind::kDirectory:
      case VolumeMountSource::Kind::kBind:
        src = r.source.path;
        break;
      case VolumeMountSource::Kind::kTmpfs:
        how = How::kTmpfs;
        data_options = r.source.options;
        break;
    }
    propagation = "rprivate";  // volumes always are, in Docker
  }
  bool file = false;
  if (how == How::kBind) {
    struct stat st;
    if (::stat(src.c_str(), &st) != 0) {
      throw Error("cannot mount " + src + " at " + s.target + ": " + errno_text(errno));
    }
    file = !S_ISDIR(st.st_mode);
  }
  FdGuard target(open_target(mp_fd, s.target, true, file));
  const std::string where = fd_path(target.get());
  if (how == How::kTmpfs) {
    unsigned long flags = s.readonly ? MS_RDONLY : 0;
    std::string data;
    split_mount_options(data_options, &flags, &data);
    if (s.readonly) flags |= MS_RDONLY;
    if (::mount("tmpfs", where.c_str(), "tmpfs", flags, data.empty() ? nullptr : data.c_str()) !=
        0) {
      throw Error("cannot mount a tmpfs (" + data_options + ") at " + s.target + ": " +
                  errno_text(errno));
    }
    return;
  }
  if (::mount(src.c_str(), where.c_str(), nullptr, MS_BIND | MS_REC, nullptr) != 0) {
    throw Error("cannot bind " + src + " at " + s.target + ": " + errno_text(errno));
  }
  // The fd still names the directory under the new mount: open the mount itself.
  FdGuard mounted(open_target(mp_fd, s.target, false, file));
  const std::string on = fd_path(mounted.get());
  if (::mount(nullptr, on.c_str(), nullptr, propagation_flag(propagation), nullptr) != 0) {
    throw Error("cannot make the mount at " + s.target + " " + propagation + ": " +
                errno_text(errno));
  }
  if (s.readonly &&
      ::mount(nullptr, on.c_str(), nullptr, MS_REMOUNT | MS_BIND | MS_RDONLY, nullptr) != 0) {
    throw Error("cannot make the mount at " + s.target + " read-only: " + errno_text(errno));
  }
}

void append_unique(json& arr, const std::string& v) {
  if (!arr.is_array()) arr = json::array();
  for (const auto& x : arr) {
    if (x == v) return;
  }
  arr.push_back(v);
}

}  // namespace

void check_stack_name(const std::string& name) {
  bool ok =
      !name.empty() && name.size() <= 200 && std::isalnum(static_cast<unsigned char>(name[0]));
  for (char c : name) {
    if (!(std::isalnum(static_cast<unsigned char>(c)) || c == '_' || c == '.' || c == '-')) {
      ok = false;
    }
  }
  if (!ok) {
    throw Error("Invalid stack name (" + name + "), only [a-zA-Z0-9][a-zA-Z0-9_.-] are allowed");
  }
}

void create_stack(const std::string& root, const std::string& name,
                  const std::vector<std::string>& layer_refs) {
  check_stack_name(name);
  if (layer_refs.empty()) throw Error("a stack needs at least one layer");
  auto store = Store::open(root, Access::kWrite);
  if (store->get("stack/" + name)) {
    throw Error("the stack name " + name + " is already in use");
  }
  json layers = json::array();
  for (const auto& ref : layer_refs) layers.push_back(find_layer(*store, ref).id);
  // The writable layer is made in ROOT/tmp and moved into place, so a killed
  // command leaves no half-made stack.
  const std::string tmp = store->make_temp("create");
  try {
    for (const auto& [sub, mode] : {std::pair{"upper", 0755}, std::pair{"work", 0700}}) {
      const std::string p = tmp + "/" + sub;
      if (::mkdir(p.c_str(), static_cast<mode_t>(mode)) != 0 ||
          ::chmod(p.c_str(), static_cast<mode_t>(mode)) != 0) {
        throw Error("cannot create " + p + ": " + errno_text(errno));
      }
    }
    const std::string dir = store->stack_dir(name);
    remove_tree(dir);  // left by a removal that was killed after dropping the record
    if (::rename(tmp.c_str(), dir.c_str()) != 0) {
      throw Error("cannot create " + dir + ": " + errno_text(errno));
    }
  } catch (...) {
    remove_tree(tmp);
    throw;
  }
  json rec = {{"name", name},
              {"layers", layers},
              {"created", now_rfc3339()},
              {"volumes", json::array()},
              {"anonymous_volumes", json::array()}};
  store->write({{"stack/" + name, rec}});
}

StackDirs stack_dirs(const std::string& root, const std::string& name) {
  check_stack_name(name);
  auto store = Store::open(root, Access::kRead);
  json rec = get_stack_record(*store, name);
  StackDirs d;
  d.lowers = layer_trees_top_first(*store, string_list(rec, "layers"));
  d.upper = store->stack_dir(name) + "/upper";
  d.work = store->stack_dir(name) + "/work";
  d.mountpoint = stack_mountpoint(read_mountinfo(), store->root(), name, true);
  return d;
}

void mount_stack(const std::string& root, const std::string& name, const std::string& mountpoint,
                 const std::vector<MountSpec>& mounts) {
  check_stack_name(name);
  auto store = Store::open(root, Access::kWrite);
  json rec = get_stack_record(*store, name);
  if (auto at = stack_mountpoint(read_mountinfo(), store->root(), name, true)) {
    throw Error("stack " + name + " is already mounted at " + *at);
  }
  struct stat st;
  if (::stat(mountpoint.c_str(), &st) != 0) {
    throw Error("cannot use " + mountpoint + " as the mountpoint: " + errno_text(errno));
  }
  if (!S_ISDIR(st.st_mode)) throw Error("the mountpoint " + mountpoint + " is not a directory");
  const std::string mp = canonical_path(mountpoint);
  {
    FdGuard d(::open(mp.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
    DIR* dir = d.get() >= 0 ? ::fdopendir(::dup(d.get())) : nullptr;
    bool empty = true;
    if (dir) {
      while (struct dirent* e = ::readdir(dir)) {
        if (std::strcmp(e->d_name, ".") != 0 && std::strcmp(e->d_name, "..") != 0) empty = false;
      }
      ::closedir(dir);
    }
    if (!empty) throw Error("the mountpoint " + mp + " is not empty");
  }
  const std::vector<std::string> lowers = layer_trees_top_first(*store, string_list(rec, "layers"));
  const std::string upper = store->stack_dir(name) + "/upper";
  const std::string work = store->stack_dir(name) + "/work";

  // Resolve every mount before mounting anything: bind sources, volumes
  // (created when missing, as docker run does).
  std::map<std::string, std::string> anon_targets;
  if (rec.contains("anonymous_volume_targets") && rec["anonymous_volume_targets"].is_object()) {
    for (auto& [t, v] : rec["anonymous_volume_targets"].items()) {
      if (v.is_string()) anon_targets[t] = v.get<std::string>();
    }
  }
  std::vector<Resolved> resolved;
  std::set<std::string> targets;
  for (const auto& m : mounts) {
    if (!targets.insert(m.target).second) {
      throw Error("Duplicate mount point: " + m.target, 125);
    }
    Resolved r;
    r.spec = m;
    if (m.type == MountSpec::Type::kBind) {
      struct stat bs;
      if (::stat(m.source.c_str(), &bs) != 0) {
        if (errno != ENOENT || !m.create_source) {
          throw Error("invalid mount config for type \"bind\": bind source path does not exist: " +
                          m.source,
                      125);
        }
        std::error_code ec;
        std::filesystem::create_directories(m.source, ec);
        if (ec) throw Error("cannot create " + m.source + ": " + ec.message());
      }
    }
    resolved.push_back(std::move(r));
  }
  for (auto& r : resolved) {
    if (r.spec.type != MountSpec::Type::kVolume) continue;
    VolumeCreate vc;
    vc.labels = r.spec.volume_labels;
    vc.options = r.spec.volume_options;
    if (r.spec.source.empty()) {
      auto prev = anon_targets.find(r.spec.target);
      if (prev != anon_targets.end()) vc.name = prev->second;  // the stack's own, reused
      vc.anonymous = true;
      r.anonymous = true;
    } else {
      vc.name = r.spec.source;
    }
    try {
      r.volume = create_volume(*store, vc);
    } catch (const Error& e) {
      throw Error(e.what(), 125);  // docker run's status for a mount it cannot make
    }
    r.source = volume_mount_source(*store, r.volume);
  }

  std::vector<std::string> extra;
  if (::geteuid() == 0) extra.push_back("allow_other");  // like any root-mounted filesystem
  run_layerfs(mount_source(store->root(), name), mp, layerfs_options(lowers, upper, work, extra));
  json recorded = json::array();
  try {
    FdGuard mp_fd(::open(mp.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
    if (mp_fd.get() < 0) throw Error("cannot open " + mp + ": " + errno_text(errno));
    struct stat mst;
    if (::fstat(mp_fd.get(), &mst) != 0 || mst.st_dev == st.st_dev) {
      throw Error("the stack did not appear at " + mp);
    }
    for (const auto& r : resolved) {
      mount_one(mp_fd.get(), r);
      std::string source = r.spec.type == MountSpec::Type::kVolume ? r.volume : r.spec.source;
      recorded.push_back({{"type", mount_type_name(r.spec.type)},
                          {"source", source},
                          {"target", r.spec.target},
                          {"readonly", r.spec.readonly},
                          {"options", r.spec.options}});
    }
  } catch (...) {
    try {
      unmount_tree(mp);
    } catch (const Error&) {
      ::umount2(mp.c_str(), MNT_DETACH);
    }
    wait_workdir_free(work);
    throw;
  }
  json& vols = rec["volumes"];
  json& anon = rec["anonymous_volumes"];
  for (const auto& r : resolved) {
    if (r.spec.type != MountSpec::Type::kVolume) continue;
    append_unique(vols, r.volume);
    if (r.anonymous) {
      append_unique(anon, r.volume);
      rec["anonymous_volume_targets"][r.spec.target] = r.volume;
    }
  }
  if (!anon.is_array()) anon = json::array();
  rec["mount"] = {{"mountpoint", mp}, {"mounts", recorded}};
  try {
    store->write({{"stack/" + name, rec}});
  } catch (...) {
    try {
      unmount_tree(mp);
    } catch (const Error&) {
      ::umount2(mp.c_str(), MNT_DETACH);
    }
    throw;
  }
}

void umount_stack(const std::string& root, const std::string& name_or_mountpoint) {
  auto store = Store::open(root, Access::kWrite);
  const auto mounts = read_mountinfo();
  std::string name;
  bool is_name = name_or_mountpoint.find('/') == std::string::npos;
  if (is_name) {
    try {
      check_stack_name(name_or_mountpoint);
    } catch (const Error&) {
      is_name = false;
    }
  }
  if (is_name && store->get("stack/" + name_or_mountpoint)) {
    name = name_or_mountpoint;
  } else {
    struct stat st;
    bool exists = ::lstat(name_or_mountpoint.c_str(), &st) == 0 || errno == ENOTCONN;
    if (is_name && !exists) throw Error("No such stack: " + name_or_mountpoint);
    const std::string mp = canonical_path(name_or_mountpoint);
    for (const auto& m : mounts) {
      if (m.mountpoint != mp || m.fstype != "fuse.layerfs") continue;
      if (auto of = stack_of_source(m.source, store->root())) name = *of;
    }
    if (name.empty()) {
      for (const auto& [key, rec] : store->list("stack/")) {
        if (rec.contains("mount") && rec["mount"].is_object() &&
            rec["mount"].value("mountpoint", "") == mp) {
          name = rec.value("name", key.substr(6));
        }
      }
    }
    if (name.empty()) throw Error("no stack is mounted at " + mp);
  }
  json rec = get_stack_record(*store, name);
  auto at = stack_mountpoint(mounts, store->root(), name);
  const bool recorded = rec.contains("mount") && rec["mount"].is_object();
  if (!at && !recorded) throw Error("stack " + name + " is not mounted");
  if (at) {
    unmount_tree(*at);
    wait_workdir_free(store->stack_dir(name) + "/work");
  }
  rec.erase("mount");
  store->write({{"stack/" + name, rec}});
}

void remove_stack(const std::string& root, const std::string& name, bool remove_volumes_too) {
  check_stack_name(name);
  auto store = Store::open(root, Access::kWrite);
  json rec = get_stack_record(*store, name);
  if (auto at = stack_mountpoint(read_mountinfo(), store->root(), name, true)) {
    throw Error("stack " + name + " is mounted at " + *at + "; umount it first");
  }
  // The record goes first: a removal killed after it leaves only a directory,
  // which create_stack clears.
  store->write({{"stack/" + name, std::nullopt}});
  const std::string dir = store->stack_dir(name);
  const std::string tmp = store->make_temp("rm");
  if (::rename(dir.c_str(), (tmp + "/stack").c_str()) != 0 && errno != ENOENT) {
    remove_tree(dir);
  }
  const std::vector<std::string> anon = string_list(rec, "anonymous_volumes");
  std::vector<std::string> errors;
  if (remove_volumes_too && !anon.empty()) remove_volumes(*store, anon, true, &errors);
  store.reset();
  remove_tree(tmp);
  {
    // A volume another stack also uses stays, as Docker keeps it; other
    // problems are reported.
    std::string report;
    for (const auto& e : errors) {
      if (e.find("in use") != std::string::npos) continue;
      report += (report.empty() ? "" : "; ") + e;
    }
    if (!report.empty()) throw Error("stack " + name + " removed, but: " + report);
  }
}

std::vector<StackInfo> list_stacks(const Store& store, bool all, bool with_sizes) {
  const auto mounts = read_mountinfo();
  std::vector<StackInfo> out;
  std::map<std::string, int64_t> layer_sizes;
  for (const auto& [key, rec] : store.list("stack/")) {
    StackInfo s;
    s.name = rec.value("name", key.substr(6));
    s.layers = string_list(rec, "layers");
    s.created = rec.value("created", "");
    s.volumes = string_list(rec, "volumes");
    if (rec.contains("mount") && rec["mount"].is_object()) {
      const std::string recorded = rec["mount"].value("mountpoint", "");
      auto at = stack_mountpoint(mounts, store.root(), s.name);
      if (at && *at == recorded) s.mountpoint = recorded;
    }
    if (!all && !s.mountpoint) continue;
    if (with_sizes) {
      const std::string dir = store.stack_dir(s.name);
      if (s.mountpoint) {
        // Asks the daemon to publish its count now (fs/usage.h), so that
        // every write finished before this call is in it. A dead daemon
        // fails here, and its count is recounted below.
        int fd = ::open(s.mountpoint->c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        if (fd >= 0) {
          ::fsync(fd);
          ::close(fd);
        }
      }
      s.size_rw = writable_size(dir + "/upper", dir + "/work");
      int64_t virt = s.size_rw;
      for (const auto& id : s.layers) {
        auto it = layer_sizes.find(id);
        if (it == layer_sizes.end()) {
          auto lrec = store.get("layer/" + id);
          int64_t sz = lrec ? lrec->value("size", int64_t{0}) : 0;
          it = layer_sizes.emplace(id, sz).first;
        }
        virt += it->second;
      }
      s.size_root_fs = virt;
    }
    out.push_back(std::move(s));
  }
  std::stable_sort(out.begin(), out.end(),
                   [](const StackInfo& a, const StackInfo& b) { return a.created < b.created; });
  return out;
}

std::string size_cell(int64_t size_rw, int64_t size_root_fs) {
  std::string out = human_size(static_cast<double>(size_rw), 3);
  if (size_root_fs > 0)
    out += " (virtual " + human_size(static_cast<double>(size_root_fs), 3) + ")";
  return out;
}

}  // namespace layerfs::ctl
