// `layerctl check`: the index/upper consistency checker (fs/check.h) on a
// stack, or on any upper/work pair. Thin: it finds the directories, runs the
// checker and prints one line per finding.
//
// Exit status (docs/LAYERCTL.md): 0 nothing found; 1 something found, even
// when --repair fixed all of it (the summary line says how much was
// repaired; a second run exits 0 when everything was); 2 the check could not
// run (usage, unknown stack, a mounted stack, an unreadable index...).
#include <cstdio>
#include <cstring>
#include <memory>
#include <string>
#include <vector>

#include "fs/check.h"
#include "tools/commands.h"
#include "tools/stacks.h"
#include "tools/store.h"

namespace layerfs::ctl {
namespace {

constexpr int kCheckUsage = 2;

struct CheckFlags {
  std::string stack;
  std::string upper;
  std::string work;
  std::vector<std::string> lowers;
  bool repair = false;
};

int run_check(const Context& ctx, const CheckFlags& f) {
  check::Options o;
  o.repair = f.repair;
  std::string subject;
  if (!f.stack.empty()) {
    if (!f.upper.empty() || !f.work.empty() || !f.lowers.empty()) {
      throw Error("give either a STACK or --upper and --work, not both", kCheckUsage);
    }
    StackDirs d;
    try {
      d = stack_dirs(ctx.root, f.stack);
    } catch (const Error& e) {
      throw Error(e.what(), kCheckUsage);
    }
    if (d.mountpoint) {
      throw Error(
          "stack " + f.stack + " is mounted at " + *d.mountpoint + "; umount it before checking",
          kCheckUsage);
    }
    o.upper = d.upper;
    o.work = d.work;
    o.lowers = d.lowers;
    subject = "stack " + f.stack;
  } else {
    if (f.upper.empty() || f.work.empty()) {
      throw Error("check needs a STACK, or both --upper DIR and --work DIR", kCheckUsage);
    }
    o.upper = f.upper;
    o.work = f.work;
    o.lowers = f.lowers;
    subject = o.upper;
  }

  std::string why;
  auto r = check::check(o, &why);
  if (!r.ok()) throw Error(why.empty() ? std::strerror(r.error()) : why, kCheckUsage);
  const check::Report& rep = *r;
  for (const auto& fi : rep.findings) {
    std::printf("%s: %s%s\n", check::kind_name(fi.kind), fi.what.c_str(),
                fi.harmless ? " [harmless: left by a crash]" : "");
    if (!fi.action.empty())
      std::printf("  %s\n", fi.repaired ? ("repaired: " + fi.action).c_str() : fi.action.c_str());
  }
  const std::string looked = std::to_string(rep.upper_objects) + " upper objects, " +
                             std::to_string(rep.object_records) + " object records, " +
                             std::to_string(rep.whiteouts) + " whiteouts, " +
                             std::to_string(rep.link_groups) + " link groups" +
                             (rep.index_found ? "" : " (no index: never mounted)") +
                             (o.lowers.empty() ? "; lowers not checked" : "");
  if (rep.clean()) {
    std::printf("%s: clean (%s)\n", subject.c_str(), looked.c_str());
    return 0;
  }
  const size_t n = rep.findings.size();
  std::string summary = subject + ": " + std::to_string(n) + " problem" + (n > 1 ? "s" : "") +
                        " (" + std::to_string(n - rep.serious()) + " harmless)";
  if (o.repair) {
    summary += ", " + std::to_string(n - rep.unrepaired()) + " repaired, " +
               std::to_string(rep.unrepaired()) + " left";
  } else {
    summary += "; run with --repair to fix what can be fixed";
  }
  std::printf("%s (%s)\n", summary.c_str(), looked.c_str());
  return 1;
}

}  // namespace

void add_check_command(CLI::App& app, Context& ctx) {
  auto* cmd = app.add_subcommand(
      "check",
      "Check that a stack's index agrees with its writable layer (an fsck); --repair fixes what "
      "can be fixed without losing data");
  auto flags = std::make_shared<CheckFlags>();
  cmd->add_option("STACK", flags->stack, "The stack to check (not mounted)");
  cmd->add_option("--upper", flags->upper, "An upper directory to check (instead of a STACK)");
  cmd->add_option("--work", flags->work, "Its work directory");
  cmd->add_option("--lower", flags->lowers,
                  "A lower directory of that mount, top-most first (repeat; optional)");
  cmd->add_flag("--repair", flags->repair, "Fix what can be fixed, and say what was done");
  cmd->callback([&ctx, flags] {
    std::fflush(stdout);
    int status = run_check(ctx, *flags);
    std::fflush(stdout);
    if (status != 0) throw CheckStatus{status};
  });
}

}  // namespace layerfs::ctl
