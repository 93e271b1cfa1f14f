#!/usr/bin/env bash
# Install pscope's Debian packages (scripts/deps.txt). Runs apt-get as root, or through sudo.
#   scripts/install-deps.sh           every package (build, tests, benchmarks, demo)
#   scripts/install-deps.sh --build   only those needed to build (up to "# @end-build")
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
list=$(cat "$here/deps.txt")
if [ "${1:-}" = --build ]; then
    list=$(sed '/^# @end-build/q' "$here/deps.txt")
fi
pkgs=$(printf '%s\n' "$list" | grep -v '^\s*#' | tr -s ' \n' ' ')
if [ "$(id -u)" -eq 0 ]; then sudo=""; else sudo="sudo"; fi
export DEBIAN_FRONTEND=noninteractive
$sudo apt-get update -q
# shellcheck disable=SC2086
$sudo apt-get install -y -q --no-install-recommends $pkgs
