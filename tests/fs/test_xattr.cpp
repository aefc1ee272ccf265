// Tests for fs/xattr.cpp: the private-name filter, exact values, symlinks
// reached through /proc/self/fd paths, growing buffers, and which failures
// copy_xattrs skips (a filesystem without xattrs, EPERM when not root).
#include <doctest/doctest.h>
#include <fcntl.h>
#include <linux/capability.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <sys/xattr.h>
#include <unistd.h>

#include <algorithm>
#include <cstring>
#include <filesystem>
#include <string>
#include <vector>

#include "fs/unique_fd.h"
#include "fs/xattr.h"
#include "tests/support/temp_dir.h"

namespace layerfs {
namespace {

using test::needs_root;

using test::ScopedMount;
using test::TempDir;

std::string make_file(const std::string& path) {
  UniqueFd fd(::open(path.c_str(), O_WRONLY | O_CREAT | O_CLOEXEC, 0644));
  REQUIRE(fd.valid());
  return path;
}

void set(const std::string& path, const std::string& name, const std::string& value,
         bool follow = true) {
  int rc = follow ? ::setxattr(path.c_str(), name.c_str(), value.data(), value.size(), 0)
                  : ::lsetxattr(path.c_str(), name.c_str(), value.data(), value.size(), 0);
  REQUIRE_MESSAGE(rc == 0, "setxattr ", name, " on ", path, ": ",
                  std::string(std::strerror(errno)));
}

std::string fd_path(int fd) {
  return "/proc/self/fd/" + std::to_string(fd);
}

std::vector<std::string> sorted_names(const std::string& path, bool follow) {
  Result<std::vector<std::string>> names = list_xattrs(path, follow);
  REQUIRE_MESSAGE(names.ok(), "list_xattrs ", path, ": ",
                  std::string(std::strerror(names.error())));
  std::vector<std::string> v = *names;
  std::sort(v.begin(), v.end());
  return v;
}

bool contains(const std::vector<std::string>& v, const std::string& s) {
  return std::find(v.begin(), v.end(), s) != v.end();
}

std::string value_of(const std::string& path, const std::string& name, bool follow = true) {
  Result<std::string> v = get_xattr(path, name, follow);
  REQUIRE_MESSAGE(v.ok(), "get_xattr ", name, ": ", std::string(std::strerror(v.error())));
  return *v;
}

std::string pattern(size_t n) {
  std::string s(n, '\0');
  for (size_t i = 0; i < n; ++i) s[i] = static_cast<char>((i * 131 + 7) % 256);
  return s;
}

}  // namespace

TEST_CASE("is_private_xattr") {
  for (const char* name :
       {"trusted.overlay.opaque", "trusted.overlay.origin", "user.overlay.redirect",
        "user.fuseoverlayfs.origin", "trusted.fuseoverlayfs.x", "trusted.layerfs.anything",
        "user.layerfs.x", "trusted.overlay."}) {
    CAPTURE(name);
    CHECK(is_private_xattr(name));
  }
  for (const char* name : {"", "user.test", "trusted.test", "security.capability",
                           "system.posix_acl_access", "trusted.overlay", "trusted.overlayfs.x",
                           "user.overlayx", "user.layerfs", "security.overlay.opaque",
                           "TRUSTED.overlay.opaque", "xuser.layerfs.x", "user.fuseoverlayfs"}) {
    CAPTURE(name);
    CHECK_FALSE(is_private_xattr(name));
  }
}

TEST_CASE("copy_xattrs copies user attributes exactly and leaves private ones" * doctest::skip(needs_root())) {
  TempDir tmp("xattr");
  const std::string src = make_file(tmp.path() + "/src");
  const std::string dst = make_file(tmp.path() + "/dst");
  const std::string binary("\0\x01\xff\0tail\0", 9);
  set(src, "user.binary", binary);
  set(src, "user.empty", "");
  set(src, "user.text", "plain");
  set(src, "trusted.kept", "t");
  set(src, "user.overlay.opaque", "y");
  set(src, "user.layerfs.id", "1");
  set(src, "user.fuseoverlayfs.origin", "o");
  set(src, "trusted.overlay.origin", "o");
  set(src, "trusted.layerfs.id", "2");

  // Through O_PATH fds, the way copy-up names objects.
  UniqueFd s(::open(src.c_str(), O_PATH | O_CLOEXEC));
  UniqueFd d(::open(dst.c_str(), O_PATH | O_CLOEXEC));
  REQUIRE(s.valid());
  REQUIRE(d.valid());
  Result<void> r = copy_xattrs(fd_path(s.get()), true, fd_path(d.get()), true);
  REQUIRE_MESSAGE(r.ok(), std::string(std::strerror(r.error())));

  const std::vector<std::string> expected = {"trusted.kept", "user.binary", "user.empty",
                                             "user.text"};
  CHECK(sorted_names(dst, true) == expected);
  CHECK(value_of(dst, "user.binary") == binary);
  CHECK(value_of(dst, "user.binary").size() == 9);
  CHECK(value_of(dst, "user.empty").empty());
  CHECK(value_of(dst, "user.text") == "plain");
  CHECK(value_of(dst, "trusted.kept") == "t");
  CHECK(get_xattr(dst, "user.overlay.opaque", true).error() == ENODATA);
  CHECK(get_xattr(dst, "trusted.layerfs.id", true).error() == ENODATA);

  // list_xattrs reports private names too; hiding them is the caller's job.
  std::vector<std::string> src_names = sorted_names(src, true);
  CHECK(src_names.size() == 9);
  CHECK(contains(src_names, "trusted.overlay.origin"));
  CHECK(contains(src_names, "user.empty"));
}

TEST_CASE("get_xattr: missing attribute and missing object") {
  TempDir tmp("xattr");
  const std::string f = make_file(tmp.path() + "/f");
  set(f, "user.present", "x");
  CHECK(get_xattr(f, "user.absent", true).error() == ENODATA);
  CHECK(get_xattr(f, "user.absent", false).error() == ENODATA);
  CHECK(get_xattr(tmp.path() + "/nope", "user.present", true).error() == ENOENT);
  CHECK(list_xattrs(tmp.path() + "/nope", false).error() == ENOENT);
  CHECK(sorted_names(f, true) == std::vector<std::string>{"user.present"});
}

TEST_CASE("xattrs of a symlink through /proc/self/fd paths" * doctest::skip(needs_root())) {
  TempDir tmp("xattr");
  const std::string target = make_file(tmp.path() + "/target");
  const std::string link = tmp.path() + "/link";
  REQUIRE(::symlink("target", link.c_str()) == 0);
  set(target, "user.t", "of target");
  set(target, "trusted.t", "of target");
  set(link, "trusted.link", "of link", /*follow=*/false);
  // The kernel refuses user.* on symlinks; this is why copy-up of a symlink
  // can only carry trusted.* and security.* names.
  CHECK(::lsetxattr(link.c_str(), "user.x", "v", 1, 0) == -1);

  SUBCASE("O_PATH|O_NOFOLLOW fd of the symlink itself") {
    UniqueFd fd(::open(link.c_str(), O_PATH | O_NOFOLLOW | O_CLOEXEC));
    REQUIRE(fd.valid());
    const std::string p = fd_path(fd.get());
    std::vector<std::string> names = sorted_names(p, true);
    CHECK(contains(names, "trusted.link"));
    CHECK_FALSE(contains(names, "user.t"));
    CHECK_FALSE(contains(names, "trusted.t"));
    CHECK(value_of(p, "trusted.link", true) == "of link");
    CHECK(get_xattr(p, "user.t", true).error() == ENODATA);
  }

  SUBCASE("entry of a directory fd, not followed") {
    UniqueFd dir(::open(tmp.path().c_str(), O_PATH | O_DIRECTORY | O_CLOEXEC));
    REQUIRE(dir.valid());
    const std::string p = fd_path(dir.get()) + "/link";
    std::vector<std::string> names = sorted_names(p, false);
    CHECK(names == std::vector<std::string>{"trusted.link"});
    CHECK(value_of(p, "trusted.link", false) == "of link");
    CHECK(get_xattr(p, "trusted.t", false).error() == ENODATA);
    // Following reaches the target instead: the flag really matters.
    CHECK(contains(sorted_names(p, true), "user.t"));
    CHECK(value_of(p, "trusted.t", true) == "of target");
  }

  SUBCASE("copy between symlinks does not touch their targets") {
    const std::string other_target = make_file(tmp.path() + "/other_target");
    const std::string link2 = tmp.path() + "/link2";
    REQUIRE(::symlink("other_target", link2.c_str()) == 0);
    UniqueFd s(::open(link.c_str(), O_PATH | O_NOFOLLOW | O_CLOEXEC));
    UniqueFd d(::open(link2.c_str(), O_PATH | O_NOFOLLOW | O_CLOEXEC));
    REQUIRE(s.valid());
    REQUIRE(d.valid());
    Result<void> r = copy_xattrs(fd_path(s.get()), true, fd_path(d.get()), true);
    REQUIRE_MESSAGE(r.ok(), std::string(std::strerror(r.error())));
    CHECK(sorted_names(link2, false) == std::vector<std::string>{"trusted.link"});
    CHECK(value_of(link2, "trusted.link", false) == "of link");
    CHECK(sorted_names(other_target, true).empty());
  }
}

TEST_CASE("large values and lists grow their buffers" * doctest::skip(needs_root())) {
  TempDir tmp("xattr");
  const std::string f = make_file(tmp.path() + "/f");
  const std::string big = pattern(4000);
  set(f, "user.big", big);
  // A separate file: ext4 keeps all xattrs of a file in one block.
  const std::string g = make_file(tmp.path() + "/g");
  for (int i = 0; i < 20; ++i) set(g, "user.name_number_" + std::to_string(i), "v");

  // A 16-byte first buffer cannot hold the value: only the ERANGE path works.
  Result<std::string> v = get_xattr_sized(f, "user.big", true, 16);
  REQUIRE(v.ok());
  CHECK(*v == big);
  CHECK(value_of(f, "user.big") == big);
  Result<std::string> small = get_xattr_sized(g, "user.name_number_3", true, 1);
  REQUIRE(small.ok());
  CHECK(*small == "v");

  Result<std::vector<std::string>> names = list_xattrs_sized(g, true, 4);
  REQUIRE(names.ok());
  CHECK(names->size() == 20);
  CHECK(contains(*names, "user.name_number_0"));
  CHECK(contains(*names, "user.name_number_19"));

  // tmpfs takes values near the 64 KiB kernel limit; ext4 blocks do not.
  ScopedMount mnt(tmp.path() + "/mnt", "tmpfs", "size=16m");
  const std::string a = make_file(mnt.path() + "/a");
  const std::string b = make_file(mnt.path() + "/b");
  const std::string huge = pattern(60 * 1024);
  set(a, "trusted.huge", huge);
  set(a, "user.huge", huge);
  CHECK(value_of(a, "trusted.huge") == huge);
  REQUIRE(copy_xattrs(a, true, b, true).ok());
  CHECK(value_of(b, "trusted.huge") == huge);
  CHECK(value_of(b, "user.huge") == huge);
}

TEST_CASE("copy_xattrs: unsupported destinations are skipped, other errors returned" * doctest::skip(needs_root())) {
  TempDir tmp("xattr");
  const std::string src = make_file(tmp.path() + "/src");
  set(src, "user.a", "1");
  set(src, "trusted.b", "2");

  // ramfs has no xattr support at all: EOPNOTSUPP for every name.
  ScopedMount ram(tmp.path() + "/ram", "ramfs", "mode=0755");
  const std::string dst = make_file(ram.path() + "/dst");
  REQUIRE(::setxattr(dst.c_str(), "user.probe", "x", 1, 0) == -1);
  REQUIRE(errno == EOPNOTSUPP);
  Result<void> r = copy_xattrs(src, true, dst, true);
  CHECK_MESSAGE(r.ok(), std::string(std::strerror(r.error())));

  CHECK(copy_xattrs(src, true, tmp.path() + "/missing", true).error() == ENOENT);
  CHECK(copy_xattrs(tmp.path() + "/missing", true, src, true).error() == ENOENT);
}

TEST_CASE("copy_xattrs: security.* refused by EPERM is skipped only when not root" * doctest::skip(needs_root())) {
  REQUIRE(::geteuid() == 0);
  TempDir tmp("xattr");
  REQUIRE(::chmod(tmp.path().c_str(), 0755) == 0);
  const std::string src = make_file(tmp.path() + "/src");
  REQUIRE(::chmod(src.c_str(), 0644) == 0);
  // A valid v2 file capability: cap_net_bind_service, effective.
  vfs_cap_data cap{};
  cap.magic_etc = VFS_CAP_REVISION_2 | VFS_CAP_FLAGS_EFFECTIVE;
  cap.data[0].permitted = 1u << CAP_NET_BIND_SERVICE;
  const std::string cap_value(reinterpret_cast<const char*>(&cap), XATTR_CAPS_SZ_2);
  set(src, "security.capability", cap_value);
  set(src, "user.a", "1");

  // As root, security.capability is copied.
  const std::string as_root = make_file(tmp.path() + "/as_root");
  REQUIRE(copy_xattrs(src, true, as_root, true).ok());
  CHECK(value_of(as_root, "security.capability") == cap_value);
  CHECK(value_of(as_root, "user.a") == "1");

  // As nobody, setting it fails with EPERM and is skipped; user.a still goes.
  const uid_t nobody = 65534;
  const std::string as_user = make_file(tmp.path() + "/as_user");
  REQUIRE(::chown(as_user.c_str(), nobody, nobody) == 0);
  pid_t pid = ::fork();
  REQUIRE(pid >= 0);
  if (pid == 0) {
    if (::setgid(nobody) != 0 || ::setuid(nobody) != 0) ::_exit(10);
    if (::setxattr(as_user.c_str(), "security.capability", cap_value.data(), cap_value.size(), 0) ==
            0 ||
        errno != EPERM) {
      ::_exit(11);  // the premise: nobody may not set it
    }
    Result<void> r = copy_xattrs(src, true, as_user, true);
    ::_exit(r.ok() ? 0 : 20 + r.error() % 100);
  }
  int status = 0;
  REQUIRE(::waitpid(pid, &status, 0) == pid);
  REQUIRE(WIFEXITED(status));
  CHECK(WEXITSTATUS(status) == 0);
  CHECK(value_of(as_user, "user.a") == "1");
  CHECK(get_xattr(as_user, "security.capability", true).error() == ENODATA);
}

}  // namespace layerfs
