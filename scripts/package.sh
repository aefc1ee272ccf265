#!/usr/bin/env bash
# Builds the Debian package from a clean copy of this working tree (tracked and
# new files, nothing ignored), runs its unit tests as part of the build, and
# checks it with lintian, failing on any error. The .deb files land in
# build/package/ (or the directory given with --out). --nocheck builds without
# the tests (the test command uses it: it has just run them on the same tree).
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
out="$root/build/package"
options="parallel=${LAYERFS_JOBS:-2}"
while [ $# -gt 0 ]; do
  case "$1" in
    --out) out="$2"; shift 2 ;;
    --nocheck) options="nocheck $options"; shift ;;
    *) echo "package: unknown argument: $1" >&2; exit 2 ;;
  esac
done
"$root/scripts/setup.sh"

version="$(cd "$root" && dpkg-parsechangelog -S Version)"
work="$(mktemp -d /tmp/layerfs-package.XXXXXX)"
trap 'rm -rf "$work"' EXIT
src="$work/layerfs-$version"
mkdir -p "$src"
(cd "$root" && git ls-files -z --cached --others --exclude-standard |
   xargs -0 -I{} cp --parents -P -- {} "$src/")

(cd "$src" && DEB_BUILD_OPTIONS="$options" dpkg-buildpackage -us -uc -b) \
  > "$work/build.log" 2>&1 || { tail -60 "$work/build.log"; echo "package: dpkg-buildpackage failed" >&2; exit 1; }
{ grep -E "tests passed|tests failed" "$work/build.log" || true; } | sed 's/^/package: unit tests: /'

# Errors fail the build; warnings are shown.
lintian --fail-on error --display-level '>=warning' "$work"/layerfs_"${version}"_*.changes 2>&1 |
  grep -v "running with root privileges" || true
lintian --fail-on error "$work"/layerfs_"${version}"_*.changes >/dev/null 2>&1 ||
  { echo "package: lintian reports errors" >&2; exit 1; }

mkdir -p "$out"
cp "$work"/*.deb "$out/"
echo "package: built and checked: $(cd "$out" && ls *.deb | tr '\n' ' ')"
