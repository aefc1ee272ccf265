// Placeholder registration until the layer commands land: registers nothing,
// so no unbuilt command exists.
#include "tools/commands.h"

namespace layerfs::ctl {

void add_layer_commands(CLI::App&, Context&) {}

}  // namespace layerfs::ctl
