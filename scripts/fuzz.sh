#!/bin/sh
# Build every libFuzzer harness of tests/fuzz with clang (ASan + UBSan) in build/fuzz and run each for
# N seconds (default 20) on a temporary copy of its seed corpus. Exits non-zero if any harness finds a
# crash, leak, timeout or sanitizer report; the reproducer is kept and its path printed.
#   scripts/fuzz.sh [--seconds N] [--jobs J] [--build DIR] [-- extra libFuzzer flags]
set -eu

seconds=20
jobs=1
root=$(cd "$(dirname "$0")/.." && pwd)
build="$root/build/fuzz"
while [ $# -gt 0 ]; do
    case "$1" in
    --seconds) seconds=$2; shift 2 ;;
    --jobs) jobs=$2; shift 2 ;;
    --build) build=$2; shift 2 ;;
    --) shift; break ;;
    -h|--help) sed -n '2,6p' "$0"; exit 0 ;;
    *) echo "fuzz.sh: unknown argument $1" >&2; exit 2 ;;
    esac
done

CC=clang cmake -S "$root" -B "$build" -DCMAKE_BUILD_TYPE=RelWithDebInfo -DPS_FUZZ=ON \
    -DPS_SANITIZE=address,undefined -DBUILD_TESTING=OFF -DPS_BUILD_BENCH=OFF \
    -DPS_BUILD_EXAMPLES=OFF >/dev/null
cmake --build "$build" --target ps_fuzzers -j2

fork=""
if [ "$jobs" -gt 1 ]; then
    fork="-fork=$jobs" # libFuzzer's fork mode: parallel workers sharing one corpus
fi

work=$(mktemp -d "${TMPDIR:-/tmp}/psfuzz.XXXXXX")
status=0
while read -r name exe; do
    [ -n "$name" ] || continue
    corpus="$work/$name/corpus"
    mkdir -p "$corpus" "$work/$name/artifacts"
    seeds="$root/tests/fuzz/corpus/${name#fuzz_}"
    if [ -d "$seeds" ]; then
        cp "$seeds"/* "$corpus"/ 2>/dev/null || true
    fi
    echo "fuzz.sh: $name for ${seconds}s (corpus $(ls "$corpus" | wc -l) files)"
    if ! ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
        "$exe" -max_total_time="$seconds" -max_len=65536 -timeout=10 -rss_limit_mb=2048 \
        $fork -print_final_stats=1 \
        -artifact_prefix="$work/$name/artifacts/" "$@" "$corpus" >"$work/$name/log" 2>&1; then
        echo "fuzz.sh: $name FAILED; log $work/$name/log, reproducer(s):" >&2
        ls "$work/$name/artifacts" >&2 || true
        tail -n 40 "$work/$name/log" >&2
        status=1
    else
        grep -E "^(stat::number_of_executed_units|stat::new_units_added)" "$work/$name/log" || true
    fi
done <"$build/fuzzers.txt"

if [ "$status" -eq 0 ]; then
    rm -rf "$work"
    echo "fuzz.sh: all harnesses ran clean"
fi
exit "$status"
