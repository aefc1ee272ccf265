// mount.fuse.layerfs (also installed as mount.layerfs): the helper mount(8)
// runs for filesystems of type fuse.layerfs and layerfs. It translates what
// mount(8) and fstab hand it (mount.layerfs/mount_opts.h) into a layerfs
// command and runs it. layerfs checks the layers and reports every problem
// before it detaches, so the helper's exit status is the mount's:
//   0 mounted, 1 wrong invocation (of the helper), 32 the mount failed
// (mount(8) passes it on).
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <climits>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include "fs/options.h"
#include "fs/daemon_path.h"
#include "mount.layerfs/mount_opts.h"

namespace {

constexpr int kExitUsage = 1;
constexpr int kExitMountFailure = 32;

int run(int argc, char** argv) {
  const char* name = std::strrchr(argv[0], '/') ? std::strrchr(argv[0], '/') + 1 : argv[0];
  layerfs::mount_helper::HelperArgs args;
  try {
    args = layerfs::mount_helper::parse_helper_args(argc, argv);
  } catch (const layerfs::ConfigError& e) {
    fprintf(stderr, "%s: %s\nusage: %s SOURCE MOUNTPOINT [-sfnv] [-o OPTIONS]\n", name, e.what(),
            name);
    return kExitUsage;
  }
  const std::string binary = layerfs::daemon_path();
  std::vector<std::string> cmd = layerfs::mount_helper::layerfs_command(args, binary, ::getuid() == 0);
  if (args.verbose || args.fake) {
    std::string line;
    for (const auto& a : cmd) line += (line.empty() ? "" : " ") + a;
    printf("%s: %s%s\n", name, args.fake ? "would run: " : "running: ", line.c_str());
    fflush(stdout);
  }
  if (args.fake) return 0;
  if (!layerfs::is_executable(binary)) {
    fprintf(stderr, "%s: cannot find layerfs (looked for %s)\n", name, binary.c_str());
    return kExitMountFailure;
  }

  std::vector<char*> cargv;
  for (auto& a : cmd) cargv.push_back(a.data());
  cargv.push_back(nullptr);
  pid_t pid = ::fork();
  if (pid < 0) {
    fprintf(stderr, "%s: fork: %s\n", name, strerror(errno));
    return kExitMountFailure;
  }
  if (pid == 0) {
    ::execv(binary.c_str(), cargv.data());
    fprintf(stderr, "%s: cannot run %s: %s\n", name, binary.c_str(), strerror(errno));
    _exit(127);
  }
  // layerfs returns once the mount is usable (its daemon goes on in the
  // background) or once it has reported why it is not.
  int status = 0;
  while (::waitpid(pid, &status, 0) < 0) {
    if (errno != EINTR) {
      fprintf(stderr, "%s: waiting for layerfs: %s\n", name, strerror(errno));
      return kExitMountFailure;
    }
  }
  if (WIFEXITED(status) && WEXITSTATUS(status) == 0) return 0;
  if (WIFSIGNALED(status)) {
    fprintf(stderr, "%s: layerfs was killed by signal %d\n", name, WTERMSIG(status));
  }
  return kExitMountFailure;
}

}  // namespace

int main(int argc, char** argv) { return run(argc, argv); }
