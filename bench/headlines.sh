#!/usr/bin/env bash
# The README's benchmark headline table, generated from the results files so that the README cannot
# drift from them: every figure is read from bench/results (the suite's CSVs and the other areas'
# files), every ratio is the paired one the files hold (median of per-rep ratios), and each goal
# says met, not met, or unreliable run as the results file does.
#
#   bench/headlines.sh [RESULTS_DIR [OTHERS_DIR]]   print the table (default: bench/results)
#   bench/headlines.sh --check README.md            exit 1, with a diff, when README.md's table
#                                                   differs from the one the committed results give
#   bench/headlines.sh --write README.md            replace README.md's table with the generated one
# In README.md the table sits between the lines "<!-- BEGIN bench/headlines.sh -->" and
# "<!-- END bench/headlines.sh -->".
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
begin='<!-- BEGIN bench/headlines.sh -->'
end='<!-- END bench/headlines.sh -->'

generate() { # results_dir others_dir
    local r=$1 o=$2 f
    for f in "$r/tensor_ratios.csv" "$r/goals_redis.csv" "$r/goals_scale.csv" "$r/scale.csv" \
        "$o/ops.csv" "$o/train.csv" "$o/wire.md" "$r/suite_redis.md"; do
        [ -f "$f" ] || { echo "bench/headlines.sh: missing $f" >&2; return 1; }
    done
    echo "| figure | result | design goal |"
    echo "| --- | --- | --- |"
    awk -F, '
        function verdict(v) { return v == "yes" ? "met" : v == "unreliable" ? "unreliable run" : "**not met**" }
        function join2(a, b) { return a == b ? a : a " / " b }
        FILENAME ~ /tensor_ratios.csv$/ && FNR > 1 { t[$1 "," $2 "," $3] = $5 }
        FILENAME ~ /goals_redis.csv$/ { g[$1 "|" $2] = $5; gv[$1 "|" $2] = $3 }
        FILENAME ~ /goals_scale.csv$/ { s[$1 "|" $2] = $3; sv[$1 "|" $2] = $5 }
        FILENAME ~ /scale.csv$/ && FILENAME !~ /goals/ && FNR > 1 { m[$1] = $2 }
        END {
            split("16 MiB,64 MiB", sz, ",")
            for (c = 1; c <= 4; c *= 4) {
                a = t["psd_pull_ceiling,16777216," c]; b = t["psd_pull_ceiling,67108864," c]
                v1 = verdict(g["pull >= 0.9x loopback ceiling|16 MiB " c " client(s)"])
                v2 = verdict(g["pull >= 0.9x loopback ceiling|64 MiB " c " client(s)"])
                printf "| 16 MiB / 64 MiB pull, %d client%s, vs the loopback TCP stream | %.2fx / %.2fx | >= 0.9x: %s |\n", c, (c > 1 ? "s" : ""), a, b, join2(v1, v2)
            }
            lo = 1e9; hi = 0; all = "met"
            for (c = 1; c <= 4; c *= 4) for (i = 1; i <= 2; i++) {
                x = t["psd_pull_redis_get," (i == 1 ? 16777216 : 67108864) "," c]
                lo = x < lo ? x : lo; hi = x > hi ? x : hi
                if (verdict(g["pull ahead of Redis GET|" sz[i] " " c " client(s)"]) != "met") all = "**not met** in some cases"
            }
            printf "| 16 MiB / 64 MiB pull vs redis-server GET, same size and concurrency (1 and 4 clients) | %.1fx-%.1fx | ahead of Redis: %s |\n", lo, hi, all
            for (d = 1; d <= 16; d *= 16) {
                kp = "small op ahead of Redis GET|pull16 16 conns depth " d
                kg = "small op ahead of Redis GET|get_variable 16 conns depth " d
                split(gv[kp], p, " "); split(gv[kg], q, " ")
                printf "| 16-float pull / get_variable vs Redis GET, 16 connections, %s | %sx / %sx | ahead of Redis: %s |\n", (d == 1 ? "no pipelining" : "pipeline depth 16"), p[1], q[1], join2(verdict(g[kp]), verdict(g[kg]))
            }
            k = "<= 256 bytes of psd memory per small variable beyond its data|RSS delta/var - 16"
            printf "| psd memory per small variable beyond its data, at %d variables | %d bytes | <= 256: %s |\n", m["variables"], s[k], verdict(sv[k])
            printf "| 1,000 concurrent connections | %s | %s |\n", (m["psd_1000conns_ok"] == 1 ? "all served" : "NOT all served"), verdict(sv["1000 concurrent connections served|psd"])
        }' "$r/tensor_ratios.csv" "$r/goals_redis.csv" "$r/goals_scale.csv" "$r/scale.csv"
    # Compute: conv2 forward / input gradient / filter gradient, 1 thread, paired thread-CPU-time
    # ratio (the goal's measure), and every conv row against the 0.8x goal.
    awk -F, 'NR == 1 { for (i = 1; i <= NF; i++) c[$i] = i; next }
        $c["threads"] == 1 && $c["op"] ~ /^conv2d/ {
            k = c["ratio_vs_sgemm_sq_cpu"] ? "ratio_vs_sgemm_sq_cpu" : "ratio_vs_sgemm_sq"; r = $c[k]
            split($c["layer"], L, " ")
            if (L[1] == "conv2") v[$c["op"]] = r
            if (r < 0.8) { miss = miss (miss ? ", " : "") sprintf("%s %s %.2fx", L[1], $c["op"], r) }
        }
        END { printf "| conv2d forward / input gradient / filter gradient vs sgemm of the same FLOPs (conv2, 1 thread, thread CPU time) | %.2fx / %.2fx / %.2fx | >= 0.8x: %s |\n", v["conv2d"], v["conv2d_backprop_input"], v["conv2d_backprop_filter"], (miss ? "**not met** for " miss : "met") }' "$o/ops.csv"
    # Training: the paired per-rep overhead of one worker through psd (the default --io overlap,
    # config "psd"; psd-sync and psd-prefetch rows are the other modes) vs in-process.
    awk -F, 'NR > 1 && $3 == 1 && $1 == "local" { l[$2, $4] = $5; b[$2] = 1 }
        NR > 1 && $3 == 1 && $1 == "psd" { p[$2, $4] = $5 }
        END { nb = 0; for (bt in b) bs[++nb] = bt + 0
            for (i = 1; i <= nb; i++) for (j = i + 1; j <= nb; j++) if (bs[j] < bs[i]) { t = bs[i]; bs[i] = bs[j]; bs[j] = t }
            for (x = 1; x <= nb; x++) { n = 0; delete v
                for (k in l) { split(k, q, SUBSEP); if (q[1] == bs[x] && (k in p) && l[k] > 0) v[++n] = 100 * (1 - p[k] / l[k]) }
                for (i = 1; i <= n; i++) for (j = i + 1; j <= n; j++) if (v[j] < v[i]) { t = v[i]; v[i] = v[j]; v[j] = t }
                med = n % 2 ? v[(n + 1) / 2] : (v[n / 2] + v[n / 2 + 1]) / 2
                names = names (x > 1 ? " / " : "") bs[x]
                vals = vals (x > 1 ? " / " : "") (med < 0 ? sprintf("%.1f%% faster", -med) : sprintf("%.1f%% slower", med))
                # With --io overlap a worker through psd can beat the local loop: the optimizer of psd
                # runs on another core while the worker computes. The goal is the median overhead.
                vd = med <= 2 ? "met" : "**not met**"
                verd = verd (x > 1 ? " / " : "") vd; same = (x == 1 || vd == last) ? same : 0; last = vd }
            if (same == "") same = 1
            printf "| training examples/s through psd (--io overlap) vs the same loop in one process, paired per rep (batch %s) | %s | <= 2%% overhead (issue 14): %s |\n", names, vals, (same ? last : verd) }' "$o/train.csv"
    # Wire: the goals table of wire.md (measured and verdict as bench_wire judged them).
    awk -F' [|] ' '/^## Design goals/ { g = 1; next } /^## / { g = 0 }
        g && /^[|] 1 KiB pull/ { sub(/ [|]$/, "", $4); v = $4 == "yes" ? "met" : $4 == "**no**" ? "**not met**" : $4
            printf "| 1 KiB pull round trip vs the raw 1 KiB ping-pong (bench_wire) | %s | <= 1.3x: %s |\n", $2, v }' "$o/wire.md"
    echo
    # Where the figures come from: the suite's provenance line.
    local prov
    prov=$(grep -m1 '^\*\*Provenance:\*\*' "$r/suite_redis.md" || true)
    if [ -n "$prov" ]; then
        echo "Source: bench/results, ${prov#\*\*Provenance:\*\* }"
    else
        echo "Source: bench/results (suite_redis.md has no provenance line)."
    fi
}

case "${1:-}" in
--check | --write)
    readme=${2:?usage: bench/headlines.sh --check README.md}
    gen=$(generate "$root/bench/results" "$root/bench/results")
    cur=$(awk -v b="$begin" -v e="$end" '$0 == e { f = 0 } f { print } $0 == b { f = 1 }' "$readme")
    if [ "$1" = --write ]; then
        awk -v b="$begin" -v e="$end" -v g="$gen" '$0 == b { print; print g; skip = 1; next }
            $0 == e { skip = 0 } !skip { print }' "$readme" >"$readme.tmp"
        mv "$readme.tmp" "$readme"
        exit 0
    fi
    if [ -z "$cur" ]; then
        echo "bench/headlines.sh: no table between '$begin' and '$end' in $readme" >&2
        exit 1
    fi
    if [ "$cur" != "$gen" ]; then
        echo "$readme's benchmark table differs from what bench/results gives (bench/headlines.sh --write $readme):" >&2
        diff <(echo "$cur") <(echo "$gen") >&2 || true
        exit 1
    fi
    echo "ok: $readme's benchmark table matches bench/results"
    ;;
*)
    generate "${1:-$root/bench/results}" "${2:-${1:-$root/bench/results}}"
    ;;
esac
