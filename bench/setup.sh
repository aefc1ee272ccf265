#!/usr/bin/env bash
# Installs the Debian 12 packages the benchmark (bench/run) needs, when any is
# missing: the peers it compares with, fio, python3 and a C compiler for the
# workload drivers. Needs root (or sudo) only when something is missing.
set -euo pipefail

packages=(fuse3 fuse-overlayfs fio python3 gcc libc6-dev tar coreutils util-linux)

missing=()
for p in "${packages[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$p")
  fi
done
[ ${#missing[@]} -eq 0 ] && exit 0

echo "bench/setup: installing missing Debian packages: ${missing[*]}" >&2
if [ "$(id -u)" -eq 0 ]; then
  as_root=()
elif command -v sudo >/dev/null 2>&1; then
  as_root=(sudo)
else
  echo "bench/setup: these packages are missing and installing them needs root: ${missing[*]}" >&2
  exit 1
fi
export DEBIAN_FRONTEND=noninteractive
"${as_root[@]}" apt-get update -qq
"${as_root[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}"
