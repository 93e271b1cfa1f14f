#!/bin/sh
# Build psd and bench_wire in Release without sanitizers (build/bench) and run the wire benchmark:
# raw loopback floors and psd pull/push of 1 KiB, 1 MiB and 16 MiB, in one run, against a psd it
# starts itself. Writes bench/results/wire.md (ending with its provenance: command, commit, clean
# tree or not, date, load) and bench/results/wire.csv.
# Usage: bench/run_wire.sh [reps] [--quick]   (--quick: fewer round trips per repetition)
set -eu
root=$(cd "$(dirname "$0")/.." && pwd)
. "$root/bench/provenance.sh"
ps_bench_begin bench/run_wire.sh "$@"
build="$root/build/bench"
reps=7
if [ $# -gt 0 ] && [ "$1" != "--quick" ]; then
    reps=$1
    shift
fi
cmake -S "$root" -B "$build" -DCMAKE_BUILD_TYPE=Release -DPS_SANITIZE= -DBUILD_TESTING=OFF \
    -DPS_BUILD_EXAMPLES=OFF >/dev/null
cmake --build "$build" --target psd bench_wire -j2 >/dev/null
mkdir -p "$root/bench/results"
"$build/bench/bench_wire" --psd "$build/server/psd" --reps "$reps" \
    --md "$root/bench/results/wire.md" --csv "$root/bench/results/wire.csv" "$@"
{
    echo
    echo "Kernel $(uname -r)."
    echo
    ps_bench_provenance
} >>"$root/bench/results/wire.md"
echo "wrote bench/results/wire.md and bench/results/wire.csv"
