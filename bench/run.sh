#!/usr/bin/env bash
# The one command of the benchmark suite (issue 8). Builds psd and the suite's programs in Release
# without sanitizers (build/bench), runs bench_redis (psd vs the loopback ceiling and redis-server:
# tensor throughput, small operations, many variables) and bench_scale (1 million variables, 1,000
# connections) -- each starts its own psd and redis-server on free 127.0.0.1 ports in temporary
# directories and stops them -- then the other areas' benches (wire, ops, train, persist), and
# writes bench/results/RESULTS.md (machine, date, commit, every ratio, the design goals) plus CSVs.
#
#   bench/run.sh [--quick] [--reuse-others] [--reps N]
#     --quick         fewer and shorter reps, 200,000 variables instead of 1 million, and the
#                     other areas' results reused when present (a few minutes)
#     --reuse-others  do not re-run the wire/ops/train/persist benches; fold in their last results
#     --reps N        repetitions of every psd/Redis figure (default 5; --quick 3)
#     --out DIR       write this suite's files and RESULTS.md to DIR instead of bench/results
#                     (the other areas' scripts always write bench/results; their results are read
#                     from there)
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
build="$root/build/bench"
out="$root/bench/results"
others="$root/bench/results"
quick=0
reuse=0
reps=""
while [ $# -gt 0 ]; do
    case "$1" in
    --quick) quick=1 ;;
    --reuse-others) reuse=1 ;;
    --reps)
        reps=$2
        shift
        ;;
    --out)
        out=$(mkdir -p "$2" && cd "$2" && pwd)
        shift
        ;;
    *)
        echo "usage: bench/run.sh [--quick] [--reuse-others] [--reps N] [--out DIR]" >&2
        exit 2
        ;;
    esac
    shift
done
if [ "$quick" = 1 ]; then
    reps=${reps:-3}
    secs=0.25
    nvars=200000
    reuse=1
else
    reps=${reps:-5}
    secs=0.5
    nvars=1000000
fi

t_begin=$(date +%s)
load_before=$(cut -d' ' -f1-3 /proc/loadavg)
mkdir -p "$out"
log() { echo "[run.sh $(date -u +%H:%M:%S)] $*" >&2; }

log "building psd, bench_redis, bench_scale (Release, no sanitizers) in $build"
cmake -S "$root" -B "$build" -DCMAKE_BUILD_TYPE=Release -DPS_SANITIZE= -DBUILD_TESTING=OFF \
    -DPS_BUILD_EXAMPLES=OFF >/dev/null
cmake --build "$build" --target psd bench_redis bench_scale -j2 >/dev/null
psd="$build/server/psd"

log "bench_redis: tensor throughput, small operations, many variables ($reps reps, ${secs}s cells)"
"$build/bench/bench_redis" --psd "$psd" --out "$out" --reps "$reps" --secs "$secs" \
    $([ "$quick" = 1 ] && echo --quick)
log "bench_scale: $nvars variables, 1000 connections"
"$build/bench/bench_scale" --psd "$psd" --out "$out" --reps "$reps" --secs "$secs" \
    --vars "$nvars" --conns 1000

# ---- the other areas' benches (their scripts, their outputs) ----
run_other() { # name script args...
    local name=$1
    shift
    if [ "$reuse" = 1 ]; then
        if [ -f "$others/$name.md" ]; then
            log "$name: reusing bench/results/$name.md from an earlier run"
        else
            log "$name: no earlier results (run without --reuse-others to produce them)"
        fi
        return 0
    fi
    log "$name: $*"
    mkdir -p "$build/logs"
    if ! "$@" >"$build/logs/$name.log" 2>&1; then
        log "$name FAILED (log: $build/logs/$name.log); its last results, if any, are kept"
        tail -5 "$build/logs/$name.log" >&2 || true
    fi
}
[ -x "$root/bench/run_wire.sh" ] && run_other wire "$root/bench/run_wire.sh" 5
[ -x "$root/bench/run_ops.sh" ] && run_other ops "$root/bench/run_ops.sh" 7
[ -x "$root/bench/run_persist.sh" ] && run_other persist "$root/bench/run_persist.sh" 2 128 128
[ -x "$root/bench/run_train.sh" ] && run_other train "$root/bench/run_train.sh" 40 3

# ---- RESULTS.md ----
load_after=$(cut -d' ' -f1-3 /proc/loadavg)
t_end=$(date +%s)
commit=$(git -C "$root" rev-parse --short HEAD 2>/dev/null || echo unknown)
if [ -n "$(git -C "$root" status --porcelain --untracked-files=no 2>/dev/null | head -1)" ]; then
    commit="$commit (working tree had uncommitted changes by other engineers)"
fi
cpu=$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //')
mem=$(awk '/MemTotal/ { printf "%.1f GiB", $2 / 1048576 }' /proc/meminfo)
res="$out/RESULTS.md"

# A few headline ratios (for the README), from this suite's CSVs.
headlines() {
    awk -F, 'FNR == 1 { f++ } f == 1 && FNR > 1 { t[$1 "," $2 "," $3] = $5 }
        f == 2 && FNR > 1 { o[$1 "," $2 "," $3] = $5 }
        f == 3 && FNR > 1 { m[$1] = $2 }
        END {
            printf "- 64 MiB pull: %.2fx the loopback TCP ceiling and %.1fx redis-server GET (1 client); 16 MiB: %.2fx and %.1fx.\n", t["psd_pull_ceiling,67108864,1"], t["psd_pull_redis_get,67108864,1"], t["psd_pull_ceiling,16777216,1"], t["psd_pull_redis_get,16777216,1"]
            printf "- Small ops vs Redis GET (64-byte value): 16-float pull %.2fx unpipelined, %.2fx at pipeline depth 16 (16 connections); get_variable %.2fx / %.2fx.\n", o["psd_pull16,16,1"] / o["redis_get64,16,1"], o["psd_pull16,16,16"] / o["redis_get64,16,16"], o["psd_get_variable,16,1"] / o["redis_get64,16,1"], o["psd_get_variable,16,16"] / o["redis_get64,16,16"]
            printf "- %d variables: %.0f bytes of psd memory per float32[4] variable (%.0f beyond its data; Redis: %.0f per 16-byte value); 1,000 concurrent connections %s.\n", m["variables"], m["psd_rss_per_var"], m["psd_rss_per_var_beyond_data"], m["redis_rss_per_key"], (m["psd_1000conns_ok"] == 1 ? "served" : "NOT all served")
        }' "$out/tensor_ratios.csv" "$out/smallops.csv" "$out/scale.csv"
}

# "batch psd_median local_median" per batch size of run_train.sh's one-worker runs.
train_medians() {
    awk -F, 'NR > 1 && $3 == 1 && ($1 == "local" || $1 == "psd") { n[$1 "," $2]++; a[$1 "," $2, n[$1 "," $2]] = $5 }
        function med(k,   i, j, t, m) { m = n[k]; for (i = 1; i <= m; i++) b[i] = a[k, i]
            for (i = 1; i <= m; i++) for (j = i + 1; j <= m; j++) if (b[j] < b[i]) { t = b[i]; b[i] = b[j]; b[j] = t }
            return m % 2 ? b[(m + 1) / 2] : (b[m / 2] + b[m / 2 + 1]) / 2 }
        END { for (bt = 64; bt <= 128; bt *= 2) if (n["psd," bt] && n["local," bt]) print bt, med("psd," bt), med("local," bt) }' "$others/train.csv"
}

# One row of the summary: area, figure, psd, reference, ratio.
summary_rows() {
    # This suite's rows (bench_redis, bench_scale): paired per-rep ratios, median [min-max].
    cat "$out/summary_redis.md" "$out/summary_scale.md"
    # Wire (bench_wire): round trip vs its raw floor, throughput vs the raw stream.
    if [ -f "$others/wire.csv" ]; then
        awk -F, 'NR > 1 && $1 ~ /^psd_/ && $11 != "" {
            printf "| wire | %s %d bytes: round trip vs raw exchange of the same bytes | %.1f us | %.1f us | %.2fx |\n", $1, $2, $5, $10, $11
        }' "$others/wire.csv"
    fi
    # Compute (bench_ops), one OpenBLAS thread: op GFLOP/s vs sgemm of the same FLOPs.
    if [ -f "$others/ops.csv" ]; then
        awk -F, 'NR == 1 { for (i = 1; i <= NF; i++) c[$i] = i; next }
            $c["threads"] == 1 && $c["sgemm_sq_gflops"] > 0 && $c["mflop"] >= 1 {
            cpu = c["ratio_vs_sgemm_sq_cpu"] ? sprintf(" (%.2fx by thread CPU time)", $c["ratio_vs_sgemm_sq_cpu"]) : ""
            printf "| compute | %s %s vs sgemm (1 thread) | %.1f GFLOP/s | %.1f GFLOP/s | %.2fx%s |\n", $c["layer"], $c["op"], $c["op_gflops"], $c["sgemm_sq_gflops"], $c["ratio_vs_sgemm_sq"], cpu
        }' "$others/ops.csv"
    fi
    # Training (run_train.sh): one worker through psd vs --local.
    if [ -f "$others/train.csv" ]; then
        train_medians | awk '{ printf "| training | batch %d, 1 worker through psd vs in-process (examples/s) | %.1f | %.1f | %.2fx |\n", $1, $2, $3, $2 / $3 }'
    fi
    # Persistence (run_persist.sh): acknowledged updates/s vs Redis AOF, same fsync policy.
    if [ -f "$others/persist.md" ]; then
        awk -F, '$1 == "csv" && $2 == "updates_per_s" && $6 > 0 {
            printf "| persistence | updates/s, fsync %s, %s client(s) vs Redis AOF INCRBY | %.0f/s | %.0f/s | %.2fx |\n", $3, $4, $5, $6, $5 / $6
        }' "$others/persist.md"
    fi
}

goal_rows() {
    cat "$out/goals_redis.csv" "$out/goals_scale.csv" 2>/dev/null |
        awk -F, '{ printf "| %s | %s | %s | %s | %s |\n", $1, $2, $3, $4, ($5 == "yes" ? "yes" : "**no**") }'
    if [ -f "$others/ops.csv" ]; then
        # The thread-CPU-time ratio when bench_ops reports it (robust to preemption on a shared
        # machine), else the wall-clock one.
        awk -F, 'NR == 1 { for (i = 1; i <= NF; i++) c[$i] = i; next }
            $c["threads"] == 1 && $c["op"] ~ /^conv2d/ {
            k = c["ratio_vs_sgemm_sq_cpu"] ? "ratio_vs_sgemm_sq_cpu" : "ratio_vs_sgemm_sq"; r = $c[k]
            printf "| conv2d forward and backward >= 0.8x sgemm (issue 4) | %s %s, 1 thread (%s) | %.2f | 0.8 | %s |\n", $c["layer"], $c["op"], (k ~ /cpu/ ? "thread CPU time" : "wall clock"), r, (r >= 0.8 ? "yes" : "**no**") }' "$others/ops.csv"
    fi
    if [ -f "$others/wire.md" ]; then
        awk -F' [|] ' '/^## Design goals/ { g = 1; next } /^## / { g = 0 }
            g && /^[|] / && !/^[|] goal/ && !/^[|]--/ { sub(/^[|] /, "", $1); sub(/ [|]$/, "", $3)
                printf "| %s (issue 2) | bench_wire, 1 client | %s | | %s |\n", $1, $2, $3 }' "$others/wire.md"
    fi
    if [ -f "$others/train.csv" ]; then
        train_medians | awk '{ printf "| parameter-server overhead <= 5%% (issue 5) | batch %d, 1 worker | %.1f%% | 5%% | %s |\n", $1, 100 * (1 - $2 / $3), (1 - $2 / $3 <= 0.05 ? "yes" : "**no**") }'
    fi
}

{
    echo "# pscope benchmark results"
    echo
    echo "Generated by \`bench/run.sh$([ "$quick" = 1 ] && echo ' --quick')\` on $(date -u '+%Y-%m-%d %H:%M UTC'), commit $commit;"
    echo "suite wall time $(((t_end - t_begin) / 60)) min $(((t_end - t_begin) % 60)) s. Methodology: [docs/benchmarks.md](../../docs/benchmarks.md)."
    echo
    echo "**Machine:** $cpu, $(nproc) cores, $mem RAM, kernel $(uname -r), redis-server $(redis-server --version | sed 's/.*v=\([^ ]*\).*/\1/'), hiredis $(pkg-config --modversion hiredis)."
    echo "**Noise:** this machine is shared: other engineers were building and testing while this ran (load average"
    echo "$load_before before, $load_after after, on $(nproc) cores). Figures are medians of $reps alternating psd/Redis"
    echo "reps with [min-max]; wide ranges mean the machine was busy, and single runs can differ by 2x or more."
    echo
    echo "## Headlines"
    echo
    headlines
    echo
    echo "## Design goals"
    echo
    echo "| goal | case | measured | target | met |"
    echo "|---|---|---:|---:|---|"
    goal_rows
    echo
    echo "## Every ratio in one table"
    echo
    echo "Ratio = psd / reference for rates (higher is better for psd); for times, bytes and CPU it is psd's"
    echo "figure over the reference's as labelled (lower is better for psd). This suite's ratios are the median"
    echo "[min-max] of per-rep ratios (psd and its reference measured back to back). Sources: this suite's CSVs (tensor, smallops, manyvars, scale) and"
    echo "the other areas' results in this directory (wire, ops, train, persist) as last produced."
    echo
    echo "| area | figure | psd | reference | ratio |"
    echo "|---|---|---:|---:|---:|"
    summary_rows
    echo
    cat "$out/suite_redis.md" "$out/suite_scale.md"
    for a in wire ops train persist; do
        if [ -f "$others/$a.md" ]; then
            echo "## From the $a benchmark (bench/results/$a.md, $(date -u -r "$others/$a.md" '+%Y-%m-%d %H:%M UTC'))"
            echo
            sed -e '1{/^# /d}' -e 's/^## /### /' "$others/$a.md"
            echo
        fi
    done
} >"$res"
log "wrote $res ($(((t_end - t_begin) / 60)) min $(((t_end - t_begin) % 60)) s)"
