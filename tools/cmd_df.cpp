// `layerctl df`: disk usage as `docker system df` prints it.
#include "tools/commands.h"
#include "tools/df.h"

#include <cstdio>

namespace layerfs::ctl {

void add_df_command(CLI::App& app, Context& ctx) {
  auto* cmd = app.add_subcommand(
      "df", "Show disk usage: layers, stacks and local volumes (as docker system df)");
  struct Flags {
    bool verbose = false;
    std::string format = "table";
  };
  auto flags = std::make_shared<Flags>();
  cmd->add_flag("-v,--verbose", flags->verbose, "Show each layer, stack and volume");
  cmd->add_option("--format", flags->format, "Output format: table or json")
      ->check(CLI::IsMember({"table", "json"}));
  cmd->callback([&ctx, flags] {
    auto store = Store::open(ctx.root, Access::kRead);
    const DiskUsage usage = disk_usage(*store);
    std::string out;
    if (flags->verbose) {
      out = flags->format == "json" ? render_df_verbose_json(usage) : render_df_verbose(usage);
    } else {
      out = flags->format == "json" ? render_df_json(usage) : render_df_table(usage);
    }
    std::fputs(out.c_str(), stdout);
  });
}

}  // namespace layerfs::ctl
