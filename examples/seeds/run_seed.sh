#!/usr/bin/env bash
# Run one seed program against a fresh psd and compare its output with the expected file.
#   run_seed.sh PSD_BIN PROGRAM EXPECTED [env]
# psd listens on 127.0.0.1:0 and writes its port to a file; the program gets the address as argv[1]
# (or, with a fourth argument "env", through PS_SERVER). Every wait is bounded.
set -u
psd=$1
prog=$2
expected=$3
mode=${4:-argv}
dir=$(mktemp -d)
pid=
cleanup() {
  if [ -n "$pid" ]; then
    kill "$pid" 2>/dev/null
    for _ in $(seq 1 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.05; done
    kill -9 "$pid" 2>/dev/null
    wait "$pid" 2>/dev/null
  fi
  rm -rf "$dir"
}
trap cleanup EXIT
"$psd" --listen 127.0.0.1:0 --port-file "$dir/port" --log-level warning 2>"$dir/psd.log" &
pid=$!
for _ in $(seq 1 400); do
  [ -s "$dir/port" ] && break
  sleep 0.05
done
if [ ! -s "$dir/port" ]; then
  echo "psd did not start"
  cat "$dir/psd.log"
  exit 1
fi
addr="127.0.0.1:$(cat "$dir/port")"
if [ "$mode" = env ]; then
  PS_SERVER=$addr timeout 120 "$prog" >"$dir/out" 2>"$dir/err"
else
  timeout 120 "$prog" "$addr" >"$dir/out" 2>"$dir/err"
fi
rc=$?
cat "$dir/err" >&2
if ! diff -u "$expected" "$dir/out"; then
  echo "output of $(basename "$prog") differs from $(basename "$expected")"
  exit 1
fi
if [ "$rc" != 0 ]; then
  echo "$(basename "$prog") exited $rc"
  exit 1
fi
if grep -qE 'ERROR: (AddressSanitizer|LeakSanitizer)|runtime error:' "$dir/psd.log"; then
  echo "psd reported a sanitizer error"
  cat "$dir/psd.log"
  exit 1
fi
echo "ok: $(basename "$prog") output matches"
