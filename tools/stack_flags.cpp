// The mount flags of `layerctl mount`, with docker run's syntax and error
// texts: -v (volume/mounts/linux_parser.go), --mount (docker/cli opts/mount.go)
// and --tmpfs. Every problem is an Error with exit status 125, as a bad flag
// value is for docker run.
#include <algorithm>
#include <cctype>
#include <filesystem>
#include <set>

#include "tools/output.h"
#include "tools/stacks.h"

namespace layerfs::ctl {
namespace {

constexpr int kBadFlag = 125;

[[noreturn]] void fail(const std::string& msg) {
  throw Error(msg, kBadFlag);
}

[[noreturn]] void fail_config(MountSpec::Type t, const std::string& why) {
  fail(std::string("invalid mount config for type \"") + mount_type_name(t) + "\": " + why);
}

std::string lower(std::string s) {
  for (char& c : s) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return s;
}

std::vector<std::string> split(const std::string& s, char sep) {
  std::vector<std::string> out;
  size_t start = 0;
  for (;;) {
    size_t p = s.find(sep, start);
    out.push_back(s.substr(start, p - start));
    if (p == std::string::npos) return out;
    start = p + 1;
  }
}

// Docker's path.Clean of the target, then its checks: absolute, not "/".
std::string clean_target(MountSpec::Type t, const std::string& target) {
  if (target.empty()) fail_config(t, "field Target must not be empty");
  if (target[0] != '/') {
    fail_config(t, "invalid mount path: '" + target + "' mount path must be absolute");
  }
  std::string out = std::filesystem::path(target).lexically_normal().string();
  while (out.size() > 1 && out.back() == '/') out.pop_back();
  if (out == "/") fail("invalid specification: destination can't be '/'");
  return out;
}

// Volume names as Docker's local driver takes them.
void check_volume_name(const std::string& name) {
  bool ok = name.size() >= 2 && std::isalnum(static_cast<unsigned char>(name[0]));
  for (char c : name) {
    if (!(std::isalnum(static_cast<unsigned char>(c)) || c == '_' || c == '.' || c == '-')) {
      ok = false;
    }
  }
  if (!ok) {
    fail("create " + name + ": \"" + name +
         "\" includes invalid characters for a local volume name, only "
         "\"[a-zA-Z0-9][a-zA-Z0-9_.-]\" are allowed. If you intended to pass a host directory, "
         "use absolute path");
  }
}

// Docker's ValidMountMode: a comma list with at most one of each kind.
bool valid_mode(const std::string& mode, bool* readonly, std::string* propagation) {
  if (mode.empty()) return true;
  static const std::vector<std::set<std::string>> kKinds = {
      {"rw", "ro"},
      {"z", "Z"},
      {"shared", "rshared", "slave", "rslave", "private", "rprivate"},
      {"nocopy"},
      {"consistent", "cached", "delegated"},
  };
  std::vector<int> seen(kKinds.size(), 0);
  for (const auto& item : split(mode, ',')) {
    bool known = false;
    for (size_t k = 0; k < kKinds.size(); ++k) {
      if (kKinds[k].count(item)) {
        if (++seen[k] > 1) return false;
        known = true;
        if (k == 0) *readonly = item == "ro";
        if (k == 2) *propagation = item;
      }
    }
    if (!known) return false;
  }
  return true;
}

bool parse_bool(const std::string& v, bool* out) {
  static const std::set<std::string> kTrue = {"1", "t", "T", "TRUE", "true", "True"};
  static const std::set<std::string> kFalse = {"0", "f", "F", "FALSE", "false", "False"};
  if (kTrue.count(v)) {
    *out = true;
    return true;
  }
  if (kFalse.count(v)) {
    *out = false;
    return true;
  }
  return false;
}

// One CSV record as Go's encoding/csv reads it: fields split at commas, a
// field starting with '"' is quoted ("" inside is a quote).
std::vector<std::string> read_csv_record(const std::string& s) {
  std::vector<std::string> fields;
  size_t i = 0;
  for (;;) {
    std::string field;
    size_t field_start = i;
    if (i < s.size() && s[i] == '"') {
      ++i;
      for (;;) {
        if (i >= s.size()) {
          fail("parse error on line 1, column " + std::to_string(s.size() + 1) +
               ": extraneous or missing \" in quoted-field");
        }
        if (s[i] == '"') {
          if (i + 1 < s.size() && s[i + 1] == '"') {
            field += '"';
            i += 2;
            continue;
          }
          ++i;
          break;
        }
        field += s[i++];
      }
      if (i < s.size() && s[i] != ',') {
        fail("parse error on line 1, column " + std::to_string(i + 1) +
             ": extraneous or missing \" in quoted-field");
      }
    } else {
      while (i < s.size() && s[i] != ',') {
        if (s[i] == '"') {
          fail("parse error on line 1, column " + std::to_string(i + 1) +
               ": bare \" in non-quoted-field");
        }
        field += s[i++];
      }
    }
    (void)field_start;
    fields.push_back(field);
    if (i >= s.size()) return fields;
    ++i;  // the comma
  }
}

// Tmpfs options: the flags mount(8) knows and the data options Docker allows
// (size, mode, uid, gid, nr_inodes, nr_blocks, mpol). Later ones win, as
// Docker's MergeTmpfsOptions has it. Returns "flag,...,key=value,...".
std::string merge_tmpfs_options(const std::vector<std::string>& opts) {
  // Flags that cancel each other share a group.
  static const std::vector<std::pair<std::string, std::string>> kFlags = {
      {"ro", "rw"},
      {"rw", "rw"},
      {"suid", "suid"},
      {"nosuid", "suid"},
      {"dev", "dev"},
      {"nodev", "dev"},
      {"exec", "exec"},
      {"noexec", "exec"},
      {"sync", "sync"},
      {"async", "sync"},
      {"atime", "atime"},
      {"noatime", "atime"},
      {"diratime", "diratime"},
      {"nodiratime", "diratime"},
      {"relatime", "relatime"},
      {"norelatime", "relatime"},
      {"strictatime", "strictatime"},
      {"nostrictatime", "strictatime"},
      {"dirsync", "dirsync"},
  };
  static const std::set<std::string> kData = {"size",      "mode",      "uid", "gid",
                                              "nr_inodes", "nr_blocks", "mpol"};
  std::vector<std::pair<std::string, std::string>> flags;  // group -> flag, in first order
  std::vector<std::pair<std::string, std::string>> data;   // key -> value
  auto put = [](std::vector<std::pair<std::string, std::string>>& v, const std::string& k,
                const std::string& val) {
    for (auto& [kk, vv] : v) {
      if (kk == k) {
        vv = val;
        return;
      }
    }
    v.emplace_back(k, val);
  };
  for (const auto& o : opts) {
    if (o.empty()) continue;
    auto flag =
        std::find_if(kFlags.begin(), kFlags.end(), [&](const auto& f) { return f.first == o; });
    if (flag != kFlags.end()) {
      put(flags, flag->second, o);
      continue;
    }
    auto eq = o.find('=');
    std::string key = o.substr(0, eq);
    if (!kData.count(key) || eq == std::string::npos) {
      std::string shown = "[\"" + key + "\"";
      if (eq != std::string::npos) shown += " \"" + o.substr(eq + 1) + "\"";
      fail("invalid tmpfs option " + shown + "]");
    }
    std::string value = o.substr(eq + 1);
    if (key == "size" && (value.empty() || value.back() != '%')) {
      int64_t bytes = parse_ram_size(value);
      if (bytes < 0) fail("invalid tmpfs option [\"size\" \"" + value + "\"]");
      value = std::to_string(bytes);
    }
    put(data, key, value);
  }
  bool has_mode = std::any_of(data.begin(), data.end(), [](auto& d) { return d.first == "mode"; });
  if (!has_mode) data.emplace_back("mode", "1777");
  std::string out;
  for (const auto& [g, f] : flags) out += (out.empty() ? "" : ",") + f;
  for (const auto& [k, v] : data) out += (out.empty() ? "" : ",") + k + "=" + v;
  return out;
}

// Docker mounts every tmpfs noexec,nosuid,nodev unless told otherwise.
const std::vector<std::string> kTmpfsDefaults = {"noexec", "nosuid", "nodev"};

}  // namespace

const char* mount_type_name(MountSpec::Type t) {
  switch (t) {
    case MountSpec::Type::kVolume:
      return "volume";
    case MountSpec::Type::kBind:
      return "bind";
    case MountSpec::Type::kTmpfs:
      return "tmpfs";
  }
  return "volume";
}

MountSpec parse_volume_flag(const std::string& value) {
  std::vector<std::string> arr;
  {
    // strings.SplitN(raw, ":", 4)
    size_t start = 0;
    while (arr.size() < 3) {
      size_t p = value.find(':', start);
      if (p == std::string::npos) break;
      arr.push_back(value.substr(start, p - start));
      start = p + 1;
    }
    arr.push_back(value.substr(start));
  }
  const std::string invalid = "invalid volume specification: '" + value + "'";
  if (arr[0].empty()) fail(invalid);
  MountSpec m;
  std::string mode;
  bool ro = false;
  std::string propagation;
  switch (arr.size()) {
    case 1:
      m.target = arr[0];
      break;
    case 2:
      // "/dst:rw" is a destination with a mode, which a volume cannot have.
      if (valid_mode(arr[1], &ro, &propagation)) fail(invalid);
      m.source = arr[0];
      m.target = arr[1];
      break;
    case 3:
      m.source = arr[0];
      m.target = arr[1];
      mode = arr[2];
      break;
    default:
      fail(invalid);
  }
  ro = false;
  propagation.clear();
  if (!valid_mode(mode, &ro, &propagation)) fail("invalid mode: " + mode);
  m.readonly = ro;
  m.type =
      !m.source.empty() && m.source[0] == '/' ? MountSpec::Type::kBind : MountSpec::Type::kVolume;
  m.target = clean_target(m.type, m.target);
  if (m.type == MountSpec::Type::kBind) {
    m.source = std::filesystem::path(m.source).lexically_normal().string();
    while (m.source.size() > 1 && m.source.back() == '/') m.source.pop_back();
    m.create_source = true;
    m.propagation = propagation.empty() ? "rprivate" : propagation;
  } else {
    if (!propagation.empty()) {
      fail_config(m.type, "field BindOptions must not be specified");
    }
    if (!m.source.empty()) check_volume_name(m.source);
  }
  return m;
}

MountSpec parse_mount_flag(const std::string& value) {
  MountSpec m;
  std::string type = "volume";
  bool bind_opts = false, volume_opts = false, tmpfs_opts = false;
  int64_t tmpfs_size = -1;
  std::string tmpfs_mode;
  for (const auto& field : read_csv_record(value)) {
    auto eq = field.find('=');
    std::string key = lower(field.substr(0, eq));
    if (eq == std::string::npos) {
      if (key == "readonly" || key == "ro") {
        m.readonly = true;
        continue;
      }
      if (key == "volume-nocopy") {
        volume_opts = true;
        continue;
      }
      fail("invalid field '" + field + "' must be a key=value pair");
    }
    std::string val = field.substr(eq + 1);
    if (key == "type") {
      type = lower(val);
    } else if (key == "source" || key == "src") {
      m.source = val;
      if (val == "." || val.rfind("./", 0) == 0) {
        m.source = std::filesystem::absolute(val).lexically_normal().string();
        while (m.source.size() > 1 && m.source.back() == '/') m.source.pop_back();
      }
    } else if (key == "target" || key == "dst" || key == "destination") {
      m.target = val;
    } else if (key == "readonly" || key == "ro") {
      if (!parse_bool(val, &m.readonly)) fail("invalid value for " + key + ": " + val);
    } else if (key == "consistency") {
      // Only meaningful on macOS; Docker accepts and ignores it on Linux.
    } else if (key == "bind-propagation") {
      bind_opts = true;
      m.propagation = lower(val);
      static const std::set<std::string> kProp = {"rprivate", "private", "rshared",
                                                  "shared",   "rslave",  "slave"};
      if (!kProp.count(m.propagation)) fail("invalid propagation mode: " + val);
    } else if (key == "volume-nocopy") {
      bool b;
      if (!parse_bool(val, &b)) fail("invalid value for volume-nocopy: " + val);
      volume_opts = true;
    } else if (key == "volume-label") {
      volume_opts = true;
      auto e = val.find('=');
      m.volume_labels[val.substr(0, e)] = e == std::string::npos ? "" : val.substr(e + 1);
    } else if (key == "volume-driver") {
      volume_opts = true;
      if (val != "local") {
        fail("error looking up volume plugin " + val + ": plugin \"" + val + "\" not found");
      }
    } else if (key == "volume-opt") {
      volume_opts = true;
      auto e = val.find('=');
      if (e == std::string::npos) {
        fail("invalid value for volume-opt: " + val);
      }
      m.volume_options[val.substr(0, e)] = val.substr(e + 1);
    } else if (key == "tmpfs-size") {
      tmpfs_opts = true;
      tmpfs_size = parse_ram_size(val);
      if (tmpfs_size < 0) fail("invalid value for " + key + ": " + val);
    } else if (key == "tmpfs-mode") {
      tmpfs_opts = true;
      bool ok = !val.empty() && val.size() <= 11;
      for (char c : val) ok = ok && c >= '0' && c <= '7';
      if (!ok || std::stoull(val, nullptr, 8) > 0xffffffffULL) {
        fail("invalid value for " + key + ": " + val);
      }
      tmpfs_mode = val;
    } else if (key == "bind-recursive" || key == "bind-nonrecursive" || key == "bind-create-src" ||
               key == "volume-subpath" || key == "image-subpath" || key == "tmpfs-options") {
      fail("option '" + key + "' is not supported by layerctl");
    } else {
      fail("unknown option '" + key + "' in '" + field + "'");
    }
  }
  if (type.empty()) fail("type is required");
  if (m.target.empty()) fail("target is required");
  if (type == "volume") {
    m.type = MountSpec::Type::kVolume;
  } else if (type == "bind") {
    m.type = MountSpec::Type::kBind;
  } else if (type == "tmpfs") {
    m.type = MountSpec::Type::kTmpfs;
  } else if (type == "npipe" || type == "cluster" || type == "image") {
    fail("invalid mount config for type \"" + type + "\": mount type not supported by layerctl");
  } else {
    fail("invalid mount config for type \"" + type + "\": mount type unknown");
  }
  if (volume_opts && m.type != MountSpec::Type::kVolume) {
    fail("cannot mix 'volume-*' options with mount type '" + type + "'");
  }
  if (bind_opts && m.type != MountSpec::Type::kBind) {
    fail("cannot mix 'bind-*' options with mount type '" + type + "'");
  }
  if (tmpfs_opts && m.type != MountSpec::Type::kTmpfs) {
    fail("cannot mix 'tmpfs-*' options with mount type '" + type + "'");
  }
  m.target = clean_target(m.type, m.target);
  switch (m.type) {
    case MountSpec::Type::kBind:
      if (m.source.empty()) fail_config(m.type, "field Source must not be empty");
      if (m.source[0] != '/') {
        fail_config(m.type, "invalid mount path: '" + m.source + "' mount path must be absolute");
      }
      if (m.propagation.empty()) m.propagation = "rprivate";
      break;
    case MountSpec::Type::kVolume:
      if (!m.source.empty()) check_volume_name(m.source);
      break;
    case MountSpec::Type::kTmpfs: {
      if (!m.source.empty()) fail_config(m.type, "field Source must not be specified");
      std::vector<std::string> opts = kTmpfsDefaults;
      if (tmpfs_size >= 0) opts.push_back("size=" + std::to_string(tmpfs_size));
      if (!tmpfs_mode.empty()) opts.push_back("mode=" + tmpfs_mode);
      m.options = merge_tmpfs_options(opts);
      break;
    }
  }
  return m;
}

MountSpec parse_tmpfs_flag(const std::string& value) {
  MountSpec m;
  m.type = MountSpec::Type::kTmpfs;
  auto colon = value.find(':');
  m.target = clean_target(m.type, value.substr(0, colon));
  std::vector<std::string> opts = kTmpfsDefaults;
  if (colon != std::string::npos) {
    for (const auto& o : split(value.substr(colon + 1), ',')) opts.push_back(o);
  }
  m.options = merge_tmpfs_options(opts);
  for (const auto& o : split(m.options, ',')) {
    if (o == "ro") m.readonly = true;
  }
  return m;
}

}  // namespace layerfs::ctl
