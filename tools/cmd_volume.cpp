// `layerctl volume create|ls|inspect|rm|prune`: Docker's `docker volume`
// commands, with its flags, output and messages. Where Docker says
// "container", layerctl says "stack" (what uses a volume here). The work is in
// tools/volumes.cpp; this file parses, calls and prints.
#include <cstdio>
#include <iostream>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "tools/commands.h"
#include "tools/output.h"
#include "tools/store.h"
#include "tools/volumes.h"

namespace layerfs::ctl {
namespace {

// Docker's argument-count errors (cli/required.go) are exit 1, unlike bad
// flags (125), so positionals are taken as a list and counted here.
void require_no_args(const std::string& path, const std::vector<std::string>& args) {
  if (!args.empty()) throw Error("\"" + path + "\" accepts no arguments.");
}

// `K=V` list flags as Docker's CLI reads them: the first '=' splits, a bare K
// has the value "".
std::map<std::string, std::string> kv_map(const std::vector<std::string>& items) {
  std::map<std::string, std::string> m;
  for (const auto& s : items) {
    auto eq = s.find('=');
    if (eq == std::string::npos) {
      m[s] = "";
    } else {
      m[s.substr(0, eq)] = s.substr(eq + 1);
    }
  }
  return m;
}

// A flag that takes one value each time it is given (repeatable), so that a
// following positional is not swallowed as a second value.
CLI::Option* repeatable(CLI::App* cmd, const std::string& name, std::vector<std::string>& into,
                        const std::string& help) {
  return cmd->add_option(name, into, help)->allow_extra_args(false);
}

void add_create(CLI::App* volume, Context& ctx) {
  struct Args {
    std::vector<std::string> names, labels, opts;
    std::string driver = "local";
  };
  auto a = std::make_shared<Args>();
  auto* cmd = volume->add_subcommand("create", "Create a volume");
  cmd->add_option("-d,--driver", a->driver, "Specify volume driver name (only \"local\")")
      ->capture_default_str();
  repeatable(cmd, "--label", a->labels, "Set metadata for a volume (KEY=VALUE)");
  repeatable(cmd, "-o,--opt", a->opts,
             "Set driver specific options: type=tmpfs,device=tmpfs,o=size=64m or "
             "type=none,o=bind,device=/path");
  cmd->add_option("VOLUME", a->names, "The volume's name (none: an anonymous volume)");
  cmd->callback([a, &ctx] {
    if (a->names.size() > 1) {
      throw Error("\"layerctl volume create\" requires at most 1 argument.");
    }
    VolumeCreate spec;
    if (!a->names.empty()) spec.name = a->names[0];
    spec.driver = a->driver;
    spec.labels = kv_map(a->labels);
    spec.options = kv_map(a->opts);
    std::printf("%s\n", create_volume(ctx.root, spec).c_str());
  });
}

void add_ls(CLI::App* volume, Context& ctx) {
  struct Args {
    std::vector<std::string> args, filters;
    bool quiet = false;
    std::string format = "table";
  };
  auto a = std::make_shared<Args>();
  auto* cmd = volume->add_subcommand("ls", "List volumes");
  cmd->alias("list");
  cmd->add_flag("-q,--quiet", a->quiet, "Only display volume names");
  repeatable(cmd, "-f,--filter", a->filters,
             "Filter output: dangling=true|false, driver=X, label=KEY[=VALUE], name=X");
  cmd->add_option("--format", a->format, "table or json")->capture_default_str();
  cmd->add_option("ARGS", a->args)->group("");  // counted, to refuse as Docker does
  cmd->callback([a, &ctx] {
    require_no_args("layerctl volume ls", a->args);
    if (a->format != "table" && a->format != "json") {
      throw Error("unsupported format \"" + a->format + "\": layerctl prints table or json", 125);
    }
    auto store = Store::open(ctx.root, Access::kRead);
    auto vols = list_volumes(*store, VolumeFilter{a->filters});
    std::string out;
    if (a->quiet) {
      for (const auto& v : vols) out += v.name() + "\n";
    } else if (a->format == "json") {
      // One object per line, the fields of Docker's --format json.
      for (const auto& v : vols) {
        json line = {{"Driver", v.record["Driver"]},
                     {"Labels", join_labels(v.record["Labels"])},
                     {"Links", "N/A"},
                     {"Mountpoint", v.record["Mountpoint"]},
                     {"Name", v.name()},
                     {"Scope", v.record["Scope"]},
                     {"Size", "N/A"}};
        out += line.dump() + "\n";
      }
    } else {
      Table t({"DRIVER", "VOLUME NAME"});
      for (const auto& v : vols) t.add({v.record.value("Driver", "local"), v.name()});
      out = t.render();
    }
    std::fputs(out.c_str(), stdout);
  });
}

void add_inspect(CLI::App* volume, Context& ctx) {
  auto names = std::make_shared<std::vector<std::string>>();
  auto* cmd = volume->add_subcommand("inspect", "Display detailed information on volumes");
  cmd->add_option("VOLUME", *names, "Volumes to inspect (one or more)");
  cmd->callback([names, &ctx] {
    if (names->empty()) throw Error("\"layerctl volume inspect\" requires at least 1 argument.");
    auto store = Store::open(ctx.root, Access::kRead);
    std::vector<std::string> missing;
    auto recs = inspect_volumes(*store, *names, &missing);
    std::printf("%s\n", render_volume_inspect(recs).c_str());
    if (!missing.empty()) {
      std::string msg;
      for (const auto& m : missing)
        msg += (msg.empty() ? "" : "\n") + ("get " + m + ": no such volume");
      throw Error(msg);
    }
  });
}

void add_rm(CLI::App* volume, Context& ctx) {
  struct Args {
    std::vector<std::string> names;
    bool force = false;
  };
  auto a = std::make_shared<Args>();
  auto* cmd = volume->add_subcommand(
      "rm", "Remove one or more volumes (never one a stack uses, even with --force)");
  cmd->alias("remove");
  cmd->add_flag("-f,--force", a->force, "Do not fail on volumes that do not exist");
  cmd->add_option("VOLUME", a->names, "Volumes to remove (one or more)");
  cmd->callback([a, &ctx] {
    if (a->names.empty()) throw Error("\"layerctl volume rm\" requires at least 1 argument.");
    std::vector<std::string> errors;
    for (const auto& n : remove_volumes(ctx.root, a->names, a->force, &errors)) {
      std::printf("%s\n", n.c_str());
    }
    std::fflush(stdout);
    if (!errors.empty()) {
      std::string msg;
      for (const auto& e : errors) msg += (msg.empty() ? "" : "\n") + e;
      throw Error(msg);
    }
  });
}

// Docker's prompt.Confirm: a line from stdin, yes only for "y" or "Y".
bool confirm(const std::string& warning) {
  std::printf("%s [y/N] ", warning.c_str());
  std::fflush(stdout);
  std::string line;
  if (!std::getline(std::cin, line)) return false;
  size_t b = line.find_first_not_of(" \t\r");
  size_t e = line.find_last_not_of(" \t\r");
  std::string answer = b == std::string::npos ? "" : line.substr(b, e - b + 1);
  return answer == "y" || answer == "Y";
}

void add_prune(CLI::App* volume, Context& ctx) {
  struct Args {
    std::vector<std::string> args, filters;
    bool all = false, force = false;
  };
  auto a = std::make_shared<Args>();
  auto* cmd = volume->add_subcommand("prune", "Remove unused local volumes");
  cmd->add_flag("-a,--all", a->all, "Remove all unused volumes, not just anonymous ones");
  cmd->add_flag("-f,--force", a->force, "Do not prompt for confirmation");
  repeatable(cmd, "--filter", a->filters, "Provide filter values (label=KEY[=VALUE], label!=...)");
  cmd->add_option("ARGS", a->args)->group("");
  cmd->callback([a, &ctx] {
    require_no_args("layerctl volume prune", a->args);
    if (a->all) {
      for (const auto& f : a->filters) {
        if (f.rfind("all=", 0) == 0) {
          throw Error("conflicting options: cannot specify both --all and --filter all=1");
        }
      }
    }
    const std::string what = a->all ? "all local volumes" : "anonymous local volumes";
    if (!a->force &&
        !confirm("WARNING! This will remove " + what +
                 " not used by at least one stack.\nAre you sure you want to continue?")) {
      std::printf("Total reclaimed space: %s\n", human_size(0).c_str());
      return;
    }
    PruneResult r = prune_volumes(ctx.root, a->all, a->filters);
    std::string out;
    if (!r.removed.empty()) {
      out = "Deleted Volumes:\n";
      for (const auto& n : r.removed) out += n + "\n";
      out += "\n";
    }
    out += "Total reclaimed space: " +
           human_size(static_cast<double>(r.removed.empty() ? 0 : r.reclaimed)) + "\n";
    std::fputs(out.c_str(), stdout);
  });
}

}  // namespace

void add_volume_commands(CLI::App& app, Context& ctx) {
  auto* volume = app.add_subcommand("volume", "Manage volumes");
  volume->require_subcommand(1);
  add_create(volume, ctx);
  add_ls(volume, ctx);
  add_inspect(volume, ctx);
  add_rm(volume, ctx);
  add_prune(volume, ctx);
}

}  // namespace layerfs::ctl
