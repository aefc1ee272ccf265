// FUSE passthrough with libfuse 3.14, which predates it.
//
// Since Linux 6.9 a FUSE daemon may answer an open with a backing file: the
// kernel then does that file's reads, writes and mmap on the backing file
// itself, without a request to the daemon. Linux asks for it in INIT
// (FUSE_PASSTHROUGH in flags2); the daemon agrees by setting the flag and a
// stacking depth in its INIT answer, registers backing files with an ioctl on
// /dev/fuse (sys::fuse_backing_open) and puts FOPEN_PASSTHROUGH and the
// backing id in its open answers (struct fuse_open_out's `backing_id`, the
// field libfuse 3.14 calls padding).
//
// libfuse 3.14 knows none of that, so layerfs hooks the session's reads and
// writes of /dev/fuse (fuse_session_custom_io, part of its public API): the
// read hook notes whether the kernel's INIT offers passthrough; the write hook
// adds the flag to the INIT answer, and the backing id to the open or create
// answer that the same thread sends right after mark_open_reply().
//
// Which opens use it is Filesystem::start_io's choice (upper files; lower files
// too on a read-only mount, which never copies up).
// Registering a backing file needs CAP_SYS_ADMIN: a daemon without it, or a
// kernel without passthrough, answers every open as before.
#pragma once

#ifndef FUSE_USE_VERSION
#define FUSE_USE_VERSION 312
#endif
#include <fuse_lowlevel.h>

namespace layerfs::passthrough {

// Hooks the session's /dev/fuse I/O; call after fuse_session_mount and before
// the first request is read. With `wanted` false the hooks never offer
// passthrough. Returns false (and leaves libfuse's I/O as it was) on failure.
bool hook(fuse_session* se, bool wanted);

// Called with the FUSE device once INIT agreed on passthrough (before any
// open can arrive); set before hook().
void on_enabled(void (*fn)(int dev_fd, void* arg), void* arg);

// The next answer this thread sends, if it is a successful OPEN or CREATE
// answer, opens the file with backing file `backing_id`. Call just before
// fuse_reply_open / fuse_reply_create, and clear_open_reply() just after.
void mark_open_reply(int backing_id);
void clear_open_reply();

}  // namespace layerfs::passthrough
