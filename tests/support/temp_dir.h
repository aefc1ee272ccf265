// Temporary directories and scoped mounts for the unit tests (doctest). Both
// clean up in their destructors, whatever the test did in between.
#pragma once

#include <sys/mount.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <string>

#include <doctest/doctest.h>

namespace layerfs::test {

// For `* doctest::skip(needs_root())` on cases that need root (mounting,
// chown, device nodes, trusted.* xattrs, acting as other users): they run in
// CI and for root, and are reported as skipped for a build by a normal user
// (a Debian package build, say).
inline bool needs_root() { return ::geteuid() != 0; }

// A fresh directory /tmp/layerfs-TAG-XXXXXX (or under `base`), by its real
// path, removed with everything in it.
class TempDir {
 public:
  explicit TempDir(const std::string& tag = "unit", const std::string& base = "/tmp") {
    std::string tmpl = base + "/layerfs-" + tag + "-XXXXXX";
    REQUIRE_MESSAGE(::mkdtemp(tmpl.data()) != nullptr, "mkdtemp ", tmpl, ": ",
                    std::string(std::strerror(errno)));
    char* real = ::realpath(tmpl.c_str(), nullptr);
    REQUIRE(real != nullptr);
    path_ = real;
    std::free(real);
  }
  ~TempDir() {
    std::error_code ec;
    std::filesystem::remove_all(path_, ec);
  }
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;

  const std::string& path() const { return path_; }

 private:
  std::string path_;
};

// A filesystem of type `type` mounted on the new directory `dir` for the scope.
class ScopedMount {
 public:
  ScopedMount(std::string dir, const char* type, const char* opts) : dir_(std::move(dir)) {
    REQUIRE(::mkdir(dir_.c_str(), 0755) == 0);
    mounted_ = ::mount(type, dir_.c_str(), type, 0, opts) == 0;
    REQUIRE_MESSAGE(mounted_, "mount -t ", type, " ", dir_, ": ",
                    std::string(std::strerror(errno)));
  }
  ~ScopedMount() {
    if (mounted_ && ::umount2(dir_.c_str(), 0) != 0) ::umount2(dir_.c_str(), MNT_DETACH);
  }
  ScopedMount(const ScopedMount&) = delete;
  ScopedMount& operator=(const ScopedMount&) = delete;

  const std::string& path() const { return dir_; }

 private:
  std::string dir_;
  bool mounted_ = false;
};

// A tmpfs on the new directory `dir` for the scope.
class TmpfsMount : public ScopedMount {
 public:
  explicit TmpfsMount(std::string dir, const char* opts = "size=512m,mode=0755")
      : ScopedMount(std::move(dir), "tmpfs", opts) {}
};

}  // namespace layerfs::test
