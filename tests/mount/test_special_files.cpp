// Mounted tests: symlinks, device nodes, fifos and unix sockets, made through the mount or found
// in the lowers, and still there after a remount.
#include <doctest/doctest.h>
#include <fcntl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstring>

#include "tests/support/scenario.h"

using namespace layerfs::test;

TEST_CASE("special files: symlinks made through the mount and found in the lowers") {
  Scenario s(
      {.lowers = {{file("target", "t"), dir("dir"), file("dir/in", "i"), sym("lower_rel", "target"),
                   sym("lower_dir", "dir"), sym("lower_dangling", "nowhere")}}});
  s.both("relative", [](const std::string& r) { return sys::symlink("target", r + "/rel"); });
  s.both("absolute",
         [](const std::string& r) { return sys::symlink("/etc/hostname", r + "/abs"); });
  s.both("dangling", [](const std::string& r) { return sys::symlink("missing", r + "/dang"); });
  s.both("long",
         [](const std::string& r) { return sys::symlink(std::string(2000, 'x'), r + "/long"); });
  s.both("existing name", [](const std::string& r) { return sys::symlink("x", r + "/target"); });
  CHECK(read_link(s.mnt("rel")) == "target");
  CHECK(read_link(s.mnt("abs")) == "/etc/hostname");
  CHECK(read_link(s.mnt("long")) == std::string(2000, 'x'));
  CHECK(read_link(s.mnt("lower_dangling")) == "nowhere");
  CHECK(read_file(s.mnt("lower_dir/in")) == "i");
  CHECK(read_file(s.mnt("rel")) == "t");
  CHECK(sys::open_close(s.mnt("dang"), O_RDONLY) == ENOENT);
  CHECK(sys::open_close(s.mnt("lower_rel"), O_RDONLY | O_NOFOLLOW) == ELOOP);
  // Writing through a symlink changes (and copies up) the target, not the link.
  s.both("write through link",
         [](const std::string& r) { return sys::write(r + "/lower_rel", "via link"); });
  CHECK(read_file(s.mnt("target")) == "via link");
  CHECK(S_ISLNK(lstat_path(s.mnt("lower_rel")).st_mode));
  s.check_tree();
  s.remount();
  s.check_tree({}, "after remount");
}

TEST_CASE("special files: character and block devices") {
  Scenario s({.lowers = {{chardev("lower_null", 1, 3), blockdev("lower_loop", 7, 0)}}});
  CHECK(s.both("mknod c", [](const std::string& r) {
    return sys::mknod(r + "/null", S_IFCHR | 0666, makedev(1, 3));
  }) == 0);
  CHECK(s.both("mknod b", [](const std::string& r) {
    return sys::mknod(r + "/loop", S_IFBLK | 0600, makedev(7, 1));
  }) == 0);
  CHECK(s.both("mknod over an existing name", [](const std::string& r) {
    return sys::mknod(r + "/lower_null", S_IFCHR | 0666, makedev(1, 3));
  }) == EEXIST);
  struct stat c = lstat_path(s.mnt("null"));
  CHECK(S_ISCHR(c.st_mode));
  CHECK(c.st_rdev == makedev(1, 3));
  struct stat b = lstat_path(s.mnt("loop"));
  CHECK(S_ISBLK(b.st_mode));
  CHECK(b.st_rdev == makedev(7, 1));
  CHECK(lstat_path(s.mnt("lower_loop")).st_rdev == makedev(7, 0));
  s.check_tree();
  s.remount();
  s.check_tree({}, "after remount");
}

TEST_CASE("special files: fifos carry data between processes") {
  Scenario s({.lowers = {{fifo("lower_fifo", 0600)}}});
  CHECK(s.both("mkfifo",
               [](const std::string& r) { return sys::mknod(r + "/fifo", S_IFIFO | 0644); }) == 0);
  for (const char* name : {"fifo", "lower_fifo"}) {
    const std::string path = s.mnt(name);
    CAPTURE(path);
    REQUIRE(S_ISFIFO(lstat_path(path).st_mode));
    pid_t pid = ::fork();
    REQUIRE(pid >= 0);
    if (pid == 0) {
      int fd = ::open(path.c_str(), O_WRONLY | O_CLOEXEC);
      if (fd < 0) ::_exit(1);
      bool ok = ::write(fd, "through the fifo", 16) == 16;
      ::close(fd);
      ::_exit(ok ? 0 : 2);
    }
    std::string got = read_file(path);
    int status = 0;
    ::waitpid(pid, &status, 0);
    CHECK(WIFEXITED(status));
    CHECK(WEXITSTATUS(status) == 0);
    CHECK(got == "through the fifo");
  }
  s.check_tree();
}

TEST_CASE("special files: unix sockets bound in the mount") {
  Scenario s({.lowers = {{socket("lower_sock")}}});
  CHECK(S_ISSOCK(lstat_path(s.mnt("lower_sock")).st_mode));
  const std::string path = s.mnt("sock");
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  REQUIRE(path.size() < sizeof addr.sun_path);
  std::strcpy(addr.sun_path, path.c_str());
  Fd server(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
  REQUIRE(server);
  REQUIRE(::bind(server.get(), reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0);
  REQUIRE(::listen(server.get(), 1) == 0);
  CHECK(S_ISSOCK(lstat_path(path).st_mode));
  Fd client(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
  REQUIRE(client);
  CHECK(::connect(client.get(), reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0);
  Fd conn(::accept4(server.get(), nullptr, nullptr, SOCK_CLOEXEC));
  REQUIRE(conn);
  CHECK(::write(client.get(), "ping", 4) == 4);
  char buf[8] = {};
  CHECK(::read(conn.get(), buf, sizeof buf) == 4);
  CHECK(std::string(buf) == "ping");
  // A second bind to the same name fails like on any file system.
  Fd other(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
  CHECK(::bind(other.get(), reinterpret_cast<sockaddr*>(&addr), sizeof addr) == -1);
  CHECK(errno == EADDRINUSE);
  CHECK(sys::unlink(path) == 0);
  CHECK(sys::lstat(path) == ENOENT);
}
