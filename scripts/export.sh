#!/usr/bin/env bash
# Export (section "export" of docs/RESULTS.md): packed models written by `fbq export --to gguf` (and the sizes of the
# same models written by `fbq export --to gptq`),
# loaded by the real llama.cpp (npm's node-llama-cpp 3.21.1, prebuilt CPU binary, tools/llama-cpp) and scored on the
# same tokens as fbquant scores the packed model: bits per weight as llama.cpp stores them, file sizes, per-token
# log-probability agreement with and without the branch adapter, both perplexities, the greedy continuations, and
# decode tokens/s of both engines on the same model (2 threads each). ref-llama-12m (real weights, quality) and a
# TinyLlama-1.1B-shaped model with random bf16 weights (`fbq synth`: speed at a real shape).
# Usage: scripts/export.sh   (NSAMPLES=32 calibration windows, PPL_WINDOWS=8, GEN=64 decode tokens, BIG=1)
source "$(dirname "$0")/lib/results.sh"
NSAMPLES=${NSAMPLES:-32} PPL_WINDOWS=${PPL_WINDOWS:-8} GEN=${GEN:-64} BIG=${BIG:-1} CTX=256
PROMPT="The old man looked at the sea and said"
[ -d tools/llama-cpp/node_modules/node-llama-cpp ] ||
  { echo "llama.cpp is not installed: scripts/setup.sh installs tools/llama-cpp (npm)" >&2; exit 1; }
results_open export 0

# gguf_row MODEL_NAME LABEL DIR WINDOWS: export DIR, score it in both engines, append one JSON row.
gguf_row() {
  local name=$1 label=$2 dir=$3 windows=$4 text=$SHARED/data/moby-test.txt
  echo "== export: $name: $label" >&2
  "$FBQ" export "$dir" --to gguf -o "$WORK/m.gguf" --overwrite --json > "$WORK/export.json"
  # The GPTQ checkpoint of the same model: v1 where every zero point is >= 1, else gptq_v2 (sizes only here).
  rm -rf "$WORK/gptq"
  "$FBQ" export "$dir" --to gptq -o "$WORK/gptq" --json > "$WORK/gptq.json" 2>/dev/null ||
    "$FBQ" export "$dir" --to gptq -o "$WORK/gptq" --checkpoint-format gptq_v2 --json > "$WORK/gptq.json"
  rm -rf "$WORK/gptq"
  "$FBQ" tokenize "$dir" --text "$text" --paragraphs --bos --json > "$WORK/ids.json"
  "$FBQ" perplexity "$dir" --text "$text" --ctx $CTX --max-windows "$windows" --nll-out "$WORK/nll.f32" --json \
    > /dev/null 2>&1
  # Decode speed with OpenMP's default (spinning) waits, as a user runs it: results.sh's passive waits, meant for
  # throughput beside other work, halve fbquant's decode rate (one wake-up per linear per token).
  OMP_WAIT_POLICY=active "$FBQ" generate "$dir" -p "$PROMPT" -n "$GEN" --json > "$WORK/generate.json" 2>/dev/null
  local lora agreement
  lora=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["branch_output"] or "-")' "$WORK/export.json")
  agreement=$(python3 scripts/lib/llama_cpp_agreement.py "$WORK/ids.json" "$WORK/nll.f32" $CTX "$WORK/m.gguf" "$lora" \
    "$WORK/generate.json")
  printf '{"model":"%s","label":"%s","quant":%s,"export":%s,"gptq":%s,"agreement":%s,"fbquant_generate":%s,"coretype":"%s"}\n' \
    "$name" "$label" "$(cat "$WORK/quant.json")" "$(cat "$WORK/export.json")" "$(cat "$WORK/gptq.json")" "$agreement" \
    "$(cat "$WORK/generate.json")" \
    "${OPENBLAS_CORETYPE:-unset}" >> "$RESULTS"
}

# quantized LABEL SOURCE BITS GROUP ARGS...: quantize SOURCE into $WORK/q (quantize JSON kept in $WORK/quant.json).
quantized() {
  local label=$1 source=$2 bits=$3 group=$4; shift 4
  echo "== export: quantize $label" >&2
  rm -rf "$WORK/q"
  "$FBQ" quantize "$source" -o "$WORK/q" --bits "$bits" --group-size "$group" --calib "$SHARED/data/train.txt" \
    --nsamples "$NSAMPLES" --seqlen 256 --seed 0 --no-eval --quiet --json "$@" 2>/dev/null > "$WORK/quant.json"
}

small() {  # small LABEL BITS GROUP ARGS...: a row on ref-llama-12m
  local label=$1 bits=$2 group=$3; shift 3
  quantized "$label" "$MODEL" "$bits" "$group" "$@"
  gguf_row ref-llama-12m "$label" "$WORK/q" "$PPL_WINDOWS"
}
small "FBQuant W4 g32 + rank 8" 4 32 --method fbquant --rank 8
small "FBQuant W4 g32 + rank 8, 7-bit scales" 4 32 --method fbquant --rank 8 --scale-bits 7
small "GPTQ W4 g128 symmetric" 4 128 --method gptq --sym
small "FBQuant W3 g128 + 0.25-bit branch" 3 128 --method fbquant --branch-bits 0.25
small "FBQuant W2 g128 + 0.25-bit branch" 2 128 --method fbquant --branch-bits 0.25
small "GPTQ W8 g128 symmetric" 8 128 --method gptq --sym

if [ "$BIG" = 1 ]; then
  big=build/models/tinyllama-1.1b-random
  [ -d "$big" ] || "$FBQ" synth --shape tinyllama-1.1b -o "$big" --tokenizer-dir "$SHARED/tokenizers"
  NSAMPLES=4
  for row in "RTN W4 g128 symmetric|4|--sym" "RTN W3 g128|3|"; do
    IFS='|' read -r label bits extra <<< "$row"
    # shellcheck disable=SC2086
    quantized "$label" "$big" "$bits" 128 --method rtn $extra
    gguf_row tinyllama-1.1b-random "$label" "$WORK/q" 2
  done
fi
render export
