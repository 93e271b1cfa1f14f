#!/bin/sh
# Build bench_ops in Release without sanitizers (build/bench-ops) and run it with 1 and 2 OpenBLAS
# threads; writes bench/results/ops.md and bench/results/ops.csv. Usage: bench/run_ops.sh [reps]
set -eu
root=$(cd "$(dirname "$0")/.." && pwd)
build="$root/build/bench-ops"
reps=${1:-15}
cmake -S "$root" -B "$build" -DCMAKE_BUILD_TYPE=Release -DPS_SANITIZE= -DBUILD_TESTING=OFF \
    -DPS_BUILD_EXAMPLES=OFF >/dev/null
cmake --build "$build" --target bench_ops -j2 >/dev/null
mkdir -p "$root/bench/results"
# OPENBLAS_NUM_THREADS only sets the pool size at start-up; the bench sets 1 and 2 through
# ps_ops_set_num_threads.
load_before=$(cut -d' ' -f1-3 /proc/loadavg)
"$build/bench/bench_ops" --threads 1,2 --reps "$reps" \
    --csv "$root/bench/results/ops.csv" --md "$root/bench/results/ops.md"
{
    echo
    echo "Machine: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //'), $(nproc) cores" \
        "shared with other work while measuring (load average $load_before before the run," \
        "$(cut -d' ' -f1-3 /proc/loadavg) after); OpenBLAS $(dpkg-query -W -f '${Version}' libopenblas0-pthread 2>/dev/null || echo '?')" \
        "(pthread); $(date -u '+%Y-%m-%d %H:%M UTC')."
} >>"$root/bench/results/ops.md"
echo "wrote bench/results/ops.md and bench/results/ops.csv"
