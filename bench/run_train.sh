#!/usr/bin/env bash
# Training throughput of the demo (examples/s): one worker through psd against the same training
# loop in one process without psd (pstrain --local: the same store and optimizer code, in-process),
# which is the parameter-server overhead, for each of the worker's I/O modes (--io sync: one
# blocking pull and step per step, the loop before issue 14; overlap, the default: gradients pushed
# layer by layer during the backward pass and the next weights pulled behind them; priority: the
# same transfers sent in the order the next forward pass needs them, BytePS-style, within a 4 MiB
# window, pulls in 1 MiB chunks; prefetch: the next step's weights pulled while the step
# computes), then one, two and three asynchronous workers on one psd.
# Builds psd and pstrain in Release without sanitizers (build/bench-train), one OpenBLAS thread per
# process, local and psd runs interleaved and repeated because the machine is shared. The overhead
# is a paired ratio: per repetition, 1 - (psd examples/s) / (local examples/s) of the local and psd
# runs made back to back, then the median [min-max] of those. Every repetition runs local, sync,
# overlap, priority and prefetch back to back (IOS="..." picks the psd modes). Writes
# bench/results/train.md (ending with its provenance: command, commit, clean tree or not, date, load) and bench/results/train.csv.
#
# CPU per step is recorded too, which the shared machine's load does not stretch: the worker's
# compute thread (forward and backward), the worker process (with its I/O thread) and psd
# (/proc/PID/stat before it stops); worker + psd - local is the CPU the parameter server costs.
#
#   bench/run_train.sh [steps per run, default 60] [repetitions, default 5]
#   BATCHES="64" WORKERS="" bench/run_train.sh ...   # only these batch sizes / worker counts
#   REPORT_FROM=file.csv bench/run_train.sh    # rewrite train.md from an earlier run's CSV
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
. "$root/bench/provenance.sh"
ps_bench_begin bench/run_train.sh "$@"
build=${BUILD:-$root/build/bench-train}
steps=${1:-60}
reps=${2:-5}
data=${DATA:-/usr/share/datasets/fashion-mnist}
out="$root/bench/results"
tmp=$(mktemp -d /tmp/pscope-bench-train.XXXXXX)
psd_pid=""
cleanup() {
    if [ -n "$psd_pid" ]; then
        kill "$psd_pid" 2>/dev/null || true
        wait "$psd_pid" 2>/dev/null || true
    fi
    rm -rf "$tmp"
}
trap cleanup EXIT INT TERM

if [ -z "${BUILD:-}" ] && [ -z "${REPORT_FROM:-}" ]; then
    cmake -S "$root" -B "$build" -DCMAKE_BUILD_TYPE=Release -DPS_SANITIZE= -DBUILD_TESTING=OFF \
        >/dev/null
    cmake --build "$build" --target psd pstrain -j2 >/dev/null
fi
psd=$build/server/psd
pstrain=$build/examples/train/pstrain
export OPENBLAS_NUM_THREADS=1

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

# psd's CPU seconds so far (user + system).
psd_cpu() { awk -v t="$(getconf CLK_TCK)" '{ printf "%.3f", ($14 + $15) / t }' "/proc/$psd_pid/stat"; }

stop_psd() {
    kill "$psd_pid"
    wait "$psd_pid" || true
    psd_pid=""
}

# The closing line's fields: "... examples/s X first_loss ... (pull P% compute C% apply A%)".
field() { sed -n "s|.* $1 \([0-9.]*\).*|\1|p" "$2" | head -n 1; }
share() { sed -n "s|.*$1 \([0-9.]*\)%.*|\1|p" "$2" | head -n 1; }
batches=${BATCHES-64 128 256}
ios=${IOS-sync overlap priority prefetch}
workers=${WORKERS-1 2 3}

median() { sort -g | awk '{ a[NR] = $1 } END { print (NR % 2) ? a[(NR + 1) / 2] : (a[NR / 2] + a[NR / 2 + 1]) / 2 }'; }

csv="$out/train.csv"
mkdir -p "$out"
if [ -n "${REPORT_FROM:-}" ]; then
    [ "$REPORT_FROM" -ef "$csv" ] || cp "$REPORT_FROM" "$csv"
    steps=${1:-"?"}
    reps=$(awk -F, '$1 == "local" && $2 == 64 { n++ } END { print n + 0 }' "$csv")
else
echo "config,batch,workers,rep,examples_per_s,pull_pct,compute_pct,apply_pct,compute_cpu_ms,proc_cpu_ms,psd_cpu_ms" >"$csv"

# ---- the parameter-server overhead: one worker vs --local, interleaved ----
for batch in $batches; do
    for rep in $(seq "$reps"); do
        "$pstrain" --local --data "$data" --batch "$batch" --steps "$steps" --log-every 1000000 \
            >"$tmp/local.out" 2>&1
        echo "local,$batch,1,$rep,$(field examples/s "$tmp/local.out"),0,$(share compute "$tmp/local.out"),$(share apply "$tmp/local.out"),$(field compute_thread "$tmp/local.out"),$(field process "$tmp/local.out"),0" >>"$csv"
        line="batch $batch rep $rep: local $(field examples/s "$tmp/local.out") ex/s"
        for io in $ios; do
            config=psd-$io
            [ "$io" = overlap ] && config=psd
            start_psd
            "$pstrain" --server "$addr" --data "$data" --batch "$batch" --steps "$steps" \
                --io "$io" --log-every 1000000 >"$tmp/psd1.out" 2>&1
            pcpu=$(awk -v c="$(psd_cpu)" -v s="$steps" 'BEGIN { printf "%.1f", 1000 * c / s }')
            stop_psd
            echo "$config,$batch,1,$rep,$(field examples/s "$tmp/psd1.out"),$(share pull "$tmp/psd1.out"),$(share compute "$tmp/psd1.out"),$(share apply "$tmp/psd1.out"),$(field compute_thread "$tmp/psd1.out"),$(field process "$tmp/psd1.out"),$pcpu" >>"$csv"
            line="$line, $io $(field examples/s "$tmp/psd1.out")"
        done
        echo "$line ex/s; load $(cut -d' ' -f1-3 /proc/loadavg)"
        echo "load,$batch,1,$rep,$(cut -d' ' -f1 /proc/loadavg),,,,,," >>"$csv"
    done
done

# ---- one, two and three asynchronous workers on one psd (batch 64) ----
for n in $workers; do
    for rep in $(seq "$reps"); do
        start_psd
        pids=()
        t0=$(date +%s.%N)
        for i in $(seq 0 $((n - 1))); do
            "$pstrain" --server "$addr" --data "$data" --batch 64 --steps "$steps" \
                --worker-index "$i" --num-workers "$n" --log-every 1000000 >"$tmp/w$i.out" 2>&1 &
            pids+=("$!")
        done
        for p in "${pids[@]}"; do wait "$p"; done
        t1=$(date +%s.%N)
        stop_psd
        total=$(awk -v n="$n" -v s="$steps" -v a="$t0" -v b="$t1" \
            'BEGIN { printf "%.1f", n * s * 64 / (b - a) }')
        echo "workers,64,$n,$rep,$total,,,,,," >>"$csv"
        echo "$n worker(s) rep $rep: $total ex/s in total"
    done
done
fi

# ---- the report ----
col() { awk -F, -v c="$1" -v b="$2" -v w="$3" -v col="$4" \
        '$1 == c && $2 == b && $3 == w { print $col }' "$csv"; }
med() { col "$@" | median; }
best() { col "$@" | sort -g | tail -n 1; }
# The paired overhead of one batch size from column col (5: examples/s, 7: compute share): per rep,
# 1 - psd / local, then "median% [min% to max%]".
paired() {
    awk -F, -v b="$1" -v col="$2" -v cfg="${3:-psd}" '$3 == 1 && $2 == b && $1 == "local" { l[$4] = $col }
        $3 == 1 && $2 == b && $1 == cfg { p[$4] = $col }
        END { n = 0; for (r in l) if (r in p && l[r] > 0) v[++n] = 100 * (1 - p[r] / l[r])
            for (i = 1; i <= n; i++) for (j = i + 1; j <= n; j++) if (v[j] < v[i]) { t = v[i]; v[i] = v[j]; v[j] = t }
            m = n % 2 ? v[(n + 1) / 2] : (v[n / 2] + v[n / 2 + 1]) / 2
            printf "%.1f%% [%.1f%% to %.1f%%]", m, v[1], v[n] }' "$csv"
}
{
    echo "# Training throughput: the parameter-server overhead and 1-3 workers"
    echo
    echo "Measured by bench/run_train.sh (Release, no sanitizers, one OpenBLAS thread"
    echo "per process): the demo CNN (conv 5x5x32, pool, conv 5x5x64, pool, dense 1024, dense 10;"
    echo "3.27 M parameters, 13.1 MB of float32) on Fashion-MNIST with Adam, $steps steps per run,"
    echo "$reps runs per configuration, local and psd runs interleaved. Every psd step is one batched"
    echo "pull of the 8 trainable variables and one APPLY_GRADIENTS request with the 8 gradients"
    echo "(13.1 MB each way); psd runs Adam. The machine was shared with other engineers' builds and"
    echo "tests, so runs of one configuration vary widely: examples/s are given as the **best** run"
    echo "(the least disturbed) and the median; every overhead is the **paired** ratio, per repetition"
    echo "1 - psd / local of the two runs made back to back, as the median [min to max] over repetitions."
    echo
    echo "## One worker through psd vs the same loop in one process without psd"
    echo
    echo "\`--local\` runs the identical loop with the variables in an in-process store and the same"
    echo "optimizer code psd runs (psd_optim_apply), so the difference is what the parameter server"
    echo "adds: serialization, two loopback transfers per step, and psd's copy of the request."
    echo "\`--io sync\` is the worker loop before issue 14 (one blocking batched pull, compute, one"
    echo "blocking APPLY_GRADIENTS); \`overlap\` (the default) pushes each layer's gradients as the"
    echo "backward pass produces them (<ps/async.h>, one step in four parts) and pulls that layer's next"
    echo "weights right behind its push, so the forward pass waits per layer, with the same results as"
    echo "sync; \`priority\` sends the same transfers in the order the next forward pass needs them"
    echo "(each layer's push and pull carry its place as priority, conv1 first, as BytePS schedules),"
    echo "at most 4 MiB in flight, and pulls fc1's 12.8 MB weights in 1 MiB chunks of rows (GATHER),"
    echo "with the same results as sync; \`prefetch\` pulls the next step's weights while the step"
    echo "computes (at most one step stale). With overlap and prefetch the pull and apply shares are the time the worker was"
    echo "blocked on psd (a layer's weights not there yet, the last step's gradients not sent yet)."
    echo
    echo "| batch | --io | local examples/s, best (median) | through psd, best (median) | overhead from examples/s, paired | psd step: wait for pull / compute / wait for apply (median) | local step: compute / apply (median) | overhead from the step split, paired |"
    echo "|---:|---|---:|---:|---:|---|---|---:|"
    for batch in $batches; do
        lb=$(best local "$batch" 1 5)
        lm=$(med local "$batch" 1 5)
        cl=$(med local "$batch" 1 7)
        for cfg in psd-sync psd psd-priority psd-prefetch; do
            [ -n "$(col "$cfg" "$batch" 1 5)" ] || continue
            io=${cfg#psd-}
            [ "$cfg" = psd ] && io="overlap (default)"
            pb=$(best "$cfg" "$batch" 1 5)
            pm=$(med "$cfg" "$batch" 1 5)
            cp=$(med "$cfg" "$batch" 1 7)
            echo "| $batch | $io | $lb ($lm) | $pb ($pm) | $(paired "$batch" 5 "$cfg") | $(med "$cfg" "$batch" 1 6)% / $cp% / $(med "$cfg" "$batch" 1 8)% | $cl% / $(med local "$batch" 1 8)% | $(paired "$batch" 7 "$cfg") |"
        done
        ld=$(med load "$batch" 1 5)
        [ -n "$ld" ] && echo "| $batch | (1-minute load average during these runs, median) | | | | $ld | | |"
    done
    echo
    echo "### CPU per step, which the load does not stretch"
    echo
    echo "Milliseconds of CPU per training step (median over repetitions): the worker's compute thread"
    echo "(forward and backward), the worker process (with the I/O thread of --io overlap and"
    echo "prefetch), psd, and what the parameter server costs: worker process + psd - the local"
    echo "process (which runs the same Adam update in-process), also as a share of the local process."
    echo "On a machine with a free core this CPU runs beside the compute (overlap, prefetch); on this"
    echo "one, with every core busy, it is paid in wall time whatever the worker's I/O mode."
    echo
    echo "| batch | --io | compute thread | worker process | psd | parameter-server CPU (of local's) |"
    echo "|---:|---|---:|---:|---:|---:|"
    for batch in $batches; do
        lc=$(med local "$batch" 1 10)
        echo "| $batch | local | $(med local "$batch" 1 9) | $lc | | |"
        for cfg in psd-sync psd psd-priority psd-prefetch; do
            [ -n "$(col "$cfg" "$batch" 1 10)" ] || continue
            io=${cfg#psd-}
            [ "$cfg" = psd ] && io="overlap (default)"
            wc=$(med "$cfg" "$batch" 1 10)
            pc=$(med "$cfg" "$batch" 1 11)
            echo "| $batch | $io | $(med "$cfg" "$batch" 1 9) | $wc | $pc | $(awk -v w="$wc" -v p="$pc" -v l="$lc" 'BEGIN { printf "%.1f (%.1f%%)", w + p - l, 100 * (w + p - l) / l }') |"
        done
    done
    echo
    echo "The step split is measured inside each run, so it is far less sensitive to the shared"
    echo "machine than examples/s compared across runs. Both loops do the same compute C per step, so"
    echo "local step time / psd step time = (C / psd step) / (C / local step), the ratio of the two"
    echo "compute shares: the last column, 1 - that ratio, is the examples/s the parameter server"
    echo "costs (the pull, the transfer of the gradients and psd's handling of both; the Adam update"
    echo "itself is in both loops). A negative overhead (through psd faster than in one process) is"
    echo "what the overlapped modes give when the machine has a free core: the local loop runs the"
    echo "optimizer on its own thread, while a worker through psd computes the next layers as psd"
    echo "applies the last ones on the other core. With every core busy, the parameter server's CPU"
    echo "per step (the table above) is paid in wall time instead, whatever the I/O mode: the load"
    echo "average on the last line of the first table says which case a run was. The 2% goal of"
    echo "issue 14 is judged on the median paired overhead with --io overlap."
    echo
    echo "## One, two and three asynchronous workers (batch 64)"
    echo
    echo "Total examples/s of all workers (steps x batch x workers / wall time, one psd)."
    echo
    echo "| workers | examples/s total, best (median) | per worker (best) |"
    echo "|---:|---:|---:|"
    for n in $workers; do
        t=$(best workers 64 "$n" 5)
        echo "| $n | $t ($(med workers 64 "$n" 5)) | $(awk -v t="$t" -v n="$n" 'BEGIN { printf "%.1f", t / n }') |"
    done
    echo
    echo "Raw numbers: bench/results/train.csv."
    echo
    if [ -n "${REPORT_FROM:-}" ]; then
        echo "**Provenance:** this report was rewritten by \`REPORT_FROM=$REPORT_FROM bench/run_train.sh\`"
        echo "at commit $PS_BENCH_COMMIT ($PS_BENCH_TREE), $(date -u '+%Y-%m-%d %H:%M UTC'), from an earlier"
        echo "run's CSV; that run's commit, date and load are not recorded here."
    else
        ps_bench_provenance
    fi
} >"$out/train.md"
echo "wrote bench/results/train.md and bench/results/train.csv"
