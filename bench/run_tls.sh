#!/bin/sh
# Build psd and bench_tls in Release without sanitizers (build/bench) and measure what TLS costs
# psd, with redis-server's --tls-port as the reference, in one run: pull / GET throughput of 1 MiB
# and 16 MiB, small requests one at a time and pipelined, new connections and handshakes
# (certificates made by scripts/make-certs.sh in a temporary directory). Writes
# bench/results/tls.md, ending with its provenance (command, commit, clean tree or not, date,
# machine load at the start and the end).
# Usage: bench/run_tls.sh [reps] [--quick]
set -eu
root=$(cd "$(dirname "$0")/.." && pwd)
. "$root/bench/provenance.sh"
ps_bench_begin bench/run_tls.sh "$@"
build="$root/build/bench"
reps=5
if [ $# -gt 0 ] && [ "$1" != "--quick" ]; then
    reps=$1
    shift
fi
cmake -S "$root" -B "$build" -DCMAKE_BUILD_TYPE=Release -DPS_SANITIZE= -DBUILD_TESTING=OFF \
    -DPS_BUILD_EXAMPLES=OFF >/dev/null
cmake --build "$build" --target psd bench_tls -j2 >/dev/null
certs=$(mktemp -d "${TMPDIR:-/tmp}/pscope-bench-tls.XXXXXX")
trap 'rm -rf "$certs"' EXIT
"$root/scripts/make-certs.sh" "$certs" >/dev/null
out="$root/bench/results/tls.md"
mkdir -p "$root/bench/results"
"$build/bench/bench_tls" --psd "$build/server/psd" --certs "$certs" --reps "$reps" --md "$out" "$@"
{
    echo
    echo "$(redis-server --version | cut -d' ' -f1-3); kernel $(uname -r)."
    echo
    ps_bench_provenance
} >>"$out"
echo "wrote bench/results/tls.md"
