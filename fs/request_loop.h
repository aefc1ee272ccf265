// The daemon's request loop: one reader at a time, requests answered inline,
// blocked readers replaced.
//
// libfuse's multi-threaded loop lets every idle worker wait in read() on
// /dev/fuse; the kernel hands each request to the worker that has waited
// longest, so a client issuing one request at a time talks to a different,
// cold thread on every request (on another CPU, through an inter-processor
// wake-up). Measured on 2 cores: creating 10,000 files cost the client 6x the
// system time of a single-threaded loop, and untar was 4x slower under load.
// A single-threaded loop, though, lets one slow request (a copy-up of a large
// file, an fsync, a lookup waiting for the disk or for an inode lock held by
// such a request) stall every other client.
//
// This loop keeps one thread, the leader, reading and answering requests
// inline, which is what a sequential client wants. Followers sleep on a
// condition variable, never in read(). The leader gives up its place before a
// request known to block (fsync, fsyncdir), and a monitor (the thread that
// calls run()) replaces a leader that has been busy with one request for more
// than a tick (1 ms while requests flow, up to 100 ms after a quiet spell): a
// follower (or a new thread, up to the limit) becomes the leader and the old
// one joins the followers when it is done. So at most one thread is ever in
// read(), and a blocked request holds up the others for about a tick.
#pragma once

#ifndef FUSE_USE_VERSION
#define FUSE_USE_VERSION 312
#endif
#include <fuse_lowlevel.h>

namespace layerfs {

// Runs the loop until the session ends (unmount, or fuse_session_exit() from a
// signal handler). `max_threads` bounds the threads answering requests at the
// same time (at least 1). Call from the main thread: the process's signals are
// taken there (every loop thread blocks them). Returns 0, or a negative errno
// when reading from /dev/fuse failed.
int run_request_loop(fuse_session* se, unsigned max_threads);

}  // namespace layerfs
