#!/usr/bin/env bash
# The main job on a small built-in example: mounts a two-layer stack in a
# temporary directory, shows the merged view, writes, deletes and renames
# through it, shows what landed in the upper layer and that the lower layers
# are untouched, mounts again to show the changes persist, and unmounts. Then
# the same layers through layerctl: imported into a store, stacked, mounted
# with a volume, written, sized, committed and exported.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
"$root/scripts/setup.sh"
"$root/scripts/build.sh" layerfs layerctl
layerfs="$root/build/fs/layerfs"

demo="$(mktemp -d /tmp/layerfs-demo.XXXXXX)"
merged="$demo/merged"
layerctl="$root/build/tools/layerctl"
unmount() {
  if [ -n "${store:-}" ] && [ -d "${store:-}" ]; then
    "$layerctl" --root "$store" umount app >/dev/null 2>&1 || true
  fi
  if grep -qs " $merged fuse.layerfs " /proc/mounts; then
    if [ "$(id -u)" -eq 0 ]; then umount "$merged"; else fusermount3 -u "$merged"; fi
  fi
}
cleanup() {
  unmount || true
  rm -rf "$demo"
}
trap cleanup EXIT

step() { printf '\n\033[1m== %s\033[0m\n' "$*"; }
show_tree() {  # path: every entry with its type and, for files, its content
  (cd "$1" && find . -mindepth 1 | LC_ALL=C sort | while read -r p; do
    if [ -L "$p" ]; then printf '  %-28s -> %s\n' "$p" "$(readlink "$p")"
    elif [ -d "$p" ]; then printf '  %-28s (dir)\n' "$p/"
    else printf '  %-28s %s\n' "$p" "$(head -c 60 "$p" | tr '\n' ' ')"
    fi
  done)
}
fingerprint() { (cd "$1" && find . -printf '%p %y %m %s %T@\n' | LC_ALL=C sort | sha256sum | cut -c1-16); }

step "Two lower layers: a base image and an application layer on top of it"
mkdir -p "$demo"/{base,app,upper,work,merged}
mkdir -p "$demo/base/etc" "$demo/base/srv/data" "$demo/base/bin"
echo "debian 12"        > "$demo/base/etc/os-release"
echo "base-host"        > "$demo/base/etc/hostname"
echo "port: 80"         > "$demo/base/etc/app.conf"
echo "record 1"         > "$demo/base/srv/data/one.txt"
echo "record 2"         > "$demo/base/srv/data/two.txt"
echo "#!/bin/sh"        > "$demo/base/bin/tool"
ln -s tool                "$demo/base/bin/t"
mkdir -p "$demo/app/etc" "$demo/app/srv"
echo "port: 8080"       > "$demo/app/etc/app.conf"     # hides the base's app.conf
touch                     "$demo/app/etc/.wh.hostname"  # an OCI whiteout: deletes base's hostname
echo "hello from app"   > "$demo/app/srv/README"
echo "base layer:"; show_tree "$demo/base"
echo "app layer (on top):"; show_tree "$demo/app"
base_before="$(fingerprint "$demo/base")"
app_before="$(fingerprint "$demo/app")"

step "Mount: layerfs demo $merged -o lowerdir=app:base,upperdir=upper,workdir=work"
"$layerfs" demo "$merged" -o "lowerdir=$demo/app:$demo/base,upperdir=$demo/upper,workdir=$demo/work"
grep " $merged " /proc/mounts | cut -d' ' -f1-3
echo "merged view:"; show_tree "$merged"

step "Write, create, delete and rename through the mount"
echo "workers: 4" >> "$merged/etc/app.conf";          echo "  appended to etc/app.conf (a lower file: copied up)"
echo "a new file" > "$merged/srv/notes.txt";            echo "  created srv/notes.txt"
rm "$merged/etc/os-release";                            echo "  deleted etc/os-release (a lower file)"
mv "$merged/srv/data" "$merged/srv/archive";            echo "  renamed srv/data -> srv/archive (a lower directory)"
echo "merged view now:"; show_tree "$merged"

step "What landed in the upper layer (a plain tree: no whiteout files, no device nodes)"
show_tree "$demo/upper"
echo "(the deletion and the directory rename are recorded in the index in $demo/work/index)"

step "The lower layers are untouched"
[ "$(fingerprint "$demo/base")" = "$base_before" ] && echo "  base: unchanged"
[ "$(fingerprint "$demo/app")" = "$app_before" ] && echo "  app:  unchanged"

step "Unmount and mount again: every change is still there"
unmount
"$layerfs" demo "$merged" -o "lowerdir=$demo/app:$demo/base,upperdir=$demo/upper,workdir=$demo/work"
show_tree "$merged"
unmount

step "layerctl: the same layers in a store (--root $demo/store; default /var/lib/layerfs)"
store="$demo/store"
ctl() { echo "\$ layerctl $*"; "$layerctl" --root "$store" "$@"; }
ctl layer import "$demo/base" --name base
ctl layer import "$demo/app" --name app
ctl layer ls
ctl create app base app
ctl mount app "$merged" -v appdata:/srv/data
echo "\$ printf hello > $merged/greeting; echo 12345678 > $merged/srv/data/db"
printf hello > "$merged/greeting"
echo 12345678 > "$merged/srv/data/db"
ctl ps -s
ctl df
ctl commit app --name app-changes
ctl umount app
ctl volume ls
ctl layer export app-changes -o "$demo/app-changes.tar.gz"
echo "\$ tar tzvf app-changes.tar.gz   (volumes stay out of the layer)"
tar tzvf "$demo/app-changes.tar.gz"
ctl rm app
echo
echo "unmounted; demo directory removed."
