#!/bin/sh
# Build bench_ops in Release without sanitizers (build/bench-ops) and run it with 1 and 2 OpenBLAS
# threads; writes bench/results/ops.md (ending with its provenance: command, commit, clean tree or
# not, date, load) and bench/results/ops.csv. Usage: bench/run_ops.sh [reps]
set -eu
root=$(cd "$(dirname "$0")/.." && pwd)
. "$root/bench/provenance.sh"
ps_bench_begin bench/run_ops.sh "$@"
build="$root/build/bench-ops"
reps=${1:-15}
cmake -S "$root" -B "$build" -DCMAKE_BUILD_TYPE=Release -DPS_SANITIZE= -DBUILD_TESTING=OFF \
    -DPS_BUILD_EXAMPLES=OFF >/dev/null
cmake --build "$build" --target bench_ops -j2 >/dev/null
mkdir -p "$root/bench/results"
# OPENBLAS_NUM_THREADS only sets the pool size at start-up; the bench sets 1 and 2 through
# ps_ops_set_num_threads.
"$build/bench/bench_ops" --threads 1,2 --reps "$reps" \
    --csv "$root/bench/results/ops.csv" --md "$root/bench/results/ops.md"
{
    echo
    echo "OpenBLAS $(dpkg-query -W -f '${Version}' libopenblas0-pthread 2>/dev/null || echo '?') (pthread)."
    echo
    ps_bench_provenance
} >>"$root/bench/results/ops.md"
echo "wrote bench/results/ops.md and bench/results/ops.csv"
