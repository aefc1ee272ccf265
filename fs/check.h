// The index/upper consistency checker behind `layerctl check` (an fsck).
//
// It reads the index in WORK/index (metadata/index.h), walks the upper tree,
// WORK/links and WORK/staging, and reports every way the two disagree with
// what the daemon writes (metadata/FORMAT.md "Semantics a checker can
// verify", fs/DESIGN.md). With `repair` it fixes what can be fixed without
// changing what the merged view shows of the user's data, and says what it
// did for each finding. It never deletes anything in the upper tree.
//
// The daemon must not run on the same upper/work meanwhile: check() takes the
// same exclusive flock on both directories that a mount holds for its life
// (fs/layers.cpp), and refuses with EBUSY when either is held.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "fs/result.h"

namespace layerfs::check {

struct Options {
  std::string upper;
  std::string work;
  // The stack's lower layers, top-most first. Optional: without them the
  // checks that need the lowers (origin layers, redirect targets, link group
  // layers) are skipped.
  std::vector<std::string> lowers;
  bool repair = false;
};

enum class Kind {
  kStagingLeftover,    // WORK/staging entry: a copy-up that never got published
  kStaleRecord,        // object record whose upper object is gone or is another object
  kOrphanWhiteouts,    // whiteouts of a directory that has no object record
  kWhiteoutsOnNonDir,  // whiteouts recorded for an upper object that is not a directory
  kDirFlagsOnNonDir,   // opaque / redirect recorded for a non-directory
  kBadOrigin,          // origin in layer 0, in a layer the stack lacks, or an unissued alias
  kBadRedirect,        // redirect that is not an absolute path ("" or "/a/b")
  kRedirectNowhere,    // redirect to a path that no lower holds as a directory
  kLinkCopyMissing,    // link group naming a shared copy that does not exist
  kLinkCopyMismatch,   // WORK/links/<layer>-<ino> is another object than the group says
  kLinkCopyNoRecord,   // shared copy without the object record that keeps its st_ino
  kStrayLinkCopy,      // WORK/links entry that no link group refers to
  kBadLinkGroupLayer,  // link group of a layer the stack does not have
  kBadAlias,           // alias numbers not distinct, or above format.alias_last
  kDamagedKey,         // a key or value of the index that does not decode
};

const char* kind_name(Kind kind);

struct Finding {
  Kind kind;
  // What is wrong, naming the upper path or inode and the record.
  std::string what;
  // True for what a crash of the daemon leaves by design and the daemon
  // ignores or cleans by itself (staging leftovers, stale records, a missing
  // link-group copy): nothing the merged view shows depends on it.
  bool harmless = false;
  // With repair: whether it was fixed, and what was done (or why not).
  bool repaired = false;
  std::string action;
};

struct Report {
  bool index_found = false;  // false: WORK/index does not exist (never mounted)
  // What was looked at.
  uint64_t upper_objects = 0;
  uint64_t object_records = 0;
  uint64_t whiteouts = 0;
  uint64_t link_groups = 0;
  std::vector<Finding> findings;

  bool clean() const { return findings.empty(); }
  size_t unrepaired() const;
  // Findings that are not `harmless`.
  size_t serious() const;
};

// Checks (and with options.repair, repairs) one upper/work pair. Fails with
// EBUSY when a daemon holds the directories, ENOENT/ENOTDIR for a missing
// directory, and the index's own errors (metadata/index.h) when it cannot be
// opened; *why then names the problem. Findings are not failures.
Result<Report> check(const Options& options, std::string* why);

}  // namespace layerfs::check
