#!/usr/bin/env bash
# The README's main command: install the Debian packages (scripts/deps.txt), build psd, pstrain and
# psctl in Release in build/release, and run the training demo with deploy/launch-local.sh (psd,
# three asynchronous workers, an evaluator, psctl). Environment variables are passed on to the
# launcher (MAX_GLOBAL_STEP, WORKERS, BATCH, OUT, PORT, ...); SKIP_DEPS=1 skips the install step.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
if [ "${SKIP_DEPS:-0}" != 1 ]; then
    scripts/install-deps.sh
fi
jobs=${JOBS:-$(nproc 2>/dev/null || echo 2)}
cmake -S . -B build/release -DCMAKE_BUILD_TYPE=Release -DBUILD_TESTING=OFF
targets=(psd pstrain)
if [ -f client/psctl/CMakeLists.txt ]; then
    targets+=(psctl)
fi
cmake --build build/release --target "${targets[@]}" -j "$jobs"
exec env BUILD="$root/build/release" deploy/launch-local.sh "$@"
