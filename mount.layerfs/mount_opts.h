// What mount(8) hands a mount helper, and what the helper hands layerfs.
//
// mount(8) runs `/sbin/mount.fuse.layerfs SOURCE DIR [-s] [-f] [-n] [-v]
// [-o OPTS] [-t TYPE]` for `mount -t fuse.layerfs`, fstab lines of type
// fuse.layerfs and `mount DIR` with such a line (and /sbin/mount.layerfs for
// type layerfs). The helper drops the options only fstab, mount(8) and systemd
// understand, decodes the octal escapes fstab uses (`\040` for a space), and
// runs `layerfs SOURCE DIR -o OPTS`, which checks everything else and reports
// errors before it detaches.
//
// Parsing runs before anything is mounted, so problems are ConfigError
// exceptions (fs/options.h), turned into a message and exit status 1.
#pragma once

#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace layerfs::mount_helper {

struct HelperArgs {
  std::string source;
  std::string mountpoint;
  std::vector<std::string> options;  // split at unescaped commas, escapes kept
  std::optional<std::string> type;   // -t TYPE
  bool fake = false;     // -f: do everything but mount (mount -f)
  bool sloppy = false;   // -s: accepted; layerfs still refuses unknown options
  bool no_mtab = false;  // -n: nothing to do, there is no mtab to write
  bool verbose = false;  // -v: say what is run
};

// Parses the helper's argv (argv[0] is the helper's name). Throws ConfigError
// for a missing or extra positional argument, an unknown flag, a missing -o or
// -t value, or a -t type other than layerfs / fuse.layerfs.
HelperArgs parse_helper_args(int argc, const char* const* argv);

// True for the options that only fstab, mount(8) or systemd read and layerfs
// must not see: defaults, auto, noauto, nofail, _netdev, user, users, nouser,
// owner, group, comment=..., x-..., X-....
bool is_mount_only_option(std::string_view option);

// Decodes fstab's octal escapes (`\040` space, `\011` tab, `\134` backslash,
// any `\NNN` but `\000`). With keep_separators (option values), a decoded ',',
// ':' or '\' is written back escaped so that layerfs still reads it as part of
// a path. Other backslash sequences (`\,` `\:` `\\`, layerfs's own escapes)
// are kept as they are, both characters.
std::string decode_octal_escapes(std::string_view s, bool keep_separators);

// The options layerfs should get: mount-only ones dropped, escapes decoded,
// empty ones removed, order kept.
std::vector<std::string> layerfs_options(const std::vector<std::string>& options);

// The argv to run: {binary, SOURCE, DIR, "-o", OPTS} (no -o when there are no
// options left). For root, "dev" and "suid" are added unless the options say
// nodev/dev or nosuid/suid, as mount(8) does for other filesystems.
std::vector<std::string> layerfs_command(const HelperArgs& args, const std::string& binary,
                                         bool as_root);

}  // namespace layerfs::mount_helper
