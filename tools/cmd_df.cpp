// Placeholder registration until `df` lands: registers nothing.
#include "tools/commands.h"

namespace layerfs::ctl {

void add_df_command(CLI::App&, Context&) {}

}  // namespace layerfs::ctl
