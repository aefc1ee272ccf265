#include "fs/check.h"

#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#include <cstring>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <unordered_map>

#include "fs/ino.h"
#include "fs/layers.h"
#include "fs/sys.h"
#include "fs/unique_fd.h"
#include "metadata/index.h"
#include "metadata/records.h"

namespace layerfs::check {
namespace {

// One object found on disk, by upper inode number (the first name wins for
// hard links).
struct Object {
  mode_t type = 0;
  uint64_t stamp = 0;
  std::string path;  // "upper/a/b", "links/1-42" or "staging/x"
};

struct Tree {
  std::unordered_map<uint64_t, Object> objects;
  dev_t dev = 0;
};

std::string join(const std::string& dir, const std::string& name) {
  return dir.empty() ? name : dir + "/" + name;
}

// Records every object below directory `dfd` (shown as `shown`), without
// following symlinks or crossing into other filesystems: the index names
// upper objects by st_ino, which only means something on the upper's device.
Result<void> walk(int dfd, const std::string& shown, Tree* tree, uint64_t* count) {
  std::vector<std::string> names;
  LFS_TRY(sys::for_each_dirent(dfd, [&](const sys::RawDirent& d) { names.push_back(d.name); }));
  for (const auto& n : names) {
    auto sx = sys::statx_at(dfd, n, STATX_BASIC_STATS | STATX_BTIME);
    if (!sx.ok()) {
      if (sx.error() == ENOENT) continue;
      return Error{sx.error()};
    }
    const dev_t dev = makedev(sx->stx_dev_major, sx->stx_dev_minor);
    if (dev != tree->dev) continue;
    ++*count;
    const std::string path = join(shown, n);
    tree->objects.try_emplace(sx->stx_ino, Object{static_cast<mode_t>(sx->stx_mode & S_IFMT),
                                                  sys::birth_stamp(*sx), path});
    if (S_ISDIR(sx->stx_mode)) {
      LFS_ASSIGN(UniqueFd sub, sys::open_at(dfd, n, O_RDONLY | O_DIRECTORY | O_NOFOLLOW));
      LFS_TRY(walk(sub.get(), path, tree, count));
    }
  }
  return {};
}

// Whether `path` ("" = the root, else "/a/b") is a directory in the layer
// whose root is `root`, following no symlink.
bool lower_dir_at(int root, const std::string& path) {
  auto cur = sys::open_at(root, ".", O_PATH | O_DIRECTORY);
  if (!cur.ok()) return false;
  size_t i = 0;
  while (i < path.size()) {
    size_t j = path.find('/', i);
    if (j == std::string::npos) j = path.size();
    if (j > i) {
      auto next =
          sys::open_at(cur->get(), path.substr(i, j - i), O_PATH | O_DIRECTORY | O_NOFOLLOW);
      if (!next.ok()) return false;
      cur = std::move(next);
    }
    i = j + 1;
  }
  return true;
}

std::string ino_text(uint64_t ino) {
  return std::to_string(ino);
}

std::string origin_text(uint64_t st_ino) {
  return "layer " + std::to_string(ino::layer_of(st_ino)) + " inode " +
         std::to_string(st_ino & ino::kInoMask);
}

// Parses "<layer>-<ino>" (WORK/links names).
std::optional<std::pair<uint32_t, uint64_t>> parse_link_name(const std::string& name) {
  size_t dash = name.find('-');
  if (dash == std::string::npos || dash == 0 || dash + 1 >= name.size()) return std::nullopt;
  auto digits = [](const std::string& s) {
    return !s.empty() && s.size() <= 20 && s.find_first_not_of("0123456789") == std::string::npos;
  };
  const std::string a = name.substr(0, dash), b = name.substr(dash + 1);
  if (!digits(a) || !digits(b)) return std::nullopt;
  unsigned long long layer = std::stoull(a);
  if (layer > UINT32_MAX) return std::nullopt;
  return std::make_pair(static_cast<uint32_t>(layer), static_cast<uint64_t>(std::stoull(b)));
}

std::string link_name(uint32_t layer, uint64_t ino) {
  return std::to_string(layer) + "-" + std::to_string(ino);
}

class Checker {
 public:
  Checker(const Options& o, Report* r) : opt_(o), report_(r) {}

  Result<void> run(std::string* why);

 private:
  Finding& add(Kind kind, std::string what, bool harmless) {
    report_->findings.push_back(Finding{kind, std::move(what), harmless, false, {}});
    return report_->findings.back();
  }
  // Commits `b` (synced) when repairing and notes the outcome on finding `f`.
  void apply(Finding& f, const metadata::Batch& b, const std::string& did) {
    if (!opt_.repair) return;
    if (!index_) {
      f.action = "not repaired: no index";
      return;
    }
    auto r = index_->commit(b, metadata::Durability::kSynced);
    if (!r.ok()) {
      f.action = std::string("repair failed: cannot update the index: ") + strerror(r.error());
      return;
    }
    f.repaired = true;
    f.action = did;
  }
  void cannot(Finding& f, const std::string& reason) {
    if (opt_.repair) f.action = "not repaired: " + reason;
  }

  Result<void> check_staging();
  void check_records();
  void check_link_groups();
  void check_aliases();

  const Options& opt_;
  Report* report_;
  UniqueFd upper_, work_, staging_, links_;
  std::vector<UniqueFd> lower_roots_;
  std::unique_ptr<metadata::Index> index_;
  Tree tree_;  // upper tree and WORK/links
  std::map<uint64_t, std::string> staging_inos_;

  // What the index holds.
  std::map<uint64_t, metadata::ObjectRecord> records_;
  std::map<uint64_t, std::vector<std::string>> whiteouts_;
  struct Group {
    uint32_t layer;
    uint64_t lower_ino;
    metadata::LinkGroup group;
  };
  std::vector<Group> groups_;
  struct Alias {
    uint32_t layer;
    uint64_t ino;
    uint64_t alias;
  };
  std::vector<Alias> aliases_;
  std::optional<uint64_t> alias_last_;
};

Result<void> Checker::run(std::string* why) {
  constexpr std::string_view kBusy =
      "is in use by a running layerfs mount; unmount it before checking";
  LFS_ASSIGN(upper_, lock_in_use(opt_.upper, "upperdir", kBusy, why));
  LFS_ASSIGN(work_, lock_in_use(opt_.work, "workdir", kBusy, why));
  for (const auto& l : opt_.lowers) {
    auto fd = sys::open_at(AT_FDCWD, l, O_PATH | O_DIRECTORY);
    if (!fd.ok()) {
      *why = "lowerdir " + l + ": " + strerror(fd.error());
      return Error{fd.error()};
    }
    lower_roots_.push_back(std::move(fd).value());
  }
  struct stat ust;
  if (::fstat(upper_.get(), &ust) < 0) return errno_error();
  tree_.dev = ust.st_dev;

  auto index = metadata::Index::open(opt_.work + "/index", false, why);
  if (index.ok()) {
    index_ = std::move(index).value();
    report_->index_found = true;
  } else if (index.error() != ENOENT) {
    *why = "cannot open the index: " + *why;
    return Error{index.error()};
  }
  why->clear();

  // The index, all of it, damaged keys included.
  if (index_) {
    metadata::Index::Visitor v;
    v.object = [&](uint64_t ino, const metadata::ObjectRecord& r) { records_[ino] = r; };
    v.whiteout = [&](uint64_t dir, std::string_view name) { whiteouts_[dir].emplace_back(name); };
    v.link_group = [&](uint32_t layer, uint64_t lino, const metadata::LinkGroup& g) {
      groups_.push_back(Group{layer, lino, g});
    };
    v.alias = [&](uint32_t layer, uint64_t ino, uint64_t a) {
      aliases_.push_back(Alias{layer, ino, a});
    };
    v.meta = [&](std::string_view name, std::string_view value) {
      if (name != "format.alias_last") return;
      auto n = metadata::records::decode_number(value);
      if (n.ok()) alias_last_ = *n;
    };
    v.damaged = [&](const std::string& key_hex, const std::string& problem) {
      Finding& f = add(Kind::kDamagedKey, "index key " + key_hex + ": " + problem, false);
      cannot(f,
             "a damaged record cannot be rebuilt; dropping it could show deleted or hidden "
             "lower entries again");
    };
    auto scanned = index_->scan_all(v);
    if (!scanned.ok()) {
      *why = std::string("cannot read the index: ") + strerror(scanned.error());
      return Error{scanned.error()};
    }
    report_->object_records = records_.size();
    for (const auto& [dir, names] : whiteouts_) report_->whiteouts += names.size();
    report_->link_groups = groups_.size();
  }

  // The disk.
  for (auto [name, fd] : {std::pair{"staging", &staging_}, std::pair{"links", &links_}}) {
    auto sub = sys::open_at(work_.get(), name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW);
    if (sub.ok()) {
      *fd = std::move(sub).value();
    } else if (sub.error() != ENOENT) {
      *why = opt_.work + "/" + name + ": " + strerror(sub.error());
      return Error{sub.error()};
    }
  }
  // The root too: it holds the top-level whiteouts.
  auto root = sys::statx_at(upper_.get(), "", STATX_BASIC_STATS | STATX_BTIME);
  if (!root.ok()) return Error{root.error()};
  tree_.objects.try_emplace(root->stx_ino, Object{S_IFDIR, sys::birth_stamp(*root), "upper/"});
  auto walked = walk(upper_.get(), "upper", &tree_, &report_->upper_objects);
  if (!walked.ok()) {
    *why = "cannot read the upper tree " + opt_.upper + ": " + strerror(walked.error());
    return walked;
  }
  if (links_.valid()) {
    uint64_t n = 0;
    auto w = walk(links_.get(), "links", &tree_, &n);
    if (!w.ok()) {
      *why = "cannot read " + opt_.work + "/links: " + strerror(w.error());
      return w;
    }
  }

  LFS_TRY(check_staging());
  check_records();
  check_link_groups();
  check_aliases();
  return {};
}

Result<void> Checker::check_staging() {
  if (!staging_.valid()) return {};
  std::vector<std::string> names;
  LFS_TRY(sys::for_each_dirent(staging_.get(),
                               [&](const sys::RawDirent& d) { names.push_back(d.name); }));
  for (const auto& n : names) {
    auto st = sys::stat_if_exists(staging_.get(), n);
    if (!st.ok() || !*st) continue;
    const uint64_t ino = (*st)->st_ino;
    // A record is this copy's only when its birth stamp says so: the inode
    // number may be a deleted upper object's, reused (its record is then
    // stale, and reported as such by check_records).
    bool has_record = false;
    auto rec = records_.find(ino);
    if (rec != records_.end()) {
      auto sx = sys::statx_at(staging_.get(), n, STATX_INO | STATX_BTIME);
      const uint64_t stamp = sx.ok() ? sys::birth_stamp(sx.value()) : 0;
      has_record = rec->second.stamp == 0 || stamp == 0 || rec->second.stamp == stamp;
    }
    if (rec == records_.end() || has_record) staging_inos_[ino] = n;
    std::string what =
        "staging/" + n + ": an unfinished copy-up (upper inode " + ino_text(ino) + ")";
    if (has_record) what += ", with an object record";
    Finding& f = add(Kind::kStagingLeftover, what, true);
    if (!opt_.repair) continue;
    if (has_record) {
      metadata::Batch b;
      b.forget_object(ino);
      apply(f, b, "dropped its records");
      if (!f.repaired) continue;
    }
    auto removed = remove_tree_at(staging_.get(), n);
    if (!removed.ok()) {
      f.repaired = false;
      f.action = std::string("repair failed: cannot remove it: ") + strerror(removed.error());
      continue;
    }
    f.repaired = true;
    f.action = has_record ? "dropped its records and removed it" : "removed it";
  }
  return {};
}

void Checker::check_records() {
  const size_t nlowers = opt_.lowers.size();
  for (const auto& [ino, rec] : records_) {
    if (staging_inos_.count(ino)) continue;  // reported with the staging entry
    auto wh = whiteouts_.find(ino);
    const size_t nwh = wh == whiteouts_.end() ? 0 : wh->second.size();
    const std::string wh_text =
        nwh ? " and its " + std::to_string(nwh) + " whiteout" + (nwh > 1 ? "s" : "") : "";

    // A record (and its whiteouts) no live object owns: harmless, dropped by repair.
    auto stale = [&](const std::string& why) {
      Finding& f = add(Kind::kStaleRecord,
                       "object record" + wh_text + " of upper inode " + ino_text(ino) + why, true);
      metadata::Batch b;
      b.forget_object(ino);
      apply(f, b, "dropped the record" + wh_text);
    };
    auto obj = tree_.objects.find(ino);
    if (obj == tree_.objects.end()) {
      stale(": no such object in the upper tree or the links area");
      continue;
    }
    const Object& o = obj->second;
    if (rec.stamp != 0 && o.stamp != 0 && rec.stamp != o.stamp) {
      stale(" was written for an earlier object with that number (" + o.path +
            " has another birth stamp)");
      continue;
    }
    const bool dir = S_ISDIR(o.type);
    if (!dir && (rec.opaque || rec.redirect)) {
      Finding& f = add(
          Kind::kDirFlagsOnNonDir,
          o.path + " (upper inode " + ino_text(ino) + ") is not a directory but its record is " +
              (rec.opaque ? "opaque" : "") + (rec.opaque && rec.redirect ? " and " : "") +
              (rec.redirect ? "redirected to \"" + *rec.redirect + "\"" : ""),
          false);
      metadata::ObjectRecord fixed = rec;
      fixed.opaque = false;
      fixed.redirect.reset();
      metadata::Batch b;
      b.put_object(ino, fixed);
      apply(f, b,
            "removed the directory-only fields from the record (lookup ignores them on a "
            "non-directory)");
    }
    if (!dir && nwh) {
      Finding& f = add(Kind::kWhiteoutsOnNonDir,
                       o.path + " (upper inode " + ino_text(ino) + ") is not a directory but has " +
                           std::to_string(nwh) + " whiteout(s) recorded",
                       false);
      metadata::Batch b;
      for (const auto& n : wh->second) b.remove_whiteout(ino, n);
      apply(f, b, "removed the whiteouts (only a directory's whiteouts hide anything)");
    }
    if (rec.origin && *rec.origin != 0) {
      const uint64_t origin = *rec.origin;
      const uint32_t layer = ino::layer_of(origin);
      std::string bad;
      if (layer == 0) {
        bad = "an upper-layer number; an origin is always a lower object's";
      } else if (layer == ino::kAliasLayer) {
        const uint64_t a = origin & ino::kInoMask;
        bool issued = false;
        for (const auto& al : aliases_) issued = issued || al.alias == a;
        if (!issued) bad = "an alias (" + std::to_string(a) + ") the index never issued";
      } else if (nlowers && layer > nlowers) {
        bad = "of layer " + std::to_string(layer) + " but the stack has " +
              std::to_string(nlowers) + " lower layer(s)";
      }
      if (!bad.empty()) {
        Finding& f = add(Kind::kBadOrigin,
                         o.path + " (upper inode " + ino_text(ino) + ") has origin " +
                             origin_text(origin) + ": " + bad,
                         false);
        cannot(f, "the object's original identity is unknown; its st_ino stays as recorded");
      }
    }
    if (dir && rec.redirect) {
      const std::string& r = *rec.redirect;
      if (!r.empty() &&
          (r[0] != '/' || r.find("//") != std::string::npos ||
           r.find("/../") != std::string::npos || r.ends_with("/..") ||
           r.find("/./") != std::string::npos || r.ends_with("/.") || r.back() == '/')) {
        Finding& f = add(Kind::kBadRedirect,
                         o.path + " (upper inode " + ino_text(ino) + ") has redirect \"" + r +
                             "\", which is not a path of the form /a/b",
                         false);
        cannot(f, "the lower directory it should merge is unknown");
      } else if (nlowers) {
        bool found = false;
        for (const auto& root : lower_roots_) found = found || lower_dir_at(root.get(), r);
        if (!found) {
          Finding& f =
              add(Kind::kRedirectNowhere,
                  o.path + " (upper inode " + ino_text(ino) + ") is redirected to \"" +
                      (r.empty() ? "/" : r) + "\", which no lower layer holds as a directory",
                  false);
          cannot(f, "the lowers may have changed; the directory shows its upper entries only");
        }
      }
    }
  }

  // Whiteouts are vouched for by their directory's record (FORMAT.md rule 1);
  // without one the daemon ignores them.
  for (const auto& [dir, names] : whiteouts_) {
    if (records_.count(dir) || staging_inos_.count(dir)) continue;
    auto obj = tree_.objects.find(dir);
    const std::string where = obj == tree_.objects.end()
                                  ? "upper inode " + ino_text(dir) + " (no such object)"
                                  : obj->second.path + " (upper inode " + ino_text(dir) + ")";
    Finding& f = add(Kind::kOrphanWhiteouts,
                     std::to_string(names.size()) + " whiteout(s) of " + where +
                         " without an object record for the directory",
                     false);
    metadata::Batch b;
    for (const auto& n : names) b.remove_whiteout(dir, n);
    apply(f, b, "removed them (without the directory's record the mount ignores them)");
  }
}

void Checker::check_link_groups() {
  const size_t nlowers = opt_.lowers.size();
  std::set<std::string> named;  // WORK/links names some group refers to
  for (const auto& g : groups_) {
    const std::string lname = link_name(g.layer, g.lower_ino);
    const std::string what =
        "link group of layer " + std::to_string(g.layer) + " inode " + std::to_string(g.lower_ino);
    if (g.layer == 0 || g.layer >= ino::kAliasLayer || (nlowers && g.layer > nlowers)) {
      Finding& f =
          add(Kind::kBadLinkGroupLayer, what + ": the stack has no such lower layer", false);
      cannot(f, "the lowers may have changed; the group is kept");
    }
    if (g.group.upper_ino == 0) continue;
    named.insert(lname);
    std::optional<struct stat> st;
    if (links_.valid()) {
      auto s = sys::stat_if_exists(links_.get(), lname);
      if (s.ok()) st = *s;
    }
    if (!st) {
      Finding& f = add(Kind::kLinkCopyMissing,
                       what + " names its upper copy links/" + lname + " (upper inode " +
                           ino_text(g.group.upper_ino) + "), which does not exist",
                       true);
      metadata::LinkGroup fixed = g.group;
      fixed.upper_ino = 0;
      metadata::Batch b;
      b.put_link_group(g.layer, g.lower_ino, fixed);
      apply(f, b,
            "marked the group as not copied up (the mount already shows the lower file, "
            "and copies it up again at the next change)");
      continue;
    }
    if (st->st_ino != g.group.upper_ino) {
      Finding& f = add(Kind::kLinkCopyMismatch,
                       what + " says its copy is upper inode " + ino_text(g.group.upper_ino) +
                           " but links/" + lname + " is inode " + ino_text(st->st_ino),
                       false);
      metadata::LinkGroup fixed = g.group;
      fixed.upper_ino = st->st_ino;
      metadata::Batch b;
      b.put_link_group(g.layer, g.lower_ino, fixed);
      apply(f, b, "pointed the group at links/" + lname + " (the file the mount uses)");
    }
    if (!records_.count(st->st_ino) && !S_ISDIR(st->st_mode)) {
      Finding& f = add(Kind::kLinkCopyNoRecord,
                       "links/" + lname + " (upper inode " + ino_text(st->st_ino) +
                           ") has no object record keeping the lower file's st_ino",
                       false);
      if (g.layer >= 1 && g.layer < ino::kAliasLayer && ino::fits(g.lower_ino)) {
        auto sx = sys::statx_at(links_.get(), lname, STATX_BASIC_STATS | STATX_BTIME);
        metadata::ObjectRecord rec;
        rec.stamp = sx.ok() ? sys::birth_stamp(*sx) : 0;
        rec.origin = ino::encode(g.layer, g.lower_ino);
        metadata::Batch b;
        b.put_object(st->st_ino, rec);
        apply(f, b, "recorded its origin " + origin_text(*rec.origin));
      } else {
        cannot(f, "its origin would be an alias; the mount shows it under its upper number");
      }
    }
  }
  if (!links_.valid()) return;
  std::vector<std::string> names;
  auto listed =
      sys::for_each_dirent(links_.get(), [&](const sys::RawDirent& d) { names.push_back(d.name); });
  if (!listed.ok()) return;
  for (const auto& n : names) {
    if (named.count(n)) continue;
    auto st = sys::stat_if_exists(links_.get(), n);
    if (!st.ok() || !*st) continue;
    const bool group_name = parse_link_name(n).has_value();
    Finding& f =
        add(Kind::kStrayLinkCopy,
            "links/" + n +
                (group_name ? ": no link group refers to it" : ": not a link-group copy name") +
                " (" + std::to_string((*st)->st_nlink) + " link(s))",
            group_name && (*st)->st_nlink == 1);
    if (!opt_.repair) continue;
    if (!group_name || !S_ISREG((*st)->st_mode) || (*st)->st_nlink != 1) {
      cannot(f, (*st)->st_nlink != 1 ? "names in the upper tree share it"
                                     : "not something layerfs wrote; left for you to inspect");
      continue;
    }
    // The last name of a group went (drop_name removes the group record
    // first, then this file): nothing in the merged view reaches it.
    if (::unlinkat(links_.get(), n.c_str(), 0) < 0) {
      f.action = std::string("repair failed: ") + strerror(errno);
      continue;
    }
    f.repaired = true;
    f.action = "removed it (no name in the merged view reaches it)";
  }
}

void Checker::check_aliases() {
  std::map<uint64_t, int> seen;
  uint64_t max = 0;
  for (const auto& a : aliases_) {
    ++seen[a.alias];
    max = std::max(max, a.alias);
  }
  for (const auto& [alias, count] : seen) {
    if (count > 1 || alias == 0) {
      Finding& f =
          add(Kind::kBadAlias,
              "alias " + std::to_string(alias) +
                  (alias == 0 ? " is zero"
                              : " is given to " + std::to_string(count) + " different objects"),
              false);
      cannot(f, "changing an alias changes a st_ino that programs may have kept");
    }
  }
  // alias() hands out numbers from format.alias_last + 1 on: a number above it
  // would be issued a second time.
  if (!aliases_.empty() && max > alias_last_.value_or(0)) {
    Finding& f = add(Kind::kBadAlias,
                     "alias " + std::to_string(max) + " is above the last one issued (" +
                         std::to_string(alias_last_.value_or(0)) + ")",
                     false);
    cannot(f, "changing an alias changes a st_ino that programs may have kept");
  }
}

}  // namespace

const char* kind_name(Kind kind) {
  switch (kind) {
    case Kind::kStagingLeftover:
      return "staging-leftover";
    case Kind::kStaleRecord:
      return "stale-record";
    case Kind::kOrphanWhiteouts:
      return "orphan-whiteouts";
    case Kind::kWhiteoutsOnNonDir:
      return "whiteouts-on-non-directory";
    case Kind::kDirFlagsOnNonDir:
      return "directory-flags-on-non-directory";
    case Kind::kBadOrigin:
      return "bad-origin";
    case Kind::kBadRedirect:
      return "bad-redirect";
    case Kind::kRedirectNowhere:
      return "redirect-to-nowhere";
    case Kind::kLinkCopyMissing:
      return "link-copy-missing";
    case Kind::kLinkCopyMismatch:
      return "link-copy-mismatch";
    case Kind::kLinkCopyNoRecord:
      return "link-copy-without-record";
    case Kind::kStrayLinkCopy:
      return "stray-link-copy";
    case Kind::kBadLinkGroupLayer:
      return "link-group-bad-layer";
    case Kind::kBadAlias:
      return "bad-alias";
    case Kind::kDamagedKey:
      return "damaged-key";
  }
  return "unknown";
}

size_t Report::unrepaired() const {
  size_t n = 0;
  for (const auto& f : findings) n += f.repaired ? 0 : 1;
  return n;
}

size_t Report::serious() const {
  size_t n = 0;
  for (const auto& f : findings) n += f.harmless ? 0 : 1;
  return n;
}

Result<Report> check(const Options& options, std::string* why) {
  Report report;
  Checker c(options, &report);
  LFS_TRY(c.run(why));
  return report;
}

}  // namespace layerfs::check
