// Where the layerfs daemon is, for the programs that start it (the mount
// helper, layerctl): beside the running program (a build tree, or a prefix
// where both were installed together), else in the configured bindir. PATH is
// never searched: mount(8) clears it, and a program run as root should not
// trust it anyway.
#pragma once

#include <string>

namespace layerfs {

std::string daemon_path();

// A regular file this process may execute.
bool is_executable(const std::string& path);

}  // namespace layerfs
