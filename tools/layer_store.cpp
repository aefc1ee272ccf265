// The layers of a store (tools/layer_store.h): import into ROOT/tmp without
// the lock, then move into place and record under the exclusive lock; list,
// find, remove and export.
#include "tools/layer_store.h"

#include <archive.h>
#include <archive_entry.h>
#include <dirent.h>
#include <fcntl.h>
#include <openssl/evp.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <map>
#include <regex>
#include <set>

#include "tools/size.h"

namespace layerfs::ctl {
namespace {

std::string errno_text(int e) {
  return std::strerror(e);
}

std::string la_text(archive* a) {
  const char* s = archive_error_string(a);
  return s ? s : "unknown error";
}

std::string hex_of(const std::string& id) {
  auto colon = id.find(':');
  return colon == std::string::npos ? id : id.substr(colon + 1);
}

bool is_hex(const std::string& s) {
  return !s.empty() && std::all_of(s.begin(), s.end(), [](char c) {
    return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f');
  });
}

std::string layer_key(const std::string& id) {
  return "layer/" + id;
}
std::string name_key(const std::string& name) {
  return "layername/" + name;
}

// Docker's rule for container names, which layer names follow; and never 64
// hex digits, which would read as an id.
void check_name(const std::string& name) {
  static const std::regex kName("[a-zA-Z0-9][a-zA-Z0-9_.-]+");
  if (!std::regex_match(name, kName)) {
    throw Error("Invalid layer name (" + name +
                "), only [a-zA-Z0-9][a-zA-Z0-9_.-] are allowed, at least 2 characters");
  }
  if (name.size() == 64 && is_hex(name)) {
    throw Error("Invalid layer name (" + name + "): a name cannot look like a layer id");
  }
}

LayerInfo from_record(const json& j) {
  LayerInfo info;
  info.id = j.value("id", "");
  if (j.contains("name") && j["name"].is_string()) info.name = j["name"].get<std::string>();
  info.created = j.value("created", "");
  info.size = j.value("size", int64_t{0});
  info.tar_size = j.value("tar_size", uint64_t{0});
  info.source = j.value("source", "");
  return info;
}

std::vector<std::string> stacks_using(const Store& store, const std::string& id) {
  std::vector<std::string> out;
  for (const auto& [key, rec] : store.list("stack/")) {
    if (!rec.contains("layers") || !rec["layers"].is_array()) continue;
    for (const auto& l : rec["layers"]) {
      if (l.is_string() && l.get<std::string>() == id) {
        out.push_back(rec.value("name", key.substr(6)));
        break;
      }
    }
  }
  return out;
}

// Layer directories without a record: left by an import or removal killed
// between moving the directory and writing the records. Called under the
// exclusive lock, so no other command is between those two steps.
void remove_orphan_layer_dirs(const Store& store) {
  std::set<std::string> known;
  for (const auto& [key, rec] : store.list("layer/")) known.insert(hex_of(key.substr(6)));
  const std::string dir = store.root() + "/layers";
  std::vector<std::string> orphans;
  if (DIR* d = ::opendir(dir.c_str())) {
    while (struct dirent* e = ::readdir(d)) {
      std::string n = e->d_name;
      if (n != "." && n != ".." && !known.count(n)) orphans.push_back(n);
    }
    ::closedir(d);
  }
  for (const auto& n : orphans) remove_tree(dir + "/" + n);
}

std::string join(const std::vector<std::string>& v, const std::string& sep) {
  std::string out;
  for (const auto& s : v) out += (out.empty() ? "" : sep) + s;
  return out;
}

LayerInfo import_path(const std::string& root, const std::string& path, bool from_dir,
                      const std::string& source, const ImportOptions& options) {
  if (options.name) check_name(*options.name);
  auto store = Store::open(root, Access::kWrite);
  const std::string temp = store->make_temp("import");
  store->release();
  try {
    std::string tar_path = path;
    if (from_dir) {
      tar_path = temp + "/input.tar";
      write_tree_tar(path, tar_path, Compression::kNone, options.progress);
    }
    const std::string tree = temp + "/tree";
    if (::mkdir(tree.c_str(), 0755) != 0) {
      throw Error("cannot create " + tree + ": " + errno_text(errno));
    }
    ExtractResult res =
        extract_layer_tar(tar_path, tree, temp + "/layer.tar.zst", options.progress);
    if (from_dir) ::unlink(tar_path.c_str());
    const int64_t size = tree_size(tree);

    store->reacquire();
    LayerInfo info;
    if (auto existing = store->get(layer_key(res.diff_id))) {
      info = from_record(*existing);
      if (options.name && info.name != options.name) {
        if (info.name) {
          throw Error("layer " + res.diff_id + " already exists with the name \"" + *info.name +
                      "\"");
        }
        if (auto other = store->get(name_key(*options.name))) {
          throw Error("The layer name \"" + *options.name + "\" is already in use by layer " +
                      other->value("id", "") + ". Remove that layer or choose another name.");
        }
        json rec = *existing;
        rec["name"] = *options.name;
        store->write({{layer_key(info.id), rec}, {name_key(*options.name), json{{"id", info.id}}}});
        info.name = options.name;
      }
      remove_tree(temp);
      return info;
    }
    if (options.name) {
      if (auto other = store->get(name_key(*options.name))) {
        throw Error("The layer name \"" + *options.name + "\" is already in use by layer " +
                    other->value("id", "") + ". Remove that layer or choose another name.");
      }
    }
    remove_orphan_layer_dirs(*store);
    info.id = res.diff_id;
    info.name = options.name;
    info.created = now_rfc3339();
    info.size = size;
    info.tar_size = res.tar_size;
    info.source = source;
    json rec = {{"id", info.id},
                {"created", info.created},
                {"size", info.size},
                {"tar_size", info.tar_size},
                {"source", info.source}};
    std::vector<std::pair<std::string, std::optional<json>>> changes;
    if (info.name) {
      rec["name"] = *info.name;
      changes.emplace_back(name_key(*info.name), json{{"id", info.id}});
    }
    changes.emplace_back(layer_key(info.id), rec);
    const std::string dest = store->layer_dir(info.id);
    if (::rename(temp.c_str(), dest.c_str()) != 0) {
      throw Error("cannot move the layer into " + dest + ": " + errno_text(errno));
    }
    try {
      store->write(changes);
    } catch (...) {
      remove_tree(dest);
      throw;
    }
    return info;
  } catch (...) {
    remove_tree(temp);
    throw;
  }
}

}  // namespace

json LayerInfo::to_json() const {
  return json{{"Id", id},
              {"Name", name ? json(*name) : json(nullptr)},
              {"Created", created},
              {"Size", size},
              {"TarSize", tar_size},
              {"Source", source},
              {"Stacks", stacks}};
}

LayerInfo import_layer(const std::string& root, const std::string& path,
                       const ImportOptions& options) {
  struct stat st;
  if (::stat(path.c_str(), &st) != 0) {
    throw Error("cannot import " + path + ": " + errno_text(errno));
  }
  if (!S_ISDIR(st.st_mode) && !S_ISREG(st.st_mode)) {
    throw Error("cannot import " + path + ": not a directory or a tar file");
  }
  std::string abs = path;
  if (char* real = ::realpath(path.c_str(), nullptr)) {
    abs = real;
    std::free(real);
  }
  return import_path(root, path, S_ISDIR(st.st_mode), "import:" + abs, options);
}

LayerInfo import_committed_layer(const std::string& root, const std::string& tar_path,
                                 const std::string& stack, const ImportOptions& options) {
  return import_path(root, tar_path, /*from_dir=*/false, "commit:" + stack, options);
}

std::vector<LayerInfo> list_layers(const Store& store) {
  std::vector<LayerInfo> out;
  std::map<std::string, std::vector<std::string>> used;
  for (const auto& [key, rec] : store.list("stack/")) {
    if (!rec.contains("layers") || !rec["layers"].is_array()) continue;
    std::set<std::string> once;
    for (const auto& l : rec["layers"]) {
      if (l.is_string() && once.insert(l.get<std::string>()).second) {
        used[l.get<std::string>()].push_back(rec.value("name", key.substr(6)));
      }
    }
  }
  for (const auto& [key, rec] : store.list("layer/")) {
    LayerInfo info = from_record(rec);
    if (info.id.empty()) info.id = key.substr(6);
    if (auto it = used.find(info.id); it != used.end()) info.stacks = it->second;
    out.push_back(std::move(info));
  }
  // Newest first, as `docker image ls` lists images.
  std::stable_sort(out.begin(), out.end(),
                   [](const LayerInfo& a, const LayerInfo& b) { return a.created > b.created; });
  return out;
}

LayerInfo find_layer(const Store& store, const std::string& ref) {
  const std::string no_such = "No such layer: " + ref;
  if (ref.empty()) throw Error(no_such);
  std::string hex = ref.rfind("sha256:", 0) == 0 ? ref.substr(7) : ref;
  std::optional<json> rec;
  if (hex.size() == 64 && is_hex(hex)) {
    rec = store.get(layer_key("sha256:" + hex));
  } else if (hex == ref) {
    if (auto named = store.get(name_key(ref))) {
      rec = store.get(layer_key(named->value("id", "")));
    }
  }
  if (!rec && hex.size() >= 12 && is_hex(hex)) {
    std::vector<json> matches;
    for (auto& [key, r] : store.list("layer/sha256:" + hex)) matches.push_back(r);
    if (matches.size() == 1) rec = matches[0];
  }
  if (!rec) throw Error(no_such);
  LayerInfo info = from_record(*rec);
  info.stacks = stacks_using(store, info.id);
  return info;
}

LayerInfo remove_layer(const std::string& root, const std::string& ref) {
  // An unknown layer is reported without creating a store that is not there.
  find_layer(*Store::open(root, Access::kRead), ref);
  auto store = Store::open(root, Access::kWrite);
  LayerInfo info = find_layer(*store, ref);
  if (!info.stacks.empty()) {
    throw Error("conflict: unable to remove layer " + ref + " (" + hex_of(info.id).substr(0, 12) +
                "): it is used by stack" + (info.stacks.size() > 1 ? "s " : " ") +
                join(info.stacks, ", "));
  }
  std::vector<std::pair<std::string, std::optional<json>>> changes;
  changes.emplace_back(layer_key(info.id), std::nullopt);
  if (info.name) changes.emplace_back(name_key(*info.name), std::nullopt);
  store->write(changes);
  // Out of layers/ in one step, then removed at leisure: a removal killed
  // half-way leaves its remains in ROOT/tmp, which are cleaned up.
  const std::string dir = store->layer_dir(info.id);
  const std::string trash = store->make_temp("rm");
  const std::string moved = trash + "/layer";
  if (::rename(dir.c_str(), moved.c_str()) != 0) {
    remove_tree(dir);
  }
  remove_tree(trash);
  return info;
}

void export_layer(const std::string& root, const std::string& ref, const std::string& out_path,
                  Compression compression, const Progress& progress) {
  LayerInfo info;
  int in_fd = -1;
  {
    // The open file keeps the layer's bytes even if it is removed meanwhile,
    // so the lock is held only this long.
    auto store = Store::open(root, Access::kRead);
    info = find_layer(*store, ref);
    const std::string src = store->layer_dir(info.id) + "/layer.tar.zst";
    in_fd = ::open(src.c_str(), O_RDONLY | O_CLOEXEC);
    if (in_fd < 0) throw Error("cannot open " + src + ": " + errno_text(errno));
  }
  struct InFd {
    int fd;
    ~InFd() { ::close(fd); }
  } in{in_fd};

  std::string dir = ".", base = out_path;
  if (auto slash = out_path.find_last_of('/'); slash != std::string::npos) {
    dir = slash == 0 ? "/" : out_path.substr(0, slash);
    base = out_path.substr(slash + 1);
  }
  if (base.empty()) throw Error("invalid output file " + out_path + ": it names a directory");
  struct stat ost;
  if (::stat(out_path.c_str(), &ost) == 0 && S_ISDIR(ost.st_mode)) {
    throw Error("invalid output file " + out_path + ": it is a directory");
  }
  std::string tmp = (dir == "/" ? "" : dir) + "/." + base + ".layerctl-XXXXXX";
  int out_fd = ::mkstemp(tmp.data());
  if (out_fd < 0) throw Error("cannot create a file in " + dir + ": " + errno_text(errno));
  mode_t mask = ::umask(0);
  ::umask(mask);
  ::fchmod(out_fd, 0666 & ~mask);

  archive* r = archive_read_new();
  archive* w = archive_write_new();
  auto cleanup = [&](bool ok) {
    if (!ok) archive_write_fail(w);
    archive_write_free(w);
    archive_read_free(r);
    ::close(out_fd);
    if (!ok) ::unlink(tmp.c_str());
  };
  try {
    archive_read_support_filter_all(r);
    archive_read_support_format_raw(r);
    archive_entry* e;
    if (archive_read_open_fd(r, in.fd, 256 * 1024) != ARCHIVE_OK ||
        archive_read_next_header(r, &e) != ARCHIVE_OK) {
      throw Error("layer " + info.id + " is damaged: " + la_text(r));
    }
    archive_write_set_format_raw(w);
    int fr = ARCHIVE_OK;
    if (compression == Compression::kGzip) {
      fr = archive_write_add_filter_gzip(w);
      if (fr == ARCHIVE_OK) archive_write_set_filter_option(w, "gzip", "timestamp", nullptr);
    } else if (compression == Compression::kZstd) {
      fr = archive_write_add_filter_zstd(w);
    }
    if (fr != ARCHIVE_OK) throw Error(std::string("cannot compress: ") + la_text(w));
    archive_write_set_bytes_in_last_block(w, 1);
    if (archive_write_open_fd(w, out_fd) != ARCHIVE_OK) {
      throw Error("cannot write " + out_path + ": " + la_text(w));
    }
    archive_entry* we = archive_entry_new();
    archive_entry_set_pathname(we, "layer.tar");
    archive_entry_set_filetype(we, AE_IFREG);
    archive_entry_set_perm(we, 0644);
    int hr = archive_write_header(w, we);
    archive_entry_free(we);
    if (hr != ARCHIVE_OK) throw Error("cannot write " + out_path + ": " + la_text(w));

    // The bytes are checked against the diffID on the way: a damaged store
    // never exports a layer under the wrong id.
    EVP_MD_CTX* ctx = EVP_MD_CTX_new();
    struct Ctx {
      EVP_MD_CTX* c;
      ~Ctx() { EVP_MD_CTX_free(c); }
    } ctx_guard{ctx};
    EVP_DigestInit_ex(ctx, EVP_sha256(), nullptr);
    std::vector<char> buf(256 * 1024);
    uint64_t done = 0;
    while (true) {
      la_ssize_t n = archive_read_data(r, buf.data(), buf.size());
      if (n < 0) throw Error("layer " + info.id + " is damaged: " + la_text(r));
      if (n == 0) break;
      EVP_DigestUpdate(ctx, buf.data(), static_cast<size_t>(n));
      if (archive_write_data(w, buf.data(), static_cast<size_t>(n)) != n) {
        throw Error("cannot write " + out_path + ": " + la_text(w));
      }
      done += static_cast<uint64_t>(n);
      if (progress) progress(done, info.tar_size);
    }
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int len = 0;
    EVP_DigestFinal_ex(ctx, md, &len);
    std::string got;
    static const char* kHex = "0123456789abcdef";
    for (unsigned int i = 0; i < len; ++i) {
      got += kHex[md[i] >> 4];
      got += kHex[md[i] & 15];
    }
    if ("sha256:" + got != info.id) {
      throw Error("layer " + info.id + " is damaged: its tar has the digest sha256:" + got);
    }
    if (archive_write_close(w) != ARCHIVE_OK) {
      throw Error("cannot write " + out_path + ": " + la_text(w));
    }
    if (::fsync(out_fd) != 0) throw Error("cannot write " + out_path + ": " + errno_text(errno));
    if (::rename(tmp.c_str(), out_path.c_str()) != 0) {
      throw Error("cannot write " + out_path + ": " + errno_text(errno));
    }
  } catch (...) {
    cleanup(false);
    throw;
  }
  cleanup(true);
}

std::vector<std::string> layer_trees_top_first(const Store& store,
                                               const std::vector<std::string>& layer_ids) {
  std::vector<std::string> out;
  for (auto it = layer_ids.rbegin(); it != layer_ids.rend(); ++it) {
    if (!store.get(layer_key(*it))) throw Error("No such layer: " + *it);
    out.push_back(store.layer_dir(*it) + "/tree");
  }
  return out;
}

}  // namespace layerfs::ctl
