// Pieces shared by the stack code (tools/stacks.cpp, tools/stack_commit.cpp):
// reading /proc/self/mountinfo, running the layerfs daemon, and unmounting.
// Not part of the stacks contract (tools/stacks.h).
#pragma once

#include <chrono>
#include <optional>
#include <string>
#include <vector>

#include "tools/mountinfo.h"
#include "tools/store.h"

namespace layerfs::ctl::stack_detail {

using ctl::MountLine;
using ctl::read_mountinfo;

// The /proc/mounts source of a stack's own mount, and of the read-only mounts
// a commit makes (which also keep the stack busy). The store's root is part
// of it, so that stacks of the same name in two stores never meet.
std::string mount_source(const std::string& root, const std::string& name);  // layerctl:NAME@ROOT
std::string commit_mount_source(const std::string& root, const std::string& name);
std::string base_mount_source(const std::string& root, const std::string& name);
// The stack a layerctl:NAME@ROOT source names when ROOT is `root`.
std::optional<std::string> stack_of_source(const std::string& source, const std::string& root);

// Where the stack is mounted by layerctl mount (fuse.layerfs with source
// layerctl:NAME@ROOT), if it is; with `any_use`, also the mounts a commit of
// it holds.
std::optional<std::string> stack_mountpoint(const std::vector<MountLine>& mounts,
                                            const std::string& root, const std::string& name,
                                            bool any_use = false);

// The stack/<name> record; Error "No such stack: NAME" when missing.
json get_stack_record(const Store& store, const std::string& name);


// Escapes ',', ':' and '\' for a layerfs -o value.
std::string escape_option_path(const std::string& path);

// The -o value for a stack: lowers (top-most first), upper and work (both
// optional), plus `extra` options ("ro", ...).
std::string layerfs_options(const std::vector<std::string>& lowers_top_first,
                            const std::string& upper, const std::string& work,
                            const std::vector<std::string>& extra);

// Runs `layerfs SOURCE MOUNTPOINT -o OPTIONS`, which returns once the mount is
// usable. Error (with layerfs's own message) when it fails.
void run_layerfs(const std::string& source, const std::string& mountpoint,
                 const std::string& options);

// Unmounts `mountpoint` and everything mounted below it, deepest first. When
// the daemon behind it is gone (ENOTCONN) the whole tree is detached lazily.
// Error "cannot unmount PATH: target is busy" when something is in use (what
// could be unmounted before that stays unmounted).
void unmount_tree(const std::string& mountpoint);

// Waits (up to `timeout`) until no daemon holds the workdir's lock, so that
// the upper can be mounted again right away. Returns whether it is free.
bool wait_workdir_free(const std::string& work,
                       std::chrono::milliseconds timeout = std::chrono::seconds(10));

// An absolute, normalised form of `path`: its real path when it resolves,
// else (a dead FUSE mount, say) the path made absolute lexically.
std::string canonical_path(const std::string& path);

}  // namespace layerfs::ctl::stack_detail
