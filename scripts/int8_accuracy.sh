#!/usr/bin/env bash
# What int8 activations cost (section "int8-activations" of docs/RESULTS.md): ref-llama-12m quantized at
# W4/W3/W2 g128 without a branch (GPTQ) and with one (FBQuant, 0.25-bit branch), each scored token by token
# through the decode kernels (`perplexity --decode`, sotu-test, the first WINDOWS windows of 256) once with
# float activations (FBQ_ACTIVATIONS=float, the reference) and once with int8 activations (the default).
# Usage: scripts/int8_accuracy.sh   (environment: NSAMPLES calibration windows, default 16; WINDOWS default 100)
NSAMPLES=${NSAMPLES:-16} WINDOWS=${WINDOWS:-100}
source "$(dirname "$0")/lib/results.sh"
results_open int8-activations 0

decode_ppl() {  # decode_ppl DIR float|int8 -> perplexity JSON
  FBQ_ACTIVATIONS=$2 "$FBQ" perplexity "$1" --decode --text "$SHARED/data/sotu-test.txt" --ctx 256 \
    --max-windows "$WINDOWS" --json 2>/dev/null
}

accuracy_row() {  # accuracy_row LABEL BITS QUANTIZE_ARGS...
  local label=$1 bits=$2; shift 2
  echo "== int8-activations: $label W$bits g128" >&2
  rm -rf "$WORK/q"
  local quant
  quant=$(quantize_to "$WORK/q" "$bits" 128 0 "$@")
  printf '{"label":"%s","bits":%s,"windows":%s,"nsamples":%s,"quant":%s,"float":%s,"int8":%s}\n' "$label" "$bits" \
    "$WINDOWS" "$NSAMPLES" "$quant" "$(decode_ppl "$WORK/q" float)" "$(decode_ppl "$WORK/q" int8)" >> "$RESULTS"
}

for bits in 4 3 2; do
  accuracy_row "GPTQ (no branch)" "$bits" --method gptq
  accuracy_row "FBQuant, 0.25-bit branch" "$bits" --method fbquant --branch-bits 0.25
done
render int8-activations
