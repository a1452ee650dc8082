#!/usr/bin/env bash
# Zero-shot section of docs/RESULTS.md: `fbq eval` (lm-eval v0.4.x scoring) on the bundled model.
#   FP: every task whole (all + the derived last-word tasks), with --bos on and --bos off.
#   RTN / GPTQ / AWQ (+clip) / LQER r32 / FBQuant r32 at W2/W3/W4 g128, calibrated as the quality table
#   (train.txt, 128 windows × 256 tokens, seed 0), bos on: the first LIMIT documents of each task, the first
#   MMLU_LIMIT of each MMLU subject, the first WORD_LIMIT of the derived last-word tasks (0 = whole). Paired Δ
#   against FP on the same documents (from the per-document samples).
# Usage: scripts/zeroshot.sh [--quick] [--resume]   (~2.5 h on 2 cores: each FP row ~30 min)
#   --quick: smoke run, 16 calibration windows, every row (FP too) on the first 40 documents (2 per MMLU subject)
resume=0
export NSAMPLES=128 VAL=0 LIMIT=${LIMIT:-200} MMLU_LIMIT=${MMLU_LIMIT:-3} FP_WHOLE=1 WORD_LIMIT=${WORD_LIMIT:-300}
for arg in "$@"; do
  case "$arg" in
    --quick) export NSAMPLES=16 LIMIT=40 MMLU_LIMIT=2 FP_WHOLE=0 WORD_LIMIT=40 ;;
    --resume) resume=1 ;;
    *) echo "usage: $0 [--quick] [--resume]" >&2; exit 2 ;;
  esac
done
source "$(dirname "$0")/lib/results.sh"
[ -d "$SHARED/data/zeroshot" ] || { echo "missing $SHARED/data/zeroshot" >&2; exit 1; }
results_open zeroshot "$resume"
mkdir -p build/results/zeroshot

evaluate() {  # evaluate MODEL_DIR KEY BOS TASKS LIMIT -> eval JSON on stdout, samples appended to the row's file
  local samples=build/results/zeroshot/$2.samples.jsonl part=$WORK/part.jsonl
  "$FBQ" eval "$1" --tasks "$4" --limit "$5" --bos "$3" --samples-out "$part" --json --quiet 2>/dev/null
  cat "$part" >> "$samples"
}

# zrow LABEL BITS BOS QUANTIZE_ARGS...: BITS 16 = the original model, every task whole.
zrow() {
  local label=$1 bits=$2 bos=$3; shift 3
  local key limits="$LIMIT|$MMLU_LIMIT|$FP_WHOLE|$WORD_LIMIT"
  [ "$bits" = 16 ] && [ "$FP_WHOLE" = 1 ] && limits=whole  # whole FP rows do not depend on the limits
  key=$(printf '%s|' zeroshot "$label" "$bits" "$bos" "$NSAMPLES" "$limits" "$@" | md5sum | cut -c1-16)
  if grep -q "\"key\":\"$key\"" "$RESULTS"; then echo "== zeroshot: $label W$bits bos $bos (kept)" >&2; return; fi
  echo "== zeroshot: $label W$bits bos $bos" >&2
  local dir=$MODEL quant=null limit=$LIMIT mmlu_limit=$MMLU_LIMIT word_limit=$WORD_LIMIT
  if [ "$bits" != 16 ]; then
    dir=$WORK/q
    rm -rf "$dir"
    quant=$(quantize_to "$dir" "$bits" 128 0 "$@")
  elif [ "$FP_WHOLE" = 1 ]; then
    limit=0 mmlu_limit=0 word_limit=0
  fi
  rm -f "build/results/zeroshot/$key.samples.jsonl"
  local start=$SECONDS bench mmlu words
  bench=$(evaluate "$dir" "$key" "$bos" arc_easy,arc_challenge,piqa,hellaswag,winogrande,boolq,openbookqa,lambada_openai "$limit")
  mmlu=$(evaluate "$dir" "$key" "$bos" mmlu "$mmlu_limit")
  words=$(evaluate "$dir" "$key" "$bos" last_word_sotu,last_word_moby "$word_limit")
  printf '{"key":"%s","label":"%s","bits":%s,"bos":"%s","nsamples":%s,"limit":%s,"mmlu_limit":%s,"seconds":%s,"quant":%s,"eval":[%s,%s,%s]}\n' \
    "$key" "$label" "$bits" "$bos" "$NSAMPLES" "$limit" "$mmlu_limit" $((SECONDS - start)) "$quant" "$bench" "$mmlu" "$words" >> "$RESULTS"
}

zrow "FP" 16 on
zrow "FP" 16 off
for bits in 2 3 4; do  # the low bit widths first: there the methods differ most
  zrow "RTN" $bits on --method rtn
  zrow "GPTQ" $bits on --method gptq
  zrow "AWQ (+ clip)" $bits on --method awq --clip-search
  zrow "LQER r32 (L2QER)" $bits on --method lqer --rank 32
  zrow "FBQuant r32" $bits on --method fbquant --rank 32
done
render zeroshot
