// The layerctl subcommands. Each family registers its commands on the CLI11
// app; the commands themselves are thin: they parse arguments, call the
// library (tools/*.h), and print.
#pragma once

#include <CLI/CLI.hpp>

#include <string>

namespace layerfs::ctl {

struct Context {
  std::string root;  // --root, else $LAYERFS_ROOT, else /var/lib/layerfs
};

void add_layer_commands(CLI::App& app, Context& ctx);   // tools/cmd_layer.cpp
void add_stack_commands(CLI::App& app, Context& ctx);   // tools/cmd_stack.cpp
void add_volume_commands(CLI::App& app, Context& ctx);  // tools/cmd_volume.cpp
void add_df_command(CLI::App& app, Context& ctx);       // tools/cmd_df.cpp
void add_check_command(CLI::App& app, Context& ctx);    // tools/cmd_check.cpp

// Thrown by a command that has printed everything it had to say and ends with
// a non-zero status that is not an error (layerctl check: problems found).
struct CheckStatus {
  int code;
};

}  // namespace layerfs::ctl
