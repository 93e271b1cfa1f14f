#!/usr/bin/env bash
# Set up and run every pscope test on Debian 12: install the Debian packages (scripts/deps.txt), build
# with AddressSanitizer + UndefinedBehaviorSanitizer and -Werror, run ctest (unit, integration,
# examples, packaging, Python), run the wire suites against psd under ThreadSanitizer (build/tsan),
# run the libFuzzer harnesses briefly, check formatting and header
# hygiene, then run the Docker Compose deployment for real (scripts/test-deploy.sh).
#   scripts/test.sh            everything
#   PS_SKIP_INSTALL=1          skip apt-get (packages already present)
#   PS_FUZZ_SECONDS=N          seconds per fuzz harness (default 20; 0 skips fuzzing)
#   PS_SKIP_DEPLOY=1           skip the deployment test
# Every test must run: PS_REQUIRE_ALL=1 makes a test whose dependency is missing (the dataset, NumPy,
# the open-file limit; tests/support/require.h) fail instead of skipping.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)
jobs=$(nproc 2>/dev/null || echo 2)

if [ "${PS_SKIP_INSTALL:-0}" != 1 ]; then
  scripts/install-deps.sh
fi

echo "== header hygiene: no protobuf-c in public headers"
if grep -rlE 'pb-c\.h|Pscope__V1__|ProtobufC' common/include client/include client/ops/include; then
  echo "error: a public header mentions protobuf-c" >&2
  exit 1
fi

echo "== clang-format"
files=$(git ls-files '*.c' '*.h' 2>/dev/null || find . -name '*.[ch]' -not -path './build*')
# shellcheck disable=SC2086
clang-format --dry-run --Werror $files

echo "== build (ASan + UBSan, -Werror)"
cmake -S . -B build/test -DCMAKE_BUILD_TYPE=RelWithDebInfo -DPS_SANITIZE=address,undefined
cmake --build build/test -j"$jobs"

echo "== ctest"
export PS_REQUIRE_ALL=1
(cd build/test && ctest --output-on-failure -j"$jobs" --timeout 600)

echo "== ThreadSanitizer: psd_tsan under the wire suites (build/tsan)"
# A second build: TSan cannot be combined with ASan. Only psd is instrumented (psd_tsan); the
# suites labelled tsan (tests/integration.cmake) start it with two I/O threads, or more.
cmake -S . -B build/tsan -DCMAKE_BUILD_TYPE=RelWithDebInfo -DPS_TSAN=ON -DPS_SANITIZE=
cmake --build build/tsan -j"$jobs" --target tsan_suites
(cd build/tsan && ctest -L tsan --output-on-failure -j"$jobs" --timeout 600)

fuzz_seconds=${PS_FUZZ_SECONDS:-20}
if [ "$fuzz_seconds" != 0 ]; then
  echo "== fuzz (${fuzz_seconds}s per harness)"
  scripts/fuzz.sh --seconds "$fuzz_seconds"
fi
if [ "${PS_SKIP_DEPLOY:-0}" != 1 ]; then
  echo "== deploy (Docker Compose)"
  scripts/test-deploy.sh
fi
echo "== all tests passed"
