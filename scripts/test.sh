#!/usr/bin/env bash
# Builds layerfs and runs every test: unit tests and mounted tests. Mounted
# tests need root and /dev/fuse; without them they are skipped, except when
# CI=true, where they fail loudly.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
scripts/build.sh
cd build
exec ctest --output-on-failure -j"${LAYERFS_JOBS:-2}" "$@"
