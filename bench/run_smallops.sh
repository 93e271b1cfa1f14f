#!/bin/sh
# The small-operations section of the suite (bench_redis --only small: get_variable and 16-float
# pulls against redis-server GET, 1/16/64 connections x pipeline depth 1/16) with a baseline psd
# built from another commit (default 9980fa9, main before issue 14's request-path work;
# build/bench-base) measured in the same slices, so before and after come from one run. Builds
# psd and bench_redis in Release (build/bench). Writes bench/results/smallops.md (with provenance)
# and smallops_ab.csv; bench/run.sh's full suite still writes suite_redis.md and smallops.csv.
# Usage: bench/run_smallops.sh [--reps N] [--secs S] [--base COMMIT]
set -eu
root=$(cd "$(dirname "$0")/.." && pwd)
. "$root/bench/provenance.sh"
ps_bench_begin bench/run_smallops.sh "$@"
reps=5
secs=0.5
base=9980fa9
while [ $# -gt 0 ]; do
    case "$1" in
    --reps) reps=$2; shift 2 ;;
    --secs) secs=$2; shift 2 ;;
    --base) base=$2; shift 2 ;;
    *) echo "usage: bench/run_smallops.sh [--reps N] [--secs S] [--base COMMIT]" >&2; exit 2 ;;
    esac
done
build="$root/build/bench"
cmake -S "$root" -B "$build" -DCMAKE_BUILD_TYPE=Release -DPS_SANITIZE= -DBUILD_TESTING=OFF \
    -DPS_BUILD_EXAMPLES=OFF >/dev/null
cmake --build "$build" --target psd bench_redis -j2 >/dev/null
# The baseline: that commit's sources, exported (not checked out) and built once.
bsrc="$root/build/bench-base/src-$base"
bpsd="$root/build/bench-base/build-$base/server/psd"
if [ ! -x "$bpsd" ]; then
    rm -rf "$bsrc"
    mkdir -p "$bsrc"
    git -C "$root" archive "$base" | tar -x -C "$bsrc"
    cmake -S "$bsrc" -B "$root/build/bench-base/build-$base" -DCMAKE_BUILD_TYPE=Release \
        -DPS_SANITIZE= -DBUILD_TESTING=OFF -DPS_BUILD_EXAMPLES=OFF -DPS_BUILD_BENCH=OFF >/dev/null
    cmake --build "$root/build/bench-base/build-$base" --target psd -j2 >/dev/null
fi
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
"$build/bench/bench_redis" --psd "$build/server/psd" --base-psd "$bpsd" --out "$tmp" \
    --reps "$reps" --secs "$secs" --only small
mkdir -p "$root/bench/results"
{
    echo "# Small operations: psd against redis-server GET, and psd before and after"
    echo
    echo "The suite's small-operations section (bench/run.sh's, from \`bench_redis --only small\`),"
    echo "with the baseline psd (main $base) measured in the same slices. psd and the baseline run"
    echo "with their default options (\`--io-threads\` = $(nproc), one per core)."
    echo
    sed -e 's/^## Small operations$/## This run/' "$tmp/suite_redis.md"
    ps_bench_provenance
} >"$root/bench/results/smallops.md"
cp "$tmp/smallops.csv" "$root/bench/results/smallops_ab.csv"
echo "wrote bench/results/smallops.md and smallops_ab.csv"
