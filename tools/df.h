// Disk usage, as `docker system df` reports it, for a layerctl store: layers
// (Docker's images), stacks (its containers) and local volumes. The rules are
// in tools/STORE.md ("Disk usage"); rendering lives here too so that tests
// check the exact text the CLI prints.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "tools/layer_store.h"
#include "tools/stacks.h"
#include "tools/store.h"
#include "tools/volumes.h"

namespace layerfs::ctl {

// One row of the summary table.
struct UsageRow {
  std::string type;  // "Layers", "Stacks", "Local Volumes"
  int64_t total = 0;
  int64_t active = 0;
  int64_t size = 0;
  int64_t reclaimable = 0;
};

struct LayerUsage {
  LayerInfo layer;          // stacks filled in
  int64_t shared_size = 0;  // its size when two or more stacks use it, else 0
  int64_t unique_size() const { return layer.size - shared_size; }
};

struct VolumeUsage {
  std::string name;
  int64_t links = 0;
  int64_t size = 0;
};

struct DiskUsage {
  std::vector<LayerUsage> layers;
  std::vector<StackInfo> stacks;     // every stack, with sizes
  std::vector<VolumeUsage> volumes;  // local volumes without options only
  std::vector<UsageRow> rows() const;
};

DiskUsage disk_usage(const Store& store);

// `docker system df`'s table, its `--format json` lines, and `-v`'s sections.
std::string render_df_table(const DiskUsage& usage);
std::string render_df_json(const DiskUsage& usage);
std::string render_df_verbose(const DiskUsage& usage);
std::string render_df_verbose_json(const DiskUsage& usage);

// Docker's RECLAIMABLE cell: "2kB (40%)", the percent an integer part of
// reclaimable*100/total; no percent when the total is 0.
std::string reclaimable_cell(int64_t reclaimable, int64_t total);

}  // namespace layerfs::ctl
