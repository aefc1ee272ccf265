// Docker's output formats (tools/output.h): sizes, relative times, tables and
// progress lines.
#include "tools/output.h"

#include <algorithm>
#include <cctype>
#include <cmath>
#include <cstdio>
#include <ctime>

#include <unistd.h>

namespace layerfs::ctl {

std::string human_size(double bytes, int precision) {
  static const char* kUnits[] = {"B", "kB", "MB", "GB", "TB", "PB", "EB", "ZB", "YB"};
  int i = 0;
  while (bytes >= 1000.0 && i < 8) {
    bytes /= 1000.0;
    ++i;
  }
  char buf[64];
  std::snprintf(buf, sizeof buf, "%.*g%s", precision, bytes, kUnits[i]);
  return buf;
}

int64_t parse_ram_size(const std::string& text) {
  size_t i = 0;
  while (i < text.size() && (std::isdigit(static_cast<unsigned char>(text[i])) || text[i] == '.')) {
    ++i;
  }
  if (i == 0) return -1;
  double n;
  try {
    n = std::stod(text.substr(0, i));
  } catch (...) {
    return -1;
  }
  std::string unit;
  for (char c : text.substr(i)) unit += static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  double mult = 1;
  if (!unit.empty()) {
    const std::string units = "bkmgtp";
    size_t u = units.find(unit[0]);
    if (u == std::string::npos) return -1;
    mult = std::pow(1024.0, static_cast<double>(u));
    std::string rest = unit.substr(1);
    if (!(rest.empty() || rest == "b" || rest == "ib") || (unit[0] == 'b' && !rest.empty())) {
      return -1;
    }
  }
  return static_cast<int64_t>(n * mult);
}

std::string human_duration(int64_t seconds) {
  auto n = [](int64_t v, const char* unit) { return std::to_string(v) + " " + unit; };
  if (seconds < 1) return "Less than a second";
  if (seconds == 1) return "1 second";
  if (seconds < 60) return n(seconds, "seconds");
  const int64_t minutes = seconds / 60;
  if (minutes == 1) return "About a minute";
  if (minutes < 60) return n(minutes, "minutes");
  const int64_t hours = (seconds + 1800) / 3600;  // to the nearest hour
  if (hours == 1) return "About an hour";
  if (hours < 48) return n(hours, "hours");
  if (hours < 24 * 7 * 2) return n(hours / 24, "days");
  if (hours < 24 * 30 * 2) return n(hours / 24 / 7, "weeks");
  if (hours < 24 * 365 * 2) return n(hours / 24 / 30, "months");
  return n(seconds / 3600 / 24 / 365, "years");
}

std::string time_ago(const std::string& rfc3339) {
  std::tm tm{};
  const char* end = ::strptime(rfc3339.c_str(), "%Y-%m-%dT%H:%M:%S", &tm);
  if (end == nullptr) return "";
  const std::time_t then = ::timegm(&tm);
  const std::time_t now = std::time(nullptr);
  return human_duration(now > then ? now - then : 0) + " ago";
}

ProgressLine::ProgressLine(std::string what) : what_(std::move(what)), tty_(::isatty(2) == 1) {}

ProgressLine::~ProgressLine() {
  if (shown_) std::fputs("\n", stderr);
}

std::function<void(uint64_t, uint64_t)> ProgressLine::callback() {
  if (!tty_) return {};
  return [this](uint64_t done, uint64_t total) {
    std::string line = what_ + ": " + human_size(static_cast<double>(done), 3);
    if (total > 0) {
      line += " / " + human_size(static_cast<double>(total), 3) + " (" +
              std::to_string(done >= total ? 100 : done * 100 / total) + "%)";
    }
    std::fprintf(stderr, "\r\033[K%s", line.c_str());
    std::fflush(stderr);
    shown_ = true;
  };
}

std::string Table::render() const {
  size_t cols = 0;
  for (const auto& r : rows_) cols = std::max(cols, r.size());
  std::vector<size_t> width(cols, 0);
  for (const auto& r : rows_) {
    for (size_t c = 0; c + 1 < r.size(); ++c) width[c] = std::max(width[c], r[c].size() + 3);
  }
  for (auto& w : width) w = std::max<size_t>(w, 10);
  std::string out;
  for (const auto& r : rows_) {
    std::string line;
    for (size_t c = 0; c < r.size(); ++c) {
      line += r[c];
      if (c + 1 < r.size()) line.append(width[c] - r[c].size(), ' ');
    }
    out += line + "\n";
  }
  return out;
}

}  // namespace layerfs::ctl
