// Tests for fs/options.cpp: the command line, the -o option table, escapes,
// and the directory checks made before mounting.
#include <doctest/doctest.h>
#include <fcntl.h>
#include <grp.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <initializer_list>
#include <string>
#include <vector>

#include "tests/support/temp_dir.h"
#include "fs/options.h"

namespace layerfs {
namespace {

using test::needs_root;

using Strings = std::vector<std::string>;

MountConfig parse(std::initializer_list<const char*> args) {
  std::vector<const char*> argv{"layerfs"};
  argv.insert(argv.end(), args.begin(), args.end());
  argv.push_back(nullptr);
  return parse_command_line(static_cast<int>(argv.size() - 1), argv.data());
}

// The message parse_command_line throws, or "no error".
std::string parse_error(std::initializer_list<const char*> args) {
  try {
    parse(args);
  } catch (const ConfigError& e) {
    return e.what();
  }
  return "no error";
}

// Parses "layerfs /mnt -o lowerdir=/l,OPTS" and returns the error, or "no error".
std::string option_error(const std::string& opts) {
  const std::string all = "lowerdir=/l," + opts;
  return parse_error({"/mnt", "-o", all.c_str()});
}

MountConfig with_options(const std::string& opts) {
  const std::string all = "lowerdir=/l," + opts;
  return parse({"/mnt", "-o", all.c_str()});
}

std::string paths_error(const MountConfig& cfg) {
  try {
    check_paths(cfg);
  } catch (const ConfigError& e) {
    return e.what();
  }
  return "no error";
}

// A fresh directory under `base`, removed with everything in it, with helpers
// to make entries in it.
class TempDir : public test::TempDir {
 public:
  explicit TempDir(const std::string& base = "/tmp") : test::TempDir("options", base) {}

  std::string mkdir(const std::string& rel, mode_t mode = 0755) const {
    const std::string p = path() + "/" + rel;
    REQUIRE(::mkdir(p.c_str(), mode) == 0);
    REQUIRE(::chmod(p.c_str(), mode) == 0);  // not subject to the umask
    return p;
  }
  std::string file(const std::string& rel) const {
    const std::string p = path() + "/" + rel;
    std::ofstream(p) << "x";
    return p;
  }
};

// A layer stack with two lowers, an upper, a work dir and a mountpoint, all
// side by side in one temp dir.
struct Stack {
  TempDir tmp;
  MountConfig cfg;
  Stack() {
    tmp.mkdir("l1");
    tmp.mkdir("l2");
    tmp.mkdir("u");
    tmp.mkdir("w");
    tmp.mkdir("m");
    cfg.lowerdirs = {p("l1"), p("l2")};
    cfg.upperdir = p("u");
    cfg.workdir = p("w");
    cfg.mountpoint = p("m");
  }
  std::string p(const std::string& rel) const { return tmp.path() + "/" + rel; }
};

// Runs check_paths in a child process that has dropped to uid and gid 65534
// (as root, access() grants everything). Returns the error, "no error", or
// "setup failed".
std::string paths_error_as_nobody(const MountConfig& cfg) {
  int fds[2];
  REQUIRE(pipe2(fds, O_CLOEXEC) == 0);
  const pid_t pid = fork();
  REQUIRE(pid >= 0);
  if (pid == 0) {
    close(fds[0]);
    std::string message;
    if (setgroups(0, nullptr) != 0 || setgid(65534) != 0 || setuid(65534) != 0) {
      message = "setup failed";
    } else {
      message = paths_error(cfg);
    }
    size_t done = 0;
    while (done < message.size()) {
      const ssize_t n = write(fds[1], message.data() + done, message.size() - done);
      if (n <= 0) break;
      done += static_cast<size_t>(n);
    }
    _exit(0);
  }
  close(fds[1]);
  std::string message;
  char buf[512];
  ssize_t n;
  while ((n = read(fds[0], buf, sizeof buf)) > 0) message.append(buf, static_cast<size_t>(n));
  close(fds[0]);
  int status = 0;
  REQUIRE(waitpid(pid, &status, 0) == pid);
  CHECK(WIFEXITED(status));
  return message;
}

}  // namespace

// ---------------------------------------------------------------------------
// Positional arguments and flags

TEST_CASE("options: one positional is the mountpoint, and defaults are as documented") {
  const MountConfig cfg = parse({"/mnt", "-o", "lowerdir=/a"});
  CHECK_FALSE(cfg.source.has_value());
  CHECK(cfg.mountpoint == "/mnt");
  CHECK(cfg.lowerdirs == Strings{"/a"});
  CHECK_FALSE(cfg.upperdir.has_value());
  CHECK_FALSE(cfg.workdir.has_value());
  CHECK_FALSE(cfg.foreground);
  CHECK_FALSE(cfg.debug);
  CHECK_FALSE(cfg.single_thread);
  CHECK_FALSE(cfg.show_help);
  CHECK_FALSE(cfg.show_version);
  CHECK_FALSE(cfg.read_only);
  CHECK(cfg.default_permissions);
  CHECK_FALSE(cfg.allow_other);
  CHECK_FALSE(cfg.fsname.has_value());
  CHECK(cfg.timeout == 86400.0);
  CHECK(cfg.max_threads == 0);
  CHECK(cfg.fuse_options.empty());
}

TEST_CASE("options: two positionals are source and mountpoint, in any position") {
  const MountConfig cfg = parse({"-o", "lowerdir=/a", "-f", "images", "/mnt/x"});
  REQUIRE(cfg.source.has_value());
  CHECK(*cfg.source == "images");
  CHECK(cfg.mountpoint == "/mnt/x");
  CHECK(cfg.foreground);

  const MountConfig mixed = parse({"src", "-s", "/m", "-olowerdir=/b"});
  CHECK(mixed.source == std::optional<std::string>("src"));
  CHECK(mixed.mountpoint == "/m");
  CHECK(mixed.single_thread);
  CHECK(mixed.lowerdirs == Strings{"/b"});
}

TEST_CASE("options: the argv mount.fuse3 builds is accepted") {
  // mount -t fuse.layerfs SRC DIR -o lowerdir=...  ->  'layerfs' 'SRC' 'DIR' '-o' 'opts,dev,suid'
  const MountConfig cfg =
      parse({"SRC", "/mnt/dir", "-o", "lowerdir=/l1:/l2,upperdir=/u,workdir=/w,ro,dev,suid"});
  CHECK(cfg.source == std::optional<std::string>("SRC"));
  CHECK(cfg.mountpoint == "/mnt/dir");
  CHECK(cfg.lowerdirs == Strings{"/l1", "/l2"});
  CHECK(cfg.upperdir == std::optional<std::string>("/u"));
  CHECK(cfg.workdir == std::optional<std::string>("/w"));
  CHECK(cfg.read_only);
  CHECK(cfg.fuse_options == Strings{"dev", "suid"});

  // With nodev in fstab, mount.fuse3 appends only suid.
  const MountConfig nodev = parse({"my src", "/mnt/dir", "-o", "lowerdir=/a,nodev,suid"});
  CHECK(nodev.source == std::optional<std::string>("my src"));
  CHECK(nodev.fuse_options == Strings{"nodev", "suid"});
}

TEST_CASE("options: an empty source is treated as absent") {
  const MountConfig cfg = parse({"", "/mnt", "-o", "lowerdir=/a"});
  CHECK_FALSE(cfg.source.has_value());
  CHECK(cfg.mountpoint == "/mnt");
}

TEST_CASE("options: -o may be repeated, also as -oOPTS, and empty pieces are skipped") {
  const MountConfig cfg =
      parse({"/mnt", "-o", "lowerdir=/a", "-oupperdir=/u", "-o", "workdir=/w,,ro,", "-o", ""});
  CHECK(cfg.lowerdirs == Strings{"/a"});
  CHECK(cfg.upperdir == std::optional<std::string>("/u"));
  CHECK(cfg.workdir == std::optional<std::string>("/w"));
  CHECK(cfg.read_only);
}

TEST_CASE("options: -f, -d and -s") {
  const MountConfig f = parse({"-f", "/mnt", "-o", "lowerdir=/a"});
  CHECK(f.foreground);
  CHECK_FALSE(f.debug);
  CHECK_FALSE(f.single_thread);

  const MountConfig d = parse({"-d", "/mnt", "-o", "lowerdir=/a"});
  CHECK(d.debug);
  CHECK(d.foreground);  // -d implies -f

  const MountConfig s = parse({"/mnt", "-s", "-o", "lowerdir=/a"});
  CHECK(s.single_thread);
  CHECK_FALSE(s.foreground);

  const MountConfig o = parse({"/mnt", "-o", "lowerdir=/a,debug"});
  CHECK(o.debug);
  CHECK(o.foreground);
}

TEST_CASE("options: -- ends the flags") {
  const MountConfig cfg = parse({"-o", "lowerdir=/a", "--", "-src", "-mnt"});
  CHECK(cfg.source == std::optional<std::string>("-src"));
  CHECK(cfg.mountpoint == "-mnt");

  // "-h" after "--" is a path, not a request for help.
  CHECK(parse_error({"-o", "lowerdir=/a", "--", "-h"}) == "no error");
  CHECK(parse({"-o", "lowerdir=/a", "--", "-h"}).mountpoint == "-h");
  CHECK(parse_error({"--", "-h"}) == "missing option 'lowerdir' (-o lowerdir=DIR[:DIR...])");
}

TEST_CASE("options: a lone '-' is a positional argument") {
  CHECK(parse({"-", "-o", "lowerdir=/a"}).mountpoint == "-");
}

TEST_CASE("options: -h and -V need no other arguments and win over errors") {
  for (const char* flag : {"-h", "--help"}) {
    CAPTURE(flag);
    const MountConfig cfg = parse({flag});
    CHECK(cfg.show_help);
    CHECK_FALSE(cfg.show_version);
  }
  for (const char* flag : {"-V", "--version"}) {
    CAPTURE(flag);
    const MountConfig cfg = parse({flag});
    CHECK(cfg.show_version);
    CHECK_FALSE(cfg.show_help);
  }
  CHECK(parse({"--bogus", "a", "b", "c", "-o", "nonsense", "-h"}).show_help);
  CHECK(parse({"/mnt", "-V"}).show_version);
  // The argument of -o is an option string, never a flag.
  CHECK(parse_error({"/mnt", "-o", "-h"}) == "unknown option '-h'");
}

TEST_CASE("options: wrong positional arguments") {
  CHECK(parse_error({}) == "missing mountpoint");
  CHECK(parse_error({"-o", "lowerdir=/a"}) == "missing mountpoint");
  CHECK(parse_error({"a", "b", "c", "-o", "lowerdir=/a"}) == "unexpected argument 'c'");
  CHECK(parse_error({"", "-o", "lowerdir=/a"}) == "mountpoint is an empty string");
}

TEST_CASE("options: unknown flags are named") {
  CHECK(parse_error({"/mnt", "-o", "lowerdir=/a", "-x"}) == "unknown flag '-x'");
  CHECK(parse_error({"/mnt", "-o", "lowerdir=/a", "--foreground"}) ==
        "unknown flag '--foreground'");
  CHECK(parse_error({"/mnt", "-o", "lowerdir=/a", "-fd"}) == "unknown flag '-fd'");
  CHECK(parse_error({"/mnt", "-o"}) == "flag '-o' needs an argument");
}

// ---------------------------------------------------------------------------
// -o options

TEST_CASE("options: layerfs's own options") {
  const MountConfig cfg =
      parse({"/mnt", "-o",
             "lowerdir=/a:/b:/c,upperdir=/u,workdir=/w,ro,nodefault_permissions,allow_other,"
             "fsname=img,timeout=1.5,threads=8"});
  CHECK(cfg.lowerdirs == Strings{"/a", "/b", "/c"});
  CHECK(cfg.upperdir == std::optional<std::string>("/u"));
  CHECK(cfg.workdir == std::optional<std::string>("/w"));
  CHECK(cfg.read_only);
  CHECK_FALSE(cfg.default_permissions);
  CHECK(cfg.allow_other);
  CHECK(cfg.fsname == std::optional<std::string>("img"));
  CHECK(cfg.timeout == 1.5);
  CHECK(cfg.max_threads == 8);
  // None of these reach libfuse as they are: layerfs decides what to pass.
  CHECK(cfg.fuse_options.empty());
}

TEST_CASE("options: timeout= takes any non-negative number") {
  CHECK(with_options("timeout=0").timeout == 0.0);
  CHECK(with_options("timeout=2").timeout == 2.0);
  CHECK(with_options("timeout=0.25").timeout == 0.25);
  CHECK(with_options("timeout=1e3").timeout == 1000.0);
  for (const char* bad : {"-1", "abc", "1x", "inf", "nan", "", " 1", "0x10"}) {
    CAPTURE(bad);
    const std::string err = option_error(std::string("timeout=") + bad);
    if (*bad == '\0') {
      CHECK(err == "option 'timeout' needs a value (timeout=SECONDS)");
    } else {
      CHECK(err == "option 'timeout' needs a non-negative number of seconds, not '" +
                       std::string(bad) + "'");
    }
  }
}

TEST_CASE("options: threads= takes a positive integer") {
  CHECK(with_options("threads=1").max_threads == 1);
  CHECK(with_options("threads=64").max_threads == 64);
  CHECK(option_error("threads=0") ==
        "option 'threads' needs a positive integer (at most 100000), not '0'");
  CHECK(option_error("threads=100001") ==
        "option 'threads' needs a positive integer (at most 100000), not '100001'");
  for (const char* bad : {"-1", "2x", "1.5", "99999999999999999999999"}) {
    CAPTURE(bad);
    CHECK(option_error(std::string("threads=") + bad) ==
          "option 'threads' needs a positive integer, not '" + std::string(bad) + "'");
  }
}

TEST_CASE("options: libfuse's mount options are passed through as given") {
  const Strings passed = {"allow_root",
                          "auto_unmount",
                          "max_read=131072",
                          "suid",
                          "nosuid",
                          "dev",
                          "nodev",
                          "exec",
                          "noexec",
                          "async",
                          "sync",
                          "dirsync",
                          "atime",
                          "noatime",
                          "diratime",
                          "nodiratime",
                          "relatime",
                          "norelatime",
                          "strictatime",
                          "nostrictatime",
                          "lazytime",
                          "nolazytime",
                          "context=system_u:object_r:tmp_t:s0",
                          "fscontext=a",
                          "defcontext=b",
                          "rootcontext=c"};
  for (const std::string& opt : passed) {
    CAPTURE(opt);
    CHECK(with_options(opt).fuse_options == Strings{opt});
  }
  // Several at once keep their order.
  CHECK(with_options("nosuid,nodev,noatime,auto_unmount").fuse_options ==
        Strings{"nosuid", "nodev", "noatime", "auto_unmount"});
}

// Found with the round-trip check of fuzz/options.cpp: "context=a\\" (a lone trailing backslash) joined with the next option
// for libfuse escaped the comma: libfuse saw one option "context=a,nodev".
TEST_CASE("options: a pass-through value ending in a lone backslash does not swallow the next") {
  MountConfig cfg = parse({"/m", "-o", "lowerdir=/l,context=a\\", "-o", "nodev"});
  CHECK(cfg.fuse_options == Strings{"context=a\\\\", "nodev"});
  CHECK(split_options("context=a\\\\,nodev") == cfg.fuse_options);
  CHECK(unescape(cfg.fuse_options[0]) == "context=a\\");
  // An escaped backslash at the end is not a lone one and is kept as given.
  CHECK(with_options("context=a\\\\").fuse_options == Strings{"context=a\\\\"});
}

TEST_CASE("options: max_read= is checked") {
  CHECK(option_error("max_read=x") == "option 'max_read' needs a non-negative integer, not 'x'");
  CHECK(option_error("max_read=4294967296") == "option 'max_read' is too large: '4294967296'");
  CHECK(with_options("max_read=4294967295").fuse_options == Strings{"max_read=4294967295"});
}

TEST_CASE("options: subtype, blkdev and blksize are refused with a reason") {
  CHECK(option_error("subtype=foo") ==
        "option 'subtype' is not supported: layerfs always mounts as type fuse.layerfs");
  CHECK(option_error("blkdev") ==
        "option 'blkdev' is not supported: layerfs is not backed by a block device");
  CHECK(option_error("blksize=4096") ==
        "option 'blksize' is not supported: it only applies to block-device (blkdev) mounts");
}

TEST_CASE("options: unknown options are named") {
  CHECK(option_error("bogus") == "unknown option 'bogus'");
  CHECK(option_error("bogus=1") == "unknown option 'bogus'");
  CHECK(option_error("lower=/x") == "unknown option 'lower'");
  CHECK(option_error("kernel_cache") == "unknown option 'kernel_cache'");
  CHECK(option_error("clone_fd") == "unknown option 'clone_fd'");
  CHECK(option_error("=x") == "unknown option ''");
}

TEST_CASE("options: a value given to a flag option is an error") {
  CHECK(option_error("ro=1") == "option 'ro' does not take a value");
  CHECK(option_error("rw=") == "option 'rw' does not take a value");
  CHECK(option_error("allow_other=yes") == "option 'allow_other' does not take a value");
  CHECK(option_error("nosuid=1") == "option 'nosuid' does not take a value");
  CHECK(option_error("default_permissions=0") ==
        "option 'default_permissions' does not take a value");
}

TEST_CASE("options: a missing value is an error") {
  CHECK(parse_error({"/mnt", "-o", "lowerdir"}) ==
        "option 'lowerdir' needs a value (lowerdir=DIR[:DIR...])");
  CHECK(parse_error({"/mnt", "-o", "lowerdir="}) ==
        "option 'lowerdir' needs a value (lowerdir=DIR[:DIR...])");
  CHECK(option_error("upperdir") == "option 'upperdir' needs a value (upperdir=DIR)");
  CHECK(option_error("workdir=") == "option 'workdir' needs a value (workdir=DIR)");
  CHECK(option_error("fsname") == "option 'fsname' needs a value (fsname=NAME)");
  CHECK(option_error("threads") == "option 'threads' needs a value (threads=N)");
  CHECK(option_error("max_read") == "option 'max_read' needs a value (max_read=N)");
  CHECK(option_error("context=") == "option 'context' needs a value (context=CTX)");
}

TEST_CASE("options: the last of repeated options wins") {
  CHECK(parse({"/m", "-o", "lowerdir=/a:/b", "-o", "lowerdir=/c"}).lowerdirs == Strings{"/c"});
  CHECK(with_options("upperdir=/u1,workdir=/w,upperdir=/u2").upperdir ==
        std::optional<std::string>("/u2"));
  CHECK(with_options("ro,rw").read_only == false);
  CHECK(with_options("rw,ro").read_only == true);
  CHECK(with_options("nodefault_permissions,default_permissions").default_permissions);
  CHECK_FALSE(with_options("default_permissions,nodefault_permissions").default_permissions);
  CHECK(with_options("timeout=1,timeout=2").timeout == 2.0);
  CHECK(with_options("threads=3,threads=5").max_threads == 5);
  CHECK(with_options("fsname=a,fsname=b").fsname == std::optional<std::string>("b"));
  // Pass-through options: one of each kernel flag is kept, the last given.
  CHECK(with_options("nosuid,suid").fuse_options == Strings{"suid"});
  CHECK(with_options("suid,nodev,nosuid").fuse_options == Strings{"nodev", "nosuid"});
  CHECK(with_options("max_read=1,max_read=2").fuse_options == Strings{"max_read=2"});
  CHECK(with_options("sync,async").fuse_options == Strings{"async"});
  CHECK(with_options("auto_unmount,auto_unmount").fuse_options == Strings{"auto_unmount"});
  // Different flags are different families, even when they are about atime.
  CHECK(with_options("noatime,relatime,atime").fuse_options == Strings{"relatime", "atime"});
  // mount.fuse3's appended "dev,suid" overrides earlier nodev/nosuid only as libfuse would.
  CHECK(parse({"s", "/m", "-o", "lowerdir=/a,nosuid,dev,suid"}).fuse_options ==
        Strings{"dev", "suid"});
}

TEST_CASE("options: lowerdir is required, upperdir and workdir go together") {
  CHECK(parse_error({"/mnt"}) == "missing option 'lowerdir' (-o lowerdir=DIR[:DIR...])");
  CHECK(parse_error({"/mnt", "-o", "upperdir=/u,workdir=/w"}) ==
        "missing option 'lowerdir' (-o lowerdir=DIR[:DIR...])");
  CHECK(option_error("upperdir=/u") == "upperdir requires workdir");
  CHECK(option_error("workdir=/w") == "workdir requires upperdir");
  CHECK(option_error("upperdir=/u,workdir=/w") == "no error");
}

TEST_CASE("options: allow_other and allow_root exclude each other") {
  CHECK(option_error("allow_other,allow_root") ==
        "options 'allow_other' and 'allow_root' cannot be used together");
  CHECK(option_error("allow_root,allow_other") ==
        "options 'allow_other' and 'allow_root' cannot be used together");
  const MountConfig other = with_options("allow_other");
  CHECK(other.allow_other);
  CHECK(other.fuse_options.empty());
  const MountConfig root = with_options("allow_root");
  CHECK_FALSE(root.allow_other);
  CHECK(root.fuse_options == Strings{"allow_root"});
}

// ---------------------------------------------------------------------------
// Escapes

TEST_CASE("options: backslash escapes commas and colons in lower paths") {
  const MountConfig cfg =
      parse({"/mnt", "-o", R"(lowerdir=/a\,b:/c\:d,upperdir=/u\,v,workdir=/w)"});
  CHECK(cfg.lowerdirs == Strings{"/a,b", "/c:d"});
  CHECK(cfg.upperdir == std::optional<std::string>("/u,v"));
  CHECK(cfg.workdir == std::optional<std::string>("/w"));

  CHECK(with_options(R"(fsname=my\,name)").fsname == std::optional<std::string>("my,name"));
  // An escaped '=' stays in the value; only the first unescaped '=' separates.
  CHECK(with_options(R"(upperdir=/x\=y=z,workdir=/w)").upperdir ==
        std::optional<std::string>("/x=y=z"));
  // A doubled backslash is one backslash, and does not escape what follows.
  CHECK(parse({"/m", "-o", R"(lowerdir=/a\\:/b)"}).lowerdirs == Strings{R"(/a\)", "/b"});
  // Pass-through options keep their escapes, so joining them with ',' is a valid -o string.
  CHECK(with_options(R"(context=a\,b)").fuse_options == Strings{R"(context=a\,b)"});
}

TEST_CASE("options: split_options") {
  CHECK(split_options("a,b=c,d") == Strings{"a", "b=c", "d"});
  CHECK(split_options(R"(a\,b,c)") == Strings{R"(a\,b)", "c"});
  CHECK(split_options(R"(x=\\,y)") == Strings{R"(x=\\)", "y"});
  CHECK(split_options(R"(lowerdir=/a\,b:/c\:d,ro)") == Strings{R"(lowerdir=/a\,b:/c\:d)", "ro"});
  CHECK(split_options(",a,,b,") == Strings{"a", "b"});
  CHECK(split_options("").empty());
  CHECK(split_options(R"(a\)") == Strings{R"(a\)"});
}

TEST_CASE("options: split_lowerdirs") {
  CHECK(split_lowerdirs("/a") == Strings{"/a"});
  CHECK(split_lowerdirs("/a:/b:/c") == Strings{"/a", "/b", "/c"});
  CHECK(split_lowerdirs(R"(a\:b:c)") == Strings{"a:b", "c"});
  CHECK(split_lowerdirs(R"(/a\,b:/c\\)") == Strings{"/a,b", R"(/c\)"});
  for (const char* bad : {"", ":", ":/a", "/a:", "/a::/b"}) {
    CAPTURE(bad);
    std::string err = "no error";
    try {
      split_lowerdirs(bad);
    } catch (const ConfigError& e) {
      err = e.what();
    }
    CHECK(err == "option 'lowerdir' has an empty directory in '" + std::string(bad) + "'");
  }
  CHECK(option_error("lowerdir=/a::/b") == "option 'lowerdir' has an empty directory in '/a::/b'");
}

TEST_CASE("options: unescape") {
  CHECK(unescape("plain") == "plain");
  CHECK(unescape(R"(a\,b)") == "a,b");
  CHECK(unescape(R"(a\:b)") == "a:b");
  CHECK(unescape(R"(a\\b)") == R"(a\b)");
  CHECK(unescape(R"(\x)") == "x");
  CHECK(unescape(R"(end\)") == R"(end\)");
  CHECK(unescape("") == "");
}

// ---------------------------------------------------------------------------
// Help

TEST_CASE("options: usage and help text") {
  const std::string usage = usage_text("layerfs");
  CHECK(usage.rfind("usage: layerfs [SOURCE] MOUNTPOINT -o lowerdir=DIR[:DIR...]", 0) == 0);
  CHECK(usage.back() == '\n');
  CHECK(usage.find('\n') == usage.size() - 1);

  const std::string help = help_text("layerfs");
  CHECK(help.rfind(usage, 0) == 0);
  for (const char* text : {"lowerdir=DIR[:DIR...]",
                           "upperdir=DIR",
                           "workdir=DIR",
                           "\n  ro ",
                           "\n  rw ",
                           "default_permissions",
                           "nodefault_permissions",
                           "allow_other",
                           "fsname=NAME",
                           "timeout=SECONDS",
                           "threads=N",
                           "-f ",
                           "-d ",
                           "-s ",
                           "--help",
                           "--version",
                           "allow_root",
                           "auto_unmount",
                           "max_read=N",
                           "nosuid",
                           "noatime",
                           "rootcontext=CTX"}) {
    CAPTURE(text);
    CHECK(help.find(text) != std::string::npos);
  }
  // The refused ones are not advertised.
  CHECK(help.find("subtype") == std::string::npos);
  CHECK(help.find("blkdev") == std::string::npos);
  // Every line after the usage line fits in 100 columns.
  size_t start = usage.size();
  while (start < help.size()) {
    size_t end = help.find('\n', start);
    if (end == std::string::npos) end = help.size();
    CHECK(end - start <= 100);
    start = end + 1;
  }
}

// ---------------------------------------------------------------------------
// check_paths

TEST_CASE("check_paths: a valid stack gives the canonical paths") {
  Stack s;
  const CanonicalPaths c = check_paths(s.cfg);
  CHECK(c.lowerdirs == Strings{s.p("l1"), s.p("l2")});
  CHECK(c.upperdir == std::optional<std::string>(s.p("u")));
  CHECK(c.workdir == std::optional<std::string>(s.p("w")));
  CHECK(c.mountpoint == s.p("m"));

  // Symlinks, "." and ".." are resolved.
  REQUIRE(symlink(s.p("l2").c_str(), s.p("link").c_str()) == 0);
  s.cfg.lowerdirs = {s.p("l1/../l1/."), s.p("link")};
  s.cfg.mountpoint = s.p("m/");
  const CanonicalPaths r = check_paths(s.cfg);
  CHECK(r.lowerdirs == Strings{s.p("l1"), s.p("l2")});
  CHECK(r.mountpoint == s.p("m"));
}

TEST_CASE("check_paths: lowerdirs only") {
  Stack s;
  s.cfg.upperdir.reset();
  s.cfg.workdir.reset();
  const CanonicalPaths c = check_paths(s.cfg);
  CHECK(c.lowerdirs.size() == 2);
  CHECK_FALSE(c.upperdir.has_value());
  CHECK_FALSE(c.workdir.has_value());
}

TEST_CASE("check_paths: missing directories") {
  Stack s;
  SUBCASE("lowerdir") {
    s.cfg.lowerdirs[1] = s.p("nope");
    CHECK(paths_error(s.cfg) == "lowerdir " + s.p("nope") + " does not exist");
  }
  SUBCASE("upperdir") {
    s.cfg.upperdir = s.p("nope");
    CHECK(paths_error(s.cfg) == "upperdir " + s.p("nope") + " does not exist");
  }
  SUBCASE("workdir") {
    s.cfg.workdir = s.p("nope/deeper");
    CHECK(paths_error(s.cfg) == "workdir " + s.p("nope/deeper") + " does not exist");
  }
  SUBCASE("mountpoint") {
    s.cfg.mountpoint = s.p("nope");
    CHECK(paths_error(s.cfg) == "mountpoint " + s.p("nope") + " does not exist");
  }
  SUBCASE("below a file") {
    s.tmp.file("f");
    s.cfg.lowerdirs[0] = s.p("f/x");
    CHECK(paths_error(s.cfg) == "lowerdir " + s.p("f/x") + " does not exist");
  }
  SUBCASE("dangling symlink") {
    REQUIRE(symlink(s.p("gone").c_str(), s.p("dangling").c_str()) == 0);
    s.cfg.lowerdirs[0] = s.p("dangling");
    CHECK(paths_error(s.cfg) == "lowerdir " + s.p("dangling") + " does not exist");
  }
}

TEST_CASE("check_paths: not a directory") {
  Stack s;
  const std::string f = s.tmp.file("file");
  SUBCASE("lowerdir") {
    s.cfg.lowerdirs[0] = f;
    CHECK(paths_error(s.cfg) == "lowerdir " + f + " is not a directory");
  }
  SUBCASE("upperdir") {
    s.cfg.upperdir = f;
    CHECK(paths_error(s.cfg) == "upperdir " + f + " is not a directory");
  }
  SUBCASE("workdir") {
    s.cfg.workdir = f;
    CHECK(paths_error(s.cfg) == "workdir " + f + " is not a directory");
  }
  SUBCASE("mountpoint") {
    s.cfg.mountpoint = f;
    CHECK(paths_error(s.cfg) == "mountpoint " + f + " is not a directory");
  }
  SUBCASE("empty path") {
    s.cfg.upperdir = "";
    CHECK(paths_error(s.cfg) == "upperdir is an empty path");
  }
}

TEST_CASE("check_paths: upperdir and workdir must not overlap") {
  Stack s;
  SUBCASE("same") {
    s.cfg.workdir = s.p("u");
    CHECK(paths_error(s.cfg) ==
          "upperdir " + s.p("u") + " and workdir " + s.p("u") + " are the same directory");
  }
  SUBCASE("workdir inside upperdir") {
    s.tmp.mkdir("u/w");
    s.cfg.workdir = s.p("u/w");
    CHECK(paths_error(s.cfg) == "workdir " + s.p("u/w") + " is inside upperdir " + s.p("u"));
  }
  SUBCASE("upperdir inside workdir") {
    s.tmp.mkdir("w/u");
    s.cfg.upperdir = s.p("w/u");
    CHECK(paths_error(s.cfg) == "upperdir " + s.p("w/u") + " is inside workdir " + s.p("w"));
  }
  SUBCASE("a shared name prefix is not overlap") {
    s.tmp.mkdir("uw");
    s.cfg.workdir = s.p("uw");  // ".../u" is a string prefix of ".../uw"
    CHECK(paths_error(s.cfg) == "no error");
  }
}

TEST_CASE("check_paths: upperdir and workdir must not overlap a lowerdir") {
  Stack s;
  SUBCASE("upperdir is a lowerdir") {
    s.cfg.upperdir = s.p("l2");
    CHECK(paths_error(s.cfg) ==
          "upperdir " + s.p("l2") + " and lowerdir " + s.p("l2") + " are the same directory");
  }
  SUBCASE("upperdir inside a lowerdir") {
    s.tmp.mkdir("l2/u");
    s.cfg.upperdir = s.p("l2/u");
    CHECK(paths_error(s.cfg) == "upperdir " + s.p("l2/u") + " is inside lowerdir " + s.p("l2"));
  }
  SUBCASE("lowerdir inside upperdir") {
    s.tmp.mkdir("u/l");
    s.cfg.lowerdirs[1] = s.p("u/l");
    CHECK(paths_error(s.cfg) == "lowerdir " + s.p("u/l") + " is inside upperdir " + s.p("u"));
  }
  SUBCASE("workdir inside a lowerdir") {
    s.tmp.mkdir("l1/w");
    s.cfg.workdir = s.p("l1/w");
    CHECK(paths_error(s.cfg) == "workdir " + s.p("l1/w") + " is inside lowerdir " + s.p("l1"));
  }
  SUBCASE("lowerdir inside workdir") {
    s.tmp.mkdir("w/l");
    s.cfg.lowerdirs[0] = s.p("w/l");
    CHECK(paths_error(s.cfg) == "lowerdir " + s.p("w/l") + " is inside workdir " + s.p("w"));
  }
  SUBCASE("workdir is a lowerdir") {
    s.cfg.workdir = s.p("l1");
    CHECK(paths_error(s.cfg) ==
          "workdir " + s.p("l1") + " and lowerdir " + s.p("l1") + " are the same directory");
  }
  SUBCASE("through a symlink, the real path is shown") {
    s.tmp.mkdir("l1/deep");
    REQUIRE(symlink(s.p("l1/deep").c_str(), s.p("up").c_str()) == 0);
    s.cfg.upperdir = s.p("up");
    CHECK(paths_error(s.cfg) ==
          "upperdir " + s.p("up") + " (" + s.p("l1/deep") + ") is inside lowerdir " + s.p("l1"));
  }
  SUBCASE("component boundaries") {
    s.tmp.mkdir("l1x");
    s.tmp.mkdir("l");
    s.cfg.upperdir = s.p("l1x");  // shares the prefix ".../l1"
    s.cfg.lowerdirs = {s.p("l1"), s.p("l")};
    CHECK(paths_error(s.cfg) == "no error");
  }
}

TEST_CASE("check_paths: upperdir and workdir must not overlap the mountpoint") {
  Stack s;
  SUBCASE("upperdir is the mountpoint") {
    s.cfg.mountpoint = s.p("u");
    CHECK(paths_error(s.cfg) ==
          "upperdir " + s.p("u") + " and mountpoint " + s.p("u") + " are the same directory");
  }
  SUBCASE("upperdir inside the mountpoint") {
    s.tmp.mkdir("m/u");
    s.cfg.upperdir = s.p("m/u");
    CHECK(paths_error(s.cfg) == "upperdir " + s.p("m/u") + " is inside mountpoint " + s.p("m"));
  }
  SUBCASE("mountpoint inside upperdir") {
    s.tmp.mkdir("u/m");
    s.cfg.mountpoint = s.p("u/m");
    CHECK(paths_error(s.cfg) == "mountpoint " + s.p("u/m") + " is inside upperdir " + s.p("u"));
  }
  SUBCASE("workdir inside the mountpoint") {
    s.tmp.mkdir("m/w");
    s.cfg.workdir = s.p("m/w");
    CHECK(paths_error(s.cfg) == "workdir " + s.p("m/w") + " is inside mountpoint " + s.p("m"));
  }
  SUBCASE("mountpoint inside workdir") {
    s.tmp.mkdir("w/m");
    s.cfg.mountpoint = s.p("w/m");
    CHECK(paths_error(s.cfg) == "mountpoint " + s.p("w/m") + " is inside workdir " + s.p("w"));
  }
}

TEST_CASE("check_paths: a lowerdir may be or contain the mountpoint") {
  Stack s;
  SUBCASE("equal") {
    s.cfg.mountpoint = s.p("l1");
    CHECK(check_paths(s.cfg).mountpoint == s.p("l1"));
  }
  SUBCASE("contains") {
    s.tmp.mkdir("l2/mnt");
    s.cfg.mountpoint = s.p("l2/mnt");
    CHECK(check_paths(s.cfg).mountpoint == s.p("l2/mnt"));
  }
  SUBCASE("without an upperdir") {
    s.cfg.upperdir.reset();
    s.cfg.workdir.reset();
    s.cfg.mountpoint = s.p("l1");
    CHECK(paths_error(s.cfg) == "no error");
  }
}

TEST_CASE("check_paths: a /dev/fd/N mountpoint from mount.fuse3 is not checked") {
  Stack s;
  s.cfg.mountpoint = "/dev/fd/3";
  CHECK(check_paths(s.cfg).mountpoint == "/dev/fd/3");
  // Anything else under /dev/fd is checked like any path.
  s.cfg.mountpoint = "/dev/fd/x";
  CHECK(paths_error(s.cfg) == "mountpoint /dev/fd/x does not exist");
}

TEST_CASE("check_paths: upperdir and workdir on different filesystems") {
  struct stat shm;
  struct stat tmp;
  if (stat("/dev/shm", &shm) != 0 || stat("/tmp", &tmp) != 0 || shm.st_dev == tmp.st_dev) {
    MESSAGE("skipped: /dev/shm and /tmp are not two different filesystems here");
    return;
  }
  TempDir on_shm("/dev/shm");
  Stack s;
  const std::string upper = on_shm.mkdir("u");
  s.cfg.upperdir = upper;
  CHECK(paths_error(s.cfg) ==
        "upperdir " + upper + " and workdir " + s.p("w") + " are on different filesystems");
}

TEST_CASE("check_paths: unreadable and unwritable layers, as uid 65534" * doctest::skip(needs_root())) {
  if (geteuid() != 0) {
    MESSAGE("skipped: needs root to switch to uid 65534");
    return;
  }
  Stack s;
  REQUIRE(chmod(s.tmp.path().c_str(), 0755) == 0);  // mkdtemp made it 0700
  // The writable layers belong to nobody, so only the mode under test matters.
  for (const char* dir : {"u", "w"}) REQUIRE(chown(s.p(dir).c_str(), 65534, 65534) == 0);
  REQUIRE(paths_error_as_nobody(s.cfg) == "no error");

  SUBCASE("lowerdir not readable") {
    REQUIRE(chmod(s.p("l2").c_str(), 0700) == 0);
    CHECK(paths_error_as_nobody(s.cfg) ==
          "lowerdir " + s.p("l2") + " is not readable: Permission denied");
  }
  SUBCASE("lowerdir not searchable") {
    REQUIRE(chmod(s.p("l1").c_str(), 0744) == 0);
    CHECK(paths_error_as_nobody(s.cfg) ==
          "lowerdir " + s.p("l1") + " is not readable: Permission denied");
  }
  SUBCASE("upperdir not writable") {
    REQUIRE(chmod(s.p("u").c_str(), 0555) == 0);
    CHECK(paths_error_as_nobody(s.cfg) ==
          "upperdir " + s.p("u") + " is not writable: Permission denied");
  }
  SUBCASE("workdir not writable") {
    REQUIRE(chown(s.p("w").c_str(), 0, 0) == 0);
    CHECK(paths_error_as_nobody(s.cfg) ==
          "workdir " + s.p("w") + " is not writable: Permission denied");
  }
  SUBCASE("upperdir not readable") {
    REQUIRE(chmod(s.p("u").c_str(), 0300) == 0);
    CHECK(paths_error_as_nobody(s.cfg) ==
          "upperdir " + s.p("u") + " is not readable: Permission denied");
  }
}

TEST_CASE("check_paths: layers on a read-only filesystem are not writable" * doctest::skip(needs_root())) {
  if (geteuid() != 0) {
    MESSAGE("skipped: needs root to mount a tmpfs");
    return;
  }
  Stack s;
  const std::string ro = s.tmp.mkdir("ro");
  if (mount("tmpfs", ro.c_str(), "tmpfs", 0, "size=1m") != 0) {
    const std::string why =
        std::string("skipped: cannot mount a tmpfs here: ") + std::strerror(errno);
    MESSAGE(why);
    return;
  }
  struct Unmount {
    std::string dir;
    ~Unmount() {
      if (umount2(dir.c_str(), 0) != 0) umount2(dir.c_str(), MNT_DETACH);
    }
  } unmount{ro};
  REQUIRE(::mkdir((ro + "/u").c_str(), 0755) == 0);
  REQUIRE(::mkdir((ro + "/w").c_str(), 0755) == 0);
  REQUIRE(mount(nullptr, ro.c_str(), nullptr, MS_REMOUNT | MS_RDONLY, nullptr) == 0);

  s.cfg.upperdir = ro + "/u";
  s.cfg.workdir = ro + "/w";
  CHECK(paths_error(s.cfg) == "upperdir " + ro + "/u is not writable: Read-only file system");

  // A read-only filesystem is fine for lowerdirs.
  s.cfg.upperdir.reset();
  s.cfg.workdir.reset();
  s.cfg.lowerdirs = {ro + "/u", ro + "/w"};
  CHECK(paths_error(s.cfg) == "no error");
}

}  // namespace layerfs
