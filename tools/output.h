// Output in Docker's formats: byte sizes in decimal units (go-units'
// HumanSize), tables laid out as Docker's tabwriter does, and JSON.
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

namespace layerfs::ctl {

// Decimal units B kB MB GB TB PB EB ZB YB, `precision` significant digits,
// no space: 5B, 7.75MB, 1.5kB. As Docker prints, a value that rounds to 1000
// shows as 1e+03 of the lower unit.
std::string human_size(double bytes, int precision);
// Precision 4: what `docker system df` prints. `docker ps -s` uses 3.
inline std::string human_size(double bytes) { return human_size(bytes, 4); }

// Parses Docker-style sizes for options such as tmpfs size=64m: a number with
// an optional unit b, k, m, g, t (binary, case-insensitive, optional "b" or
// "ib" after it). Returns -1 when `text` is not a size.
int64_t parse_ram_size(const std::string& text);

// How long ago, as Docker's CREATED columns say it: "Less than a second",
// "1 second", "N seconds", "About a minute", "N minutes", "About an hour",
// "N hours" (under two days), "N days" (under two weeks), "N weeks" (under
// two months), "N months" (under two years), "N years".
std::string human_duration(int64_t seconds);
// human_duration(now - created) + " ago", for an RFC 3339 UTC time such as
// now_rfc3339() writes; "" when `rfc3339` does not parse.
std::string time_ago(const std::string& rfc3339);

// A progress line on stderr ("import: 1.2MB / 7.75MB (15%)"), rewritten in
// place, only when stderr is a terminal: a script or a pipe sees nothing.
class ProgressLine {
 public:
  explicit ProgressLine(std::string what);
  ~ProgressLine();  // ends the line, if one was shown
  ProgressLine(const ProgressLine&) = delete;
  ProgressLine& operator=(const ProgressLine&) = delete;
  // A callback for the library's progress reports (bytes done, total or 0);
  // empty when stderr is not a terminal.
  std::function<void(uint64_t done, uint64_t total)> callback();

 private:
  std::string what_;
  bool tty_;
  bool shown_ = false;
};

// A table printed like Docker's: every column but the last padded to the
// widest cell plus 3 spaces, and at least 10 characters wide.
class Table {
 public:
  explicit Table(std::vector<std::string> header) { rows_.push_back(std::move(header)); }
  void add(std::vector<std::string> row) { rows_.push_back(std::move(row)); }
  std::string render() const;

 private:
  std::vector<std::vector<std::string>> rows_;
};

}  // namespace layerfs::ctl
