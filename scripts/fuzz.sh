#!/usr/bin/env bash
# Builds the libFuzzer harnesses (fuzz/fuzz_*.cpp) in build-fuzz (clang, ASan + UBSan; the same tree runs
# the test suite under the sanitizers: scripts/sanitizers.sh) and runs each one, seeded from
# tests/corpus/NAME (harness fuzz_NAME). A crash fails the run and leaves the input in build-fuzz/crashes/.
# Usage: scripts/fuzz.sh [--seconds S] [--runs N] [HARNESS...]   (default: 20 s each, every harness; with both,
# whichever limit comes first)
set -euo pipefail
cd "$(dirname "$0")/.."
limit=() harnesses=()
while (($#)); do
  case "$1" in
    --seconds) limit+=(-max_total_time="$2"); shift 2 ;;
    --runs) limit+=(-runs="$2"); shift 2 ;;
    -*) echo "usage: $0 [--seconds S] [--runs N] [HARNESS...]" >&2; exit 2 ;;
    *) harnesses+=("$1"); shift ;;
  esac
done
((${#limit[@]})) || limit=(-max_total_time=20)
build=build-fuzz
[ -f "$build/CMakeCache.txt" ] ||
  CC=clang CXX=clang++ cmake -S . -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo -DFBQ_FUZZ=ON >/dev/null
((${#harnesses[@]})) || harnesses=($(basename -s .cpp fuzz/fuzz_*.cpp))
cmake --build "$build" -j"$(nproc)" --target "${harnesses[@]}"
mkdir -p "$build/crashes"
failed=0
printf '%-24s %12s %10s %s\n' harness executions seconds result
for harness in "${harnesses[@]}"; do
  corpus="$build/corpus/$harness"  # grows run after run; the seeds stay untouched in tests/corpus
  mkdir -p "$corpus"
  log="$build/$harness.log"
  # One thread: the harnesses measure parsers, and the cores are shared. Leaks are checked by the test suite.
  if OMP_NUM_THREADS=1 ASAN_OPTIONS=detect_leaks=0 "$build/$harness" "${limit[@]}" -rss_limit_mb=4096 -timeout=30 \
       -artifact_prefix="$build/crashes/$harness-" -print_final_stats=1 "$corpus" "tests/corpus/${harness#fuzz_}" \
       >"$log" 2>&1; then
    result=ok
  else
    result="FAILED (see $log)"
    failed=1
  fi
  runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)
  secs=$(sed -n 's/^Done [0-9]* runs in \([0-9]*\) second.*/\1/p' "$log" | tail -1)
  printf '%-24s %12s %10s %s\n' "$harness" "${runs:-?}" "${secs:-?}" "$result"
done
exit "$failed"
