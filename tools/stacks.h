// Stacks: a named list of layers with a writable layer of its own, what a
// container's storage is to Docker. A stack is mounted with layerfs (its
// layers as lowers, ROOT/stacks/<name>/upper and work as upper and work),
// with volume, bind and tmpfs mounts at paths inside it.
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "tools/archive.h"
#include "tools/store.h"

namespace layerfs::ctl {

// Stack names: [a-zA-Z0-9][a-zA-Z0-9_.-]* (Error otherwise).
void check_stack_name(const std::string& name);

// Creates a stack of existing layers, given bottom-most first (the order an
// image is built in; each by anything find_layer accepts). Error when the name
// is taken ("the stack name NAME is already in use") or a layer is missing.
void create_stack(const std::string& root, const std::string& name,
                  const std::vector<std::string>& layer_refs);

// One mount inside a stack, from -v, --mount or --tmpfs (docker run's
// syntax, see parse_volume_flag / parse_mount_flag / parse_tmpfs_flag).
struct MountSpec {
  enum class Type { kVolume, kBind, kTmpfs } type = Type::kVolume;
  std::string source;  // volume name ("" = anonymous), host path, or ""
  std::string target;  // absolute path inside the stack
  bool readonly = false;
  std::string options;  // tmpfs: mount options (size=..., mode=...)
  // Added to the first contract: what -v and --mount mean beyond the above.
  bool create_source = false;  // bind: a missing source directory is created (-v does, --mount not)
  std::string propagation;     // bind: rprivate (default), private, rshared, shared, rslave, slave
  // A volume this mount creates gets these (--mount volume-label=, volume-opt=).
  std::map<std::string, std::string> volume_labels;
  std::map<std::string, std::string> volume_options;
};

// "volume", "bind" or "tmpfs", as --mount type= and the stack record spell it.
const char* mount_type_name(MountSpec::Type t);

// `-v VOLUME:/path[:ro]`, `-v /host/dir:/path[:ro]`, `-v /path` (anonymous
// volume). A source starting with '/' is a bind. Error (exit 125) when
// malformed.
MountSpec parse_volume_flag(const std::string& value);
// `--mount type=volume|bind|tmpfs,source=...,target=...,readonly` (also src,
// dst, destination, ro, readonly=true|false, tmpfs-size=, tmpfs-mode=): one
// CSV record, keys case-insensitive, type defaults to volume. Error (exit 125)
// naming the problem as Docker does ("unknown option 'x' in 'x=y'", "invalid
// field 'x' must be a key=value pair").
MountSpec parse_mount_flag(const std::string& value);
// `--tmpfs /path[:size=64m[,mode=1777]]`.
MountSpec parse_tmpfs_flag(const std::string& value);

// Mounts the stack at `mountpoint` (an existing empty directory), then each
// mount at its target inside it, in order: a named volume that does not exist
// is created, an anonymous one (no source) too (and recorded as the stack's);
// a bind source must exist for --mount (Docker: "bind source path does not
// exist: PATH"), and is created for -v. Targets are made inside the stack
// when missing. On any failure everything mounted so far is unmounted and the
// store is as before, except volumes created on the way, which stay (as
// Docker's do). Error when the stack is already mounted or unknown.
void mount_stack(const std::string& root, const std::string& name, const std::string& mountpoint,
                 const std::vector<MountSpec>& mounts);

// Unmounts the stack named (or the stack mounted at the path given): the
// volume, bind and tmpfs mounts first, innermost first, then the stack.
void umount_stack(const std::string& root, const std::string& name_or_mountpoint);

// Removes a stack and its writable layer. Refused while mounted ("stack NAME
// is mounted at PATH; umount it first"). With `remove_volumes`, also its
// anonymous volumes that no other stack uses.
void remove_stack(const std::string& root, const std::string& name, bool remove_volumes);

struct StackInfo {
  std::string name;
  std::vector<std::string> layers;  // ids, bottom-most first
  std::string created;
  std::optional<std::string> mountpoint;  // when really mounted now
  std::vector<std::string> volumes;
  // With sizes: SIZE (writable layer) and the virtual size (layers + SIZE).
  int64_t size_rw = -1;
  int64_t size_root_fs = -1;
};

// Stacks in creation order: mounted ones, or all with `all`; sizes only when
// asked (they read the writable layers' counts, tools/size.h).
std::vector<StackInfo> list_stacks(const Store& store, bool all, bool with_sizes);

// `docker ps -s`'s SIZE cell: "5B (virtual 7.75MB)" (precision 3; no virtual
// part when the virtual size is 0).
std::string size_cell(int64_t size_rw, int64_t size_root_fs);

// Where a stack's layers live, for tools that work on them unmounted
// (layerctl check): its lowers top-most first, its upper and work
// directories, and where it is mounted (by layerctl mount or a commit) if it
// is. Error "No such stack: NAME" when unknown.
struct StackDirs {
  std::vector<std::string> lowers;
  std::string upper;
  std::string work;
  std::optional<std::string> mountpoint;
};
StackDirs stack_dirs(const std::string& root, const std::string& name);

// Turns the stack's writable layer (its changes, whiteouts, opaque
// directories and renamed directories included) into a new read-only layer
// and returns its id; the stack's layers plus the new one show the same tree.
// Works mounted or not (a mounted stack should be idle meanwhile); what is
// mounted inside a mounted stack (volumes, binds, tmpfs) is not part of it.
// `progress` (added to the first contract) gets the bytes of file content
// written so far (total 0: unknown), then the import's progress.
std::string commit_stack(const std::string& root, const std::string& name,
                         const std::optional<std::string>& layer_name,
                         const Progress& progress = {});

}  // namespace layerfs::ctl
