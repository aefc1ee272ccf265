// The layerfs command line and -o mount options: one table that says what each
// option is and does, the backslash escapes shared with kernel overlayfs, and
// the directory checks made before mounting.
#include "fs/options.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <charconv>
#include <cmath>
#include <cstdlib>
#include <memory>
#include <system_error>
#include <utility>

namespace layerfs {
namespace {

[[noreturn]] void fail(std::string message) {
  throw ConfigError(std::move(message));
}

std::string quote(std::string_view s) {
  std::string out = "'";
  out += s;
  out += '\'';
  return out;
}

std::string errno_text(int err) {
  return std::generic_category().message(err);
}

// ---------------------------------------------------------------------------
// Option values

unsigned long long parse_unsigned(std::string_view option, std::string_view raw,
                                  std::string_view what) {
  const std::string text = unescape(raw);
  unsigned long long n = 0;
  const char* end = text.data() + text.size();
  auto [ptr, ec] = std::from_chars(text.data(), end, n);
  if (text.empty() || ec != std::errc() || ptr != end) {
    fail("option " + quote(option) + " needs " + std::string(what) + ", not " + quote(text));
  }
  return n;
}

void set_lowerdir(MountConfig& cfg, std::string_view v) {
  cfg.lowerdirs = split_lowerdirs(v);
}
void set_upperdir(MountConfig& cfg, std::string_view v) {
  cfg.upperdir = unescape(v);
}
void set_workdir(MountConfig& cfg, std::string_view v) {
  cfg.workdir = unescape(v);
}
void set_ro(MountConfig& cfg, std::string_view) {
  cfg.read_only = true;
}
void set_rw(MountConfig& cfg, std::string_view) {
  cfg.read_only = false;
}
void set_default_permissions(MountConfig& cfg, std::string_view) {
  cfg.default_permissions = true;
}
void set_nodefault_permissions(MountConfig& cfg, std::string_view) {
  cfg.default_permissions = false;
}
void set_passthrough(MountConfig& cfg, std::string_view) {
  cfg.passthrough = true;
}
void set_nopassthrough(MountConfig& cfg, std::string_view) {
  cfg.passthrough = false;
}
void set_allow_other(MountConfig& cfg, std::string_view) {
  cfg.allow_other = true;
}
void set_fsname(MountConfig& cfg, std::string_view v) {
  cfg.fsname = unescape(v);
}
void set_debug(MountConfig& cfg, std::string_view) {
  cfg.debug = cfg.foreground = true;
}

void set_timeout(MountConfig& cfg, std::string_view raw) {
  const std::string text = unescape(raw);
  double seconds = 0;
  const char* end = text.data() + text.size();
  auto [ptr, ec] = std::from_chars(text.data(), end, seconds);
  // from_chars accepts "inf" and "nan"; neither is a usable cache lifetime.
  if (ec != std::errc() || ptr != end || !std::isfinite(seconds) || seconds < 0) {
    fail("option 'timeout' needs a non-negative number of seconds, not " + quote(text));
  }
  cfg.timeout = seconds;
}

void set_threads(MountConfig& cfg, std::string_view raw) {
  const unsigned long long n = parse_unsigned("threads", raw, "a positive integer");
  if (n == 0 || n > 100000) {
    fail("option 'threads' needs a positive integer (at most 100000), not " + quote(unescape(raw)));
  }
  cfg.max_threads = static_cast<unsigned>(n);
}

// libfuse reads max_read with "%u"; catching a bad value here gives a message
// that names the option instead of libfuse's generic parse failure.
void check_max_read(MountConfig&, std::string_view raw) {
  const unsigned long long n = parse_unsigned("max_read", raw, "a non-negative integer");
  if (n > 0xffffffffULL) fail("option 'max_read' is too large: " + quote(unescape(raw)));
}

// ---------------------------------------------------------------------------
// The option table

enum class Kind {
  kLayerfs,      // interpreted here and stored in a MountConfig field
  kPassThrough,  // appended to MountConfig::fuse_options, for libfuse and the kernel
  kRejected,     // known to libfuse, but wrong for layerfs: refused with a reason
};

using ApplyFn = void (*)(MountConfig& cfg, std::string_view raw_value);

struct OptionSpec {
  std::string_view name;
  bool takes_value;
  Kind kind;
  // kLayerfs: stores the value (still escaped) in the config. kPassThrough:
  // checks the value, or null when libfuse takes anything.
  ApplyFn apply;
  // kPassThrough: the options that set the same kernel flag (suid/nosuid). A
  // later one replaces earlier ones, so fuse_options holds one of each family.
  std::string_view family;
  // kLayerfs: placeholder for the value in the help text.
  std::string_view arg;
  // kLayerfs: the help line. kRejected: why the option is refused.
  std::string_view text;
};

constexpr OptionSpec own(std::string_view name, ApplyFn apply, std::string_view help) {
  return {name, false, Kind::kLayerfs, apply, {}, {}, help};
}
constexpr OptionSpec own_value(std::string_view name, std::string_view arg, ApplyFn apply,
                               std::string_view help) {
  return {name, true, Kind::kLayerfs, apply, {}, arg, help};
}
constexpr OptionSpec kernel_flag(std::string_view name, std::string_view family) {
  return {name, false, Kind::kPassThrough, nullptr, family, {}, {}};
}
constexpr OptionSpec kernel_value(std::string_view name, std::string_view arg,
                                  ApplyFn check = nullptr) {
  return {name, true, Kind::kPassThrough, check, name, arg, {}};
}
constexpr OptionSpec refused(std::string_view name, std::string_view why) {
  return {name, false, Kind::kRejected, nullptr, {}, {}, why};
}

// Every -o option layerfs accepts. The pass-through part is what libfuse 3.14
// itself understands for a low-level filesystem: lib/mount.c fuse_mount_opts[]
// and mount_flags[] (kernel flags and kernel options), allow_root from
// lib/fuse_lowlevel.c fuse_ll_opts[], and debug from lib/helper.c. Of those,
// layerfs takes over ro/rw, default_permissions, allow_other and fsname= (it
// needs to know them: read-only mounts refuse writes before copy-up,
// permission checks, the /proc/mounts source). Refused on purpose:
//  - subtype=: layerfs always mounts as type "fuse.layerfs"; letting it change
//    would break `mount -t fuse.layerfs`, fstab entries and umount helpers.
//  - blkdev, blksize=: fuseblk mounts need a block device as the source;
//    layerfs has none (the kernel rejects blksize= without fuseblk).
// Left out as unknown: libfuse's mtab-only "user=", the loop settings
// clone_fd and max_idle_threads= (layerfs has threads=), and the high-level
// API's options (kernel_cache, uid=, umask=, ...), which a low-level
// filesystem does not get.
constexpr OptionSpec kOptions[] = {
    // layerfs's own.
    own_value("lowerdir", "DIR[:DIR...]", set_lowerdir,
              "read-only layers, top-most first; ':' separates them (required)"),
    own_value("upperdir", "DIR", set_upperdir, "writable layer on top (needs workdir)"),
    own_value("workdir", "DIR", set_workdir,
              "empty scratch directory on the upperdir's filesystem (needs upperdir)"),
    own("ro", set_ro, "mount read-only, even with an upperdir"),
    own("rw", set_rw, "mount read-write (default; needs an upperdir to write)"),
    own("default_permissions", set_default_permissions,
        "let the kernel check permissions from file modes (default)"),
    own("nodefault_permissions", set_nodefault_permissions,
        "do not ask the kernel to check permissions"),
    own("allow_other", set_allow_other, "let users other than the mounter use the mount"),
    own_value("fsname", "NAME", set_fsname, "source shown in /proc/mounts (default: SOURCE)"),
    own_value("timeout", "SECONDS", set_timeout,
              "kernel cache lifetime of names and attributes (default 86400)"),
    own_value("threads", "N", set_threads, "most threads answering requests at once (default 16, or 4 per CPU)"),
    own("passthrough", set_passthrough,
        "let the kernel read and write upper files itself when it can (default)"),
    own("nopassthrough", set_nopassthrough, "send every read and write through the daemon"),
    own("debug", set_debug, "same as -d"),

    // Passed through to libfuse / the kernel.
    kernel_flag("allow_root", "allow_root"),
    kernel_flag("auto_unmount", "auto_unmount"),
    kernel_value("max_read", "N", check_max_read),
    kernel_flag("suid", "suid"),
    kernel_flag("nosuid", "suid"),
    kernel_flag("dev", "dev"),
    kernel_flag("nodev", "dev"),
    kernel_flag("exec", "exec"),
    kernel_flag("noexec", "exec"),
    kernel_flag("async", "sync"),
    kernel_flag("sync", "sync"),
    kernel_flag("dirsync", "dirsync"),
    kernel_flag("atime", "atime"),
    kernel_flag("noatime", "atime"),
    kernel_flag("diratime", "diratime"),
    kernel_flag("nodiratime", "diratime"),
    kernel_flag("relatime", "relatime"),
    kernel_flag("norelatime", "relatime"),
    kernel_flag("strictatime", "strictatime"),
    kernel_flag("nostrictatime", "strictatime"),
    kernel_flag("lazytime", "lazytime"),
    kernel_flag("nolazytime", "lazytime"),
    kernel_value("context", "CTX"),
    kernel_value("fscontext", "CTX"),
    kernel_value("defcontext", "CTX"),
    kernel_value("rootcontext", "CTX"),

    refused("subtype", "layerfs always mounts as type fuse.layerfs"),
    refused("blkdev", "layerfs is not backed by a block device"),
    refused("blksize", "it only applies to block-device (blkdev) mounts"),
};

const OptionSpec* find_option(std::string_view name) {
  for (const OptionSpec& spec : kOptions) {
    if (spec.name == name) return &spec;
  }
  return nullptr;
}

// Position of the first `c` not preceded by an escaping backslash.
size_t find_unescaped(std::string_view s, char c) {
  for (size_t i = 0; i < s.size(); ++i) {
    if (s[i] == '\\') {
      ++i;
    } else if (s[i] == c) {
      return i;
    }
  }
  return std::string_view::npos;
}

// Whether `s` ends in a backslash that escapes nothing (split_options and
// unescape keep such a backslash as it is).
bool ends_in_lone_backslash(std::string_view s) {
  for (size_t i = 0; i < s.size(); ++i) {
    if (s[i] == '\\') {
      if (i + 1 == s.size()) return true;
      ++i;
    }
  }
  return false;
}

std::string_view option_name(std::string_view piece) {
  return piece.substr(0, find_unescaped(piece, '='));
}

void apply_option(MountConfig& cfg, std::string_view piece) {
  const size_t eq = find_unescaped(piece, '=');
  const std::string_view name = piece.substr(0, eq);
  const bool has_value = eq != std::string_view::npos;
  const std::string_view value = has_value ? piece.substr(eq + 1) : std::string_view{};

  const OptionSpec* spec = find_option(name);
  if (spec == nullptr) fail("unknown option " + quote(name));
  if (spec->kind == Kind::kRejected) {
    fail("option " + quote(name) + " is not supported: " + std::string(spec->text));
  }
  if (!spec->takes_value && has_value) fail("option " + quote(name) + " does not take a value");
  if (spec->takes_value && value.empty()) {
    fail("option " + quote(name) + " needs a value (" + std::string(name) + "=" +
         std::string(spec->arg) + ")");
  }

  if (spec->apply != nullptr) spec->apply(cfg, value);
  if (spec->kind == Kind::kPassThrough) {
    // Last one wins, as it would inside libfuse; keeping only the last also
    // makes fuse_options read as the effective settings.
    std::erase_if(cfg.fuse_options, [&](const std::string& earlier) {
      const OptionSpec* other = find_option(option_name(earlier));
      return other != nullptr && other->family == spec->family;
    });
    // A lone trailing backslash would escape the ',' that joins this option to
    // the next one for libfuse, merging the two (found with the round-trip check of fuzz/options.cpp).
    // Doubled, it stays the literal backslash it is here.
    std::string stored(piece);
    if (ends_in_lone_backslash(stored)) stored += '\\';
    cfg.fuse_options.push_back(std::move(stored));
  }
}

bool has_fuse_option(const MountConfig& cfg, std::string_view name) {
  return std::any_of(cfg.fuse_options.begin(), cfg.fuse_options.end(),
                     [&](const std::string& o) { return option_name(o) == name; });
}

// ---------------------------------------------------------------------------
// Directory checks

struct CheckedDir {
  std::string label;  // "lowerdir", "upperdir", ...
  std::string given;
  std::string real;
  dev_t dev = 0;
};

std::string describe(const CheckedDir& d) {
  std::string s = d.label + " " + d.given;
  if (d.real != d.given) s += " (" + d.real + ")";
  return s;
}

CheckedDir inspect_dir(std::string label, const std::string& path) {
  if (path.empty()) fail(label + " is an empty path");
  struct stat st;
  if (stat(path.c_str(), &st) != 0) {
    const int err = errno;
    if (err == ENOENT || err == ENOTDIR) fail(label + " " + path + " does not exist");
    fail(label + " " + path + ": " + errno_text(err));
  }
  if (!S_ISDIR(st.st_mode)) fail(label + " " + path + " is not a directory");

  std::unique_ptr<char, decltype(&std::free)> real(realpath(path.c_str(), nullptr), &std::free);
  if (!real) {
    const int err = errno;
    fail(label + " " + path + ": cannot resolve the path: " + errno_text(err));
  }
  return CheckedDir{std::move(label), path, real.get(), st.st_dev};
}

void require_access(const CheckedDir& d, int mode, std::string_view problem) {
  // AT_EACCESS: the daemon acts with its effective ids, which is what counts.
  if (faccessat(AT_FDCWD, d.given.c_str(), mode, AT_EACCESS) != 0) {
    const int err = errno;
    fail(d.label + " " + d.given + " is " + std::string(problem) + ": " + errno_text(err));
  }
}

// True when `path` is `dir` or below it, by whole path components (so /a/bc is
// not inside /a/b). Both must be canonical.
bool is_inside(const std::string& path, const std::string& dir) {
  if (path == dir || dir == "/") return true;
  return path.size() > dir.size() && path.compare(0, dir.size(), dir) == 0 &&
         path[dir.size()] == '/';
}

void require_apart(const CheckedDir& a, const CheckedDir& b) {
  if (a.real == b.real) fail(describe(a) + " and " + describe(b) + " are the same directory");
  if (is_inside(a.real, b.real)) fail(describe(a) + " is inside " + describe(b));
  if (is_inside(b.real, a.real)) fail(describe(b) + " is inside " + describe(a));
}

// mount.fuse3's drop_privileges mode mounts by itself and hands the daemon the
// /dev/fuse descriptor as "/dev/fd/N" in place of the mountpoint.
bool is_fd_mountpoint(std::string_view path) {
  constexpr std::string_view kPrefix = "/dev/fd/";
  if (!path.starts_with(kPrefix) || path.size() == kPrefix.size()) return false;
  return std::all_of(path.begin() + kPrefix.size(), path.end(),
                     [](char c) { return c >= '0' && c <= '9'; });
}

// ---------------------------------------------------------------------------
// Help

constexpr std::string_view kUsageTail =
    " [SOURCE] MOUNTPOINT -o lowerdir=DIR[:DIR...][,upperdir=DIR,workdir=DIR][,OPTION...]"
    " [-f] [-d] [-s]";

void add_help_line(std::string& out, std::string_view left, std::string_view text) {
  constexpr size_t kColumn = 28;
  std::string line = "  ";
  line += left;
  if (line.size() + 1 < kColumn) {
    line.resize(kColumn, ' ');
  } else {
    line += ' ';
  }
  out += line;
  out += text;
  out += '\n';
}

// Appends `words` separated by ", ", breaking lines before 100 columns.
void add_wrapped_list(std::string& out, const std::vector<std::string>& words) {
  constexpr size_t kWidth = 98;
  std::string line = " ";
  for (size_t i = 0; i < words.size(); ++i) {
    std::string word = " " + words[i] + (i + 1 < words.size() ? "," : "");
    if (line.size() + word.size() > kWidth) {
      out += line + '\n';
      line = " ";
    }
    line += word;
  }
  out += line + '\n';
}

}  // namespace

std::vector<std::string> split_options(std::string_view opts) {
  std::vector<std::string> pieces;
  std::string current;
  for (size_t i = 0; i < opts.size(); ++i) {
    const char c = opts[i];
    if (c == '\\' && i + 1 < opts.size()) {
      current += c;
      current += opts[++i];
    } else if (c == ',') {
      if (!current.empty()) pieces.push_back(std::move(current));
      current.clear();
    } else {
      current += c;
    }
  }
  if (!current.empty()) pieces.push_back(std::move(current));
  return pieces;
}

std::vector<std::string> split_lowerdirs(std::string_view value) {
  std::vector<std::string> dirs;
  std::string current;
  for (size_t i = 0; i < value.size(); ++i) {
    const char c = value[i];
    if (c == '\\' && i + 1 < value.size()) {
      current += value[++i];
    } else if (c == ':') {
      if (current.empty()) fail("option 'lowerdir' has an empty directory in " + quote(value));
      dirs.push_back(std::move(current));
      current.clear();
    } else {
      current += c;
    }
  }
  if (current.empty()) fail("option 'lowerdir' has an empty directory in " + quote(value));
  dirs.push_back(std::move(current));
  return dirs;
}

std::string unescape(std::string_view value) {
  std::string out;
  out.reserve(value.size());
  for (size_t i = 0; i < value.size(); ++i) {
    // A lone trailing backslash has nothing to escape and stays as it is.
    if (value[i] == '\\' && i + 1 < value.size()) ++i;
    out += value[i];
  }
  return out;
}

MountConfig parse_command_line(int argc, const char* const* argv) {
  MountConfig cfg;

  // -h and -V win over everything else, including errors elsewhere on the line,
  // so `layerfs --help` always works. "-o" consumes its argument, "--" ends flags.
  for (int i = 1; i < argc; ++i) {
    const std::string_view arg = argv[i];
    if (arg == "--") break;
    if (arg == "-o") {
      ++i;
    } else if (arg == "-h" || arg == "--help") {
      cfg.show_help = true;
    } else if (arg == "-V" || arg == "--version") {
      cfg.show_version = true;
    }
  }
  if (cfg.show_help || cfg.show_version) return cfg;

  std::vector<std::string_view> positionals;
  std::vector<std::string_view> option_strings;
  bool flags_ended = false;
  for (int i = 1; i < argc; ++i) {
    const std::string_view arg = argv[i];
    if (flags_ended || arg.size() < 2 || arg[0] != '-') {
      positionals.push_back(arg);
    } else if (arg == "--") {
      flags_ended = true;
    } else if (arg == "-o") {
      if (i + 1 >= argc) fail("flag '-o' needs an argument");
      option_strings.push_back(argv[++i]);
    } else if (arg.starts_with("-o")) {
      option_strings.push_back(arg.substr(2));
    } else if (arg == "-f") {
      cfg.foreground = true;
    } else if (arg == "-d") {
      cfg.debug = cfg.foreground = true;
    } else if (arg == "-s") {
      cfg.single_thread = true;
    } else {
      fail("unknown flag " + quote(arg));
    }
  }

  if (positionals.empty()) fail("missing mountpoint");
  if (positionals.size() > 2) fail("unexpected argument " + quote(positionals[2]));
  if (positionals.size() == 2) {
    // An empty source (mount.fuse passes whatever fstab had) would give an
    // empty name in /proc/mounts; treat it as absent so fsname falls back.
    if (!positionals[0].empty()) cfg.source = std::string(positionals[0]);
  }
  cfg.mountpoint = std::string(positionals.back());
  if (cfg.mountpoint.empty()) fail("mountpoint is an empty string");

  for (std::string_view opts : option_strings) {
    for (const std::string& piece : split_options(opts)) apply_option(cfg, piece);
  }

  if (cfg.lowerdirs.empty()) fail("missing option 'lowerdir' (-o lowerdir=DIR[:DIR...])");
  if (cfg.upperdir && !cfg.workdir) fail("upperdir requires workdir");
  if (cfg.workdir && !cfg.upperdir) fail("workdir requires upperdir");
  // libfuse 3 would quietly let allow_root restrict allow_other to root and the
  // mounter; refuse the contradiction instead.
  if (cfg.allow_other && has_fuse_option(cfg, "allow_root")) {
    fail("options 'allow_other' and 'allow_root' cannot be used together");
  }
  return cfg;
}

CanonicalPaths check_paths(const MountConfig& cfg) {
  std::vector<CheckedDir> lowers;
  lowers.reserve(cfg.lowerdirs.size());
  for (const std::string& dir : cfg.lowerdirs) lowers.push_back(inspect_dir("lowerdir", dir));
  std::optional<CheckedDir> upper;
  std::optional<CheckedDir> work;
  if (cfg.upperdir) upper = inspect_dir("upperdir", *cfg.upperdir);
  if (cfg.workdir) work = inspect_dir("workdir", *cfg.workdir);
  std::optional<CheckedDir> mount;
  if (!is_fd_mountpoint(cfg.mountpoint)) mount = inspect_dir("mountpoint", cfg.mountpoint);

  for (const CheckedDir& lower : lowers) require_access(lower, R_OK | X_OK, "not readable");
  for (const std::optional<CheckedDir>* layer : {&upper, &work}) {
    if (!*layer) continue;
    require_access(**layer, R_OK | X_OK, "not readable");
    require_access(**layer, W_OK | X_OK, "not writable");
  }

  // A lowerdir may hold the mountpoint (or be it): the daemon opens every
  // layer root before mounting, so the mount does not hide them from it.
  if (upper && work) require_apart(*upper, *work);
  for (const std::optional<CheckedDir>* layer : {&upper, &work}) {
    if (!*layer) continue;
    for (const CheckedDir& lower : lowers) require_apart(**layer, lower);
    if (mount) require_apart(**layer, *mount);
  }
  // The workdir is where copy-ups are built before being renamed into the
  // upperdir, and rename(2) does not cross filesystems.
  if (upper && work && upper->dev != work->dev) {
    fail(describe(*upper) + " and " + describe(*work) + " are on different filesystems");
  }

  CanonicalPaths out;
  for (const CheckedDir& lower : lowers) out.lowerdirs.push_back(lower.real);
  if (upper) out.upperdir = upper->real;
  if (work) out.workdir = work->real;
  out.mountpoint = mount ? mount->real : cfg.mountpoint;
  return out;
}

std::string usage_text(std::string_view program) {
  std::string out = "usage: ";
  out += program;
  out += kUsageTail;
  out += '\n';
  return out;
}

std::string help_text(std::string_view program) {
  std::string out = usage_text(program);
  out +=
      "\nShows the union of the lowerdirs (read-only) and the upperdir (writable) at MOUNTPOINT.\n"
      "SOURCE is free text shown in /proc/mounts.\n"
      "\nFlags:\n";
  add_help_line(out, "-o OPTION[,OPTION...]", "mount options (may be given several times)");
  add_help_line(out, "-f", "stay in the foreground");
  add_help_line(out, "-d", "print debug output (implies -f)");
  add_help_line(out, "-s", "handle requests in a single thread");
  add_help_line(out, "-h, --help", "print this help");
  add_help_line(out, "-V, --version", "print the version");
  add_help_line(out, "--", "end of flags");

  out += "\nOptions (-o):\n";
  std::vector<std::string> passed;
  for (const OptionSpec& spec : kOptions) {
    std::string left(spec.name);
    if (spec.takes_value) left += "=" + std::string(spec.arg);
    if (spec.kind == Kind::kLayerfs) add_help_line(out, left, spec.text);
    if (spec.kind == Kind::kPassThrough) passed.push_back(std::move(left));
  }
  out += "\nMount options passed on to the kernel through libfuse (see mount(8), fuse(8)):\n";
  add_wrapped_list(out, passed);
  out +=
      "\nIn option values a backslash escapes the next character:\n"
      "  lowerdir=/a\\,b:/c\\:d means the two directories \"/a,b\" and \"/c:d\".\n"
      "When an option is repeated, the last one wins.\n";
  return out;
}

}  // namespace layerfs
