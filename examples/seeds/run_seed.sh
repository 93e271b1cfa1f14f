#!/usr/bin/env bash
# Run one seed program against a fresh psd and compare its output with the expected file.
#   run_seed.sh PS_PSD_RUN PSD_BIN PROGRAM EXPECTED [env]
# ps_psd_run (tests/support/psd_run.c) starts psd on 127.0.0.1:0, gives the program the address as
# argv[1] (or, with a fifth argument "env", through PS_SERVER), then stops psd with SIGTERM and
# fails unless psd exits 0 with a log free of sanitizer reports. Every wait is bounded.
set -u
runner=$1
psd=$2
prog=$3
expected=$4
mode=${5:-argv}
dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT
if [ "$mode" = env ]; then
  "$runner" --env --timeout 120 "$psd" -- "$prog" >"$dir/out"
else
  "$runner" --timeout 120 "$psd" -- "$prog" @ADDR@ >"$dir/out"
fi
rc=$?
if ! diff -u "$expected" "$dir/out"; then
  echo "output of $(basename "$prog") differs from $(basename "$expected")"
  exit 1
fi
if [ "$rc" != 0 ]; then
  echo "$(basename "$prog") against psd: exit status $rc (3: psd did not stop clean)"
  exit 1
fi
echo "ok: $(basename "$prog") output matches, psd stopped clean"
