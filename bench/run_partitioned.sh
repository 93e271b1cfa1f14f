#!/bin/sh
# Pull and optimizer-step throughput of one partitioned variable over 1, 2 and 4 psd shards against
# the same bytes unpartitioned on one shard (issue 11). Builds psd and bench_partitioned in Release
# without sanitizers (build/bench-partitioned) and writes bench/results/partitioned.md with the
# commit, date, command and the machine's load before and after (the machine is shared).
# Usage: bench/run_partitioned.sh [MiB, default 256] [reps, default 5] [parts, default 4]
set -eu
root=$(cd "$(dirname "$0")/.." && pwd)
. "$root/bench/provenance.sh"
ps_bench_begin bench/run_partitioned.sh "$@"
build="$root/build/bench-partitioned"
mib=${1:-256}
reps=${2:-5}
parts=${3:-4}
cmake -S "$root" -B "$build" -DCMAKE_BUILD_TYPE=Release -DPS_SANITIZE= -DBUILD_TESTING=OFF \
    -DPS_BUILD_EXAMPLES=OFF >/dev/null
cmake --build "$build" --target psd bench_partitioned -j2 >/dev/null
mkdir -p "$root/bench/results"
out="$root/bench/results/partitioned.md"
load_before=$(cut -d' ' -f1-3 /proc/loadavg)
started=$(date -u +%Y-%m-%dT%H:%M:%SZ)
raw=$(PSD_BIN="$build/server/psd" "$build/bench/bench_partitioned" "$mib" "$reps" "$parts")
load_after=$(cut -d' ' -f1-3 /proc/loadavg)
{
    echo "# Partitioned variables: pull and optimizer-step throughput over several shards"
    echo
    echo "Produced by \`bench/run_partitioned.sh $mib $reps $parts\` (Release, no sanitizers) at"
    echo "commit $(git -C "$root" rev-parse --short HEAD), started $started."
    echo "One float32 [rows, 1024] variable of $mib MiB, zeros; \"partitioned\" is"
    echo "fixed_size_partitioner($parts) along axis 0 with the parts placed round-robin over the"
    echo "shards (ps_tasks = shards); \"unpartitioned\" is the same bytes as one variable on one"
    echo "shard. Each repetition is one pull of the whole into one buffer, then one SGD step"
    echo "(APPLY_GRADIENTS) on the whole; $reps repetitions after one warm-up of each. All psd"
    echo "processes and the client run on this machine, over 127.0.0.1."
    echo
    echo "| config | shards | parts | op | median s | best s | MiB/s median | MiB/s best | client CPU s | psd CPU s (all shards) |"
    echo "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |"
    echo "$raw" | grep '^csv,' | grep -v '^csv,config' | cut -d, -f2- | sed 's/,/ | /g; s/^/| /; s/$/ |/'
    echo
    echo "Machine: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //'), $(nproc) cores," \
        "shared with other work while measuring: load average $load_before before and" \
        "$load_after after; kernel $(uname -r)."
    echo
    ps_bench_provenance
    echo
    echo "Raw:"
    echo
    echo '```'
    echo "$raw"
    echo '```'
} >"$out"
echo "wrote $out"
