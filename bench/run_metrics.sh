#!/bin/sh
# Build psd and bench_metrics in Release without sanitizers (build/bench) and measure the cost of
# metrics: small pulls pipelined 32 deep, runs alternating without and with a scraper that GETs
# /metrics every second. Writes bench/results/metrics.md (commit, date, command, machine, the load
# average around every run, each run's rate and the medians).
# Usage: bench/run_metrics.sh [reps] [seconds per run]
set -eu
root=$(cd "$(dirname "$0")/.." && pwd)
build="$root/build/bench"
reps=${1:-8}
seconds=${2:-4}
. "$root/bench/provenance.sh"
ps_bench_begin bench/run_metrics.sh "$@"
cmake -S "$root" -B "$build" -DCMAKE_BUILD_TYPE=Release -DPS_SANITIZE= -DBUILD_TESTING=OFF \
    -DPS_BUILD_EXAMPLES=OFF >/dev/null
cmake --build "$build" --target psd bench_metrics -j2 >/dev/null
out="$root/bench/results/metrics.md"
mkdir -p "$root/bench/results"
tmp=$(mktemp)
trap 'rm -f "$tmp"' EXIT
"$build/bench/bench_metrics" --psd "$build/server/psd" --reps "$reps" --seconds "$seconds" >"$tmp"
{
    echo "# Cost of metrics: small-request rate with and without a 1 s scraper"
    echo
    ps_bench_provenance
    echo
    echo "- load: one client pulling a 64-float variable, 32 requests in flight, ${seconds} s per run;" \
        "runs alternate (no scraper / a thread GETting /metrics once a second), ${reps} of each"
    echo "- design goal: under 1% difference"
    echo
    echo '```'
    cat "$tmp"
    echo '```'
    echo
    echo "Reading: the rates of one run to the next vary with whatever else the shared machine runs;"
    echo "the medians' difference is the A/B figure, and it resolves 1% only when the spread of each"
    echo "column is well under 1% (compare the per-run lines). The last line does not depend on the"
    echo "load: the fastest complete scrape (TCP connect, psd rendering every family, the response"
    echo "read back) bounds the loop time psd gives one scrape, so at one scrape a second the loop"
    echo "spends at most that fraction of its time on metrics."
} >"$out"
cat "$tmp"
echo "wrote $out"
