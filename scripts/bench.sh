#!/usr/bin/env bash
# Speed results, three sections of docs/RESULTS.md: `fbq bench kernels` (packed decode kernels with and without
# the fused branch, dense f32/bf16 GEMV, GB/s against the measured read bandwidth), `fbq bench` of the bundled
# model in f32 and quantized (prefill and decode tokens/s), and `fbq bench method` (FBQuant's cost per step and
# per layer on a 4096×4096 layer, RTN and GPTQ inside).
# Run it on an otherwise idle machine: OpenMP threads spin here (fastest alone, but any other load ruins the
# timings). Usage: scripts/bench.sh [--quick] [kernels] [speed] [cost]   (--quick: one shape, short timings;
# a smoke run. Sections: the ones named, default all three.)
export OMP_WAIT_POLICY=${OMP_WAIT_POLICY:-active}
kernel_args=() steps=50 shape=(--rows 4096 --cols 4096) sections=()
for arg in "$@"; do
  case "$arg" in
    --quick) kernel_args=(--shapes 4096x4096 --seconds 0.02) steps=10 shape=(--rows 1024 --cols 1024) ;;
    kernels | speed | cost) sections+=("$arg") ;;
    *) echo "usage: $0 [--quick] [kernels] [speed] [cost]" >&2; exit 2 ;;
  esac
done
((${#sections[@]})) || sections=(kernels speed cost)
wanted() { [[ " ${sections[*]} " == *" $1 "* ]]; }
source "$(dirname "$0")/lib/results.sh"

if wanted kernels; then
results_open kernels 0
"$FBQ" bench kernels --json "${kernel_args[@]}" >> "$RESULTS"
render kernels
fi

if wanted speed; then
results_open speed 0
bench_model() {  # bench_model LABEL DIR [ACTIVATIONS: float | int8]
  echo "== speed: $1" >&2
  FBQ_ACTIVATIONS=${3:-float} "$FBQ" bench "$2" --json 2>/dev/null | sed "s/^{/{\"label\":\"$1\",/" >> "$RESULTS"
}
bench_model "f32 (bf16 file, held as f32)" "$MODEL"
quantized() {  # quantized LABEL QUANTIZE_ARGS...
  local label=$1; shift
  rm -rf "$WORK/q"
  "$FBQ" quantize "$MODEL" -o "$WORK/q" --calib "$SHARED/data/train.txt" --nsamples 16 --seqlen 256 --no-eval --quiet "$@" 2>/dev/null
  bench_model "$label, float activations" "$WORK/q" float
  bench_model "$label, int8 activations" "$WORK/q" int8
}
quantized "W4 g128" --method rtn --bits 4
quantized "W3 g128" --method rtn --bits 3
quantized "W2 g128" --method rtn --bits 2
quantized "W3 g128 + rank-32 branch" --method lqer --bits 3 --rank 32
render speed
fi

if wanted cost; then
results_open fbquant-cost 0
method_cost() {  # method_cost LABEL BENCH_METHOD_ARGS...
  local label=$1; shift
  echo "== cost: $label" >&2
  "$FBQ" bench method "${shape[@]}" --bits 3 --group-size 128 --rank 32 --json "$@" 2>/dev/null |
    sed "s/^{/{\"label\":\"$label\",/" >> "$RESULTS"
}
method_cost "GPTQ (no branch)" --method gptq
method_cost "FBQuant rtn inside, init only" -O inner=rtn -O steps=0
method_cost "FBQuant rtn inside, $steps steps" -O inner=rtn -O steps=$steps
method_cost "FBQuant gptq inside, init only" -O inner=gptq -O steps=0
method_cost "FBQuant gptq inside (k=10), $steps steps" -O inner=gptq -O gptq_every=10 -O steps=$steps
method_cost "FBQuant gptq inside (k=1), $((steps / 5)) steps" -O inner=gptq -O gptq_every=1 -O steps=$((steps / 5))
render fbquant-cost
fi
