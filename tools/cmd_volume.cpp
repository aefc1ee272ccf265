// Placeholder registration until the volume commands land: registers nothing,
// so no unbuilt command exists.
#include "tools/commands.h"

namespace layerfs::ctl {

void add_volume_commands(CLI::App&, Context&) {}

}  // namespace layerfs::ctl
