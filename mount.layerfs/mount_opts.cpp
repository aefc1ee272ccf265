#include "mount.layerfs/mount_opts.h"

#include <array>
#include <cstring>

#include "fs/options.h"

namespace layerfs::mount_helper {
namespace {

[[noreturn]] void fail(std::string message) { throw ConfigError(std::move(message)); }

bool is_octal(char c) { return c >= '0' && c <= '7'; }

}  // namespace

HelperArgs parse_helper_args(int argc, const char* const* argv) {
  HelperArgs a;
  std::vector<std::string> positional;
  for (int i = 1; i < argc; ++i) {
    std::string_view arg = argv[i];
    auto value = [&](const char* flag) -> std::string {
      if (i + 1 >= argc) fail(std::string("option ") + flag + " needs a value");
      return argv[++i];
    };
    if (arg == "-o") {
      for (auto& o : split_options(value("-o"))) a.options.push_back(std::move(o));
    } else if (arg.size() > 2 && arg.substr(0, 2) == "-o") {
      for (auto& o : split_options(arg.substr(2))) a.options.push_back(std::move(o));
    } else if (arg == "-t") {
      a.type = value("-t");
    } else if (arg.size() > 2 && arg.substr(0, 2) == "-t") {
      a.type = std::string(arg.substr(2));
    } else if (arg.size() >= 2 && arg[0] == '-' && arg[1] != '-' &&
               arg.find_first_not_of("sfnv", 1) == std::string_view::npos) {
      for (char c : arg.substr(1)) {
        if (c == 's') a.sloppy = true;
        if (c == 'f') a.fake = true;
        if (c == 'n') a.no_mtab = true;
        if (c == 'v') a.verbose = true;
      }
    } else if (arg.size() > 1 && arg[0] == '-') {
      fail("unknown flag '" + std::string(arg) + "'");
    } else {
      positional.emplace_back(arg);
    }
  }
  if (positional.size() < 2) fail("expected SOURCE and MOUNTPOINT");
  if (positional.size() > 2) fail("unexpected argument '" + positional[2] + "'");
  a.source = decode_octal_escapes(positional[0], false);
  a.mountpoint = decode_octal_escapes(positional[1], false);
  if (a.type && *a.type != "layerfs" && *a.type != "fuse.layerfs") {
    fail("this helper mounts type layerfs or fuse.layerfs, not '" + *a.type + "'");
  }
  return a;
}

bool is_mount_only_option(std::string_view o) {
  static constexpr std::array<std::string_view, 10> kExact = {
      "defaults", "auto", "noauto", "nofail", "_netdev", "user", "users", "nouser", "owner",
      "group"};
  for (auto e : kExact) {
    if (o == e) return true;
  }
  if (o.substr(0, 2) == "x-" || o.substr(0, 2) == "X-") return true;
  if (o.substr(0, 8) == "comment=") return true;
  return false;
}

std::string decode_octal_escapes(std::string_view s, bool keep_separators) {
  std::string out;
  out.reserve(s.size());
  for (size_t i = 0; i < s.size(); ++i) {
    char c = s[i];
    if (c != '\\' || i + 1 >= s.size()) {
      out += c;
      continue;
    }
    if (i + 3 < s.size() && is_octal(s[i + 1]) && is_octal(s[i + 2]) && is_octal(s[i + 3])) {
      int v = (s[i + 1] - '0') * 64 + (s[i + 2] - '0') * 8 + (s[i + 3] - '0');
      if (v != 0 && v <= 0xff) {
        char d = static_cast<char>(v);
        if (keep_separators && (d == ',' || d == ':' || d == '\\')) out += '\\';
        out += d;
        i += 3;
        continue;
      }
    }
    // Any other escape is not ours (`\,` `\:` `\\` are layerfs's own): keep both
    // characters and step over the escaped one, so `\\040` stays literal.
    out += c;
    out += s[i + 1];
    ++i;
  }
  return out;
}

std::vector<std::string> layerfs_options(const std::vector<std::string>& options) {
  std::vector<std::string> out;
  for (const auto& o : options) {
    if (o.empty() || is_mount_only_option(o)) continue;
    out.push_back(decode_octal_escapes(o, true));
  }
  return out;
}

std::vector<std::string> layerfs_command(const HelperArgs& args, const std::string& binary,
                                         bool as_root) {
  std::vector<std::string> cmd = {binary, args.source, args.mountpoint};
  std::vector<std::string> opts = layerfs_options(args.options);
  if (as_root) {
    // Like any other mount made by root, and like mount.fuse3: devices and
    // set-id bits work unless the options say otherwise (libfuse's own
    // default is nodev,nosuid).
    bool dev = false, suid = false;
    for (const auto& o : opts) {
      dev |= o == "dev" || o == "nodev";
      suid |= o == "suid" || o == "nosuid";
    }
    if (!dev) opts.push_back("dev");
    if (!suid) opts.push_back("suid");
  }
  if (!opts.empty()) {
    std::string joined;
    for (const auto& o : opts) {
      if (!joined.empty()) joined += ',';
      joined += o;
    }
    cmd.push_back("-o");
    cmd.push_back(joined);
  }
  return cmd;
}

}  // namespace layerfs::mount_helper
