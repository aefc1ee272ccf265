#!/usr/bin/env bash
# Configures and builds layerfs in build/ (arguments: the targets to build; all
# when none). Used by demo.sh and test.sh.
set -euo pipefail
cd "$(dirname "$0")/.."
jobs="${LAYERFS_JOBS:-2}"
cmake -S . -B build -DCMAKE_BUILD_TYPE=RelWithDebInfo -DLAYERFS_WERROR=ON >/dev/null
if [ $# -eq 0 ]; then
  cmake --build build -j"$jobs"
else
  for t in "$@"; do cmake --build build -j"$jobs" --target "$t"; done
fi
