#!/bin/sh
# Build psd and the reliability benchmarks in Release without sanitizers (build/bench-rel) and
# measure what issue 19 asks: psd's RSS before and after 20 rounds of 1,000-connection churn; a
# legitimate 1 MiB updater's latency (p50/p99/max) while 200 connections trickle oversized uploads;
# and the largest everysec loss over 50 simulated power losses (plus 10 with every sync slowed to
# 1.5 s). Writes bench/results/reliability.md (commit, date, command, machine load).
# Usage: bench/run_reliability.sh [power-losses] [tricklers] [updater-seconds]
set -eu
root=$(cd "$(dirname "$0")/.." && pwd)
# shellcheck source=bench/provenance.sh
. "$root/bench/provenance.sh"
ps_bench_begin bench/run_reliability.sh "$@"
build="$root/build/bench-rel"
losses=${1:-50}
tricklers=${2:-200}
secs=${3:-30}
cmake -S "$root" -B "$build" -DCMAKE_BUILD_TYPE=Release -DPS_SANITIZE= -DBUILD_TESTING=OFF \
    -DPS_BUILD_EXAMPLES=OFF >/dev/null
cmake --build "$build" --target psd bench_churn bench_admission bench_everysec \
    bench_powerloss_shim -j2 >/dev/null
# bench_churn and bench_admission open 1,000+ connections (dash and bash both have ulimit -n).
# shellcheck disable=SC3045
ulimit -n 8192 2>/dev/null || true
export PSD_BIN="$build/server/psd"
export PS_POWERLOSS_SHIM="$build/bench/libbench_powerloss_shim.so"
load() { cut -d' ' -f1-3 /proc/loadavg; }
l0=$(load)
churn=$("$build/bench/bench_churn" 1000 20) || true
l1=$(load)
adm=$("$build/bench/bench_admission" "$tricklers" 64 "$secs" 0) || true
l2=$(load)
ev=$("$build/bench/bench_everysec" "$losses" 0) || true
l3=$(load)
evslow=$("$build/bench/bench_everysec" 10 1500) || true
l4=$(load)
mkdir -p "$root/bench/results"
out="$root/bench/results/reliability.md"
{
    echo "# Reliability: memory after churn, an updater under trickling uploads, everysec's loss"
    echo
    ps_bench_provenance
    echo
    echo "Release build without sanitizers ($losses power losses, $tricklers tricklers, $secs s of"
    echo "updates). The load average (1/5/15 min) before each part is given with it."
    echo
    echo "## RSS across connection churn (bench_churn 1000 20; load $l0)"
    echo
    echo "20 rounds of 1,000 connections opened at once, each served a PING, then closed. psd gives"
    echo "free heap pages back 250 ms after closes stop (server.c, malloc_trim)."
    echo
    echo '```'
    echo "$churn" | grep -v '^csv,'
    echo '```'
    echo
    echo "## A legitimate updater while $tricklers connections trickle oversized uploads (bench_admission $tricklers 64 $secs 0; load $l1)"
    echo
    echo "psd with its defaults (--max-inflight-payload 2G, half of it per address, --min-upload-rate"
    echo "64K over 10 s). Each trickler, from 127.0.0.2, announces a 64 MiB assign and sends a byte"
    echo "every 500 ms; closed by psd for no progress, it reconnects and announces again. The updater,"
    echo "libpsclient on 127.0.0.1, assigns a 1 MiB variable in a loop."
    echo
    echo '```'
    echo "$adm" | grep -v '^csv,'
    echo '```'
    echo
    echo "## everysec over $losses simulated power losses (bench_everysec $losses 0; load $l2)"
    echo
    echo "Each round, on a fresh data directory, streams acknowledged updates for 1.5 to 3.5 s, kill -9,"
    echo "then cuts every log file"
    echo "back to the size it had when its last completed sync started (the power-loss shim), and"
    echo "restarts. 'Acknowledged within' is the span between the first and last lost acknowledgement;"
    echo "the bound (--everysec-max-lag-ms 2000) promises it never exceeds 2 s."
    echo
    echo '```'
    echo "$ev" | grep -v '^csv,' | tail -1
    echo '```'
    echo
    echo "The same with every sync of the log slowed to 1.5 s (a slow disk; bench_everysec 10 1500;"
    echo "load $l3): replies are held while a record is 2 s unsynced."
    echo
    echo '```'
    echo "$evslow" | grep -v '^csv,' | tail -1
    echo '```'
    echo
    echo "Load after: $l4."
    echo
    echo "Raw:"
    echo
    echo '```'
    printf '%s\n%s\n%s\n%s\n' "$churn" "$adm" "$ev" "$evslow" | grep '^csv,' || true
    echo '```'
    echo
    echo "Per-round everysec lines:"
    echo
    echo '```'
    echo "$ev" | grep '^round' || true
    echo "$evslow" | grep '^round' || true
    echo '```'
} >"$out"
echo "wrote $out"
