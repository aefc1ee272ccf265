// Sizes as Docker's classic graph driver counts them: the sum of st_size of
// every non-directory, each inode once, directories and whiteouts nothing
// (a whiteout: an empty ".wh.*" file or a character device 0/0), symlinks
// their st_size (the length of their target).
//
// A stack's writable size (SIZE) is kept by the layerfs daemon as it works
// (fs/usage.h) and published in WORK/usage, so asking for it reads a file; the
// tree is walked only when no count can be trusted: the stack was never
// mounted, or its daemon died without leaving a final count.
#pragma once

#include <cstdint>
#include <string>

namespace layerfs::ctl {

// Walks `dir` (not following symlinks, not crossing filesystems).
int64_t tree_size(const std::string& dir);

// SIZE of a writable layer: the live or final count in `work`/usage, else a
// walk of `upper` and of `work`/links (whose result is then left in
// `work`/usage for next time, when no daemon is using `work`).
int64_t writable_size(const std::string& upper, const std::string& work);

}  // namespace layerfs::ctl
