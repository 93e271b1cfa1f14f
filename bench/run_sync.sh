#!/usr/bin/env bash
# The consistency models' costs (docs/consistency.md), written to bench/results/sync.md:
#  1. bench_sync: steps/s of 1, 2 and 3 worker processes per mode on a 1024-float variable (no
#     compute: the round trips and barriers alone), timed inside each worker from its first to its
#     last step; the barrier overhead per step of ssp (tau 0 and 2) and sync against async; the
#     time from a worker's death (SIGKILL; SIGSTOP, ended by the lease) to the others resuming, as
#     the longest gap between a surviving worker's consecutive steps after the signal;
#  2. the demo model (pstrain, Fashion-MNIST CNN, batch 64, Adam, dropout 0.4): steps/s of each
#     worker (pstrain's own timing of its training loop) and global steps/s with 1, 2 and 3
#     workers in each mode, STEPS global steps per run, median of REPS runs.
# Release build without sanitizers in build/bench-sync; one OpenBLAS thread per process. The machine
# is shared: the load average is recorded with each table.
#
#   bench/run_sync.sh [STEPS per demo run, default 150] [bench_sync steps per worker, default 2000]
#                     [REPS: repetitions per cell (median), default 3]
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
. "$root/bench/provenance.sh"
ps_bench_begin bench/run_sync.sh "$@"
build=${BUILD:-$root/build/bench-sync}
steps=${1:-150}
micro=${2:-2000}
reps=${3:-3}
data=${DATA:-/usr/share/datasets/fashion-mnist}
out="$root/bench/results/sync.md"
tmp=$(mktemp -d /tmp/pscope-bench-sync.XXXXXX)
psd_pid=""
cleanup() {
    if [ -n "$psd_pid" ]; then
        kill "$psd_pid" 2>/dev/null || true
        wait "$psd_pid" 2>/dev/null || true
    fi
    rm -rf "$tmp"
}
trap cleanup EXIT INT TERM

if [ -z "${BUILD:-}" ]; then
    cmake -S "$root" -B "$build" -DCMAKE_BUILD_TYPE=Release -DPS_SANITIZE= -DBUILD_TESTING=ON \
        >/dev/null
    cmake --build "$build" --target psd pstrain bench_sync -j2 >/dev/null
fi
psd=$build/server/psd
pstrain=$build/examples/train/pstrain
export OPENBLAS_NUM_THREADS=1

{
    echo "# Consistency models: throughput, barrier overhead, recovery from a worker's death"
    echo
    echo "## Round trips and barriers alone (bench_sync, load at start: $(cut -d' ' -f1-3 /proc/loadavg))"
    echo
    PSD_BIN=$psd "$build/bench/bench_sync" "$micro" "$reps"
    echo
    echo "Load at the end: $(cut -d' ' -f1-3 /proc/loadavg)."
    echo
} > "$tmp/micro.md"

start_psd() {
    rm -f "$tmp/port"
    "$psd" --listen 127.0.0.1:0 --port-file "$tmp/port" --log-level warning 2>"$tmp/psd.log" &
    psd_pid=$!
    for _ in $(seq 100); do
        [ -s "$tmp/port" ] && break
        sleep 0.1
    done
    [ -s "$tmp/port" ] || { echo "psd did not start" >&2; cat "$tmp/psd.log" >&2; exit 1; }
    addr="127.0.0.1:$(cat "$tmp/port")"
}

stop_psd() {
    kill "$psd_pid"
    wait "$psd_pid" || true
    psd_pid=""
}

# One demo run: N workers in MODE (ssp at staleness TAU) for STEPS global steps. Worker 0 declares
# the model first, the others start once it has. Prints "per-worker steps/s / global steps/s":
# the mean over the workers of steps / wall from each closing line ("worker 0 done: steps S
# global_step G wall W s ..."; wall is the training loop's, start-up excluded), and the last global
# step over the longest wall.
demo() {
    local mode=$1 tau=$2 n=$3
    start_psd
    rm -f "$tmp"/w*.log
    local pids=()
    for i in $(seq 0 $((n - 1))); do
        "$pstrain" --server "$addr" --data "$data" --worker-index "$i" --num-workers "$n" \
            --batch 64 --seed 42 --threads 1 --max-global-step "$steps" --mode "$mode" \
            --staleness "$tau" --log-every 1000 > "$tmp/w$i.log" 2>&1 &
        pids+=("$!")
        if [ "$i" = 0 ]; then
            for _ in $(seq 300); do
                grep -q "model declared" "$tmp/w0.log" 2>/dev/null && break
                sleep 0.1
            done
        fi
    done
    for p in "${pids[@]}"; do
        wait "$p" || { echo "pstrain failed:" >&2; cat "$tmp"/w*.log >&2; exit 1; }
    done
    stop_psd
    awk '/ done: / { for (i = 1; i <= NF; i++) { if ($i == "steps") s = $(i + 1);
                                                  if ($i == "global_step") g = $(i + 1);
                                                  if ($i == "wall") w = $(i + 1) }
                     sum += s / w; k++; if (w > wmax) wmax = w; if (g > gmax) gmax = g }
         END { printf "%.2f / %.2f", k ? sum / k : 0, wmax ? gmax / wmax : 0 }' "$tmp"/w*.log
}

median() {
    printf '%s\n' "$@" | sort -g | awk '{ v[NR] = $1 } END { print v[int((NR + 1) / 2)] }'
}

{
    echo "## The demo model (pstrain: Fashion-MNIST CNN, batch 64, Adam, dropout 0.4, $steps global steps per run)"
    echo
    echo "Each cell: steps per second of one worker (mean over the workers) / global steps per"
    echo "second (sync: every replica aggregated, so one global step takes a step of each worker),"
    echo "each the median of $reps runs."
    echo "Load at start: $(cut -d' ' -f1-3 /proc/loadavg)."
    echo
    echo "| mode | 1 worker | 2 workers | 3 workers |"
    echo "|---|---|---|---|"
    for spec in async:0 ssp:0 ssp:2 sync:0; do
        mode=${spec%%:*}
        tau=${spec#*:}
        case $spec in
            ssp:*) printf "| ssp tau=%s |" "$tau" ;;
            *) printf "| %s |" "$mode" ;;
        esac
        for n in 1 2 3; do
            per=()
            glob=()
            for _ in $(seq "$reps"); do
                read -r a _ b <<< "$(demo "$mode" "$tau" "$n")"
                per+=("$a")
                glob+=("$b")
            done
            printf " %s / %s |" "$(median "${per[@]}")" "$(median "${glob[@]}")"
        done
        echo
    done
    echo
    echo "Load at the end: $(cut -d' ' -f1-3 /proc/loadavg)."
    echo
} > "$tmp/demo.md"

{
    cat "$tmp/micro.md" "$tmp/demo.md"
    ps_bench_provenance
} > "$out"
cat "$out"
