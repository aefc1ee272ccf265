#!/usr/bin/env bash
# Builds the libFuzzer targets of fuzz/ with clang (a build directory of their
# own) and runs each for a while; fails on any finding, printing the input
# that reproduces it and the command that replays it. See fuzz/README.md.
#
#   scripts/fuzz.sh [--time SECONDS] [--build-dir DIR] [TARGET...]
#
# TARGET: options, records, archive (default: all, one after the other).
# --time: seconds per target (default 20). --build-dir: default build-fuzz.
# New inputs the fuzzer finds go to DIR/corpus/TARGET (kept between runs), the
# seeds in fuzz/corpus/TARGET are only read, and findings go to DIR/findings.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
seconds=20
build="$root/build-fuzz"
targets=()
all_targets=(options records archive)
while [ $# -gt 0 ]; do
  case "$1" in
    --time) seconds="${2:?--time needs a number of seconds}"; shift 2 ;;
    --build-dir) build="${2:?--build-dir needs a directory}"; shift 2 ;;
    -h|--help) sed -n '2,13p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    -*) echo "fuzz.sh: unknown option $1" >&2; exit 2 ;;
    *)
      if [[ ! " ${all_targets[*]} " == *" $1 "* ]]; then
        echo "fuzz.sh: unknown target $1 (known: ${all_targets[*]})" >&2
        exit 2
      fi
      targets+=("$1"); shift ;;
  esac
done
[ ${#targets[@]} -eq 0 ] && targets=("${all_targets[@]}")
case "$seconds" in ''|*[!0-9]*) echo "fuzz.sh: --time needs a number of seconds" >&2; exit 2 ;; esac

for tool in clang-14 clang++-14; do
  if ! command -v "$tool" >/dev/null; then
    echo "fuzz.sh: $tool is missing (scripts/setup.sh installs it)" >&2
    exit 1
  fi
done

jobs="${LAYERFS_JOBS:-2}"
CC=clang-14 CXX=clang++-14 cmake -S "$root" -B "$build" -DLAYERFS_FUZZ=ON \
  -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
fuzzers=()
for t in "${targets[@]}"; do fuzzers+=(--target "fuzz_$t"); done
cmake --build "$build" -j"$jobs" "${fuzzers[@]}"

status=0
for t in "${targets[@]}"; do
  corpus="$build/corpus/$t"
  findings="$build/findings/$t"
  mkdir -p "$corpus" "$findings"
  rm -f "$findings"/crash-* "$findings"/leak-* "$findings"/timeout-* "$findings"/oom-*
  # The archive target writes files: larger inputs, and time for decompression.
  extra=()
  [ "$t" = archive ] && extra=(-max_len=65536)
  echo "fuzz.sh: $t for ${seconds}s"
  log="$build/findings/$t.log"
  if "$build/fuzz/fuzz_$t" -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 \
      -print_final_stats=1 -artifact_prefix="$findings/" "${extra[@]}" \
      "$corpus" "$root/fuzz/corpus/$t" >"$log" 2>&1; then
    grep -E '^(stat::number_of_executed_units|stat::peak_rss_mb|#[0-9]+ +DONE)' "$log" \
      | sed "s/^/fuzz.sh: $t: /" || true
  else
    status=1
    echo "fuzz.sh: $t FAILED; the fuzzer's report:" >&2
    grep -v -E '^#[0-9]+ +(NEW|REDUCE|pulse|INITED)' "$log" | tail -n 60 >&2
    for f in "$findings"/*; do
      [ -f "$f" ] || continue
      echo "fuzz.sh: reproducer $f ($(stat -c %s "$f") bytes), base64:" >&2
      base64 -w 76 "$f" | head -n 40 >&2
      echo "fuzz.sh: replay with: $build/fuzz/fuzz_$t $f" >&2
    done
  fi
done
exit $status
