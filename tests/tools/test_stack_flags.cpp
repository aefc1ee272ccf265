// Tests for tools/stack_flags.cpp (docker run's -v, --mount and --tmpfs
// syntax, with Docker's error texts and exit status 125) and for size_cell,
// the SIZE cell of `docker ps -s`.
#include <doctest/doctest.h>

#include <string>

#include "tools/stacks.h"

namespace layerfs::ctl {
namespace {

using Type = MountSpec::Type;

// The Error a parser throws for `value`: its message, and that its exit status is 125.
template <typename Parser>
std::string error_of(Parser parse, const std::string& value) {
  try {
    parse(value);
  } catch (const Error& e) {
    CHECK_MESSAGE(e.exit_code() == 125, value);
    return e.what();
  }
  FAIL("no error for " << value);
  return "";
}

TEST_CASE("-v: named volumes, anonymous volumes and binds, with modes") {
  MountSpec m = parse_volume_flag("data:/var/lib/data");
  CHECK(m.type == Type::kVolume);
  CHECK(m.source == "data");
  CHECK(m.target == "/var/lib/data");
  CHECK_FALSE(m.readonly);

  m = parse_volume_flag("data:/srv:ro");
  CHECK(m.type == Type::kVolume);
  CHECK(m.readonly);

  m = parse_volume_flag("/scratch");
  CHECK(m.type == Type::kVolume);
  CHECK(m.source.empty());
  CHECK(m.target == "/scratch");

  m = parse_volume_flag("/host/dir/:/in/stack/:rw");
  CHECK(m.type == Type::kBind);
  CHECK(m.source == "/host/dir");
  CHECK(m.target == "/in/stack");
  CHECK_FALSE(m.readonly);
  CHECK(m.create_source);
  CHECK(m.propagation == "rprivate");

  m = parse_volume_flag("/host:/x:ro,rshared");
  CHECK(m.type == Type::kBind);
  CHECK(m.readonly);
  CHECK(m.propagation == "rshared");

  // Targets are cleaned as Docker's path.Clean does.
  CHECK(parse_volume_flag("v1:/a//b/./c/../d").target == "/a/b/d");
  CHECK(parse_volume_flag("v1:/x:z").target == "/x");
}

TEST_CASE("-v: malformed values give Docker's messages") {
  auto p = [](const std::string& v) { return parse_volume_flag(v); };
  CHECK(error_of(p, "") == "invalid volume specification: ''");
  CHECK(error_of(p, ":/x") == "invalid volume specification: ':/x'");
  CHECK(error_of(p, "a:/b:ro:extra") == "invalid volume specification: 'a:/b:ro:extra'");
  // A destination with a mode but no source.
  CHECK(error_of(p, "/x:ro") == "invalid volume specification: '/x:ro'");
  CHECK(error_of(p, "v1:/x:rx") == "invalid mode: rx");
  CHECK(error_of(p, "v1:/x:ro,rw") == "invalid mode: ro,rw");
  CHECK(error_of(p, "v1:relative") ==
        "invalid mount config for type \"volume\": invalid mount path: 'relative' mount path "
        "must be absolute");
  CHECK(error_of(p, "/h:rel:ro") ==
        "invalid mount config for type \"bind\": invalid mount path: 'rel' mount path must be "
        "absolute");
  CHECK(error_of(p, "v1:/") == "invalid specification: destination can't be '/'");
  CHECK(error_of(p, "./dir:/x") ==
        "create ./dir: \"./dir\" includes invalid characters for a local volume name, only "
        "\"[a-zA-Z0-9][a-zA-Z0-9_.-]\" are allowed. If you intended to pass a host directory, "
        "use absolute path");
  CHECK(error_of(p, "v1:/x:shared") ==
        "invalid mount config for type \"volume\": field BindOptions must not be specified");
}

TEST_CASE("--mount: every type, key spellings and readonly forms") {
  MountSpec m = parse_mount_flag("type=bind,source=/etc,target=/host-etc,readonly");
  CHECK(m.type == Type::kBind);
  CHECK(m.source == "/etc");
  CHECK(m.target == "/host-etc");
  CHECK(m.readonly);
  CHECK_FALSE(m.create_source);  // --mount never creates a bind source
  CHECK(m.propagation == "rprivate");

  m = parse_mount_flag("src=v1,dst=/data");
  CHECK(m.type == Type::kVolume);  // the default type
  CHECK(m.source == "v1");
  CHECK(m.target == "/data");
  CHECK_FALSE(m.readonly);

  m = parse_mount_flag("TYPE=Volume,Destination=/d,RO=true");
  CHECK(m.type == Type::kVolume);
  CHECK(m.source.empty());  // anonymous
  CHECK(m.target == "/d");
  CHECK(m.readonly);

  CHECK_FALSE(parse_mount_flag("type=volume,target=/d,readonly=false").readonly);
  CHECK(parse_mount_flag("type=volume,target=/d,ro=1").readonly);

  m = parse_mount_flag("type=tmpfs,target=/run,tmpfs-size=64m,tmpfs-mode=0700");
  CHECK(m.type == Type::kTmpfs);
  CHECK(m.options == "noexec,nosuid,nodev,size=67108864,mode=0700");

  m = parse_mount_flag("type=tmpfs,dst=/t");
  CHECK(m.options == "noexec,nosuid,nodev,mode=1777");

  m = parse_mount_flag(
      "type=volume,src=v2,dst=/v,volume-label=a=b,volume-opt=type=tmpfs,"
      "volume-opt=device=tmpfs,volume-driver=local,volume-nocopy");
  CHECK(m.volume_labels == std::map<std::string, std::string>{{"a", "b"}});
  CHECK(m.volume_options ==
        std::map<std::string, std::string>{{"type", "tmpfs"}, {"device", "tmpfs"}});

  m = parse_mount_flag("type=bind,src=/srv,dst=/s,bind-propagation=rslave,consistency=cached");
  CHECK(m.propagation == "rslave");

  // CSV quoting: a field with a comma inside.
  m = parse_mount_flag("type=volume,\"volume-opt=o=size=1m,uid=1\",dst=/q");
  CHECK(m.volume_options.at("o") == "size=1m,uid=1");
}

TEST_CASE("--mount: problems are named as Docker names them") {
  auto p = [](const std::string& v) { return parse_mount_flag(v); };
  CHECK(error_of(p, "type=volume,target=/x,foo=bar") == "unknown option 'foo' in 'foo=bar'");
  CHECK(error_of(p, "type=volume,target=/x,bogus") ==
        "invalid field 'bogus' must be a key=value pair");
  CHECK(error_of(p, "type=volume, target=/x") == "unknown option ' target' in ' target=/x'");
  CHECK(error_of(p, "type=volume") == "target is required");
  CHECK(error_of(p, "type=,target=/x") == "type is required");
  CHECK(error_of(p, "type=volume,target=/x,readonly=maybe") == "invalid value for readonly: maybe");
  CHECK(error_of(p, "type=tmpfs,target=/x,tmpfs-size=lots") ==
        "invalid value for tmpfs-size: lots");
  CHECK(error_of(p, "type=tmpfs,target=/x,tmpfs-mode=999") == "invalid value for tmpfs-mode: 999");
  CHECK(error_of(p, "type=bind,target=/x,tmpfs-size=1m") ==
        "cannot mix 'tmpfs-*' options with mount type 'bind'");
  CHECK(error_of(p, "type=tmpfs,target=/x,volume-nocopy") ==
        "cannot mix 'volume-*' options with mount type 'tmpfs'");
  CHECK(error_of(p, "type=volume,target=/x,bind-propagation=shared") ==
        "cannot mix 'bind-*' options with mount type 'volume'");
  CHECK(error_of(p, "type=bind,target=/x") ==
        "invalid mount config for type \"bind\": field Source must not be empty");
  CHECK(error_of(p, "type=bind,src=rel,target=/x") ==
        "invalid mount config for type \"bind\": invalid mount path: 'rel' mount path must be "
        "absolute");
  CHECK(error_of(p, "type=tmpfs,src=x,target=/x") ==
        "invalid mount config for type \"tmpfs\": field Source must not be specified");
  CHECK(error_of(p, "type=floppy,target=/x") ==
        "invalid mount config for type \"floppy\": mount type unknown");
  CHECK(error_of(p, "type=volume,target=rel") ==
        "invalid mount config for type \"volume\": invalid mount path: 'rel' mount path must be "
        "absolute");
  CHECK(error_of(p, "type=volume,target=/x,volume-driver=nfs") ==
        "error looking up volume plugin nfs: plugin \"nfs\" not found");
  CHECK(error_of(p, "type=bind,src=/a,target=/x,bind-propagation=sideways") ==
        "invalid propagation mode: sideways");
  CHECK(error_of(p, "type=volume,target=/x,\"src=a\"b") ==
        "parse error on line 1, column 30: extraneous or missing \" in quoted-field");
  CHECK(error_of(p, "type=volume,target=/x,src=a\"b") ==
        "parse error on line 1, column 28: bare \" in non-quoted-field");
}

TEST_CASE("--tmpfs: target, options, Docker's defaults and later options winning") {
  MountSpec m = parse_tmpfs_flag("/run");
  CHECK(m.type == Type::kTmpfs);
  CHECK(m.target == "/run");
  CHECK(m.options == "noexec,nosuid,nodev,mode=1777");
  CHECK_FALSE(m.readonly);

  m = parse_tmpfs_flag("/cache:size=64m");
  CHECK(m.options == "noexec,nosuid,nodev,size=67108864,mode=1777");

  m = parse_tmpfs_flag("/t:exec,mode=700,size=50%,ro,uid=1000");
  CHECK(m.options == "exec,nosuid,nodev,ro,mode=700,size=50%,uid=1000");
  CHECK(m.readonly);

  auto p = [](const std::string& v) { return parse_tmpfs_flag(v); };
  CHECK(error_of(p, "/t:bogus") == "invalid tmpfs option [\"bogus\"]");
  CHECK(error_of(p, "/t:color=red") == "invalid tmpfs option [\"color\" \"red\"]");
  CHECK(error_of(p, "/t:size=big") == "invalid tmpfs option [\"size\" \"big\"]");
  CHECK(error_of(p, "t") ==
        "invalid mount config for type \"tmpfs\": invalid mount path: 't' mount path must be "
        "absolute");
  CHECK(error_of(p, "") ==
        "invalid mount config for type \"tmpfs\": field Target must not be empty");
}

TEST_CASE("size_cell prints docker ps -s's SIZE") {
  CHECK(size_cell(0, 0) == "0B");
  CHECK(size_cell(5, 7750000) == "5B (virtual 7.75MB)");
  CHECK(size_cell(0, 7750000) == "0B (virtual 7.75MB)");
  // 3 significant digits, decimal units.
  CHECK(size_cell(1234, 7751234) == "1.23kB (virtual 7.75MB)");
  CHECK(size_cell(1500000000, 2000000000) == "1.5GB (virtual 2GB)");
  // Docker's quirk for values that round up to 1000 of a unit.
  CHECK(size_cell(999999, 0) == "1e+03kB");
}

TEST_CASE("stack names") {
  CHECK_NOTHROW(check_stack_name("web"));
  CHECK_NOTHROW(check_stack_name("a"));
  CHECK_NOTHROW(check_stack_name("my_app-1.2"));
  for (const char* bad : {"", "-x", ".x", "a/b", "a b", "a:b", "..", "ünï"}) {
    CAPTURE(bad);
    CHECK_THROWS_WITH_AS(check_stack_name(bad),
                         ("Invalid stack name (" + std::string(bad) +
                          "), only [a-zA-Z0-9][a-zA-Z0-9_.-] are allowed")
                             .c_str(),
                         Error);
  }
}

}  // namespace
}  // namespace layerfs::ctl
