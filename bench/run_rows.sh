#!/bin/sh
# Sparse rows (issue 12): rows/s of a lookup of 4,096 random rows of width 64 (float32) from a
# 10M-row table and of a sparse Adagrad step of the same size, at 1 and 4 clients, psd against
# redis-server (one hash field per row: HMGET for the lookup, HSET for the update), and psd's
# memory per row beyond its data. Builds psd and bench_rows in Release without sanitizers
# (build/bench-rows) and writes bench/results/rows.md with bench/provenance.sh's line and the
# machine's load before and after (the machine is shared).
# Usage: bench/run_rows.sh [rows, default 10000000] [batch, default 4096] [seconds, default 5]
set -eu
root=$(cd "$(dirname "$0")/.." && pwd)
. "$root/bench/provenance.sh"
ps_bench_begin bench/run_rows.sh "$@"
build="$root/build/bench-rows"
rows=${1:-10000000}
batch=${2:-4096}
secs=${3:-5}
cmake -S "$root" -B "$build" -DCMAKE_BUILD_TYPE=Release -DPS_SANITIZE= -DBUILD_TESTING=OFF \
    -DPS_BUILD_EXAMPLES=OFF >/dev/null
cmake --build "$build" --target psd bench_rows -j2 >/dev/null
mkdir -p "$root/bench/results"
out="$root/bench/results/rows.md"
load_before=$(cut -d' ' -f1-3 /proc/loadavg)
started=$(date -u +%Y-%m-%dT%H:%M:%SZ)
raw=$(PSD_BIN="$build/server/psd" "$build/bench/bench_rows" "$rows" "$batch" "$secs")
load_after=$(cut -d' ' -f1-3 /proc/loadavg)
rate() { echo "$raw" | awk -F, -v s="$1" -v o="$2" -v c="$3" '$2=="rate" && $3==s && $4==o && $6==c { print $8 }'; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (b > 0) printf "%.2f", a / b; else print "n/a" }'; }
{
    echo "# Sparse rows: lookup and sparse Adagrad step against Redis"
    echo
    echo "Produced by \`bench/run_rows.sh $rows $batch $secs\` (Release, no sanitizers), started $started."
    echo "A float32 table [$rows, 64] in one psd (no --data-dir: no write-ahead log). Each"
    echo "operation names $batch random rows (uniform, duplicates possible): psd's lookup is"
    echo "ps_variable_gather (one GATHER; rows land in the caller's buffer), its update one"
    echo "sparse Adagrad step (ps_optimizer_apply_sparse: APPLY_GRADIENTS with IndexedSlices;"
    echo "psd sums duplicates, updates the rows and their <var>/Adagrad accumulator rows, bumps"
    echo "global_step). Redis holds the same rows as fields of one hash (field = row number,"
    echo "value = the 256 bytes): HMGET of the $batch fields, and HSET of $batch fields (a pure"
    echo "write: Redis computes no optimizer). One Adagrad step before the measurements creates"
    echo "the accumulator slot (as big as the table; its time is the \"slot\" line below). Each"
    echo "client is a thread with its own connection,"
    echo "one request at a time, for $secs s per cell; psd and Redis run one after the other."
    echo
    echo "| operation | clients | psd rows/s | Redis rows/s | psd / Redis |"
    echo "| --- | --- | --- | --- | --- |"
    for c in 1 4; do
        p=$(rate psd lookup "$c"); r=$(rate redis hmget "$c")
        echo "| lookup (GATHER vs HMGET) | $c | $p | $r | $(ratio "$p" "$r") |"
    done
    for c in 1 4; do
        p=$(rate psd adagrad_step "$c"); r=$(rate redis hset "$c")
        echo "| sparse Adagrad step vs HSET | $c | $p | $r | $(ratio "$p" "$r") |"
    done
    echo
    echo "Memory (rows of 256 bytes of data):"
    echo
    echo "$raw" | grep -E '^csv,(memory|slot)' | cut -d, -f3- | sed 's/^/- /'
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
