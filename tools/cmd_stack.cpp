// Placeholder registration until the stack commands land: registers nothing,
// so no unbuilt command exists.
#include "tools/commands.h"

namespace layerfs::ctl {

void add_stack_commands(CLI::App&, Context&) {}

}  // namespace layerfs::ctl
