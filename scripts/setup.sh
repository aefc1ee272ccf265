#!/usr/bin/env bash
# Installs the Debian 12 packages layerfs needs to build and test, when any is
# missing. Installing needs root (or sudo); when everything is present it needs
# nothing and changes nothing. Arguments name more packages to make sure of
# (bench/setup.sh adds the benchmark's).
set -euo pipefail

packages=(
  cmake g++ make pkgconf
  libfuse3-dev fuse3
  librocksdb-dev libxxhash-dev libzstd-dev
  doctest-dev
  libarchive-dev libcli11-dev nlohmann-json3-dev libssl-dev
  dpkg-dev debhelper lintian umoci
  clang-14 libclang-rt-14-dev gdb
)
packages+=("$@")

missing=()
for p in "${packages[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$p")
  fi
done
[ ${#missing[@]} -eq 0 ] && exit 0

echo "setup: installing missing Debian packages: ${missing[*]}" >&2
if [ "$(id -u)" -eq 0 ]; then
  as_root=()
elif command -v sudo >/dev/null 2>&1; then
  as_root=(sudo)
else
  echo "setup: these packages are missing and installing them needs root: ${missing[*]}" >&2
  exit 1
fi
export DEBIAN_FRONTEND=noninteractive
"${as_root[@]}" apt-get update -qq
"${as_root[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}"
