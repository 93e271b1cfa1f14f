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
cmake -S "$root" -B "$build" -DCMAKE_BUILD_TYPE=Release -DPS_SANITIZE= -DBUILD_TESTING=OFF \
    -DPS_BUILD_EXAMPLES=OFF >/dev/null
cmake --build "$build" --target psd bench_metrics -j2 >/dev/null
out="$root/bench/results/metrics.md"
mkdir -p "$root/bench/results"
tmp=$(mktemp)
trap 'rm -f "$tmp"' EXIT
"$build/bench/bench_metrics" --psd "$build/server/psd" --reps "$reps" --seconds "$seconds" >"$tmp"
commit=$(git -C "$root" rev-parse --short HEAD 2>/dev/null || echo unknown)
dirty=$(git -C "$root" status --porcelain --untracked-files=no 2>/dev/null | grep -q . && echo " (with uncommitted changes)" || true)
{
    echo "# Cost of metrics: small-request rate with and without a 1 s scraper"
    echo
    echo "- commit: $commit$dirty"
    echo "- date: $(date -u '+%Y-%m-%d %H:%M UTC')"
    echo "- command: \`bench/run_metrics.sh $reps $seconds\` (Release, no sanitizers)"
    echo "- machine: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //'), $(nproc) cores," \
        "kernel $(uname -r); shared with other work while measuring (load averages below)"
    echo "- load: one client pulling a 64-float variable, 32 requests in flight, ${seconds} s per run;" \
        "runs alternate (no scraper / a thread GETting /metrics once a second), ${reps} of each"
    echo "- design goal: under 1% difference"
    echo
    echo '```'
    cat "$tmp"
    echo '```'
} >"$out"
cat "$tmp"
echo "wrote $out"
