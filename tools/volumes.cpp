// Volumes: `docker volume create|ls|inspect|rm|prune` over the layerctl store.
// Records are volume/<name> (STORE.md), data is ROOT/volumes/<name>/_data.
// Every change happens under the store's exclusive lock, so two commands never
// race on a name; the order of directory and record changes is chosen so that
// a crash leaves at most a directory without a record (see volumes.h).
#include "tools/volumes.h"

#include <dirent.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <cstring>
#include <fstream>
#include <regex>
#include <set>
#include <sstream>

#include "tools/output.h"
#include "tools/size.h"

namespace layerfs::ctl {
namespace {

constexpr const char* kAnonymousLabel = "com.docker.volume.anonymous";
constexpr const char* kVolumePrefix = "volume/";
constexpr const char* kStackPrefix = "stack/";

std::string errno_text(int e) {
  return std::strerror(e);
}

// Go's %q for the names Docker quotes in its messages.
std::string go_quote(const std::string& s) {
  std::string out = "\"";
  for (unsigned char c : s) {
    if (c == '"' || c == '\\') {
      out += '\\';
      out += static_cast<char>(c);
    } else if (c == '\n') {
      out += "\\n";
    } else if (c == '\t') {
      out += "\\t";
    } else if (c < 0x20 || c == 0x7f) {
      char buf[8];
      std::snprintf(buf, sizeof buf, "\\x%02x", c);
      out += buf;
    } else {
      out += static_cast<char>(c);
    }
  }
  return out + "\"";
}

bool name_char(char c, bool first) {
  if (std::isalnum(static_cast<unsigned char>(c))) return true;
  return !first && (c == '_' || c == '.' || c == '-');
}

void check_volume_name(const std::string& name) {
  const std::string prefix = "create " + name + ": ";
  if (name.size() == 1) {
    throw Error(prefix +
                "volume name is too short, names should be at least two alphanumeric characters");
  }
  bool ok = !name.empty();
  for (size_t i = 0; ok && i < name.size(); ++i) ok = name_char(name[i], i == 0);
  if (!ok) {
    throw Error(prefix + go_quote(name) +
                " includes invalid characters for a local volume name, only "
                "\"[a-zA-Z0-9][a-zA-Z0-9_.-]\" are allowed. If you intended to pass a host "
                "directory, use absolute path");
  }
}

// strconv.ParseBool's spellings; nullopt when none.
std::optional<bool> go_parse_bool(const std::string& s) {
  for (const char* t : {"1", "t", "T", "TRUE", "true", "True"}) {
    if (s == t) return true;
  }
  for (const char* f : {"0", "f", "F", "FALSE", "false", "False"}) {
    if (s == f) return false;
  }
  return std::nullopt;
}

bool has_option(const std::string& list, const std::string& want) {
  std::stringstream ss(list);
  std::string item;
  while (std::getline(ss, item, ',')) {
    if (item == want) return true;
  }
  return false;
}

// Docker's local driver checks (local_unix.go validateOpts), then the kinds a
// stack can mount.
void check_options(const std::string& name, const std::map<std::string, std::string>& opts) {
  if (opts.empty()) return;
  const std::string prefix = "create " + name + ": ";
  for (const auto& [k, v] : opts) {
    if (k != "type" && k != "o" && k != "device" && k != "size") {
      throw Error(prefix + "invalid option: " + go_quote(k));
    }
  }
  if (auto it = opts.find("size"); it != opts.end()) {
    int64_t size = parse_ram_size(it->second);
    if (size < 0) throw Error(prefix + "invalid size: '" + it->second + "'");
    if (size > 0) throw Error(prefix + "quota size requested but no quota support");
  }
  const std::vector<std::pair<std::string, std::vector<std::string>>> mandatory = {
      {"device", {"type"}}, {"type", {"device"}}, {"o", {"device", "type"}}};
  for (const auto& [opt, needs] : mandatory) {
    if (!opts.count(opt)) continue;
    for (const auto& need : needs) {
      if (!opts.count(need)) throw Error(prefix + "missing required option: " + go_quote(need));
    }
  }
  if (!opts.count("type")) return;  // only size=0: a plain directory
  const std::string& type = opts.at("type");
  const std::string o = opts.count("o") ? opts.at("o") : "";
  if (type == "tmpfs") return;
  if (type == "none" && (has_option(o, "bind") || has_option(o, "rbind"))) {
    const std::string& dev = opts.at("device");
    struct stat st;
    if (dev.empty() || dev[0] != '/' || ::stat(dev.c_str(), &st) != 0 || !S_ISDIR(st.st_mode)) {
      throw Error(prefix + "bind device " + go_quote(dev) +
                  " must be an absolute path to an existing directory");
    }
    return;
  }
  throw Error(prefix + "layerctl mounts only type=tmpfs volumes and type=none volumes with o=bind");
}

json map_or_null(const std::map<std::string, std::string>& m) {
  if (m.empty()) return nullptr;
  json j = json::object();
  for (const auto& [k, v] : m) j[k] = v;
  return j;
}

bool empty_map(const json& j) {
  return !j.is_object() || j.empty();
}

// Docker's filters.Args: key -> values, from "key=value" strings.
using FilterArgs = std::map<std::string, std::vector<std::string>>;

std::string trim(const std::string& s) {
  size_t b = s.find_first_not_of(" \t\n\r");
  if (b == std::string::npos) return "";
  size_t e = s.find_last_not_of(" \t\n\r");
  return s.substr(b, e - b + 1);
}

FilterArgs parse_filters(const std::vector<std::string>& filters,
                         const std::set<std::string>& accepted) {
  FilterArgs args;
  for (const auto& f : filters) {
    auto eq = f.find('=');
    if (eq == std::string::npos) {
      throw Error("bad format of filter (expected name=value)", 125);
    }
    std::string key = trim(f.substr(0, eq));
    std::transform(key.begin(), key.end(), key.begin(),
                   [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
    auto& vals = args[key];
    std::string value = trim(f.substr(eq + 1));
    if (std::find(vals.begin(), vals.end(), value) == vals.end()) vals.push_back(value);
  }
  for (const auto& [k, v] : args) {
    if (!accepted.count(k)) throw Error("invalid filter '" + k + "'");
  }
  return args;
}

std::string joined(const std::vector<std::string>& v, const std::string& sep) {
  std::string out;
  for (size_t i = 0; i < v.size(); ++i) out += (i ? sep : "") + v[i];
  return out;
}

// filters.Args.MatchKVList: every term K or K=V has its label (with that value).
bool match_kv_list(const std::vector<std::string>& terms, const json& labels) {
  for (const auto& t : terms) {
    auto eq = t.find('=');
    std::string k = t.substr(0, eq);
    if (!labels.is_object() || !labels.contains(k)) return false;
    if (eq != std::string::npos) {
      const json& v = labels[k];
      if (!v.is_string() || v.get<std::string>() != t.substr(eq + 1)) return false;
    }
  }
  return true;
}

// Label filters as Docker's byLabelFilter applies them.
bool match_labels(const FilterArgs& args, const json& labels) {
  if (auto it = args.find("label"); it != args.end() && !match_kv_list(it->second, labels)) {
    return false;
  }
  if (auto it = args.find("label!"); it != args.end() && match_kv_list(it->second, labels)) {
    return false;
  }
  return true;
}

// Which stacks use each volume, from every stack record's "volumes".
std::map<std::string, std::vector<std::string>> volume_users(const Store& store) {
  std::map<std::string, std::vector<std::string>> users;
  for (const auto& [key, rec] : store.list(kStackPrefix)) {
    std::string stack = rec.value("name", key.substr(std::strlen(kStackPrefix)));
    auto it = rec.find("volumes");
    if (it == rec.end() || !it->is_array()) continue;
    std::set<std::string> seen;
    for (const auto& v : *it) {
      if (v.is_string() && seen.insert(v.get<std::string>()).second) {
        users[v.get<std::string>()].push_back(stack);
      }
    }
  }
  return users;
}

// Natural order as Docker's CLI sorts names (sortorder.NaturalLess): runs of
// digits compare by value.
bool natural_less(const std::string& a, const std::string& b) {
  size_t i = 0, j = 0;
  auto digit = [](char c) { return c >= '0' && c <= '9'; };
  while (i < a.size() && j < b.size()) {
    if (digit(a[i]) && digit(b[j])) {
      size_t si = i, sj = j;
      while (i < a.size() && digit(a[i])) ++i;
      while (j < b.size() && digit(b[j])) ++j;
      std::string ra = a.substr(si, i - si), rb = b.substr(sj, j - sj);
      std::string za = ra.substr(std::min(ra.find_first_not_of('0'), ra.size()));
      std::string zb = rb.substr(std::min(rb.find_first_not_of('0'), rb.size()));
      if (za.size() != zb.size()) return za.size() < zb.size();
      if (za != zb) return za < zb;
      if (ra.size() != rb.size()) return ra.size() < rb.size();
      continue;
    }
    if (a[i] != b[j]) return a[i] < b[j];
    ++i;
    ++j;
  }
  return a.size() - i < b.size() - j;
}

// Mount points at or below `dir`, from /proc/self/mountinfo.
std::vector<std::string> mounts_under(const std::string& dir) {
  std::vector<std::string> out;
  std::ifstream in("/proc/self/mountinfo");
  std::string line;
  while (std::getline(in, line)) {
    std::istringstream ls(line);
    std::string id, parent, devno, root, point;
    if (!(ls >> id >> parent >> devno >> root >> point)) continue;
    std::string path;  // octal escapes: \040 for space and so on
    for (size_t i = 0; i < point.size(); ++i) {
      if (point[i] == '\\' && i + 3 < point.size()) {
        path += static_cast<char>(std::stoi(point.substr(i + 1, 3), nullptr, 8));
        i += 3;
      } else {
        path += point[i];
      }
    }
    if (path == dir || path.rfind(dir + "/", 0) == 0) out.push_back(path);
  }
  return out;
}

void fsync_dir(const std::string& dir) {
  int fd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd >= 0) {
    ::fsync(fd);
    ::close(fd);
  }
}

bool exists(const std::string& path) {
  struct stat st;
  return ::lstat(path.c_str(), &st) == 0;
}

void require_write(const Store& store) {
  if (store.access() != Access::kWrite) {
    throw Error("internal error: volume change on a read-only store");
  }
}

// Deletes the record, then the directory (see volumes.h for why this order).
void remove_one(Store& store, const std::string& name) {
  store.write({{kVolumePrefix + name, std::nullopt}});
  remove_tree(store.volume_dir(name));
}

}  // namespace

std::string join_labels(const json& labels) {
  std::vector<std::string> parts;
  if (labels.is_object()) {
    for (const auto& [k, v] : labels.items()) {
      parts.push_back(k + "=" + (v.is_string() ? v.get<std::string>() : v.dump()));
    }
  }
  return joined(parts, ",");
}

json docker_volume_json(const Store& store, const json& record) {
  json out = json::object();
  const std::string name = record.value("Name", "");
  out["CreatedAt"] = record.value("CreatedAt", "");
  out["Driver"] = record.value("Driver", "local");
  json labels = record.contains("Labels") ? record["Labels"] : json(nullptr);
  out["Labels"] = empty_map(labels) ? json(nullptr) : labels;
  out["Mountpoint"] = store.volume_dir(name) + "/_data";
  out["Name"] = name;
  json options = record.contains("Options") ? record["Options"] : json(nullptr);
  out["Options"] = empty_map(options) ? json(nullptr) : options;
  out["Scope"] = record.value("Scope", "local");
  return out;
}

std::string render_volume_inspect(const std::vector<json>& records) {
  json arr = json::array();
  for (const auto& r : records) arr.push_back(r);
  std::string text = arr.dump(4);
  // Go's encoder escapes these for HTML safety; they occur only inside strings.
  std::string out;
  for (char c : text) {
    if (c == '<') {
      out += "\\u003c";
    } else if (c == '>') {
      out += "\\u003e";
    } else if (c == '&') {
      out += "\\u0026";
    } else {
      out += c;
    }
  }
  return out;
}

std::string create_volume(Store& store, const VolumeCreate& spec) {
  require_write(store);
  const bool named = spec.name && !spec.name->empty();
  const std::string name = named ? *spec.name : random_hex_id();
  if (spec.driver != "local") {
    throw Error("create " + name + ": error looking up volume plugin " + spec.driver + ": plugin " +
                go_quote(spec.driver) + " not found");
  }
  check_volume_name(name);
  if (store.get(kVolumePrefix + name)) return name;  // as Docker: the existing one
  check_options(name, spec.options);

  std::map<std::string, std::string> labels = spec.labels;
  if (spec.anonymous || !named) labels[kAnonymousLabel] = "";

  const std::string dir = store.volume_dir(name);
  const std::string tmp = store.make_temp("volume");
  try {
    if (::chmod(tmp.c_str(), 0755) != 0 || ::mkdir((tmp + "/_data").c_str(), 0755) != 0 ||
        ::chmod((tmp + "/_data").c_str(), 0755) != 0) {
      throw Error("create " + name + ": cannot make its directory in " + tmp + ": " +
                  errno_text(errno));
    }
    // A directory without a record is what a crash during create or rm left:
    // not a volume, and its content must not resurface in a new one.
    if (exists(dir)) {
      if (!mounts_under(dir).empty()) {
        throw Error("create " + name + ": " + dir + " has something mounted on it");
      }
      remove_tree(dir);
    }
    if (::rename(tmp.c_str(), dir.c_str()) != 0) {
      throw Error("create " + name + ": cannot move " + tmp + " to " + dir + ": " +
                  errno_text(errno));
    }
  } catch (...) {
    remove_tree(tmp);
    throw;
  }
  fsync_dir(store.root() + "/volumes");
  json rec = json::object();
  rec["CreatedAt"] = now_rfc3339();
  rec["Driver"] = "local";
  rec["Labels"] = map_or_null(labels);
  rec["Mountpoint"] = dir + "/_data";
  rec["Name"] = name;
  rec["Options"] = map_or_null(spec.options);
  rec["Scope"] = "local";
  store.write({{kVolumePrefix + name, rec}});
  return name;
}

std::string create_volume(const std::string& root, const VolumeCreate& spec) {
  auto store = Store::open(root, Access::kWrite);
  return create_volume(*store, spec);
}

std::vector<VolumeInfo> list_volumes(const Store& store, const VolumeFilter& filter) {
  FilterArgs args = parse_filters(filter.filters, {"dangling", "name", "driver", "label"});
  std::optional<bool> dangling;
  if (auto it = args.find("dangling"); it != args.end()) {
    const auto& vals = it->second;
    std::optional<bool> b;
    if (vals.size() == 1) {
      std::string v = vals[0];
      std::string lower = v;
      std::transform(lower.begin(), lower.end(), lower.begin(),
                     [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
      if (lower == "true" || v == "1") b = true;
      if (lower == "false" || v == "0") b = false;
    }
    if (!b) throw Error("invalid filter 'dangling=" + joined(vals, ",") + "'");
    dangling = b;
  }
  const auto users = volume_users(store);
  std::vector<VolumeInfo> out;
  for (const auto& [key, rec] : store.list(kVolumePrefix)) {
    VolumeInfo info;
    info.record = docker_volume_json(store, rec);
    const std::string name = info.name();
    if (auto u = users.find(name); u != users.end())
      info.links = static_cast<int64_t>(u->second.size());
    if (auto it = args.find("driver"); it != args.end()) {
      const std::string d = info.record["Driver"];
      if (std::find(it->second.begin(), it->second.end(), d) == it->second.end()) continue;
    }
    if (auto it = args.find("name"); it != args.end()) {
      bool any = false;
      for (const auto& pattern : it->second) {
        try {
          if (std::regex_search(name, std::regex(pattern))) any = true;
        } catch (const std::regex_error&) {
          // Docker skips a pattern that does not compile.
        }
      }
      if (!any) continue;
    }
    if (!match_labels(args, info.record["Labels"])) continue;
    if (dangling && (info.links == 0) != *dangling) continue;
    out.push_back(std::move(info));
  }
  std::stable_sort(out.begin(), out.end(), [](const VolumeInfo& a, const VolumeInfo& b) {
    return natural_less(a.name(), b.name());
  });
  return out;
}

std::vector<json> inspect_volumes(const Store& store, const std::vector<std::string>& names,
                                  std::vector<std::string>* missing) {
  std::vector<json> out;
  for (const auto& n : names) {
    auto rec = n.empty() ? std::nullopt : store.get(kVolumePrefix + n);
    if (rec) {
      out.push_back(docker_volume_json(store, *rec));
    } else if (missing) {
      missing->push_back(n);
    }
  }
  return out;
}

std::vector<std::string> remove_volumes(Store& store, const std::vector<std::string>& names,
                                        bool force, std::vector<std::string>* errors) {
  require_write(store);
  std::vector<std::string> removed;
  auto fail = [&](const std::string& msg) {
    if (errors) errors->push_back(msg);
  };
  const auto users = volume_users(store);
  for (const auto& name : names) {
    auto rec = name.empty() ? std::nullopt : store.get(kVolumePrefix + name);
    if (!rec) {
      if (force) {
        removed.push_back(name);
      } else {
        fail("get " + name + ": no such volume");
      }
      continue;
    }
    if (auto u = users.find(name); u != users.end()) {
      fail("remove " + name + ": volume is in use - [" + joined(u->second, ", ") + "]");
      continue;
    }
    auto mounted = mounts_under(store.volume_dir(name));
    if (!mounted.empty()) {
      fail("remove " + name + ": " + mounted.front() + " is still mounted");
      continue;
    }
    remove_one(store, name);
    removed.push_back(name);
  }
  return removed;
}

std::vector<std::string> remove_volumes(const std::string& root,
                                        const std::vector<std::string>& names, bool force,
                                        std::vector<std::string>* errors) {
  auto store = Store::open(root, Access::kWrite);
  return remove_volumes(*store, names, force, errors);
}

PruneResult prune_volumes(const std::string& root, bool all,
                          const std::vector<std::string>& filters) {
  FilterArgs args = parse_filters(filters, {"label", "label!", "all"});
  if (auto it = args.find("all"); it != args.end()) {
    if (it->second.size() > 1) {
      throw Error("invalid filter 'all=[" + joined(it->second, " ") +
                  "]': only one value is expected");
    }
    auto b = go_parse_bool(it->second[0]);
    if (!b) {
      throw Error("invalid filter 'all': strconv.ParseBool: parsing " + go_quote(it->second[0]) +
                  ": invalid syntax");
    }
    all = all || *b;
  }
  if (!all) args["label"].push_back(kAnonymousLabel);

  auto store = Store::open(root, Access::kWrite);
  const auto users = volume_users(*store);
  PruneResult result;
  std::set<std::string> recorded;
  std::vector<std::pair<std::string, json>> candidates;
  for (const auto& [key, rec] : store->list(kVolumePrefix)) {
    const std::string name = key.substr(std::strlen(kVolumePrefix));
    recorded.insert(name);
    json v = docker_volume_json(*store, rec);
    if (v["Driver"] != "local" || !v["Options"].is_null()) continue;
    if (users.count(name)) continue;
    if (!match_labels(args, v["Labels"])) continue;
    if (!mounts_under(store->volume_dir(name)).empty()) continue;
    candidates.emplace_back(name, v);
  }
  std::stable_sort(candidates.begin(), candidates.end(),
                   [](const auto& a, const auto& b) { return natural_less(a.first, b.first); });
  for (const auto& [name, v] : candidates) {
    const std::string data = store->volume_dir(name) + "/_data";
    const int64_t bytes = exists(data) ? tree_size(data) : 0;
    remove_one(*store, name);
    result.removed.push_back(name);
    result.reclaimed += bytes;
  }
  // Directories without a record: leftovers of a create or rm cut short.
  const std::string vroot = store->root() + "/volumes";
  if (DIR* d = ::opendir(vroot.c_str())) {
    std::vector<std::string> orphans;
    while (struct dirent* e = ::readdir(d)) {
      std::string n = e->d_name;
      if (n == "." || n == ".." || recorded.count(n)) continue;
      orphans.push_back(n);
    }
    ::closedir(d);
    for (const auto& n : orphans) {
      if (mounts_under(vroot + "/" + n).empty()) remove_tree(vroot + "/" + n);
    }
  }
  return result;
}

VolumeMountSource volume_mount_source(const Store& store, const std::string& name) {
  auto rec = name.empty() ? std::nullopt : store.get(kVolumePrefix + name);
  if (!rec) throw Error("get " + name + ": no such volume");
  VolumeMountSource src;
  src.path = store.volume_dir(name) + "/_data";
  const json opts = rec->value("Options", json(nullptr));
  if (!opts.is_object()) return src;
  const std::string type = opts.value("type", "");
  const std::string o = opts.value("o", "");
  if (type == "tmpfs") {
    src.kind = VolumeMountSource::Kind::kTmpfs;
    src.options = o;
  } else if (type == "none" && (has_option(o, "bind") || has_option(o, "rbind"))) {
    src.kind = VolumeMountSource::Kind::kBind;
    src.path = opts.value("device", "");
  }
  return src;
}

int64_t volume_size(const Store& store, const std::string& name) {
  auto rec = name.empty() ? std::nullopt : store.get(kVolumePrefix + name);
  if (!rec) return -1;
  if (!empty_map(rec->value("Options", json(nullptr)))) return -1;
  return tree_size(store.volume_dir(name) + "/_data");
}

}  // namespace layerfs::ctl
