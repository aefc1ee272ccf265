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
  std::optional<std::string> name;  // none: an anonymous 64-hex name
  std::string driver = "local";     // only "local" exists
  std::map<std::string, std::string> labels;
  std::map<std::string, std::string> options;  // type, device, o (Docker's local driver)
  bool anonymous = false;                      // adds label com.docker.volume.anonymous=""
};

// Creates a volume and returns its name. Creating an existing name returns it
// unchanged, whatever the labels and options (as Docker). Only the "local"
// driver exists; another is Error ("create NAME: error looking up volume
// plugin D: plugin \"D\" not found", Docker's words for a driver it lacks), so
// Docker's "volume name must be unique" cannot arise. No name (or "") makes an
// anonymous volume: a 64-hex name and the label com.docker.volume.anonymous
// (as Docker does for every volume created without a name). Options are
// checked as Docker's local driver does: only type, device, o and size are
// known ("invalid option: \"x\""); device needs type and type needs device, o
// needs both ("missing required option: \"device\""); size needs quotas
// ("quota size requested but no quota support"). Beyond Docker, because a
// stack can mount only these: type must be tmpfs, or none with o=bind and an
// absolute existing device directory. Names: [a-zA-Z0-9][a-zA-Z0-9_.-]+
// (Error in Docker's words otherwise). Errors are prefixed "create NAME: ".
std::string create_volume(const std::string& root, const VolumeCreate& spec);
// The same inside a store the caller holds open for writing (a stack's mount
// creates its volumes this way without giving up the lock).
std::string create_volume(Store& store, const VolumeCreate& spec);

// `docker volume ls --filter`: dangling=true|false|1|0, driver=X (any of
// those given), label=K or label=K=V (every label filter must match), name=X
// (as Docker: a regular expression searched in the name, so plain text
// matches as a substring; any of those given). Unknown filters or values are
// Error (exit 1, Docker's wording: "invalid filter 'x'"); a filter without
// '=' is Error with exit 125 ("bad format of filter (expected name=value)").
struct VolumeFilter {
  std::vector<std::string> filters;  // "key=value" as given
};

struct VolumeInfo {
  json record;        // the volume/<name> record (docker volume inspect's fields)
  int64_t links = 0;  // stacks using it
  std::string name() const { return record.value("Name", ""); }
};

// Volumes matching the filter, in Docker's order (natural order of names:
// digit runs compare as numbers). Records come back Docker-shaped (see
// docker_volume_json).
std::vector<VolumeInfo> list_volumes(const Store& store, const VolumeFilter& filter);

// Inspect: the records of the named volumes, in order, Docker-shaped; names
// that do not exist are collected in *missing (Docker prints the others and
// fails).
std::vector<json> inspect_volumes(const Store& store, const std::vector<std::string>& names,
                                  std::vector<std::string>* missing);

// Removes the named volumes. Returns the names Docker would print: those
// removed and, with force, those that did not exist (Docker's CLI prints every
// name whose removal did not fail). Problems go to *errors as Docker words
// them ("remove NAME: volume is in use - [STACK, ...]", "get NAME: no such
// volume"). A volume in use is never removed, with or without force; force
// only silences "no such volume". A volume with something still mounted on
// its directory is refused too ("remove NAME: PATH is still mounted"), so a
// bind or tmpfs a stack left behind is never emptied. The record goes first,
// then the directory: a crash in between leaves only a directory without a
// record, which a later create of that name replaces and prune removes.
std::vector<std::string> remove_volumes(const std::string& root,
                                        const std::vector<std::string>& names, bool force,
                                        std::vector<std::string>* errors);
std::vector<std::string> remove_volumes(Store& store, const std::vector<std::string>& names,
                                        bool force, std::vector<std::string>* errors);

// Prune: removes unused local volumes without options: only anonymous ones
// unless `all` (or the filter all=true); `label=K[=V]` and `label!=K[=V]`
// filters narrow it (other filters are Error: "invalid filter 'x'"). Returns
// the names removed, in name order, and the bytes reclaimed (tree_size of
// each _data before removal). Also removes directories in ROOT/volumes that
// have no record (what a crash during create or rm leaves); they are not
// volumes, so they are neither listed nor counted.
struct PruneResult {
  std::vector<std::string> removed;
  int64_t reclaimed = 0;
};
PruneResult prune_volumes(const std::string& root, bool all,
                          const std::vector<std::string>& filters);

// A volume record as `docker volume inspect` shows it: exactly CreatedAt,
// Driver, Labels (null when empty), Mountpoint (this store's ROOT/volumes/
// NAME/_data, whatever the record says), Name, Options (null when empty),
// Scope, in that (alphabetical) order.
json docker_volume_json(const Store& store, const json& record);

// `docker volume inspect`'s text: a JSON array, 4-space indent, with <, > and
// & escaped as \u003c, \u003e, \u0026 as Go's encoder does.
std::string render_volume_inspect(const std::vector<json>& records);

// Labels (or options) as Docker's --format .Labels shows them: k=v joined by
// commas, in key order; "" when none.
std::string join_labels(const json& labels);

// The directory a stack mounts for a volume (its _data), and whether the
// volume wants a tmpfs (type=tmpfs) or a bind of another directory
// (type=none, o=bind, device=DIR) instead.
struct VolumeMountSource {
  enum class Kind { kDirectory, kTmpfs, kBind } kind = Kind::kDirectory;
  std::string path;     // kDirectory: _data; kBind: the device directory
  std::string options;  // kTmpfs: mount options from o= (size=..., mode=...)
};
// Error ("get NAME: no such volume") when missing.
VolumeMountSource volume_mount_source(const Store& store, const std::string& name);

// Bytes in a volume (Docker's classic rule over _data); -1 for volumes with
// options (Docker does not measure those) and for names without a record.
int64_t volume_size(const Store& store, const std::string& name);

}  // namespace layerfs::ctl
