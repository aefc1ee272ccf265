// Disk usage of a store, counted and printed as `docker system df` does.
#include "tools/df.h"

#include "tools/output.h"

namespace layerfs::ctl {

namespace {

std::string short_id(const std::string& id) {
  const std::string hex = id.rfind("sha256:", 0) == 0 ? id.substr(7) : id;
  return hex.substr(0, 12);
}

bool has_options(const json& record) {
  auto it = record.find("Options");
  return it != record.end() && it->is_object() && !it->empty();
}

}  // namespace

std::string reclaimable_cell(int64_t reclaimable, int64_t total) {
  if (total <= 0) return human_size(static_cast<double>(reclaimable));
  return human_size(static_cast<double>(reclaimable)) + " (" +
         std::to_string(reclaimable * 100 / total) + "%)";
}

DiskUsage disk_usage(const Store& store) {
  DiskUsage u;
  for (auto& l : list_layers(store)) {
    LayerUsage lu;
    lu.layer = std::move(l);
    lu.shared_size = lu.layer.stacks.size() >= 2 ? lu.layer.size : 0;
    u.layers.push_back(std::move(lu));
  }
  u.stacks = list_stacks(store, /*all=*/true, /*with_sizes=*/true);
  for (const auto& v : list_volumes(store, VolumeFilter{})) {
    // Docker measures only local volumes whose data it holds itself.
    if (v.record.value("Driver", "local") != "local" || has_options(v.record)) continue;
    VolumeUsage vu;
    vu.name = v.name();
    vu.links = v.links;
    vu.size = volume_size(store, vu.name);
    u.volumes.push_back(std::move(vu));
  }
  return u;
}

std::vector<UsageRow> DiskUsage::rows() const {
  UsageRow l{"Layers"}, s{"Stacks"}, v{"Local Volumes"};
  for (const auto& x : layers) {
    ++l.total;
    l.size += x.layer.size;
    if (x.layer.stacks.empty()) {
      l.reclaimable += x.layer.size;
    } else {
      ++l.active;
    }
  }
  for (const auto& x : stacks) {
    ++s.total;
    const int64_t rw = x.size_rw > 0 ? x.size_rw : 0;
    s.size += rw;
    if (x.mountpoint) {
      ++s.active;
    } else {
      s.reclaimable += rw;
    }
  }
  for (const auto& x : volumes) {
    ++v.total;
    const int64_t size = x.size > 0 ? x.size : 0;
    v.size += size;
    if (x.links > 0) {
      ++v.active;
    } else {
      v.reclaimable += size;
    }
  }
  return {l, s, v};
}

std::string render_df_table(const DiskUsage& usage) {
  Table t({"TYPE", "TOTAL", "ACTIVE", "SIZE", "RECLAIMABLE"});
  for (const auto& r : usage.rows()) {
    t.add({r.type, std::to_string(r.total), std::to_string(r.active),
           human_size(static_cast<double>(r.size)), reclaimable_cell(r.reclaimable, r.size)});
  }
  return t.render();
}

std::string render_df_json(const DiskUsage& usage) {
  std::string out;
  for (const auto& r : usage.rows()) {
    // Docker prints every field as a string, keys in alphabetical order.
    json j = {{"Active", std::to_string(r.active)},
              {"Reclaimable", reclaimable_cell(r.reclaimable, r.size)},
              {"Size", human_size(static_cast<double>(r.size))},
              {"TotalCount", std::to_string(r.total)},
              {"Type", r.type}};
    out += j.dump() + "\n";
  }
  return out;
}

std::string render_df_verbose(const DiskUsage& usage) {
  std::string out = "Layers space usage:\n\n";
  Table layers({"LAYER ID", "NAME", "CREATED", "SIZE", "SHARED SIZE", "UNIQUE SIZE", "STACKS"});
  for (const auto& l : usage.layers) {
    layers.add({short_id(l.layer.id), l.layer.name.value_or("<none>"), time_ago(l.layer.created),
                human_size(static_cast<double>(l.layer.size), 3),
                human_size(static_cast<double>(l.shared_size), 3),
                human_size(static_cast<double>(l.unique_size()), 3),
                std::to_string(l.layer.stacks.size())});
  }
  out += layers.render() + "\nStacks space usage:\n\n";
  Table stacks({"NAME", "LAYERS", "LOCAL VOLUMES", "SIZE", "CREATED", "STATUS"});
  for (const auto& s : usage.stacks) {
    stacks.add({s.name, std::to_string(s.layers.size()), std::to_string(s.volumes.size()),
                human_size(static_cast<double>(s.size_rw > 0 ? s.size_rw : 0), 3),
                time_ago(s.created),
                s.mountpoint ? "Mounted at " + *s.mountpoint : "Not mounted"});
  }
  out += stacks.render() + "\nLocal Volumes space usage:\n\n";
  Table volumes({"VOLUME NAME", "LINKS", "SIZE"});
  for (const auto& v : usage.volumes) {
    volumes.add({v.name, std::to_string(v.links), human_size(static_cast<double>(v.size))});
  }
  out += volumes.render();
  return out;
}

std::string render_df_verbose_json(const DiskUsage& usage) {
  json layers = json::array(), stacks = json::array(), volumes = json::array();
  for (const auto& l : usage.layers) {
    json j = l.layer.to_json();
    j["shared_size"] = l.shared_size;
    j["unique_size"] = l.unique_size();
    layers.push_back(std::move(j));
  }
  for (const auto& s : usage.stacks) {
    stacks.push_back({{"Name", s.name},
                      {"Layers", s.layers},
                      {"Volumes", s.volumes},
                      {"CreatedAt", s.created},
                      {"Mountpoint", s.mountpoint ? json(*s.mountpoint) : json(nullptr)},
                      {"SizeRw", s.size_rw}});
  }
  for (const auto& v : usage.volumes) {
    volumes.push_back({{"Name", v.name}, {"Links", v.links}, {"Size", v.size}});
  }
  json all = {{"Layers", layers}, {"Stacks", stacks}, {"Volumes", volumes}};
  return all.dump() + "\n";
}

}  // namespace layerfs::ctl
