#!/usr/bin/env bash
# Installs whatever is missing, builds the test build (AddressSanitizer +
# UndefinedBehaviorSanitizer) and runs every test: unit, integration, crash.
# The shared test vectors are read from ../shared/testdata unless
# CARELOOP_TESTDATA_DIR says otherwise.
set -euo pipefail
cd "$(dirname "$0")/.."
bash tools/install-deps.sh
testdata="${CARELOOP_TESTDATA_DIR:-$(pwd)/../shared/testdata}"
if [ ! -f "$testdata/README.md" ]; then
  echo "test.sh: the shared test vectors are not at $testdata (set CARELOOP_TESTDATA_DIR)" >&2
  exit 2
fi
jobs="$(nproc)"
cmake --preset asan-ubsan -DCARELOOP_TESTDATA_DIR="$testdata"
cmake --build --preset asan-ubsan -j "$jobs"
ctest --preset asan-ubsan -j "$jobs"
