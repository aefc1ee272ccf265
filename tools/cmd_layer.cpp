// `layerctl layer ...`: import, ls, inspect, rm and export, over
// tools/layer_store.h. Output follows `docker image` where Docker has an
// equivalent: ids shortened to 12 hex digits in tables, sizes with 3
// significant digits, CREATED as "N minutes ago", JSON lines for --format json
// and a 4-space-indented array for inspect.
#include <unistd.h>

#include <cstdio>
#include <iostream>
#include <memory>

#include "tools/commands.h"
#include "tools/layer_store.h"
#include "tools/output.h"

namespace layerfs::ctl {
namespace {

std::string short_id(const std::string& id) {
  auto colon = id.find(':');
  std::string hex = colon == std::string::npos ? id : id.substr(colon + 1);
  return hex.substr(0, 12);
}

// Runs `fn` for each argument, collecting the errors, which are reported
// together (one per line) after the others succeeded, as Docker does.
template <typename Fn>
void for_each_ref(const std::vector<std::string>& refs, Fn fn) {
  std::string errors;
  for (const auto& ref : refs) {
    try {
      fn(ref);
    } catch (const Error& e) {
      errors += (errors.empty() ? "" : "\nError: ") + std::string(e.what());
    }
  }
  if (!errors.empty()) throw Error(errors);
}

Compression compression_for(const std::string& flag, const std::string& out) {
  if (!flag.empty()) return parse_compression(flag);
  auto ends = [&](const char* suffix) {
    std::string s = suffix;
    return out.size() >= s.size() && out.compare(out.size() - s.size(), s.size(), s) == 0;
  };
  if (ends(".gz") || ends(".tgz")) return Compression::kGzip;
  if (ends(".tar")) return Compression::kNone;
  return Compression::kZstd;
}

}  // namespace

void add_layer_commands(CLI::App& app, Context& ctx) {
  CLI::App* layer =
      app.add_subcommand("layer", "Manage layers: import, list, inspect, remove, export");
  layer->require_subcommand(1);

  // import
  {
    auto* cmd = layer->add_subcommand(
        "import",
        "Import a layer from a directory, a tar, a .tar.gz or a .tar.zst OCI layer; prints its id");
    auto path = std::make_shared<std::string>();
    auto name = std::make_shared<std::string>();
    cmd->add_option("PATH", *path, "A layer tree (directory) or an OCI layer tar")->required();
    cmd->add_option("--name", *name, "A name for the layer (unique among layers)");
    cmd->callback([&ctx, path, name] {
      ImportOptions opts;
      if (!name->empty()) opts.name = *name;
      LayerInfo info;
      {
        ProgressLine line("Importing " + *path);
        opts.progress = line.callback();
        info = import_layer(ctx.root, *path, opts);
      }
      std::printf("%s\n", info.id.c_str());
    });
  }

  // ls
  {
    auto* cmd = layer->add_subcommand("ls", "List layers");
    cmd->alias("list");
    auto format = std::make_shared<std::string>("table");
    auto quiet = std::make_shared<bool>(false);
    auto no_trunc = std::make_shared<bool>(false);
    cmd->add_option("--format", *format, "Output format: table or json")
        ->check(CLI::IsMember({"table", "json"}));
    cmd->add_flag("-q,--quiet", *quiet, "Only show layer ids");
    cmd->add_flag("--no-trunc", *no_trunc, "Do not truncate ids");
    cmd->callback([&ctx, format, quiet, no_trunc] {
      auto store = Store::open(ctx.root, Access::kRead);
      auto layers = list_layers(*store);
      auto shown_id = [&](const LayerInfo& l) { return *no_trunc ? l.id : short_id(l.id); };
      if (*quiet) {
        for (const auto& l : layers) std::printf("%s\n", shown_id(l).c_str());
        return;
      }
      if (*format == "json") {
        for (const auto& l : layers) {
          json j = {{"ID", shown_id(l)},
                    {"Name", l.name ? *l.name : "<none>"},
                    {"CreatedAt", l.created},
                    {"CreatedSince", time_ago(l.created)},
                    {"Size", human_size(static_cast<double>(l.size), 3)},
                    {"Stacks", std::to_string(l.stacks.size())}};
          std::printf("%s\n", j.dump().c_str());
        }
        return;
      }
      Table t({"LAYER ID", "NAME", "CREATED", "SIZE", "STACKS"});
      for (const auto& l : layers) {
        t.add({shown_id(l), l.name ? *l.name : "<none>", time_ago(l.created),
               human_size(static_cast<double>(l.size), 3), std::to_string(l.stacks.size())});
      }
      std::fputs(t.render().c_str(), stdout);
    });
  }

  // inspect
  {
    auto* cmd = layer->add_subcommand("inspect", "Show the details of one or more layers (JSON)");
    auto refs = std::make_shared<std::vector<std::string>>();
    cmd->add_option("LAYER", *refs, "Layer ids (or unique prefixes of 12+ digits) or names")
        ->required();
    cmd->callback([&ctx, refs] {
      auto store = Store::open(ctx.root, Access::kRead);
      json out = json::array();
      std::string errors;
      for (const auto& ref : *refs) {
        try {
          out.push_back(find_layer(*store, ref).to_json());
        } catch (const Error& e) {
          errors += (errors.empty() ? "" : "\nError: ") + std::string(e.what());
        }
      }
      std::printf("%s\n", out.dump(4).c_str());
      std::fflush(stdout);
      if (!errors.empty()) throw Error(errors);
    });
  }

  // rm
  {
    auto* cmd =
        layer->add_subcommand("rm", "Remove one or more layers (not while a stack uses them)");
    cmd->alias("remove");
    auto refs = std::make_shared<std::vector<std::string>>();
    cmd->add_option("LAYER", *refs, "Layer ids (or unique prefixes of 12+ digits) or names")
        ->required();
    cmd->callback([&ctx, refs] {
      for_each_ref(*refs, [&](const std::string& ref) {
        std::printf("%s\n", remove_layer(ctx.root, ref).id.c_str());
        std::fflush(stdout);
      });
    });
  }

  // export
  {
    auto* cmd = layer->add_subcommand(
        "export",
        "Write a layer as an OCI layer tar (compression: --compress, else from the file name: "
        ".tar none, .gz/.tgz gzip, anything else zstd)");
    auto ref = std::make_shared<std::string>();
    auto out = std::make_shared<std::string>();
    auto compress = std::make_shared<std::string>();
    cmd->add_option("LAYER", *ref, "Layer id (or a unique prefix of 12+ digits) or name")
        ->required();
    cmd->add_option("-o,--output", *out, "The file to write")->required();
    cmd->add_option("--compress", *compress, "zstd, gzip or none")
        ->check(CLI::IsMember({"zstd", "gzip", "none"}));
    cmd->callback([&ctx, ref, out, compress] {
      Compression c = compression_for(*compress, *out);
      ProgressLine line("Exporting " + *ref);
      export_layer(ctx.root, *ref, *out, c, line.callback());
    });
  }
}

}  // namespace layerfs::ctl
