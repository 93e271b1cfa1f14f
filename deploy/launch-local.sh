#!/usr/bin/env bash
# pscope's training demo as plain processes on this machine: the topology of docker-compose.yml
# (psd, three asynchronous workers, an evaluator, then psctl as a one-shot inspection), with the
# same flags. Logs, the accuracy curve (CSV, PNG when gnuplot is installed) and psctl's listing go
# to $OUT. Every process started here is stopped by its pid on exit.
#
#   deploy/launch-local.sh                     # the full run (target: test accuracy >= 0.90)
#   MAX_GLOBAL_STEP=300 deploy/launch-local.sh # a short run
#   SHARDS=2 PARTITIONS=4 deploy/launch-local.sh   # two psd shards, fc1 partitioned in 4 parts
#   MODE=sync deploy/launch-local.sh           # synchronous replicas (docs/consistency.md)
#   MODE=ssp STALENESS=2 deploy/launch-local.sh    # bounded staleness
#
# Environment (defaults in brackets): BUILD [build/release], OUT [run], PORT [7070],
# WORKERS [3], BATCH [64], MAX_GLOBAL_STEP [3000], EVAL_EVERY [250], OPTIMIZER [adam], LR [0.001],
# LR_DECAY_RATE [0.5] every LR_DECAY_STEPS [1000] global steps, SEED [42],
# DATA [/usr/share/datasets/fashion-mnist], THREADS per worker [1], SHARDS [1] psd processes on
# PORT, PORT+1, ... (pstrain --shards), PARTITIONS [0: none] parts of fc1 (pstrain --partitions),
# SECURE [1]: psd with --users and TLS (certificates from scripts/make-certs.sh, a users file with a
# worker "trainer" and an admin "admin", passwords in files under OUT/secrets); 0 = open plaintext.
# MODE [async] async|sync|ssp (pstrain --mode), REPLICAS_TO_AGGREGATE [0: WORKERS; fewer = backup
# workers], STALENESS [2] (ssp), DROPOUT [0.4] (the rate before the last layer).
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
BUILD=${BUILD:-$root/build/release}
OUT=${OUT:-$root/run}
PORT=${PORT:-7070}
WORKERS=${WORKERS:-3}
BATCH=${BATCH:-64}
MAX_GLOBAL_STEP=${MAX_GLOBAL_STEP:-3000}
EVAL_EVERY=${EVAL_EVERY:-250}
OPTIMIZER=${OPTIMIZER:-adam}
LR=${LR:-0.001}
LR_DECAY_RATE=${LR_DECAY_RATE:-0.5}
LR_DECAY_STEPS=${LR_DECAY_STEPS:-1000}
SEED=${SEED:-42}
DATA=${DATA:-/usr/share/datasets/fashion-mnist}
THREADS=${THREADS:-1}
SHARDS=${SHARDS:-1}
PARTITIONS=${PARTITIONS:-0}
SECURE=${SECURE:-1}
MODE=${MODE:-async}
REPLICAS_TO_AGGREGATE=${REPLICAS_TO_AGGREGATE:-0}
STALENESS=${STALENESS:-2}
DROPOUT=${DROPOUT:-0.4}

psd=$BUILD/server/psd
pstrain=$BUILD/examples/train/pstrain
psctl=$BUILD/client/psctl/psctl
for b in "$psd" "$pstrain"; do
    if [ ! -x "$b" ]; then
        echo "launch-local: $b is missing; build first (scripts/demo.sh does)" >&2
        exit 1
    fi
done
if [ ! -r "$DATA/train-images-idx3-ubyte.gz" ]; then
    echo "launch-local: Fashion-MNIST is not in $DATA: install the Debian package" \
         "dataset-fashion-mnist (scripts/install-deps.sh) or set DATA" >&2
    exit 1
fi

mkdir -p "$OUT"
rm -f "$OUT"/*.log "$OUT"/psd*.port "$OUT/curve.csv" "$OUT/curve.png"
pids=()
cleanup() {
    for p in "${pids[@]}"; do
        kill "$p" 2>/dev/null || true
    done
    wait 2>/dev/null || true
}
trap cleanup EXIT INT TERM

# Security (docs/security.md): certificates, passwords and the users file, made fresh per run.
# libpsclient (pstrain) and psctl read PS_USER, PS_PASSWORD_FILE and PS_TLS_CA.
secure_args=()
if [ "$SECURE" = 1 ]; then
    sec=$OUT/secrets
    rm -rf "$sec"
    mkdir -p "$sec"
    chmod 700 "$sec"
    "$root/scripts/make-certs.sh" "$sec/certs" > /dev/null
    (umask 077
     for u in trainer admin; do
         head -c 18 /dev/urandom | base64 > "$sec/$u.password"
     done
     printf 'trainer worker %s\nadmin admin %s\n' \
         "$(tr -d '\n' < "$sec/trainer.password" | "$psd" hash-password)" \
         "$(tr -d '\n' < "$sec/admin.password" | "$psd" hash-password)" > "$sec/users")
    secure_args=(--users "$sec/users" --tls-cert "$sec/certs/server.pem"
                 --tls-key "$sec/certs/server.key")
    export PS_USER=trainer PS_PASSWORD_FILE=$sec/trainer.password PS_TLS_CA=$sec/certs/ca.pem
    echo "launch-local: auth and TLS on (users and certificates in $sec)"
fi

# One BLAS thread per process: three workers, the evaluator and psd share the cores.
export OPENBLAS_NUM_THREADS=$THREADS
servers=""
for i in $(seq 0 $((SHARDS - 1))); do
    servers="$servers${servers:+,}127.0.0.1:$((PORT + i))"
done
common=(--shards "$servers" --data "$DATA" --batch "$BATCH" --optimizer "$OPTIMIZER"
        --lr "$LR" --lr-decay-rate "$LR_DECAY_RATE" --lr-decay-steps "$LR_DECAY_STEPS"
        --seed "$SEED" --threads "$THREADS" --max-global-step "$MAX_GLOBAL_STEP"
        --mode "$MODE" --replicas-to-aggregate "$REPLICAS_TO_AGGREGATE" --staleness "$STALENESS"
        --dropout "$DROPOUT")
if [ "$PARTITIONS" -gt 0 ]; then
    common+=(--partitions "$PARTITIONS")
fi

start=$(date +%s.%N)
# Shard i: psd on PORT+i; shard 0 keeps the single-shard names psd.log and psd.port.
psd_pids=()
for i in $(seq 0 $((SHARDS - 1))); do
    sfx=$([ "$i" = 0 ] && echo "" || echo "-$i")
    "$psd" --listen "127.0.0.1:$((PORT + i))" --port-file "$OUT/psd$sfx.port" \
        --log-level notice "${secure_args[@]}" 2> "$OUT/psd$sfx.log" &
    psd_pids+=("$!")
    pids+=("$!")
    for _ in $(seq 100); do
        [ -s "$OUT/psd$sfx.port" ] && break
        sleep 0.1
    done
    if [ ! -s "$OUT/psd$sfx.port" ]; then
        echo "launch-local: psd $i did not start; its log:" >&2
        cat "$OUT/psd$sfx.log" >&2
        exit 1
    fi
    echo "launch-local: psd shard $i on 127.0.0.1:$((PORT + i)) (pid ${psd_pids[$i]}); logs in $OUT"
done

# Worker 0 first: it creates and initializes the variables at psd; the others attach (identical
# model code everywhere: whoever arrives first would do the same).
worker_pids=()
start_worker() {
    "$pstrain" "${common[@]}" --worker-index "$1" --num-workers "$WORKERS" --log-every 100 \
        > "$OUT/worker-$1.log" 2>&1 &
    worker_pids+=("$!")
    pids+=("$!")
}
start_worker 0
for _ in $(seq 300); do
    grep -q "model declared" "$OUT/worker-0.log" 2>/dev/null && break
    sleep 0.1
done
for i in $(seq 1 $((WORKERS - 1))); do
    start_worker "$i"
done
: > "$OUT/evaluator.log"
"$pstrain" --evaluator "${common[@]}" --eval-every "$EVAL_EVERY" \
    --csv "$OUT/curve.csv" --png "$OUT/curve.png" > "$OUT/evaluator.log" 2>&1 &
eval_pid=$!
pids+=("$eval_pid")
tail -q -n +1 -f "$OUT/evaluator.log" --pid "$eval_pid" &
tail_pid=$!
pids+=("$tail_pid")

status=0
for i in "${!worker_pids[@]}"; do
    if ! wait "${worker_pids[$i]}"; then
        echo "launch-local: worker $i failed; its log:" >&2
        tail -n 20 "$OUT/worker-$i.log" >&2
        status=1
    fi
done
wait "$eval_pid" || { echo "launch-local: the evaluator failed" >&2; status=1; }
wait "$tail_pid" 2>/dev/null || true
end=$(date +%s.%N)

# psctl as a one-shot inspection (the compose file's psctl service).
if [ -x "$psctl" ]; then
    : > "$OUT/psctl-ls.log"
    for i in $(seq 0 $((SHARDS - 1))); do
        echo "== shard $i (127.0.0.1:$((PORT + i)))" >> "$OUT/psctl-ls.log"
        if [ "$SECURE" = 1 ]; then
            PS_USER=admin PS_PASSWORD_FILE=$sec/admin.password \
                "$psctl" --server "127.0.0.1:$((PORT + i))" ls >> "$OUT/psctl-ls.log" 2>&1 || true
        else
            "$psctl" --server "127.0.0.1:$((PORT + i))" ls >> "$OUT/psctl-ls.log" 2>&1 || true
        fi
    done
    echo "launch-local: psctl ls:"
    cat "$OUT/psctl-ls.log"
    if [ "$SECURE" = 1 ]; then
        PS_USER=admin PS_PASSWORD_FILE=$sec/admin.password \
            "$psctl" --server "127.0.0.1:$PORT" workers > "$OUT/psctl-workers.log" 2>&1 || true
    else
        "$psctl" --server "127.0.0.1:$PORT" workers > "$OUT/psctl-workers.log" 2>&1 || true
    fi
    echo "launch-local: psctl workers:"
    cat "$OUT/psctl-workers.log"
else
    echo "launch-local: psctl not built; skipping the inspection"
fi

for p in "${psd_pids[@]}"; do
    kill -TERM "$p" 2>/dev/null || true
    wait "$p" 2>/dev/null || true
done

echo "launch-local: workers:"
grep -h " done: " "$OUT"/worker-*.log || true
awk -v s="$start" -v e="$end" 'BEGIN { printf "launch-local: wall time %.1f s\n", e - s }'
grep -h "evaluator: done" "$OUT/evaluator.log" || true
echo "launch-local: curve in $OUT/curve.csv$([ -f "$OUT/curve.png" ] && echo " and $OUT/curve.png")"
exit $status
