#!/usr/bin/env bash
# Quality table (section "quality" of docs/RESULTS.md): quantizes the bundled model with every method at
# W4/W3/W2 g128 (rank 32 where a method has a branch; calibration: 128 windows × 256 tokens of
# ../shared/data/train.txt, seed 0) and scores PPL on sotu-test and moby-test (ctx 256), with effective
# bits/weight and wall time. Usage: scripts/quality.sh [--quick] [--resume]
#   --quick: 16 calibration windows and 40 PPL windows (smoke run); --resume: keep rows already measured.
resume=0
export NSAMPLES=128 VAL=0 WINDOWS=0
for arg in "$@"; do
  case "$arg" in
    --quick) export NSAMPLES=16 WINDOWS=40 ;;
    --resume) resume=1 ;;
    *) echo "usage: $0 [--quick] [--resume]" >&2; exit 2 ;;
  esac
done
source "$(dirname "$0")/lib/results.sh"
results_open quality "$resume"
row quality "FP" 16 0 "sotu moby"
for bits in 4 3 2; do
  row quality "RTN" $bits 128 "sotu moby" --method rtn
  row quality "RTN + clip search" $bits 128 "sotu moby" --method rtn --clip-search
  row quality "GPTQ" $bits 128 "sotu moby" --method gptq
  row quality "GPTQ act-order" $bits 128 "sotu moby" --method gptq --act-order
  row quality "AWQ (+ clip)" $bits 128 "sotu moby" --method awq --clip-search
  row quality "LQER r32 (L2QER)" $bits 128 "sotu moby" --method lqer --rank 32
done
render quality
