// The stack commands: create, mount, umount, ps, commit, rm. Thin: they parse
// arguments, call tools/stacks.h and print as docker create / ps / commit /
// rm do.
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <memory>

#include "tools/commands.h"
#include "tools/output.h"
#include "tools/stacks.h"

namespace layerfs::ctl {
namespace {

size_t depth(const std::string& path) {
  return std::count(path.begin(), path.end(), '/');
}

}  // namespace

void add_stack_commands(CLI::App& app, Context& ctx) {
  // create
  {
    auto* cmd = app.add_subcommand(
        "create", "Create a stack of layers (bottom-most first) with a writable layer of its own");
    auto name = std::make_shared<std::string>();
    auto layers = std::make_shared<std::vector<std::string>>();
    cmd->add_option("NAME", *name, "The stack's name")->required();
    cmd->add_option("LAYER", *layers, "Layers, bottom-most first (ids, 12+ digit prefixes, names)")
        ->required();
    cmd->callback([&ctx, name, layers] {
      create_stack(ctx.root, *name, *layers);
      std::printf("%s\n", name->c_str());
    });
  }

  // mount
  {
    auto* cmd =
        app.add_subcommand("mount", "Mount a stack, with volume, bind and tmpfs mounts inside it");
    auto name = std::make_shared<std::string>();
    auto mountpoint = std::make_shared<std::string>();
    auto volumes = std::make_shared<std::vector<std::string>>();
    auto mounts = std::make_shared<std::vector<std::string>>();
    auto tmpfs = std::make_shared<std::vector<std::string>>();
    cmd->add_option("NAME", *name, "The stack")->required();
    cmd->add_option("MOUNTPOINT", *mountpoint, "An empty directory")->required();
    cmd->add_option("-v,--volume", *volumes,
                    "VOLUME:/path[:ro], /host/dir:/path[:ro], or /path (an anonymous volume)")
        ->allow_extra_args(false);
    cmd->add_option("--mount", *mounts,
                    "type=volume|bind|tmpfs,source=...,target=...[,readonly][,tmpfs-size=...]")
        ->allow_extra_args(false);
    cmd->add_option("--tmpfs", *tmpfs, "/path[:size=64m,mode=1777,...]")->allow_extra_args(false);
    cmd->callback([&ctx, name, mountpoint, volumes, mounts, tmpfs] {
      std::vector<MountSpec> specs;
      for (const auto& v : *volumes) specs.push_back(parse_volume_flag(v));
      for (const auto& m : *mounts) specs.push_back(parse_mount_flag(m));
      for (const auto& t : *tmpfs) specs.push_back(parse_tmpfs_flag(t));
      // Outer mounts before the ones inside them, as Docker orders them.
      std::stable_sort(specs.begin(), specs.end(), [](const MountSpec& a, const MountSpec& b) {
        return depth(a.target) < depth(b.target);
      });
      mount_stack(ctx.root, *name, *mountpoint, specs);
    });
  }

  // umount
  {
    auto* cmd = app.add_subcommand(
        "umount", "Unmount a stack and everything mounted inside it (by name or mountpoint)");
    auto which = std::make_shared<std::string>();
    cmd->add_option("NAME|MOUNTPOINT", *which, "The stack, or where it is mounted")->required();
    cmd->callback([&ctx, which] { umount_stack(ctx.root, *which); });
  }

  // ps
  {
    auto* cmd = app.add_subcommand("ps", "List stacks (mounted ones unless -a)");
    auto all = std::make_shared<bool>(false);
    auto size = std::make_shared<bool>(false);
    auto quiet = std::make_shared<bool>(false);
    auto format = std::make_shared<std::string>("table");
    cmd->add_flag("-a,--all", *all, "Show all stacks (default: mounted ones)");
    cmd->add_flag("-s,--size", *size, "Show the writable layer's size and the virtual size");
    cmd->add_flag("-q,--quiet", *quiet, "Only show names");
    cmd->add_option("--format", *format, "Output format: table or json")
        ->check(CLI::IsMember({"table", "json"}));
    cmd->callback([&ctx, all, size, quiet, format] {
      auto store = Store::open(ctx.root, Access::kRead);
      const auto stacks = list_stacks(*store, *all, *size && !*quiet);
      if (*quiet) {
        for (const auto& s : stacks) std::printf("%s\n", s.name.c_str());
        return;
      }
      if (*format == "json") {
        for (const auto& s : stacks) {
          json j = {{"Name", s.name},
                    {"Layers", s.layers},
                    {"Mountpoint", s.mountpoint.value_or("")},
                    {"CreatedAt", s.created},
                    {"RunningFor", time_ago(s.created)},
                    {"Volumes", s.volumes},
                    {"State", s.mountpoint ? "mounted" : "unmounted"},
                    {"Size", *size ? size_cell(s.size_rw, s.size_root_fs) : "0B"}};
          if (*size) {
            j["SizeRw"] = s.size_rw;
            j["SizeRootFs"] = s.size_root_fs;
          }
          std::printf("%s\n", j.dump().c_str());
        }
        return;
      }
      std::vector<std::string> header = {"NAME", "LAYERS", "MOUNTPOINT", "CREATED"};
      if (*size) header.push_back("SIZE");
      Table t(header);
      for (const auto& s : stacks) {
        std::vector<std::string> row = {s.name, std::to_string(s.layers.size()),
                                        s.mountpoint.value_or(""), time_ago(s.created)};
        if (*size) row.push_back(size_cell(s.size_rw, s.size_root_fs));
        t.add(row);
      }
      std::fputs(t.render().c_str(), stdout);
    });
  }

  // commit
  {
    auto* cmd = app.add_subcommand("commit",
                                   "Turn a stack's writable layer into a new layer; prints its id");
    auto name = std::make_shared<std::string>();
    auto layer_name = std::make_shared<std::string>();
    cmd->add_option("NAME", *name, "The stack")->required();
    cmd->add_option("--name", *layer_name, "A name for the new layer (unique among layers)");
    cmd->callback([&ctx, name, layer_name] {
      std::string id;
      {
        ProgressLine line("Committing " + *name);
        std::optional<std::string> ln;
        if (!layer_name->empty()) ln = *layer_name;
        id = commit_stack(ctx.root, *name, ln, line.callback());
      }
      std::printf("%s\n", id.c_str());
    });
  }

  // rm
  {
    auto* cmd =
        app.add_subcommand("rm", "Remove stacks and their writable layers (not while mounted)");
    cmd->alias("remove");
    auto names = std::make_shared<std::vector<std::string>>();
    auto volumes = std::make_shared<bool>(false);
    cmd->add_option("NAME", *names, "The stacks")->required();
    cmd->add_flag("-v,--volumes", *volumes, "Also remove the stacks' anonymous volumes");
    cmd->callback([&ctx, names, volumes] {
      std::string errors;
      for (const auto& n : *names) {
        try {
          remove_stack(ctx.root, n, *volumes);
          std::printf("%s\n", n.c_str());
          std::fflush(stdout);
        } catch (const Error& e) {
          errors += (errors.empty() ? "" : "\nError: ") + std::string(e.what());
        }
      }
      if (!errors.empty()) throw Error(errors);
    });
  }
}

}  // namespace layerfs::ctl
