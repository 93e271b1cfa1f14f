#!/usr/bin/env bash
# The short version of the matrix-factorization demo as a test: two fresh psd shards (nested
# ps_psd_run: the outer one's address as an argument, the inner one's in PS_SERVER), a small
# synthetic set, and psmf's own exit status: 0 only when the held-out RMSE fell below the bound.
#   run_short.sh PS_PSD_RUN PSD_BIN PSMF [psmf options...]
set -u
runner=$1
psd=$2
psmf=$3
shift 3
exec "$runner" --timeout 240 "$psd" -- \
  "$runner" --env --timeout 240 "$psd" -- \
  bash -c 'p=$1; a=$2; shift 2; exec "$p" --servers "$a,$PS_SERVER" "$@"' _ "$psmf" @ADDR@ "$@"
