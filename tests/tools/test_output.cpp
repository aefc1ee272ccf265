// Tests for tools/output.cpp: Docker's byte units and table layout, checked
// against strings Docker prints.
#include "tools/output.h"

#include <doctest/doctest.h>

#include <ctime>

namespace layerfs::ctl {
namespace {

TEST_CASE("sizes print in Docker's decimal units") {
  CHECK(human_size(0) == "0B");
  CHECK(human_size(5, 3) == "5B");
  CHECK(human_size(999, 3) == "999B");
  CHECK(human_size(1000, 3) == "1kB");
  CHECK(human_size(1500, 3) == "1.5kB");
  CHECK(human_size(7750000, 3) == "7.75MB");
  CHECK(human_size(16430000) == "16.43MB");
  CHECK(human_size(1234567890, 3) == "1.23GB");
  CHECK(human_size(2e15, 3) == "2PB");
  // Docker's known quirk, kept: a value that rounds up to 1000 of a unit.
  CHECK(human_size(999999, 3) == "1e+03kB");
}

TEST_CASE("RAM sizes in options parse with binary units") {
  CHECK(parse_ram_size("64m") == 64 * 1024 * 1024);
  CHECK(parse_ram_size("64M") == 64 * 1024 * 1024);
  CHECK(parse_ram_size("1g") == 1024LL * 1024 * 1024);
  CHECK(parse_ram_size("10k") == 10240);
  CHECK(parse_ram_size("10kb") == 10240);
  CHECK(parse_ram_size("512") == 512);
  CHECK(parse_ram_size("512b") == 512);
  CHECK(parse_ram_size("") == -1);
  CHECK(parse_ram_size("m") == -1);
  CHECK(parse_ram_size("12x") == -1);
  CHECK(parse_ram_size("12mbx") == -1);
}

TEST_CASE("tables are laid out as Docker's tabwriter does") {
  Table t({"TYPE", "TOTAL", "ACTIVE", "SIZE", "RECLAIMABLE"});
  t.add({"Layers", "0", "0", "0B", "0B"});
  t.add({"Local Volumes", "2", "1", "36B", "12B (33%)"});
  CHECK(t.render() ==
        "TYPE            TOTAL     ACTIVE    SIZE      RECLAIMABLE\n"
        "Layers          0         0         0B        0B\n"
        "Local Volumes   2         1         36B       12B (33%)\n");
  Table v({"DRIVER", "VOLUME NAME"});
  v.add({"local", "data"});
  CHECK(v.render() == "DRIVER    VOLUME NAME\nlocal     data\n");
}

TEST_CASE("durations read as Docker's CREATED column") {
  CHECK(human_duration(0) == "Less than a second");
  CHECK(human_duration(1) == "1 second");
  CHECK(human_duration(59) == "59 seconds");
  CHECK(human_duration(60) == "About a minute");
  CHECK(human_duration(119) == "About a minute");
  CHECK(human_duration(120) == "2 minutes");
  CHECK(human_duration(59 * 60) == "59 minutes");
  CHECK(human_duration(3600) == "About an hour");
  CHECK(human_duration(5400) == "2 hours");
  CHECK(human_duration(47 * 3600) == "47 hours");
  CHECK(human_duration(48 * 3600) == "2 days");
  CHECK(human_duration(14 * 86400) == "2 weeks");
  CHECK(human_duration(60 * 86400) == "2 months");
  CHECK(human_duration(800LL * 86400) == "2 years");
}

TEST_CASE("a creation time reads as how long ago") {
  CHECK(time_ago("not a time").empty());
  CHECK(time_ago("2000-01-01T00:00:00Z").find(" years ago") != std::string::npos);
  std::time_t t = std::time(nullptr) - 300;
  std::tm tm;
  ::gmtime_r(&t, &tm);
  char buf[32];
  std::strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%SZ", &tm);
  CHECK(time_ago(buf) == "5 minutes ago");
}

}  // namespace
}  // namespace layerfs::ctl
