// Tests for `layerctl volume ...` through the binary (tools/cmd_volume.cpp):
// exact output as Docker prints it, messages on stderr, exit codes (0, 1 for
// errors and argument counts, 125 for bad flags), the prune prompt answered
// on stdin, and concurrent creates from separate processes.
#include <doctest/doctest.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <set>
#include <string>
#include <vector>

#include "tests/support/temp_dir.h"
#include "tools/store.h"

namespace layerfs::ctl {
namespace {

struct Result {
  int code = -1;
  std::string out, err;
};

std::string slurp(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), {});
}

// Starts `layerctl --root ROOT ARGS...` with `input` on stdin and its output
// going to files under `dir`; returns its pid.
pid_t start(const std::string& dir, const std::string& root, const std::vector<std::string>& args,
            const std::string& input, const std::string& tag) {
  const std::string in = dir + "/" + tag + ".in";
  std::ofstream(in, std::ios::binary) << input;
  pid_t pid = ::fork();
  REQUIRE(pid >= 0);
  if (pid == 0) {
    int i = ::open(in.c_str(), O_RDONLY);
    int o = ::open((dir + "/" + tag + ".out").c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0600);
    int e = ::open((dir + "/" + tag + ".err").c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0600);
    if (i < 0 || o < 0 || e < 0) _exit(127);
    ::dup2(i, 0);
    ::dup2(o, 1);
    ::dup2(e, 2);
    std::vector<std::string> all = {LAYERCTL_BINARY, "--root", root};
    all.insert(all.end(), args.begin(), args.end());
    std::vector<char*> argv;
    for (auto& a : all) argv.push_back(a.data());
    argv.push_back(nullptr);
    ::execv(argv[0], argv.data());
    _exit(127);
  }
  return pid;
}

Result finish(const std::string& dir, pid_t pid, const std::string& tag) {
  int status = 0;
  REQUIRE(::waitpid(pid, &status, 0) == pid);
  Result r;
  r.code = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
  r.out = slurp(dir + "/" + tag + ".out");
  r.err = slurp(dir + "/" + tag + ".err");
  return r;
}

// A store under a fresh temporary directory, and the binary run on it.
class Cli {
 public:
  Cli() : root_(t_.path() + "/store") {
    REQUIRE_MESSAGE(::access(LAYERCTL_BINARY, X_OK) == 0, "no binary at ", LAYERCTL_BINARY);
  }
  Result run(const std::vector<std::string>& args, const std::string& input = "") {
    return finish(t_.path(), start(t_.path(), root_, args, input, "run"), "run");
  }
  const std::string& root() const { return root_; }
  const std::string& dir() const { return t_.path(); }

 private:
  test::TempDir t_{"volcli"};
  std::string root_;
};

void write_file(const std::string& path, size_t bytes) {
  std::ofstream(path, std::ios::binary) << std::string(bytes, 'x');
}

void write_stack(const std::string& root, const std::string& name,
                 const std::vector<std::string>& volumes) {
  auto s = Store::open(root, Access::kWrite);
  s->write({{"stack/" + name, json{{"name", name},
                                   {"layers", json::array()},
                                   {"created", now_rfc3339()},
                                   {"volumes", volumes},
                                   {"anonymous_volumes", json::array()}}}});
}

std::string created_at(const std::string& root, const std::string& name) {
  auto s = Store::open(root, Access::kRead);
  auto rec = s->get("volume/" + name);
  REQUIRE(rec.has_value());
  return (*rec)["CreatedAt"];
}

bool is_hex64(std::string s) {
  while (!s.empty() && s.back() == '\n') s.pop_back();
  return s.size() == 64 && s.find_first_not_of("0123456789abcdef") == std::string::npos;
}

TEST_CASE("volume create prints the name, and refuses bad names, options and arguments") {
  Cli c;
  auto r = c.run({"volume", "create", "web"});
  CHECK(r.code == 0);
  CHECK(r.out == "web\n");
  CHECK(r.err.empty());
  r = c.run({"volume", "create", "web"});  // again: the same volume
  CHECK(r.code == 0);
  CHECK(r.out == "web\n");
  r = c.run({"volume", "create"});
  CHECK(r.code == 0);
  CHECK(is_hex64(r.out));
  r = c.run({"volume", "create", "--label", "a=1", "--label", "b", "-o", "type=tmpfs", "--opt",
             "device=tmpfs", "-o", "o=size=1m", "-d", "local", "tv"});
  CHECK(r.code == 0);
  CHECK(r.out == "tv\n");
  {
    auto s = Store::open(c.root(), Access::kRead);
    auto rec = s->get("volume/tv");
    REQUIRE(rec.has_value());
    CHECK((*rec)["Labels"] == json{{"a", "1"}, {"b", ""}});
    CHECK((*rec)["Options"] == json{{"type", "tmpfs"}, {"device", "tmpfs"}, {"o", "size=1m"}});
  }
  r = c.run({"volume", "create", "a"});
  CHECK(r.code == 1);
  CHECK(r.out.empty());
  CHECK(r.err ==
        "Error: create a: volume name is too short, names should be at least two alphanumeric "
        "characters\n");
  r = c.run({"volume", "create", "-o", "o=size=1m", "xy"});
  CHECK(r.code == 1);
  CHECK(r.err == "Error: create xy: missing required option: \"device\"\n");
  r = c.run({"volume", "create", "-o", "colour=red", "xy"});
  CHECK(r.code == 1);
  CHECK(r.err == "Error: create xy: invalid option: \"colour\"\n");
  r = c.run({"volume", "create", "--driver", "nfs", "xy"});
  CHECK(r.code == 1);
  CHECK(r.err ==
        "Error: create xy: error looking up volume plugin nfs: plugin \"nfs\" not found\n");
  r = c.run({"volume", "create", "x1", "x2"});
  CHECK(r.code == 1);
  CHECK(r.err == "Error: \"layerctl volume create\" requires at most 1 argument.\n");
  r = c.run({"volume", "create", "--bogus", "xy"});
  CHECK(r.code == 125);
  CHECK(r.err.find("--bogus") != std::string::npos);
  r = c.run({"volume", "ls", "-q"});
  CHECK(r.out.find("xy") == std::string::npos);
  CHECK(r.out.find("x1") == std::string::npos);
}

TEST_CASE("volume ls: Docker's table, -q, json lines, filters, exit codes") {
  Cli c;
  auto r = c.run({"volume", "ls"});
  CHECK(r.code == 0);
  CHECK(r.out == "DRIVER    VOLUME NAME\n");
  for (const char* n : {"v10", "v2", "v1"}) REQUIRE(c.run({"volume", "create", n}).code == 0);
  REQUIRE(c.run({"volume", "create", "--label", "env=prod", "--label", "x=1", "p1"}).code == 0);
  write_stack(c.root(), "app", {"v1"});
  r = c.run({"volume", "ls"});
  CHECK(r.code == 0);
  CHECK(r.out ==
        "DRIVER    VOLUME NAME\n"
        "local     p1\n"
        "local     v1\n"
        "local     v2\n"
        "local     v10\n");
  r = c.run({"volume", "list", "-q", "--filter", "dangling=true"});
  CHECK(r.code == 0);
  CHECK(r.out == "p1\nv2\nv10\n");
  r = c.run({"volume", "ls", "-q", "-f", "label=env=prod", "-f", "label=x"});
  CHECK(r.out == "p1\n");
  r = c.run({"volume", "ls", "-q", "--filter", "name=v1"});
  CHECK(r.out == "v1\nv10\n");
  r = c.run({"volume", "ls", "--format", "json", "--filter", "name=p"});
  CHECK(r.code == 0);
  CHECK(r.out ==
        "{\"Driver\":\"local\",\"Labels\":\"env=prod,x=1\",\"Links\":\"N/A\",\"Mountpoint\":\"" +
            c.root() +
            "/volumes/p1/_data\",\"Name\":\"p1\",\"Scope\":\"local\",\"Size\":\"N/A\"}\n");
  r = c.run({"volume", "ls", "--filter", "color=red"});
  CHECK(r.code == 1);
  CHECK(r.out.empty());
  CHECK(r.err == "Error: invalid filter 'color'\n");
  r = c.run({"volume", "ls", "--filter", "dangling=perhaps"});
  CHECK(r.code == 1);
  CHECK(r.err == "Error: invalid filter 'dangling=perhaps'\n");
  r = c.run({"volume", "ls", "--filter", "dangling"});
  CHECK(r.code == 125);
  CHECK(r.err == "Error: bad format of filter (expected name=value)\n");
  r = c.run({"volume", "ls", "--format", "{{.Name}}"});
  CHECK(r.code == 125);
  r = c.run({"volume", "ls", "extra"});
  CHECK(r.code == 1);
  CHECK(r.err == "Error: \"layerctl volume ls\" accepts no arguments.\n");
}

TEST_CASE("volume inspect prints what exists and fails for what does not") {
  Cli c;
  REQUIRE(c.run({"volume", "create", "--label", "k=v", "one"}).code == 0);
  const std::string at = created_at(c.root(), "one");
  const std::string one =
      "    {\n"
      "        \"CreatedAt\": \"" +
      at +
      "\",\n"
      "        \"Driver\": \"local\",\n"
      "        \"Labels\": {\n"
      "            \"k\": \"v\"\n"
      "        },\n"
      "        \"Mountpoint\": \"" +
      c.root() +
      "/volumes/one/_data\",\n"
      "        \"Name\": \"one\",\n"
      "        \"Options\": null,\n"
      "        \"Scope\": \"local\"\n"
      "    }";
  auto r = c.run({"volume", "inspect", "one"});
  CHECK(r.code == 0);
  CHECK(r.out == "[\n" + one + "\n]\n");
  CHECK(r.err.empty());
  r = c.run({"volume", "inspect", "nope", "one", "gone"});
  CHECK(r.code == 1);
  CHECK(r.out == "[\n" + one + "\n]\n");
  CHECK(r.err == "Error: get nope: no such volume\nget gone: no such volume\n");
  r = c.run({"volume", "inspect", "nope"});
  CHECK(r.code == 1);
  CHECK(r.out == "[]\n");
  r = c.run({"volume", "inspect"});
  CHECK(r.code == 1);
  CHECK(r.err == "Error: \"layerctl volume inspect\" requires at least 1 argument.\n");
}

TEST_CASE("volume rm: names printed, in use refused even with -f, -f quiet for missing") {
  Cli c;
  for (const char* n : {"used", "free", "free2"}) REQUIRE(c.run({"volume", "create", n}).code == 0);
  write_file(c.root() + "/volumes/used/_data/f", 4);
  write_stack(c.root(), "web", {"used"});
  for (const char* force : {"", "-f"}) {
    CAPTURE(force);
    std::vector<std::string> args = {"volume", "rm"};
    if (*force) args.push_back(force);
    args.push_back("used");
    auto r = c.run(args);
    CHECK(r.code == 1);
    CHECK(r.out.empty());
    CHECK(r.err == "Error: remove used: volume is in use - [web]\n");
    CHECK(std::filesystem::exists(c.root() + "/volumes/used/_data/f"));
  }
  auto r = c.run({"volume", "rm", "free", "ghost", "used"});
  CHECK(r.code == 1);
  CHECK(r.out == "free\n");
  CHECK(r.err == "Error: get ghost: no such volume\nremove used: volume is in use - [web]\n");
  r = c.run({"volume", "remove", "-f", "ghost", "free2"});
  CHECK(r.code == 0);
  CHECK(r.out == "ghost\nfree2\n");
  CHECK(r.err.empty());
  r = c.run({"volume", "ls", "-q"});
  CHECK(r.out == "used\n");
  r = c.run({"volume", "rm"});
  CHECK(r.code == 1);
  CHECK(r.err == "Error: \"layerctl volume rm\" requires at least 1 argument.\n");
}

TEST_CASE("volume prune asks first, and reports what it removed as Docker does") {
  Cli c;
  auto anon = c.run({"volume", "create"});
  REQUIRE(anon.code == 0);
  const std::string a = anon.out.substr(0, 64);
  REQUIRE(c.run({"volume", "create", "--label", "keep=yes", "named"}).code == 0);
  // 2000 bytes plus a 48-byte file: 2.048kB at Docker's precision 4.
  write_file(c.root() + "/volumes/" + a + "/_data/big", 2000);
  write_file(c.root() + "/volumes/" + a + "/_data/small", 48);
  const std::string ask =
      "WARNING! This will remove anonymous local volumes not used by at least one stack.\n"
      "Are you sure you want to continue? [y/N] ";
  const std::string ask_all =
      "WARNING! This will remove all local volumes not used by at least one stack.\n"
      "Are you sure you want to continue? [y/N] ";

  auto r = c.run({"volume", "prune"}, "n\n");
  CHECK(r.code == 0);
  CHECK(r.out == ask + "Total reclaimed space: 0B\n");
  r = c.run({"volume", "prune"}, "");  // no answer at all: no
  CHECK(r.out == ask + "Total reclaimed space: 0B\n");
  r = c.run({"volume", "prune"}, "yes\n");  // Docker takes only y
  CHECK(r.out == ask + "Total reclaimed space: 0B\n");
  CHECK(c.run({"volume", "ls", "-q"}).out.find(a) != std::string::npos);

  r = c.run({"volume", "prune"}, "y\n");
  CHECK(r.code == 0);
  CHECK(r.out == ask + "Deleted Volumes:\n" + a + "\n\nTotal reclaimed space: 2.048kB\n");
  CHECK(c.run({"volume", "ls", "-q"}).out == "named\n");

  r = c.run({"volume", "prune", "-a"}, "N\n");
  CHECK(r.out == ask_all + "Total reclaimed space: 0B\n");
  r = c.run({"volume", "prune", "-a", "-f", "--filter", "label!=keep"});
  CHECK(r.code == 0);
  CHECK(r.out == "Total reclaimed space: 0B\n");
  r = c.run({"volume", "prune", "-a", "--filter", "all=1", "-f"});
  CHECK(r.code == 1);
  CHECK(r.err == "Error: conflicting options: cannot specify both --all and --filter all=1\n");
  r = c.run({"volume", "prune", "-f", "--filter", "name=x"});
  CHECK(r.code == 1);
  CHECK(r.err == "Error: invalid filter 'name'\n");
  r = c.run({"volume", "prune", "--all", "--force", "--filter", "label=keep=yes"});
  CHECK(r.code == 0);
  CHECK(r.out == "Deleted Volumes:\nnamed\n\nTotal reclaimed space: 0B\n");
  CHECK(c.run({"volume", "ls", "-q"}).out.empty());
  r = c.run({"volume", "prune", "-f", "extra"});
  CHECK(r.code == 1);
  CHECK(r.err == "Error: \"layerctl volume prune\" accepts no arguments.\n");
}

TEST_CASE("every volume command has --help") {
  Cli c;
  for (const char* cmd : {"create", "ls", "list", "inspect", "rm", "remove", "prune"}) {
    CAPTURE(cmd);
    auto r = c.run({"volume", cmd, "--help"});
    CHECK(r.code == 0);
    CHECK(r.out.find("Usage:") != std::string::npos);
  }
  auto r = c.run({"volume", "--help"});
  CHECK(r.code == 0);
  for (const char* cmd : {"create", "ls", "inspect", "rm", "prune"}) {
    CHECK(r.out.find(cmd) != std::string::npos);
  }
  CHECK_FALSE(std::filesystem::exists(c.root()));  // help changes nothing
}

TEST_CASE("concurrent volume create commands of one name make one volume") {
  Cli c;
  constexpr int kProcs = 6;
  std::vector<pid_t> pids;
  for (int i = 0; i < kProcs; ++i) {
    pids.push_back(
        start(c.dir(), c.root(), {"volume", "create", "same"}, "", "p" + std::to_string(i)));
  }
  for (int i = 0; i < kProcs; ++i) {
    auto r = finish(c.dir(), pids[static_cast<size_t>(i)], "p" + std::to_string(i));
    CAPTURE(r.err);
    CHECK(r.code == 0);
    CHECK(r.out == "same\n");
  }
  CHECK(c.run({"volume", "ls", "-q"}).out == "same\n");
  std::set<std::string> entries;
  for (const auto& e : std::filesystem::directory_iterator(c.root() + "/volumes")) {
    entries.insert(e.path().filename());
  }
  CHECK(entries == std::set<std::string>{"same"});
}

}  // namespace
}  // namespace layerfs::ctl
