// The layerfs command line and mount options, and their checks before mounting.
//
//   layerfs [SOURCE] MOUNTPOINT -o lowerdir=DIR[:DIR...][,upperdir=DIR,workdir=DIR][,OPTION...]
//           [-f] [-d] [-s] [-h] [-V]
//
// This runs before the FUSE session exists, so it reports problems by throwing
// ConfigError (caught in fs/main.cpp, printed, non-zero exit). Nothing here
// mounts, creates or modifies anything.
#pragma once

#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

namespace layerfs {

// A problem with the command line, an option or a directory. what() is a
// complete sentence fragment naming the problem, e.g.
// "lowerdir /x/y does not exist", "unknown option 'foo'".
class ConfigError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

struct MountConfig {
  // Positional arguments: with two, the first is the source (shown in
  // /proc/mounts) and the second the mountpoint.
  std::optional<std::string> source;
  std::string mountpoint;

  // Layer options, exactly as given after unescaping (see split_lowerdirs).
  std::vector<std::string> lowerdirs;  // top-most first, at least one
  std::optional<std::string> upperdir;
  std::optional<std::string> workdir;

  // Command-line flags.
  bool foreground = false;     // -f
  bool debug = false;          // -d (implies foreground, as in libfuse)
  bool single_thread = false;  // -s
  bool show_help = false;      // -h / --help
  bool show_version = false;   // -V / --version

  // Options layerfs itself interprets.
  bool read_only = false;             // ro (rw turns it off again)
  bool default_permissions = true;    // default_permissions / nodefault_permissions
  bool allow_other = false;           // allow_other
  std::optional<std::string> fsname;  // fsname=NAME (default: SOURCE, else "layerfs")
  double timeout = 86400.0;           // timeout=SECONDS: entry/attr cache timeout (>= 0)
  unsigned max_threads = 0;           // threads=N: most request threads, 0 = default
  bool passthrough = true;            // passthrough / nopassthrough (fs/passthrough.h)

  // Mount options passed on to the kernel through libfuse unchanged, in the
  // order given (allow_root, auto_unmount, nosuid, nodev, noexec, noatime,
  // relatime, sync, dirsync, ... see options.cpp for the full table).
  // Of options that set the same flag (suid/nosuid, or max_read= twice) only
  // the last is kept. Values keep their backslash escapes, so joining the list
  // with ',' gives a valid -o string for libfuse (a lone backslash at the end
  // of an option, which escapes nothing, is doubled so that it cannot escape
  // the joining ',').
  std::vector<std::string> fuse_options;
};

// Parses argv (argv[0] is the program name). Accepts -o several times and
// options in any order; "--" ends options. Throws ConfigError for a missing or
// extra positional argument, an unknown flag, an unknown -o option, a missing
// or malformed option value, a missing lowerdir, or workdir without upperdir /
// upperdir without workdir. Does not look at the filesystem.
// When -h or -V is given, returns at once with show_help / show_version set
// and does not require the other arguments.
MountConfig parse_command_line(int argc, const char* const* argv);

// Splits a comma-separated -o string into options. A backslash escapes the next
// character (so "\," is a comma inside a value and "\\" a backslash); the
// escapes are kept in the returned pieces for split_lowerdirs to see. Empty
// pieces (",," or a trailing comma) are dropped, as mount.fuse3 does.
std::vector<std::string> split_options(std::string_view opts);

// Splits a lowerdir value at unescaped ':' and removes the escapes:
// "a\:b:c" -> {"a:b", "c"}. Empty elements are an error (ConfigError).
std::vector<std::string> split_lowerdirs(std::string_view value);

// Removes backslash escapes from an option value (upperdir, workdir, fsname).
std::string unescape(std::string_view value);

// The checks made before mounting, on the real filesystem. Throws ConfigError
// naming the problem when:
//  - a lowerdir, the upperdir, the workdir or the mountpoint does not exist,
//    is not a directory, or (layers) cannot be read and searched;
//  - the upperdir or workdir is not writable;
//  - upperdir and workdir are the same, or one is inside the other;
//  - the upperdir or the workdir is inside a lowerdir or the mountpoint, or a
//    lowerdir or the mountpoint is inside the upperdir or the workdir;
//  - upperdir and workdir are on different filesystems.
// Fills `canonical` (when not null) with the real paths, in the same order
// and shape as `cfg`.
struct CanonicalPaths {
  std::vector<std::string> lowerdirs;
  std::optional<std::string> upperdir;
  std::optional<std::string> workdir;
  std::string mountpoint;
};
CanonicalPaths check_paths(const MountConfig& cfg);

// One-line usage and the full help text for -h.
std::string usage_text(std::string_view program);
std::string help_text(std::string_view program);

}  // namespace layerfs
