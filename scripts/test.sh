#!/usr/bin/env bash
# Runs the whole test suite (GoogleTest through CTest). Tests that need ../shared skip visibly without it.
# FBQ_BUILD_DIR selects another build tree (e.g. build-asan from `cmake --preset asan`).
set -euo pipefail
cd "$(dirname "$0")/.."
build="${FBQ_BUILD_DIR:-build}"
[ -f "$build/CMakeCache.txt" ] || { echo "test: no build in $build; run scripts/setup.sh first" >&2; exit 1; }
cmake --build "$build" -j"$(nproc)"
echo "OPENBLAS_CORETYPE=${OPENBLAS_CORETYPE:-<unset>}"
ctest --test-dir "$build" --output-on-failure -j1 "$@"
