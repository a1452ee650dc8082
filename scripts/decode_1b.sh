#!/usr/bin/env bash
# End-to-end speed at a real shape (section "decode-1b" of docs/RESULTS.md): a TinyLlama-1.1B-shaped model
# with random bf16 weights (`fbq synth`; speed does not depend on the values), quantized by RTN at
# W4/W3/W2 g128 and with a rank-32 branch (LQER), each timed by `fbq bench` (128-token prompt, then 128 decode
# steps, best of 3) with float and with int8 activations. The models are kept in build/models/ for reruns.
# Run it on an otherwise idle machine. Usage: scripts/decode_1b.sh
export OMP_WAIT_POLICY=${OMP_WAIT_POLICY:-active}
source "$(dirname "$0")/lib/results.sh"
results_open decode-1b 0
base=build/models/tinyllama-1.1b-random
[ -d "$base" ] || "$FBQ" synth --shape tinyllama-1.1b -o "$base"

bench_row() {  # bench_row LABEL DIR ACTIVATIONS
  echo "== decode-1b: $1 ($3 activations)" >&2
  FBQ_ACTIVATIONS=$3 "$FBQ" bench "$2" --json 2>/dev/null |
    sed "s/^{/{\"label\":\"$1, $3 activations\",\"coretype\":\"${OPENBLAS_CORETYPE:-unset}\",/" >> "$RESULTS"
}
quantized() {  # quantized LABEL NAME QUANTIZE_ARGS...
  local label=$1 dir=build/models/tinyllama-1.1b-random-$2; shift 2
  [ -d "$dir" ] || "$FBQ" quantize "$base" -o "$dir" --nsamples 2 --seqlen 64 --no-eval --quiet "$@" > /dev/null 2>&1
  bench_row "$label" "$dir" float
  bench_row "$label" "$dir" int8
}
bench_row "bf16 (held as stored)" "$base" float
quantized "W4 g128" w4 --method rtn --bits 4 --group-size 128
quantized "W3 g128" w3 --method rtn --bits 3 --group-size 128
quantized "W2 g128" w2 --method rtn --bits 2 --group-size 128
quantized "W4 g128 + rank-32 branch" w4-r32 --method lqer --bits 4 --group-size 128 --rank 32
render decode-1b
