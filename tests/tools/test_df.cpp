// Tests for tools/df.cpp: `docker system df`'s counts and text over a store
// whose records and trees the test writes itself, so every expected number
// is computed here independently of the code under test.
#include "tools/df.h"

#include <doctest/doctest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <fstream>

#include "tests/support/temp_dir.h"
#include "tools/output.h"

namespace layerfs::ctl {
namespace {

const std::string kHexA(64, 'a'), kHexB(64, 'b'), kHexC(64, 'c');

void put(const std::string& path, const std::string& data) { std::ofstream(path) << data; }

void mkdirs(const std::string& path) {
  std::string p;
  for (size_t i = 1; i <= path.size(); ++i) {
    if (i == path.size() || path[i] == '/') {
      p = path.substr(0, i);
      ::mkdir(p.c_str(), 0755);
    }
  }
}

json layer(const std::string& hex, int64_t size) {
  return {{"id", "sha256:" + hex},
          {"created", "2026-01-01T00:00:00Z"},
          {"size", size},
          {"tar_size", size + 1024},
          {"source", "import:/x"}};
}

json stack(const std::string& name, std::vector<std::string> layers,
           std::vector<std::string> volumes) {
  return {{"name", name},          {"layers", layers},
          {"created", "2026-01-01T00:00:00Z"}, {"volumes", volumes},
          {"anonymous_volumes", json::array()}, {"mount", nullptr}};
}

json volume(const Store& s, const std::string& name, json options) {
  return {{"CreatedAt", "2026-01-01T00:00:00Z"},
          {"Driver", "local"},
          {"Labels", nullptr},
          {"Mountpoint", s.volume_dir(name) + "/_data"},
          {"Name", name},
          {"Options", options},
          {"Scope", "local"}};
}

// Layers A (1000 B, used by two stacks), B (500 B, used by one), C (250 B,
// unused); stacks s1 (writes 5 B) and s2 (writes 7 B), neither mounted;
// volumes v1 (3 B, used by s1), v2 (11 B, unused), t (tmpfs: not counted).
void populate(const std::string& root) {
  auto s = Store::open(root, Access::kWrite);
  for (const auto& [name, bytes] : {std::pair{"s1", "12345"}, std::pair{"s2", "1234567"}}) {
    mkdirs(s->stack_dir(name) + "/upper");
    mkdirs(s->stack_dir(name) + "/work");
    put(s->stack_dir(name) + "/upper/f", bytes);
  }
  for (const auto& [name, bytes] : {std::pair{"v1", "123"}, std::pair{"v2", "12345678901"}}) {
    mkdirs(s->volume_dir(name) + "/_data");
    put(s->volume_dir(name) + "/_data/f", bytes);
  }
  mkdirs(s->volume_dir("t") + "/_data");
  for (const auto& hex : {kHexA, kHexB, kHexC}) mkdirs(s->layer_dir("sha256:" + hex) + "/tree");
  s->write({{"layer/sha256:" + kHexA, layer(kHexA, 1000)},
            {"layer/sha256:" + kHexB, layer(kHexB, 500)},
            {"layer/sha256:" + kHexC, layer(kHexC, 250)},
            {"stack/s1", stack("s1", {"sha256:" + kHexA, "sha256:" + kHexB}, {"v1"})},
            {"stack/s2", stack("s2", {"sha256:" + kHexA}, {})},
            {"volume/v1", volume(*s, "v1", nullptr)},
            {"volume/v2", volume(*s, "v2", nullptr)},
            {"volume/t", volume(*s, "t", {{"type", "tmpfs"}, {"device", "tmpfs"}})}});
}

TEST_CASE("df counts layers, stacks and local volumes as Docker counts images, containers, volumes") {
  test::TempDir t("df");
  populate(t.path());
  auto s = Store::open(t.path(), Access::kRead);
  DiskUsage u = disk_usage(*s);
  auto rows = u.rows();
  REQUIRE(rows.size() == 3);
  CHECK(rows[0].type == "Layers");
  CHECK(rows[0].total == 3);
  CHECK(rows[0].active == 2);
  CHECK(rows[0].size == 1750);
  CHECK(rows[0].reclaimable == 250);
  CHECK(rows[1].type == "Stacks");
  CHECK(rows[1].total == 2);
  CHECK(rows[1].active == 0);
  CHECK(rows[1].size == 12);
  CHECK(rows[1].reclaimable == 12);
  CHECK(rows[2].type == "Local Volumes");
  CHECK(rows[2].total == 2);  // the tmpfs volume is not measured
  CHECK(rows[2].active == 1);
  CHECK(rows[2].size == 14);
  CHECK(rows[2].reclaimable == 11);

  CHECK(render_df_table(u) ==
        "TYPE            TOTAL     ACTIVE    SIZE      RECLAIMABLE\n"
        "Layers          3         2         1.75kB    250B (14%)\n"
        "Stacks          2         0         12B       12B (100%)\n"
        "Local Volumes   2         1         14B       11B (78%)\n");
  CHECK(render_df_json(u) ==
        "{\"Active\":\"2\",\"Reclaimable\":\"250B (14%)\",\"Size\":\"1.75kB\","
        "\"TotalCount\":\"3\",\"Type\":\"Layers\"}\n"
        "{\"Active\":\"0\",\"Reclaimable\":\"12B (100%)\",\"Size\":\"12B\","
        "\"TotalCount\":\"2\",\"Type\":\"Stacks\"}\n"
        "{\"Active\":\"1\",\"Reclaimable\":\"11B (78%)\",\"Size\":\"14B\","
        "\"TotalCount\":\"2\",\"Type\":\"Local Volumes\"}\n");
}

TEST_CASE("df -v shows each layer's shared and unique size, each stack and each volume") {
  test::TempDir t("df");
  populate(t.path());
  auto s = Store::open(t.path(), Access::kRead);
  DiskUsage u = disk_usage(*s);
  REQUIRE(u.layers.size() == 3);
  for (const auto& l : u.layers) {
    if (l.layer.id == "sha256:" + kHexA) {
      CHECK(l.shared_size == 1000);  // two stacks use it
      CHECK(l.unique_size() == 0);
    } else {
      CHECK(l.shared_size == 0);
      CHECK(l.unique_size() == l.layer.size);
    }
  }
  const std::string v = render_df_verbose(u);
  CHECK(v.find("Layers space usage:\n\nLAYER ID       NAME      CREATED") == 0);
  CHECK(v.find(kHexA.substr(0, 12) + "   <none>") != std::string::npos);
  CHECK(v.find("1kB       1kB           0B            2\n") != std::string::npos);
  CHECK(v.find("\nStacks space usage:\n\nNAME      LAYERS    LOCAL VOLUMES   SIZE") !=
        std::string::npos);
  CHECK(v.find("s1        2         1               5B        ") != std::string::npos);
  CHECK(v.find("Not mounted\n") != std::string::npos);
  CHECK(v.find("\nLocal Volumes space usage:\n\nVOLUME NAME   LINKS     SIZE\n"
               "v1            1         3B\n"
               "v2            0         11B\n") != std::string::npos);
  json j = json::parse(render_df_verbose_json(u));
  CHECK(j["Layers"].size() == 3);
  CHECK(j["Stacks"].size() == 2);
  CHECK(j["Volumes"].size() == 2);
}

TEST_CASE("an empty store reads as Docker's empty df") {
  test::TempDir t("df");
  auto s = Store::open(t.path() + "/none", Access::kRead);
  CHECK(render_df_table(disk_usage(*s)) ==
        "TYPE            TOTAL     ACTIVE    SIZE      RECLAIMABLE\n"
        "Layers          0         0         0B        0B\n"
        "Stacks          0         0         0B        0B\n"
        "Local Volumes   0         0         0B        0B\n");
  CHECK(reclaimable_cell(2000, 5000) == "2kB (40%)");
}

}  // namespace
}  // namespace layerfs::ctl
