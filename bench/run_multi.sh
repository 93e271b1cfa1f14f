#!/bin/sh
# Build psd and bench_multi in Release (build/bench) and a baseline psd from another commit
# (default 90cf039, main before the I/O threads; build/bench-base), then run the many-clients
# benchmark: 1, 2, 4, 8 and 12 client processes pulling and pushing 1 MiB and 16 MiB and pulling 16
# floats, against psd, the baseline psd, an ideal thread-per-connection server and redis-server,
# with psd's loop-thread CPU per GiB and per 1,000 small requests; then the goals as paired
# repetitions. Writes bench/results/multi.md (with provenance), multi.csv and multi_goals.csv.
# Usage: bench/run_multi.sh [--secs S] [--base COMMIT]
set -eu
root=$(cd "$(dirname "$0")/.." && pwd)
. "$root/bench/provenance.sh"
ps_bench_begin bench/run_multi.sh "$@"
secs=2
base=90cf039
while [ $# -gt 0 ]; do
    case "$1" in
    --secs) secs=$2; shift 2 ;;
    --base) base=$2; shift 2 ;;
    *) echo "usage: bench/run_multi.sh [--secs S] [--base COMMIT]" >&2; exit 2 ;;
    esac
done
build="$root/build/bench"
cmake -S "$root" -B "$build" -DCMAKE_BUILD_TYPE=Release -DPS_SANITIZE= -DBUILD_TESTING=OFF \
    -DPS_BUILD_EXAMPLES=OFF >/dev/null
cmake --build "$build" --target psd bench_multi -j2 >/dev/null
# The baseline: that commit's sources, exported (not checked out) and built once.
bsrc="$root/build/bench-base/src-$base"
if [ ! -x "$root/build/bench-base/build-$base/server/psd" ]; then
    rm -rf "$bsrc"
    mkdir -p "$bsrc"
    git -C "$root" archive "$base" | tar -x -C "$bsrc"
    cmake -S "$bsrc" -B "$root/build/bench-base/build-$base" -DCMAKE_BUILD_TYPE=Release \
        -DPS_SANITIZE= -DBUILD_TESTING=OFF -DPS_BUILD_EXAMPLES=OFF -DPS_BUILD_BENCH=OFF >/dev/null
    cmake --build "$root/build/bench-base/build-$base" --target psd -j2 >/dev/null
fi
mkdir -p "$root/bench/results"
"$build/bench/bench_multi" --psd "$build/server/psd" \
    --base-psd "$root/build/bench-base/build-$base/server/psd" --base-label "main $base" \
    --secs "$secs" --md "$root/bench/results/multi.md" --csv "$root/bench/results/multi.csv" \
    --goals "$root/bench/results/multi_goals.csv"
{
    echo "psd ran with its default \`--io-threads\` ($(nproc) on this machine: one per core)."
    echo
    ps_bench_provenance
} >>"$root/bench/results/multi.md"
echo "wrote bench/results/multi.md, multi.csv and multi_goals.csv"
