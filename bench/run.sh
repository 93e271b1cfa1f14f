#!/usr/bin/env bash
# The one command of the benchmark suite (issue 8). Builds psd and the suite's programs in Release
# without sanitizers (build/bench), runs bench_redis (psd vs the loopback ceiling and redis-server:
# tensor throughput, small operations, many variables) and bench_scale (1 million variables, 1,000
# connections) -- each starts its own psd and redis-server on free 127.0.0.1 ports in temporary
# directories and stops them -- then the other areas' benches (wire, ops, train, persist), and
# writes bench/results/RESULTS.md (machine, date, commit, every ratio, the design goals) plus CSVs.
# Every results file ends with its provenance (bench/provenance.sh: command, commit, whether the
# tree was clean, date, load). A sub-benchmark that fails fails this script: no earlier section is
# folded in in its place.
#
#   bench/run.sh [--quick] [--reuse-others] [--reps N]
#     --quick         fewer and shorter reps, 200,000 variables instead of 1 million, and the
#                     other areas' benches in their short forms (wire --quick, fewer reps, shorter
#                     cells, 20 training steps per run)
#     --reuse-others  do not re-run the wire/ops/train/persist benches; fold in their last results,
#                     each with its own provenance line (RESULTS.md names the reused sections)
#     --reps N        repetitions of every psd/Redis figure (default 5; --quick 3)
#     --out DIR       write this suite's files and RESULTS.md to DIR instead of bench/results
#                     (the other areas' scripts always write bench/results; their results are read
#                     from there)
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
. "$root/bench/provenance.sh"
ps_bench_begin bench/run.sh "$@"
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
else
    reps=${reps:-5}
    secs=0.5
    nvars=1000000
fi

t_begin=$(date +%s)
load_before=$PS_BENCH_LOAD0
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
for f in suite_redis.md suite_scale.md; do
    { echo; ps_bench_provenance; echo; } >>"$out/$f"
done

# ---- the other areas' benches (their scripts, their outputs) ----
reused=""
run_other() { # name script args...
    local name=$1
    shift
    if [ "$reuse" = 1 ]; then
        if ! grep -q '^\*\*Provenance:\*\*' "$others/$name.md" 2>/dev/null; then
            log "$name: no earlier results with a provenance line in $others/$name.md: run without --reuse-others"
            exit 1
        fi
        log "$name: reusing bench/results/$name.md from an earlier run"
        reused="$reused $name"
        return 0
    fi
    log "$name: $*"
    mkdir -p "$build/logs"
    if ! "$@" >"$build/logs/$name.log" 2>&1; then
        log "$name FAILED (log: $build/logs/$name.log); no RESULTS.md is written"
        tail -5 "$build/logs/$name.log" >&2 || true
        exit 1
    fi
}
if [ "$quick" = 1 ]; then
    run_other wire "$root/bench/run_wire.sh" 3 --quick
    run_other ops "$root/bench/run_ops.sh" 5
    run_other persist "$root/bench/run_persist.sh" 1 64 64
    run_other train "$root/bench/run_train.sh" 20 3
    run_other multi "$root/bench/run_multi.sh" --secs 1
else
    run_other wire "$root/bench/run_wire.sh" 5
    run_other ops "$root/bench/run_ops.sh" 7
    run_other persist "$root/bench/run_persist.sh" 2 128 128
    run_other train "$root/bench/run_train.sh" 40 3
    run_other multi "$root/bench/run_multi.sh" --secs 2
fi

# ---- RESULTS.md ----
load_after=$(cut -d' ' -f1-3 /proc/loadavg)
t_end=$(date +%s)
cpu=$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //')
mem=$(awk '/MemTotal/ { printf "%.1f GiB", $2 / 1048576 }' /proc/meminfo)
res="$out/RESULTS.md"

# The headline table (the README's, from the same files: bench/headlines.sh).
headlines() {
    bash "$root/bench/headlines.sh" "$out" "$others"
}

# "batch median min max" of the paired per-rep overhead (1 - psd / local examples/s, the two runs
# of a rep made back to back) for every batch size of run_train.sh's one-worker runs.
train_paired() {
    awk -F, 'NR > 1 && $3 == 1 && $1 == "local" { l[$2, $4] = $5; b[$2] = 1 }
        NR > 1 && $3 == 1 && $1 == "psd" { p[$2, $4] = $5 }
        END { for (bt in b) { n = 0
                for (k in l) { split(k, q, SUBSEP); if (q[1] == bt && (k in p) && l[k] > 0) v[++n] = 1 - p[k] / l[k] }
                for (i = 1; i <= n; i++) for (j = i + 1; j <= n; j++) if (v[j] < v[i]) { t = v[i]; v[i] = v[j]; v[j] = t }
                if (n) print bt, (n % 2 ? v[(n + 1) / 2] : (v[n / 2] + v[n / 2 + 1]) / 2), v[1], v[n] } }' "$others/train.csv" | sort -n
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
    # Training (run_train.sh): one worker through psd vs --local, paired per rep.
    if [ -f "$others/train.csv" ]; then
        train_paired | awk '{ printf "| training | batch %d, 1 worker through psd vs in-process (examples/s) | | | %.2fx [%.2f-%.2f] |\n", $1, 1 - $2, 1 - $4, 1 - $3 }'
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
        awk -F, '{ printf "| %s | %s | %s | %s | %s |\n", $1, $2, $3, $4, ($5 == "yes" ? "yes" : $5 == "unreliable" ? "unreliable run (the reference did not bound psd)" : "**no**") }'
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
            g && /^[|] / && !/^[|] goal/ && !/^[|]--/ { sub(/^[|] /, "", $1); sub(/ [|]$/, "", $4)
                printf "| %s (issue 2) | bench_wire, 1 client; reference check: %s | %s | | %s |\n", $1, $3, $2, $4 }' "$others/wire.md"
    fi
    if [ -f "$others/multi_goals.csv" ]; then
        awk -F, 'NR > 1 { printf "| %s (issue 14) | bench_multi, paired reps | %s | | %s |\n", $1, $2, ($4 == "yes" ? "yes" : $4 == "no" ? "**no**" : $4) }' "$others/multi_goals.csv"
    fi
    if [ -f "$others/train.csv" ]; then
        # psd does strictly more work than the local loop: a rep where psd was faster (a negative
        # overhead) was disturbed, and the goal is not judged on that batch size.
        train_paired | awk '{ printf "| parameter-server overhead <= 5%% (issue 5) | batch %d, 1 worker, paired per rep | %.1f%% [%.1f%% to %.1f%%] | 5%% | %s |\n", $1, 100 * $2, 100 * $3, 100 * $4, ($3 < 0 ? "unreliable run (a rep where psd beat the local loop)" : $2 <= 0.05 ? "yes" : "**no**") }'
    fi
}

{
    echo "# pscope benchmark results"
    echo
    echo "Generated by \`$PS_BENCH_TOP\` at commit $PS_BENCH_COMMIT ($PS_BENCH_TREE), finished $(date -u '+%Y-%m-%d %H:%M UTC');"
    echo "suite wall time $(((t_end - t_begin) / 60)) min $(((t_end - t_begin) % 60)) s$([ "$quick" = 1 ] && echo ', in its quick mode (fewer and shorter repetitions: wider error than a full run)')."
    if [ -n "$reused" ]; then
        echo "Sections reused from earlier runs (see each one's provenance line):$reused."
    else
        echo "Every section below was measured by this run."
    fi
    echo "Methodology: [docs/benchmarks.md](../../docs/benchmarks.md)."
    echo
    echo "**Machine:** $cpu, $(nproc) cores, $mem RAM, kernel $(uname -r), redis-server $(redis-server --version | sed 's/.*v=\([^ ]*\).*/\1/'), hiredis $(pkg-config --modversion hiredis)."
    echo "**Noise:** this machine is shared: other engineers were building and testing while this ran (load average"
    echo "$load_before before, $load_after after, on $(nproc) cores). psd/Redis figures are medians of $reps alternating"
    echo "reps with [min-max]; every ratio is the median [min-max] of per-rep ratios (psd and its reference measured"
    echo "back to back). Wide ranges mean the machine was busy; a goal whose reference did not bound psd in this run"
    echo "says *unreliable run* instead of met."
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
    echo "figure over the reference's as labelled (lower is better for psd). Every ratio is the median"
    echo "[min-max] of per-rep ratios (psd and its reference measured back to back), or a single cell's ratio"
    echo "where the bench runs one (persistence). Sources: this suite's CSVs (tensor, smallops, manyvars, scale)"
    echo "and the other areas' results in this directory (wire, ops, train, persist)."
    echo
    echo "| area | figure | psd | reference | ratio |"
    echo "|---|---|---:|---:|---:|"
    summary_rows
    echo
    cat "$out/suite_redis.md" "$out/suite_scale.md"
    for a in wire ops train persist multi; do
        echo "## From the $a benchmark (bench/results/$a.md)"
        echo
        sed -e '1{/^# /d}' -e 's/^## /### /' "$others/$a.md"
        echo
    done
} >"$res"
log "wrote $res ($(((t_end - t_begin) / 60)) min $(((t_end - t_begin) % 60)) s)"
if [ "$out" = "$root/bench/results" ] && ! bash "$root/bench/headlines.sh" --check "$root/README.md" >/dev/null 2>&1; then
    log "README.md's benchmark table no longer matches bench/results: bench/headlines.sh --write README.md"
fi
