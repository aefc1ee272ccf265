// Mounted tests: permissions as the kernel checks them (default_permissions), seen by
// unprivileged users (mount with allow_other). Every operation runs on the mount and on the
// reference as the same user and must give the same result; objects a user creates belong to
// that user (group from a setgid parent directory).
#include <doctest/doctest.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include "tests/support/scenario.h"
#include "tests/support/user.h"

using namespace layerfs::test;

namespace {

constexpr gid_t kSgidGroup = 1234;

std::vector<Entry> permission_tree() {
  return {file("root_file", "root", 0644),
          dir("root_dir", 0755),
          file("root_dir/inner", "inner", 0666),
          file("secret", "secret", 0600),
          file("user_file", "user 1000", 0644).owner(kUserUid, kUserGid),
          file("nobody_file", "nobody", 0644).owner(kNobodyUid, kNogroupGid),
          dir("shared", 0777),
          dir("sticky", 01777),
          file("sticky/roots", "r", 0666),
          file("sticky/nobodys", "n", 0666).owner(kNobodyUid, kNogroupGid),
          dir("sgid", 02777).owner(0, kSgidGroup),
          dir("mine", 0755).owner(kNobodyUid, kNogroupGid),
          file("mine/own", "own", 0600).owner(kNobodyUid, kNogroupGid)};
}

// Runs `op` on the mount and on the reference (as the current user) and records a failure unless
// both give `want`.
void both_as(Expect& e, const Scenario& s, const std::string& what, int want,
             const std::function<int(const std::string&)>& op) {
  int m = op(s.mnt());
  int r = op(s.ref());
  e.err(r, want, what + " on the reference (test expectation)");
  e.err(m, want, what + " on the mount");
}

}  // namespace

TEST_CASE("permissions: an unprivileged user gets EACCES and EPERM where the kernel says so") {
  Scenario s({.lowers = {permission_tree()}, .options = {"allow_other"}});
  std::string failures = run_as(kNobodyUid, kNogroupGid, [&](Expect& e) {
    both_as(e, s, "write a root 0644 file", EACCES,
            [](const std::string& r) { return sys::open_close(r + "/root_file", O_WRONLY); });
    both_as(e, s, "truncate a root 0644 file", EACCES,
            [](const std::string& r) { return sys::truncate(r + "/root_file", 0); });
    both_as(e, s, "read a root 0600 file", EACCES,
            [](const std::string& r) { return sys::open_close(r + "/secret", O_RDONLY); });
    both_as(e, s, "create in a root 0755 dir", EACCES, [](const std::string& r) {
      return sys::open_close(r + "/root_dir/new", O_WRONLY | O_CREAT);
    });
    both_as(e, s, "mkdir in a root 0755 dir", EACCES,
            [](const std::string& r) { return sys::mkdir(r + "/root_dir/newdir"); });
    both_as(e, s, "symlink in a root 0755 dir", EACCES,
            [](const std::string& r) { return sys::symlink("x", r + "/root_dir/link"); });
    both_as(e, s, "unlink in a root 0755 dir", EACCES,
            [](const std::string& r) { return sys::unlink(r + "/root_dir/inner"); });
    both_as(e, s, "rename out of a root 0755 dir", EACCES, [](const std::string& r) {
      return sys::rename(r + "/root_dir/inner", r + "/shared/stolen");
    });
    both_as(e, s, "chmod someone else's file", EPERM,
            [](const std::string& r) { return sys::chmod(r + "/user_file", 0666); });
    both_as(e, s, "chown a root file", EPERM, [](const std::string& r) {
      return sys::lchown(r + "/root_file", kNobodyUid, kNogroupGid);
    });
    both_as(e, s, "set explicit times on a root file", EPERM, [](const std::string& r) {
      return sys::utimens(r + "/root_file", {1, 0}, {1, 0});
    });
    both_as(e, s, "set user xattr on a root file", EACCES,
            [](const std::string& r) { return sys::setxattr(r + "/root_file", "user.x", "1"); });
    both_as(e, s, "write into a file through a 0666 mode", 0, [](const std::string& r) {
      return sys::write(r + "/root_dir/inner", "changed", O_WRONLY | O_TRUNC);
    });
    both_as(e, s, "unlink another user's file in a sticky dir", EPERM,
            [](const std::string& r) { return sys::unlink(r + "/sticky/roots"); });
    both_as(e, s, "unlink own file in a sticky dir", 0,
            [](const std::string& r) { return sys::unlink(r + "/sticky/nobodys"); });
    both_as(e, s, "chmod own lower file", 0,
            [](const std::string& r) { return sys::chmod(r + "/mine/own", 0640); });
    both_as(e, s, "write own lower file", 0, [](const std::string& r) {
      return sys::write(r + "/nobody_file", "mine now", O_WRONLY | O_TRUNC);
    });
  });
  CHECK_MESSAGE(failures.empty(), failures);
  s.check_tree();
  // Copy-up by an unprivileged writer keeps the owner.
  struct stat st = lstat_path(s.upper("nobody_file"));
  CHECK(st.st_uid == kNobodyUid);
  CHECK(st.st_gid == kNogroupGid);
}

TEST_CASE("permissions: objects a user creates belong to that user") {
  Scenario s({.lowers = {permission_tree()}, .options = {"allow_other"}});
  for (auto [uid, gid] : {std::pair<uid_t, gid_t>{kNobodyUid, kNogroupGid},
                          std::pair<uid_t, gid_t>{kUserUid, kUserGid}}) {
    const std::string tag = std::to_string(uid);
    std::string failures = run_as(uid, gid, [&](Expect& e) {
      both_as(e, s, "create a file", 0,
              [&](const std::string& r) { return sys::write(r + "/shared/file" + tag, "x"); });
      both_as(e, s, "mkdir", 0,
              [&](const std::string& r) { return sys::mkdir(r + "/shared/dir" + tag, 0750); });
      both_as(e, s, "symlink", 0, [&](const std::string& r) {
        return sys::symlink("file" + tag, r + "/shared/link" + tag);
      });
      both_as(e, s, "mkfifo", 0, [&](const std::string& r) {
        return sys::mknod(r + "/shared/fifo" + tag, S_IFIFO | 0640);
      });
      both_as(e, s, "create in a new dir", 0, [&](const std::string& r) {
        return sys::write(r + "/shared/dir" + tag + "/inner", "y");
      });
    });
    CHECK_MESSAGE(failures.empty(), failures);
    for (const char* what : {"file", "dir", "link", "fifo"}) {
      const std::string p = std::string("shared/") + what + tag;
      CAPTURE(p);
      struct stat st = lstat_path(s.mnt(p));
      CHECK(st.st_uid == uid);
      CHECK(st.st_gid == gid);
      struct stat up = lstat_path(s.upper(p));
      CHECK(up.st_uid == uid);
      CHECK(up.st_gid == gid);
    }
  }
  s.check_tree();
  s.remount();
  s.check_tree({}, "after remount");
}

TEST_CASE("permissions: a setgid directory gives its group to new objects") {
  Scenario s({.lowers = {permission_tree()}, .options = {"allow_other"}});
  std::string failures = run_as(kNobodyUid, kNogroupGid, [&](Expect& e) {
    both_as(e, s, "create in the setgid dir", 0,
            [](const std::string& r) { return sys::write(r + "/sgid/file", "x"); });
    both_as(e, s, "mkdir in the setgid dir", 0,
            [](const std::string& r) { return sys::mkdir(r + "/sgid/sub", 0755); });
    both_as(e, s, "create in the new subdir", 0,
            [](const std::string& r) { return sys::write(r + "/sgid/sub/deeper", "y"); });
    both_as(e, s, "symlink in the setgid dir", 0,
            [](const std::string& r) { return sys::symlink("file", r + "/sgid/link"); });
  });
  CHECK_MESSAGE(failures.empty(), failures);
  for (const char* p : {"sgid/file", "sgid/sub", "sgid/sub/deeper", "sgid/link"}) {
    CAPTURE(p);
    struct stat st = lstat_path(s.mnt(p));
    CHECK(st.st_uid == kNobodyUid);
    CHECK(st.st_gid == kSgidGroup);
  }
  CHECK((lstat_path(s.mnt("sgid/sub")).st_mode & S_ISGID) != 0);
  s.check_tree();
}

TEST_CASE("permissions: reading and searching follow the modes of lower objects") {
  Scenario s({.lowers = {{dir("closed", 0700), file("closed/f", "f"), dir("x_only", 0711),
                          file("x_only/f", "visible", 0644), file("plain", "p", 0644)}},
              .options = {"allow_other"}});
  std::string failures = run_as(kUserUid, kUserGid, [&](Expect& e) {
    both_as(e, s, "open in a 0700 dir", EACCES,
            [](const std::string& r) { return sys::open_close(r + "/closed/f", O_RDONLY); });
    both_as(e, s, "list a 0700 dir", EACCES, [](const std::string& r) {
      return sys::open_close(r + "/closed", O_RDONLY | O_DIRECTORY);
    });
    both_as(e, s, "list a 0711 dir", EACCES, [](const std::string& r) {
      return sys::open_close(r + "/x_only", O_RDONLY | O_DIRECTORY);
    });
    both_as(e, s, "open a known name in a 0711 dir", 0,
            [](const std::string& r) { return sys::open_close(r + "/x_only/f", O_RDONLY); });
    both_as(e, s, "read a 0644 file", 0,
            [](const std::string& r) { return sys::open_close(r + "/plain", O_RDONLY); });
    e.that(read_file(s.mnt("x_only/f")) == "visible", "content through a 0711 dir");
  });
  CHECK_MESSAGE(failures.empty(), failures);
  s.check_tree();
}

TEST_CASE("permissions: set-user-ID and set-group-ID bits are cleared like on a local disk") {
  Scenario s({.lowers = {{file("suid", "x", 04777), file("sgid", "x", 02777),
                          file("both", "x", 06755), file("chowned", "x", 06755)}},
              .options = {"allow_other"}});
  std::string failures = run_as(kNobodyUid, kNogroupGid, [&](Expect& e) {
    both_as(e, s, "write a setuid file", 0,
            [](const std::string& r) { return sys::write(r + "/suid", "y", O_WRONLY); });
    both_as(e, s, "truncate a setgid file", 0,
            [](const std::string& r) { return sys::truncate(r + "/sgid", 0); });
  });
  CHECK_MESSAGE(failures.empty(), failures);
  s.both("chown by root",
         [](const std::string& r) { return sys::lchown(r + "/chowned", kNobodyUid, kNogroupGid); });
  CHECK((lstat_path(s.mnt("suid")).st_mode & 07777) == (lstat_path(s.ref("suid")).st_mode & 07777));
  CHECK((lstat_path(s.mnt("chowned")).st_mode & 07777) ==
        (lstat_path(s.ref("chowned")).st_mode & 07777));
  s.check_tree();
}

TEST_CASE("permissions: access(2) answers like the kernel") {
  Scenario s({.lowers = {{file("ro", "r", 0644), file("exec", "x", 0755), dir("dx", 0711),
                          file("none", "n", 0000)}},
              .options = {"allow_other"}});
  std::string failures = run_as(kUserUid, kUserGid, [&](Expect& e) {
    struct Case {
      const char* path;
      int mode;
    };
    for (auto c : {Case{"ro", R_OK}, Case{"ro", W_OK}, Case{"ro", X_OK}, Case{"exec", X_OK},
                   Case{"dx", X_OK}, Case{"dx", R_OK}, Case{"none", R_OK}, Case{"ro", F_OK},
                   Case{"missing", F_OK}}) {
      const std::string what = std::string("access ") + c.path + " " + std::to_string(c.mode);
      int m = err_of(::access(s.mnt(c.path).c_str(), c.mode));
      int r = err_of(::access(s.ref(c.path).c_str(), c.mode));
      e.err(m, r, what + " (mount vs reference)");
    }
  });
  CHECK_MESSAGE(failures.empty(), failures);
}
