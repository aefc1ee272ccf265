// libFuzzer target: layerctl's layer import (tools/archive.h, extract_layer_tar),
// which takes tars from anywhere, plain or gzip/zstd compressed.
//
// Each input is written to a file and extracted into an empty tree in a
// private sandbox directory; the tree is then removed. extract_layer_tar must
// either succeed or throw ctl::Error (any other exception or a sanitizer
// report is a finding), and must never write outside the tree: the sandbox
// also holds an empty directory "outside" that a hostile tar would reach
// through "../outside" or a symlink, and the sandbox must hold nothing but
// the input, the tree, the raw copy and that empty directory afterwards.
#include "tools/archive.h"

#include <dirent.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <set>
#include <string>

namespace {

namespace fs = std::filesystem;

[[noreturn]] void finding(const std::string& what) {
  std::fprintf(stderr, "fuzz_archive: %s\n", what.c_str());
  std::fflush(stderr);
  std::abort();
}

std::set<std::string> names_in(const std::string& dir) {
  std::set<std::string> names;
  DIR* d = ::opendir(dir.c_str());
  if (!d) finding("cannot read the sandbox " + dir);
  while (struct dirent* e = ::readdir(d)) {
    std::string n = e->d_name;
    if (n != "." && n != "..") names.insert(n);
  }
  ::closedir(d);
  return names;
}

// Removes a tree the extractor made, whatever modes it has (root can remove
// anything; remove_all never follows symlinks).
void remove_tree(const std::string& path) {
  std::error_code ec;
  fs::remove_all(path, ec);
  if (ec) finding("cannot remove " + path + ": " + ec.message());
}

struct Sandbox {
  std::string dir;
  Sandbox() {
    // $TMPDIR, else /dev/shm: on tmpfs an input runs about three times as fast as on a disk
    // filesystem, where creating and removing the trees costs journal writes.
    const char* tmp = std::getenv("TMPDIR");
    std::string base = tmp && *tmp ? tmp : ::access("/dev/shm", W_OK) == 0 ? "/dev/shm" : "/tmp";
    std::string tmpl = base + "/layerfs-fuzz-archive.XXXXXX";
    if (!::mkdtemp(tmpl.data())) finding("mkdtemp " + tmpl + " failed");
    dir = tmpl;
  }
  ~Sandbox() { remove_tree(dir); }
};

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static Sandbox box;  // one per process, removed at exit
  const std::string input = box.dir + "/input";
  const std::string tree = box.dir + "/tree";
  const std::string raw = box.dir + "/raw.zst";
  const std::string outside = box.dir + "/outside";

  {
    FILE* f = std::fopen(input.c_str(), "wb");
    if (!f) finding("cannot create " + input);
    if (size > 0 && std::fwrite(data, 1, size, f) != size) finding("cannot write " + input);
    std::fclose(f);
  }
  if (::mkdir(tree.c_str(), 0755) != 0) finding("cannot create " + tree);
  if (::mkdir(outside.c_str(), 0755) != 0) finding("cannot create " + outside);

  try {
    layerfs::ctl::extract_layer_tar(input, tree, raw, nullptr);
  } catch (const layerfs::ctl::Error&) {
    // Refused or damaged: the expected answer to most inputs.
  }

  const std::set<std::string> expected{"input", "tree", "raw.zst", "outside"};
  for (const auto& n : names_in(box.dir)) {
    if (!expected.count(n)) finding("the import wrote outside its tree: " + box.dir + "/" + n);
  }
  if (!names_in(outside).empty()) finding("the import wrote outside its tree, into " + outside);
  struct stat st;
  if (::lstat(outside.c_str(), &st) != 0 || !S_ISDIR(st.st_mode) || (st.st_mode & 07777) != 0755) {
    finding("the import changed " + outside);
  }

  remove_tree(tree);
  remove_tree(outside);
  ::unlink(raw.c_str());
  ::unlink(input.c_str());
  return 0;
}
