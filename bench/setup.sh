#!/usr/bin/env bash
# Installs the Debian 12 packages the benchmark (bench/run) needs, when any is
# missing: layerfs's own, the peers it compares with, fio, python3 and a C
# compiler for the workload drivers. Needs root (or sudo) only when something
# is missing.
set -euo pipefail
exec "$(dirname "$0")/../scripts/setup.sh" \
  fuse3 fuse-overlayfs fio python3 gcc libc6-dev tar coreutils util-linux
