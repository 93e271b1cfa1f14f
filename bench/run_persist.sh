#!/bin/sh
# Build psd and bench_persist in Release without sanitizers (build/bench-persist) and measure what
# durability costs: acknowledged updates/s with 1 and 50 clients under --fsync always, everysec
# and no, beside redis-server (appendonly yes, same appendfsync) in the same run, and psd's
# recovery time for a log and a checkpoint, scaled to a GiB. Writes bench/results/persist.md.
# The file ends with its provenance (command, commit, clean tree or not, date, load).
# Usage: bench/run_persist.sh [seconds-per-cell] [log-MiB] [checkpoint-MiB]
set -eu
root=$(cd "$(dirname "$0")/.." && pwd)
. "$root/bench/provenance.sh"
ps_bench_begin bench/run_persist.sh "$@"
build="$root/build/bench-persist"
secs=${1:-3}
log_mib=${2:-256}
ckpt_mib=${3:-256}
cmake -S "$root" -B "$build" -DCMAKE_BUILD_TYPE=Release -DPS_SANITIZE= -DBUILD_TESTING=OFF \
    -DPS_BUILD_EXAMPLES=OFF >/dev/null
cmake --build "$build" --target psd bench_persist -j2 >/dev/null
mkdir -p "$root/bench/results"
out="$root/bench/results/persist.md"
raw=$(PSD_BIN="$build/server/psd" "$build/bench/bench_persist" "$secs" "$log_mib" "$ckpt_mib")
{
    echo "# Persistence: the cost of durability, and recovery time"
    echo
    echo "Measured with $secs s per cell, a $log_mib MiB log and a $ckpt_mib MiB checkpoint (Release, no"
    echo "sanitizers); the command, commit and load are at the end."
    echo "Each client is one connection with one request in flight: psd UPDATE assign_add of an"
    echo "int64 scalar with (client_id, seq), redis-server INCRBY, both logged (psd write-ahead log,"
    echo "Redis AOF) with the same fsync policy, both on 127.0.0.1, both started fresh per cell."
    echo "$raw" | grep -v '^csv,'
    echo
    echo "$(df -T /tmp | awk 'NR==2 {print $2}') /tmp; kernel $(uname -r); redis-server" \
        "$(redis-server --version | sed 's/.*v=\([^ ]*\).*/\1/')."
    echo
    ps_bench_provenance
    echo
    echo "Raw:"
    echo
    echo '```'
    echo "$raw" | grep '^csv,'
    echo '```'
} >"$out"
echo "wrote $out"
