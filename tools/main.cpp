// layerctl: on one host, what Docker's storage does: layers, stacks of layers
// with a writable layer each, their sizes and disk usage, and volumes.
//
// Exit status, as Docker's CLI: 0 success; 1 an error (the message says
// which); 125 an unknown or malformed flag or option value. `layerctl check`
// differs (tools/cmd_check.cpp): 1 problems found, 2 it could not check.
#include <cstdio>
#include <cstdlib>

#include "tools/commands.h"
#include "tools/store.h"

#ifndef LAYERFS_VERSION
#define LAYERFS_VERSION "0.0.0"
#endif

int main(int argc, char** argv) {
  using namespace layerfs::ctl;
  CLI::App app{"layerctl: layers, stacks and volumes for layerfs"};
  app.name("layerctl");
  app.require_subcommand(1);
  app.fallthrough();
  app.set_version_flag("-V,--version", "layerctl " LAYERFS_VERSION);
  Context ctx;
  app.add_option("--root", ctx.root,
                 "The store's root directory (default: $LAYERFS_ROOT, else /var/lib/layerfs)");
  add_layer_commands(app, ctx);
  add_stack_commands(app, ctx);
  add_volume_commands(app, ctx);
  add_df_command(app, ctx);
  add_check_command(app, ctx);
  app.parse_complete_callback([&] {
    if (ctx.root.empty()) ctx.root = default_root();
  });
  try {
    app.parse(argc, argv);
  } catch (const CLI::CallForHelp& e) {
    return app.exit(e);
  } catch (const CLI::CallForAllHelp& e) {
    return app.exit(e);
  } catch (const CLI::CallForVersion& e) {
    return app.exit(e);
  } catch (const CLI::ParseError& e) {
    std::fprintf(stderr, "layerctl: %s\nSee 'layerctl --help'.\n", e.what());
    // A wrong number of arguments is an error (1); a bad flag or value, 125.
    bool count = dynamic_cast<const CLI::RequiredError*>(&e) != nullptr ||
                 dynamic_cast<const CLI::ArgumentMismatch*>(&e) != nullptr;
    // check keeps 1 for "problems found": its usage errors are 2.
    if (count && app.got_subcommand("check")) return 2;
    return count ? 1 : 125;
  } catch (const CheckStatus& s) {
    return s.code;
  } catch (const Error& e) {
    std::fprintf(stderr, "Error: %s\n", e.what());
    return e.exit_code();
  } catch (const std::exception& e) {
    std::fprintf(stderr, "Error: %s\n", e.what());
    return 1;
  }
  return 0;
}
