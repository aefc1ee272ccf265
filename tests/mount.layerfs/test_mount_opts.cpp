// Tests for mount.layerfs/mount_opts.cpp: what mount(8) hands the helper and
// what the helper hands layerfs.
#include "mount.layerfs/mount_opts.h"

#include <doctest/doctest.h>

#include <string>
#include <vector>

#include "fs/options.h"

namespace layerfs::mount_helper {
namespace {

using Args = std::vector<std::string>;

HelperArgs parse(const Args& args) {
  std::vector<const char*> argv = {"mount.fuse.layerfs"};
  for (const auto& a : args) argv.push_back(a.c_str());
  return parse_helper_args(static_cast<int>(argv.size()), argv.data());
}

std::string message_of(const Args& args) {
  try {
    parse(args);
  } catch (const ConfigError& e) {
    return e.what();
  }
  return "";
}

TEST_CASE("the argv mount(8) passes a helper is understood") {
  HelperArgs a = parse({"src", "/mnt", "-o", "lowerdir=/l,ro", "-t", "fuse.layerfs"});
  CHECK(a.source == "src");
  CHECK(a.mountpoint == "/mnt");
  CHECK(a.options == Args{"lowerdir=/l", "ro"});
  CHECK(a.type == "fuse.layerfs");
  CHECK_FALSE(a.fake);

  HelperArgs b = parse({"src", "/mnt", "-s", "-f", "-n", "-v", "-o", "x=1"});
  CHECK(b.sloppy);
  CHECK(b.fake);
  CHECK(b.no_mtab);
  CHECK(b.verbose);

  HelperArgs c = parse({"src", "/mnt", "-fnv", "-olowerdir=/l", "-tlayerfs"});
  CHECK(c.fake);
  CHECK(c.no_mtab);
  CHECK(c.verbose);
  CHECK(c.options == Args{"lowerdir=/l"});
  CHECK(c.type == "layerfs");

  HelperArgs d = parse({"src", "/mnt", "-o", "a", "-o", "b"});
  CHECK(d.options == Args{"a", "b"});
}

TEST_CASE("wrong helper invocations are refused with a message") {
  CHECK(message_of({}).find("SOURCE and MOUNTPOINT") != std::string::npos);
  CHECK(message_of({"src"}).find("SOURCE and MOUNTPOINT") != std::string::npos);
  CHECK(message_of({"src", "/mnt", "/extra"}).find("'/extra'") != std::string::npos);
  CHECK(message_of({"src", "/mnt", "-x"}).find("'-x'") != std::string::npos);
  CHECK(message_of({"src", "/mnt", "-o"}).find("-o") != std::string::npos);
  CHECK(message_of({"src", "/mnt", "-t", "ext4"}).find("'ext4'") != std::string::npos);
  CHECK(message_of({"src", "/mnt", "--help"}).find("'--help'") != std::string::npos);
}

TEST_CASE("options only fstab, mount(8) and systemd read are dropped") {
  for (const char* o : {"defaults", "auto", "noauto", "nofail", "_netdev", "user", "users",
                        "nouser", "owner", "group", "x-systemd.requires=a.mount",
                        "x-systemd.automount", "X-mount.mkdir", "comment=hello"}) {
    CAPTURE(o);
    CHECK(is_mount_only_option(o));
  }
  for (const char* o : {"ro", "rw", "lowerdir=/a", "allow_other", "nosuid", "noatime",
                        "userxattr", "x", "auto_unmount", "user_id=0"}) {
    CAPTURE(o);
    CHECK_FALSE(is_mount_only_option(o));
  }
  CHECK(layerfs_options({"lowerdir=/l", "nofail", "", "noauto", "x-systemd.idle-timeout=1",
                         "ro", "_netdev", "users"}) == Args{"lowerdir=/l", "ro"});
}

TEST_CASE("fstab octal escapes are decoded") {
  CHECK(decode_octal_escapes("/srv/my\\040layers", false) == "/srv/my layers");
  CHECK(decode_octal_escapes("a\\011b\\012c", false) == "a\tb\nc");
  CHECK(decode_octal_escapes("back\\134slash", false) == "back\\slash");
  // Not an escape: kept as it is.
  CHECK(decode_octal_escapes("a\\b", false) == "a\\b");
  CHECK(decode_octal_escapes("end\\", false) == "end\\");
  CHECK(decode_octal_escapes("a\\04", false) == "a\\04");
  CHECK(decode_octal_escapes("a\\089", false) == "a\\089");
  CHECK(decode_octal_escapes("nul\\000", false) == "nul\\000");
  // An escaped backslash protects the digits after it.
  CHECK(decode_octal_escapes("a\\\\040", false) == "a\\\\040");
}

TEST_CASE("decoded separators in option values stay escaped for layerfs") {
  // A comma or colon written as an octal escape must not split the value.
  CHECK(decode_octal_escapes("lowerdir=/a\\054b:/c\\072d", true) == "lowerdir=/a\\,b:/c\\:d");
  CHECK(decode_octal_escapes("lowerdir=/x\\134y", true) == "lowerdir=/x\\\\y");
  // layerfs's own escapes pass through untouched.
  CHECK(decode_octal_escapes("lowerdir=/a\\,b:/c\\:d", true) == "lowerdir=/a\\,b:/c\\:d");
  CHECK(decode_octal_escapes("upperdir=/u\\040v", true) == "upperdir=/u v");
  // And layerfs reads back exactly the paths meant.
  auto opts = layerfs_options(split_options("lowerdir=/a\\054b:/c\\072d:/s\\040p,ro"));
  REQUIRE(opts.size() == 2);
  CHECK(split_lowerdirs(opts[0].substr(9)) == Args{"/a,b", "/c:d", "/s p"});
}

TEST_CASE("the layerfs command line") {
  HelperArgs a = parse({"my\\040src", "/mnt/my\\040dir", "-o",
                        "lowerdir=/l,nofail,upperdir=/u,workdir=/w,x-systemd.after=b"});
  CHECK(a.source == "my src");
  CHECK(a.mountpoint == "/mnt/my dir");
  CHECK(layerfs_command(a, "/usr/bin/layerfs", false) ==
        Args{"/usr/bin/layerfs", "my src", "/mnt/my dir", "-o",
             "lowerdir=/l,upperdir=/u,workdir=/w"});
  // As root, devices and set-id bits work as on other mounts unless refused.
  CHECK(layerfs_command(a, "L", true).back() == "lowerdir=/l,upperdir=/u,workdir=/w,dev,suid");
  HelperArgs b = parse({"s", "/m", "-o", "lowerdir=/l,nodev,nosuid"});
  CHECK(layerfs_command(b, "L", true).back() == "lowerdir=/l,nodev,nosuid");
  HelperArgs c = parse({"s", "/m", "-o", "lowerdir=/l,suid"});
  CHECK(layerfs_command(c, "L", true).back() == "lowerdir=/l,suid,dev");
  // Nothing left after filtering: no -o at all.
  HelperArgs d = parse({"s", "/m", "-o", "nofail,noauto"});
  CHECK(layerfs_command(d, "L", false) == Args{"L", "s", "/m"});
}

}  // namespace
}  // namespace layerfs::mount_helper
