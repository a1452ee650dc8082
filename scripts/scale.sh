#!/usr/bin/env bash
# Memory and time at a 7B shape (section "scale" of docs/RESULTS.md): a llama2-7b-shaped model with random bf16
# weights (`fbq synth`, 13.5 GB), its perplexity and generation as stored (bf16, memory-mapped), GPTQ W4 g128
# quantization streamed layer by layer, and the packed result's perplexity and generation: wall time, peak RSS
# (each command's --json) and tokens/s. Run it on an otherwise idle machine with ~45 GB of free disk.
# Quantization runs on the first QUANT_LAYERS decoder layers of the same shape (`fbq synth --layers`; 0 = all):
# GPTQ takes minutes per 7B layer on 2 cores, so seconds per layer and peak RSS are measured there.
# Usage: scripts/scale.sh   (SHAPE=llama2-7b, QUANT_LAYERS=2, QUANT_NSAMPLES=8, QUANT_SEQLEN=512, PPL_CTX=512,
#                            GEN_TOKENS=16)
source "$(dirname "$0")/lib/results.sh"
SHAPE=${SHAPE:-llama2-7b} QUANT_LAYERS=${QUANT_LAYERS:-2} QUANT_NSAMPLES=${QUANT_NSAMPLES:-8} QUANT_SEQLEN=${QUANT_SEQLEN:-512}
PPL_CTX=${PPL_CTX:-512} GEN_TOKENS=${GEN_TOKENS:-16}
results_open scale 0
base=build/models/$SHAPE-random
[ -d "$base" ] || "$FBQ" synth --shape "$SHAPE" -o "$base" --tokenizer-dir "$SHARED/tokenizers"

measure() {  # measure LABEL KIND FBQ_ARGS...: run `fbq ARGS --json`, append its JSON with label, kind, wall time
  local label=$1 kind=$2; shift 2
  echo "== scale: $label: fbq $*" >&2
  local start end out
  start=$(date +%s.%N)
  out=$("$FBQ" "$@" --json 2>"$WORK/stderr") || { cat "$WORK/stderr" >&2; exit 1; }
  end=$(date +%s.%N)
  printf '{"label":"%s","kind":"%s","shape":"%s","command":"fbq %s","wall_seconds":%s,"coretype":"%s","result":%s}\n' \
    "$label" "$kind" "$SHAPE" "$*" "$(awk "BEGIN{print $end - $start}")" "${OPENBLAS_CORETYPE:-unset}" "$out" >> "$RESULTS"
}

evaluate() {  # evaluate LABEL DIR
  measure "$1" perplexity perplexity "$2" --text "$SHARED/data/moby-test.txt" --ctx "$PPL_CTX" --max-windows 1
  measure "$1" generate generate "$2" -p "The history of the city begins" -n "$GEN_TOKENS"
}

evaluate "bf16 original" "$base"
quant_base=$base
if [ "$QUANT_LAYERS" != 0 ]; then
  quant_base=build/models/$SHAPE-random-${QUANT_LAYERS}layers
  [ -d "$quant_base" ] || "$FBQ" synth --shape "$SHAPE" --layers "$QUANT_LAYERS" -o "$quant_base" --tokenizer-dir "$SHARED/tokenizers"
  evaluate "bf16, first $QUANT_LAYERS layers" "$quant_base"
fi
w4=$quant_base-gptq-w4
rm -rf "$w4"
measure "GPTQ W4 g128" quantize quantize "$quant_base" -o "$w4" --method gptq --bits 4 --group-size 128 \
  --calib "$SHARED/data/train.txt" --nsamples "$QUANT_NSAMPLES" --seqlen "$QUANT_SEQLEN" --no-eval --quiet
sed -i "\$s/}\$/,\"layers\":$(python3 -c "import json,sys; print(json.dumps([l['seconds'] for l in json.load(open(sys.argv[1]))['layers']]))" "$w4/quant_report.json"),\"nsamples\":$QUANT_NSAMPLES,\"seqlen\":$QUANT_SEQLEN}/" "$RESULTS"
evaluate "GPTQ W4 g128 (packed)" "$w4"
render scale
