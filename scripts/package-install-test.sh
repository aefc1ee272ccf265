#!/usr/bin/env bash
# Installs the layerfs package on a fresh Debian 12 system that has never built
# the project (a minimal debootstrap chroot), then mounts a stack through an
# fstab line with `mount DIR` and `mount -a`, checks the merged view, and
# unmounts. Needs root, /dev/fuse and access to a Debian mirror; takes a few
# minutes, so it is not part of scripts/test.sh.
#
# Usage: scripts/package-install-test.sh [PACKAGE.deb]
#   (without an argument the package is built first with scripts/package.sh)
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
[ "$(id -u)" -eq 0 ] || { echo "install test: needs root" >&2; exit 1; }
[ -c /dev/fuse ] || { echo "install test: needs /dev/fuse" >&2; exit 1; }

if ! command -v debootstrap >/dev/null; then
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends debootstrap >/dev/null
fi
deb="${1:-}"
if [ -z "$deb" ]; then
  "$root/scripts/package.sh"
  deb="$(ls "$root"/build/package/layerfs_*_*.deb | grep -v dbgsym | head -1)"
fi
[ -f "$deb" ] || { echo "install test: no package at $deb" >&2; exit 1; }

mirror="${DEBIAN_MIRROR:-http://deb.debian.org/debian}"
chroot_dir="$(mktemp -d /tmp/layerfs-install-test.XXXXXX)"
cleanup() {
  # Anything still mounted below the chroot goes, deepest first.
  grep -o " $chroot_dir[^ ]*" /proc/mounts | sort -r | while read -r m; do
    umount "$m" 2>/dev/null || umount -l "$m" 2>/dev/null || true
  done
  rm -rf --one-file-system "$chroot_dir"
}
trap cleanup EXIT

echo "install test: creating a fresh Debian 12 system in $chroot_dir"
debootstrap --variant=minbase bookworm "$chroot_dir" "$mirror" > "$chroot_dir.log" 2>&1 ||
  { tail -20 "$chroot_dir.log"; rm -f "$chroot_dir.log"; exit 1; }
rm -f "$chroot_dir.log"
mount -t proc proc "$chroot_dir/proc"
mount -t sysfs sys "$chroot_dir/sys"
mount --rbind /dev "$chroot_dir/dev"
cp /etc/resolv.conf "$chroot_dir/etc/resolv.conf" 2>/dev/null || true

echo "install test: installing $(basename "$deb") with its dependencies"
cp "$deb" "$chroot_dir/tmp/"
chroot "$chroot_dir" env DEBIAN_FRONTEND=noninteractive apt-get update -qq 2>/dev/null
chroot "$chroot_dir" env DEBIAN_FRONTEND=noninteractive \
  apt-get install -y -qq --no-install-recommends "/tmp/$(basename "$deb")" > /dev/null 2>&1
chroot "$chroot_dir" test ! -e /work/main  # nothing of the build is there

echo "install test: mounting through /etc/fstab"
chroot "$chroot_dir" sh -eu -c '
  mkdir -p /srv/base/etc /srv/app/etc /srv/upper /srv/work /srv/merged
  echo base > /srv/base/etc/name
  echo app > /srv/app/etc/name
  echo kept > /srv/base/etc/other
  touch /srv/app/etc/.wh.gone
  echo old > /srv/base/etc/gone
  echo "demo /srv/merged fuse.layerfs lowerdir=/srv/app:/srv/base,upperdir=/srv/upper,workdir=/srv/work,nofail,x-systemd.requires-mounts-for=/srv 0 0" >> /etc/fstab
  mount /srv/merged
  grep -q "^demo /srv/merged fuse.layerfs " /proc/mounts
  test "$(cat /srv/merged/etc/name)" = app
  test "$(cat /srv/merged/etc/other)" = kept
  test ! -e /srv/merged/etc/gone
  echo new > /srv/merged/etc/added
  test "$(cat /srv/upper/etc/added)" = new
  umount /srv/merged
  ! grep -q " /srv/merged " /proc/mounts
  mount -a
  test "$(cat /srv/merged/etc/added)" = new
  umount /srv/merged
  man -w layerfs >/dev/null 2>&1 || test -e /usr/share/man/man8/layerfs.8.gz
  test -x /usr/sbin/mount.fuse.layerfs && test -L /usr/sbin/mount.layerfs
'
echo "install test: the package installs on a fresh system and mounts through fstab"
