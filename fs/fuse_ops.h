// The FUSE low-level entry points: thin adapters from requests to Filesystem
// calls, and the only place that turns a Result into a fuse_reply_*.
#pragma once

#define FUSE_USE_VERSION 312
#include <fuse_lowlevel.h>

#include "fs/filesystem.h"

namespace layerfs {

struct FuseContext {
  Filesystem* fs = nullptr;
  // Entry and attribute timeout (seconds), also for negative entries. Every
  // change goes through this daemon and the kernel updates its caches for the
  // requests it sends, so these can be long (fs/DESIGN.md, "Kernel caches").
  double timeout = 86400.0;
  // For notifications to the kernel; set once the session exists.
  fuse_session* session = nullptr;
};

// Makes `context.fs` tell the kernel about attribute changes it did not cause.
void install_invalidator(FuseContext& context);

// The operations table; userdata must be a FuseContext*.
const fuse_lowlevel_ops& fuse_operations();

}  // namespace layerfs
