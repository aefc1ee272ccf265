// libFuzzer target: the daemon's command line and -o option parser (fs/options.h).
//
// The input is an argument vector: NUL bytes separate the arguments (argv[0]
// is added). Whatever the input, parse_command_line either returns a config or
// throws ConfigError; anything else (another exception, a sanitizer report)
// is a finding. A config it accepts must also keep the promises of options.h:
// at least one lowerdir, upperdir and workdir together, and fuse_options that,
// joined with ',', split back into the same pieces (libfuse receives them so).
#include "fs/options.h"

#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string>
#include <string_view>
#include <vector>

namespace {

void require(bool ok) {
  if (!ok) std::abort();
}

// Escapes the characters split_lowerdirs and split_options treat specially.
std::string escape(std::string_view s) {
  std::string out;
  for (char c : s) {
    if (c == '\\' || c == ',' || c == ':') out += '\\';
    out += c;
  }
  return out;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string_view input(reinterpret_cast<const char*>(data), size);

  std::vector<std::string> args{"layerfs"};
  size_t start = 0;
  while (start <= input.size() && args.size() < 64) {
    size_t end = input.find('\0', start);
    if (end == std::string_view::npos) end = input.size();
    args.emplace_back(input.substr(start, end - start));
    start = end + 1;
  }
  std::vector<const char*> argv;
  for (const auto& a : args) argv.push_back(a.c_str());
  argv.push_back(nullptr);

  try {
    layerfs::MountConfig cfg =
        layerfs::parse_command_line(static_cast<int>(args.size()), argv.data());
    if (!cfg.show_help && !cfg.show_version) {
      require(!cfg.lowerdirs.empty());
      require(cfg.upperdir.has_value() == cfg.workdir.has_value());
      require(!cfg.mountpoint.empty());
      std::string joined;
      for (const auto& o : cfg.fuse_options) {
        require(!o.empty());
        if (!joined.empty()) joined += ',';
        joined += o;
      }
      require(layerfs::split_options(joined) == cfg.fuse_options);
    }
  } catch (const layerfs::ConfigError&) {
  }

  // The escape helpers on their own: escaping then splitting gives the input back.
  try {
    std::vector<std::string> dirs = layerfs::split_lowerdirs(input);
    require(!dirs.empty());
  } catch (const layerfs::ConfigError&) {
  }
  if (!input.empty()) {
    std::vector<std::string> one = layerfs::split_lowerdirs(escape(input));
    require(one.size() == 1 && one[0] == input);
    require(layerfs::unescape(escape(input)) == input);
    std::vector<std::string> pieces = layerfs::split_options(escape(input));
    require(pieces.size() == 1 && layerfs::unescape(pieces[0]) == input);
  }
  return 0;
}
