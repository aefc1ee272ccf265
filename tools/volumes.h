// Volumes, with Docker's semantics (interfaces.md section 1.3): data that
// outlives every stack that used it. A volume is in use while any stack's
// record lists it in "volumes" (STORE.md), mounted or not, as Docker counts
// containers of any state.
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "tools/store.h"

namespace layerfs::ctl {

struct VolumeCreate {
  std::optional<std::string> name;          // none: an anonymous 64-hex name
  std::string driver = "local";             // only "local" exists
  std::map<std::string, std::string> labels;
  std::map<std::string, std::string> options;  // type, device, o (Docker's local driver)
  bool anonymous = false;                   // adds label com.docker.volume.anonymous=""
};

// Creates a volume and returns its name. Creating an existing name with the
// same driver returns it unchanged (as Docker); another driver is Error
// ("volume name must be unique"). Options are checked as Docker's local
// driver does: only type, device and o are known ("invalid option: \"x\"");
// device needs type and type needs device, o needs both ("missing required
// option: \"device\""); type=none with o=bind needs an existing absolute
// device directory. Names: [a-zA-Z0-9][a-zA-Z0-9_.-]+ (Error otherwise).
std::string create_volume(const std::string& root, const VolumeCreate& spec);

// `docker volume ls --filter`: dangling=true|false|1|0, driver=X,
// label=K or label=K=V (every label filter must match), name=X (substring).
// Unknown filters or values are Error (exit 1, Docker's wording).
struct VolumeFilter {
  std::vector<std::string> filters;  // "key=value" as given
};

struct VolumeInfo {
  json record;          // the volume/<name> record (docker volume inspect's fields)
  int64_t links = 0;    // stacks using it
  std::string name() const { return record.value("Name", ""); }
};

std::vector<VolumeInfo> list_volumes(const Store& store, const VolumeFilter& filter);

// Inspect: the records of the named volumes, in order; names that do not
// exist are collected in *missing (Docker prints the others and fails).
std::vector<json> inspect_volumes(const Store& store, const std::vector<std::string>& names,
                                  std::vector<std::string>* missing);

// Removes the named volumes. Returns the names removed, in order; problems go
// to *errors as Docker words them ("remove NAME: volume is in use - [STACK,
// ...]", "get NAME: no such volume"). A volume in use is never removed, with or
// without force; force only silences "no such volume".
std::vector<std::string> remove_volumes(const std::string& root,
                                        const std::vector<std::string>& names, bool force,
                                        std::vector<std::string>* errors);

// Prune: removes unused local volumes without options: only anonymous ones
// unless `all`; `label=K[=V]` and `label!=K[=V]` filters narrow it (other
// filters are Error). Returns the names removed and the bytes reclaimed.
struct PruneResult {
  std::vector<std::string> removed;
  int64_t reclaimed = 0;
};
PruneResult prune_volumes(const std::string& root, bool all,
                          const std::vector<std::string>& filters);

// The directory a stack mounts for a volume (its _data), and whether the
// volume wants a tmpfs (type=tmpfs) or a bind of another directory
// (type=none, o=bind, device=DIR) instead.
struct VolumeMountSource {
  enum class Kind { kDirectory, kTmpfs, kBind } kind = Kind::kDirectory;
  std::string path;     // kDirectory: _data; kBind: the device directory
  std::string options;  // kTmpfs: mount options from o= (size=..., mode=...)
};
VolumeMountSource volume_mount_source(const Store& store, const std::string& name);

// Bytes in a volume (Docker's classic rule over _data); -1 for volumes with
// options (Docker does not measure those).
int64_t volume_size(const Store& store, const std::string& name);

}  // namespace layerfs::ctl
