// Reading /proc/self/mountinfo (tools/mountinfo.h).
#include "tools/mountinfo.h"

#include <algorithm>
#include <cstdlib>
#include <fstream>
#include <sstream>

namespace layerfs::ctl {
namespace {

bool is_octal(char c) {
  return c >= '0' && c <= '7';
}

// mountinfo escapes space, tab, newline and backslash as \ooo.
std::string unescape_mountinfo(const std::string& s) {
  std::string out;
  for (size_t i = 0; i < s.size(); ++i) {
    if (s[i] == '\\' && i + 3 < s.size() && is_octal(s[i + 1]) && is_octal(s[i + 2]) &&
        is_octal(s[i + 3])) {
      out += static_cast<char>(std::strtol(s.substr(i + 1, 3).c_str(), nullptr, 8));
      i += 3;
    } else {
      out += s[i];
    }
  }
  return out;
}

}  // namespace

std::vector<MountLine> read_mountinfo() {
  std::vector<MountLine> out;
  std::ifstream in("/proc/self/mountinfo");
  std::string line;
  while (std::getline(in, line)) {
    std::istringstream ls(line);
    std::vector<std::string> f;
    std::string w;
    while (ls >> w) f.push_back(w);
    auto dash = std::find(f.begin(), f.end(), "-");
    if (f.size() < 5 || dash == f.end() || f.end() - dash < 3) continue;
    MountLine m;
    m.id = std::atoi(f[0].c_str());
    m.parent = std::atoi(f[1].c_str());
    m.mountpoint = unescape_mountinfo(f[4]);
    m.fstype = unescape_mountinfo(*(dash + 1));
    m.source = unescape_mountinfo(*(dash + 2));
    out.push_back(std::move(m));
  }
  return out;
}

}  // namespace layerfs::ctl
