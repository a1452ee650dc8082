#!/usr/bin/env bash
# The memory-safety run CI adds after the default suite: the test suite built with AddressSanitizer +
# UndefinedBehaviorSanitizer (clang, build-fuzz: the tree the fuzz harnesses live in) and then every fuzz
# harness for a short fixed time (scripts/fuzz.sh). Any sanitizer report or crash fails it.
# Usage: scripts/sanitizers.sh [--ci] [--fuzz-seconds S] [CTEST_ARGS...]   (default: 20 s per harness)
#   --ci: the parts that fit CI's time: every test except those in CI_SKIP, which each take over 10 s in the
#   release build (3-10x that under ASan) and repeat the library code the other tests cover at small sizes.
set -euo pipefail
cd "$(dirname "$0")/.."
fuzz_seconds=20 ctest_args=()
# Whole `fbq quantize` runs of the bundled model (resume kills, block training, verdicts, presets, the fresh
# clone, the report in Chromium), FBQuant on every linear of it, and the PyTorch oracle of the zero-shot scorer.
CI_SKIP='^(QuantizeResume|QuickStart|BlockReconstruction|QuantizeReport|QuantizeVerdict|ZeroShotOracle)\.'
CI_SKIP+='|^Fbquant\.PackedBestIterate|^ZeroShotScoring\.SharedContextPath'
CI_SKIP+='|^QuantizePipeline\.(FloatTarget|SameSeed|TrueSequential|DecodeKernels)'
CI_SKIP+='|^GptqExport\.IndependentReaderAgreesForEveryMethodAndWidth|^GgufExport\.(EveryBlockType|LlamaCpp|ByteLevel)'
while (($#)); do
  case "$1" in
    --ci) ctest_args+=(-E "$CI_SKIP"); shift ;;
    --fuzz-seconds) fuzz_seconds=$2; shift 2 ;;
    *) ctest_args+=("$1"); shift ;;
  esac
done
build=build-fuzz
start=$SECONDS
[ -f "$build/CMakeCache.txt" ] ||
  CC=clang CXX=clang++ cmake -S . -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo -DFBQ_FUZZ=ON >/dev/null
cmake --build "$build" -j"$(nproc)"
echo "sanitizers: built $build in $((SECONDS - start)) s"
start=$SECONDS
# halt_on_error: the first report fails the test that caused it. OpenBLAS and libgomp are not instrumented.
ASAN_OPTIONS=halt_on_error=1:detect_leaks=1 UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1 \
  ctest --test-dir "$build" --output-on-failure -j1 "${ctest_args[@]}"
echo "sanitizers: test suite under ASan + UBSan in $((SECONDS - start)) s"
start=$SECONDS
scripts/fuzz.sh --seconds "$fuzz_seconds"
echo "sanitizers: fuzz harnesses in $((SECONDS - start)) s"
