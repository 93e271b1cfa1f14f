#!/usr/bin/env bash
# The deployment test: deploy/docker-compose.yml run for real, as a user would, without any image
# registry. Steps: start Docker's daemon (Debian's docker.io) when none answers; make the base
# image with debootstrap of bookworm from this machine's apt mirror and `docker import` (reused
# when it exists); build pscope's image and the Prometheus image (apt inside them uses the same
# mirror, through the host's network); run a short training with two psd shards (profile
# shards2) and Prometheus, with auth and TLS on (secrets from deploy/make-secrets.sh); check the
# evaluator's accuracy, psctl's listing of both shards (as a reader, over TLS), that psd refuses
# a plaintext client, a TLS client without credentials and a wrong password, and that Prometheus
# scraped both psd (through its HTTP API); tear everything down (containers,
# networks, volumes; the images stay for the next run) and stop the daemon if this script started
# it. Called by scripts/test.sh after ctest; PS_SKIP_DEPLOY=1 skips it.
#
# Environment: PS_DEPLOY_STEPS [120] global steps, PS_DEPLOY_MIN_ACCURACY [0.55],
# PS_DEPLOY_BASE [pscope-base:bookworm], PS_DEPLOY_MIRROR [the first deb URI in apt's sources],
# PS_DEPLOY_KEEP=1 keeps the containers and volumes for inspection.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)

steps=${PS_DEPLOY_STEPS:-120}
min_acc=${PS_DEPLOY_MIN_ACCURACY:-0.55}
base=${PS_DEPLOY_BASE:-pscope-base:bookworm}
project=pscope-deploy-test
work=$(mktemp -d /tmp/pscope-deploy-XXXXXX)
dockerd_pid=
compose=()

log() { printf 'test-deploy: %s\n' "$*"; }
die() {
    printf 'test-deploy: FAILED: %s\n' "$*" >&2
    exit 1
}

# Debian's client first: /usr/local/bin may hold another.
docker=docker
[ -x /usr/bin/docker ] && docker=/usr/bin/docker
command -v "$docker" > /dev/null || die "docker is not installed (Debian package docker.io; scripts/install-deps.sh)"

cleanup() {
    local rc=$?
    if [ ${#compose[@]} -gt 0 ] && [ "${PS_DEPLOY_KEEP:-0}" != 1 ]; then
        "${compose[@]}" --profile shards2 down -v --remove-orphans > "$work/down.log" 2>&1 || true
    fi
    if [ -n "$dockerd_pid" ]; then
        kill "$dockerd_pid" 2> /dev/null || true
        for _ in $(seq 100); do
            kill -0 "$dockerd_pid" 2> /dev/null || break
            sleep 0.2
        done
    fi
    if [ $rc -ne 0 ] && [ -f "$work/compose.log" ]; then
        echo "test-deploy: the compose run's log (last 60 lines):" >&2
        tail -n 60 "$work/compose.log" >&2
    fi
    rm -rf "$work"
    exit $rc
}
trap cleanup EXIT INT TERM

# ---- 1. the daemon ----
if ! "$docker" info > /dev/null 2>&1; then
    command -v dockerd > /dev/null || die "no Docker daemon answers and dockerd is missing"
    log "starting dockerd (log in $work/dockerd.log)"
    dockerd --host unix:///var/run/docker.sock > "$work/dockerd.log" 2>&1 &
    dockerd_pid=$!
    for _ in $(seq 150); do
        "$docker" info > /dev/null 2>&1 && break
        kill -0 "$dockerd_pid" 2> /dev/null || { cat "$work/dockerd.log" >&2; die "dockerd exited"; }
        sleep 0.2
    done
    "$docker" info > /dev/null 2>&1 || die "dockerd did not answer within 30 s"
fi

# ---- 2. compose: v2 (docker compose) when present, else Debian's docker-compose ----
if "$docker" compose version > /dev/null 2>&1; then
    compose=("$docker" compose)
elif command -v docker-compose > /dev/null; then
    compose=(docker-compose)
else
    die "neither 'docker compose' nor docker-compose (Debian package) is installed"
fi
log "compose: $("${compose[@]}" version 2>/dev/null | head -n 1)"
compose+=(-p "$project" -f deploy/docker-compose.yml)

# The apt mirror, and its address for containers that build with the host's network.
mirror=${PS_DEPLOY_MIRROR:-$(sed -n 's/^URIs: *//p' /etc/apt/sources.list.d/debian.sources 2>/dev/null \
    | head -n 1)}
[ -n "$mirror" ] || mirror=$(awk '$1 == "deb" { print $2; exit }' /etc/apt/sources.list 2>/dev/null)
[ -n "$mirror" ] || mirror=http://deb.debian.org/debian
mirror_host=$(printf '%s' "$mirror" | sed -E 's#^[a-z]+://([^/:]+).*#\1#')
add_host=()
if addr=$(getent hosts "$mirror_host" | awk '{ print $1; exit }') && [ -n "$addr" ]; then
    add_host=(--add-host "$mirror_host:$addr")
fi

# ---- 3. the base image, without a registry ----
if "$docker" image inspect "$base" > /dev/null 2>&1; then
    log "base image $base exists: reused"
else
    command -v debootstrap > /dev/null || die "debootstrap is not installed (scripts/install-deps.sh)"
    log "debootstrap bookworm from $mirror (a few minutes, once)"
    debootstrap --variant=minbase bookworm "$work/rootfs" "$mirror" > "$work/debootstrap.log" 2>&1 \
        || { tail -n 30 "$work/debootstrap.log" >&2; die "debootstrap failed"; }
    # The image's apt sources: this machine's (the same mirror, updates and security).
    if [ -f /etc/apt/sources.list.d/debian.sources ]; then
        cp /etc/apt/sources.list.d/debian.sources "$work/rootfs/etc/apt/sources.list.d/"
        rm -f "$work/rootfs/etc/apt/sources.list"
    fi
    rm -rf "$work"/rootfs/var/cache/apt/archives/*.deb
    tar -C "$work/rootfs" -c . | "$docker" import \
        -c 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
        -c 'CMD ["/bin/bash"]' - "$base" > /dev/null
    rm -rf "$work/rootfs"
    log "base image $base imported"
fi

# ---- 4. images (the classic builder uses the local base; apt reaches the mirror via the host) ----
build() {
    DOCKER_BUILDKIT=0 "$docker" build --network host "${add_host[@]}" --build-arg "BASE_IMAGE=$base" \
        "$@" > "$work/build.log" 2>&1 || { tail -n 40 "$work/build.log" >&2; die "docker build $*"; }
}
t0=$(date +%s)
log "building pscope:latest"
build -f deploy/Dockerfile -t pscope:latest .
log "building pscope-prometheus:latest"
build -t pscope-prometheus:latest deploy/prometheus
log "images built in $(($(date +%s) - t0)) s"

# ---- 5. secrets (auth and TLS): certificates, passwords, the users file, as compose secrets ----
PSCOPE_IMAGE=pscope:latest deploy/make-secrets.sh "$work/secrets" > "$work/secrets.log" 2>&1 \
    || { cat "$work/secrets.log" >&2; die "deploy/make-secrets.sh"; }
export PSCOPE_SECRETS=$work/secrets
log "secrets made in $PSCOPE_SECRETS"

# ---- 6. a short training run: two shards, three workers, the evaluator, Prometheus ----
export COMPOSE_PROFILES=shards2 PSD_SERVERS=psd:7070,psd1:7070
export PSD_METRICS_TARGETS=psd:7071,psd1:7071 SCRAPE_INTERVAL=1s
export PSD_PUBLISH=127.0.0.1:0 PROMETHEUS_PUBLISH=127.0.0.1:0
export MAX_GLOBAL_STEP=$steps EVAL_EVERY=$((steps / 2)) LOG_EVERY=20 TEST_LIMIT=2000
export TRAIN_LIMIT=20000 BATCH=64 IDLE_SECONDS=20 BASE_IMAGE=$base
"${compose[@]}" --profile shards2 down -v --remove-orphans > /dev/null 2>&1 || true
t0=$(date +%s)
log "compose up: $steps global steps on 2 shards"
"${compose[@]}" up -d --no-build psd psd1 prometheus worker0 worker1 worker2 evaluator \
    > "$work/compose.log" 2>&1 || die "compose up"
evaluator=$("${compose[@]}" ps -q evaluator)
[ -n "$evaluator" ] || die "no evaluator container"
status=$(timeout 600 "$docker" wait "$evaluator") || die "the evaluator did not finish in 10 minutes"
"${compose[@]}" logs --no-color > "$work/compose.log" 2>&1 || true
[ "$status" = 0 ] || die "the evaluator exited with status $status"
log "training finished in $(($(date +%s) - t0)) s"

# ---- 7. checks ----
done_line=$(grep -h "evaluator: done" "$work/compose.log" | tail -n 1)
[ -n "$done_line" ] || die "the evaluator printed no result"
acc=$(printf '%s\n' "$done_line" | sed -n 's/.*best test_accuracy \([0-9.]*\).*/\1/p')
log "$done_line"
awk -v a="$acc" -v m="$min_acc" 'BEGIN { exit !(a + 0 > m + 0) }' \
    || die "test accuracy $acc is not above $min_acc"
for w in 0 1 2; do
    grep -q "worker $w done: " "$work/compose.log" || die "worker $w did not finish (see the log)"
done

"${compose[@]}" run --rm --no-deps psctl > "$work/psctl.log" 2>&1 || { cat "$work/psctl.log" >&2; die "psctl ls"; }
for s in psd:7070 psd1:7070; do
    awk -v s="== $s" '$0 == s { on = 1; next } /^== / { on = 0 } on' "$work/psctl.log" \
        > "$work/ls-$s.txt"
    n=$(grep -c "float32\|int64" "$work/ls-$s.txt" || true)
    [ "$n" -gt 0 ] || { cat "$work/psctl.log" >&2; die "psctl listed no variables on $s"; }
    log "psctl ls $s: $n variables"
done
grep -q "global_step" "$work/psctl.log" || die "global_step is missing from the listing"

# The deployed psd lets in only who belongs: a plaintext client, a TLS client without credentials
# and one with a wrong password are refused (psctl in the image, on the compose network).
refused() { # what, words expected in psctl's error, shell setup before `psctl ls`
    local out rc=0
    out=$("${compose[@]}" run --rm --no-deps --entrypoint sh psctl -c "$3 psctl --server psd:7070 ls" 2>&1) \
        || rc=$?
    [ "$rc" != 0 ] || { printf '%s\n' "$out" >&2; die "$1: psctl ls succeeded"; }
    printf '%s\n' "$out" | grep -qi "$2" || { printf '%s\n' "$out" >&2; die "$1: no '$2' in psctl's error"; }
    log "refused as it must be: $1"
}
refused "a plaintext client" "speaks TLS only" "unset PS_TLS_CA;"
refused "a TLS client without credentials" "authentication required" "unset PS_USER PS_PASSWORD_FILE;"
refused "a wrong password" "authentication failed" \
    "echo not-the-password > /tmp/pw && export PS_PASSWORD_FILE=/tmp/pw;"
grep -q "no --users" "$work/compose.log" && die "psd ran open (no --users) in the deployment"

# Prometheus: both psd up, and the training's optimizer steps in its series.
pport=$("${compose[@]}" port prometheus 9090 | sed 's/.*://')
query() {
    python3 - "$pport" "$1" <<'PY'
import json, sys, urllib.parse, urllib.request
port, q = sys.argv[1], sys.argv[2]
url = "http://127.0.0.1:%s/api/v1/query?query=%s" % (port, urllib.parse.quote(q))
with urllib.request.urlopen(url, timeout=10) as r:
    d = json.load(r)
assert d["status"] == "success", d
for s in d["data"]["result"]:
    print(s["metric"].get("instance", ""), s["value"][1])
PY
}
ok=
for _ in $(seq 30); do
    up=$(query 'up{job="psd"}' 2> /dev/null || true)
    if [ "$(printf '%s\n' "$up" | grep -c ' 1$')" = 2 ]; then
        ok=1
        break
    fi
    sleep 1
done
[ -n "$ok" ] || die "Prometheus does not have both psd up: $up"
steps_seen=$(query 'sum(psd_requests_total{method="APPLY_GRADIENTS",code="OK"})' | awk '{ print $NF }')
awk -v n="$steps_seen" -v s="$steps" 'BEGIN { exit !(n + 0 >= s + 0) }' \
    || die "Prometheus saw $steps_seen APPLY_GRADIENTS, expected at least $steps"
p99=$(query 'histogram_quantile(0.99, sum by (le) (psd_request_duration_seconds_bucket))' \
    | awk '{ print $NF }')
log "Prometheus: both psd up; $steps_seen optimizer steps over the shards; p99 latency ${p99} s"
ready=$(query 'min(psd_ready)' | awk '{ print $NF }')
[ "$ready" = 1 ] || die "psd_ready is $ready"
log "passed"
