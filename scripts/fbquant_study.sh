#!/usr/bin/env bash
# FBQuant study on the bundled model (issue 5); writes two sections of docs/RESULTS.md.
#   tuning:  W3 g128 with a 0.3-bit branch — learning rate × steps × init × inner quantizer (moby-test), then
#            the generalisation checks (kept-iterate selection, 0 steps, 4× the calibration data; both texts).
#   budgets: W3/W2/W4 g128, FBQuant and LQER with 0.25/0.5/1-bit branches beside RTN/GPTQ/AWQ g128 and the
#            group sizes that cost about the same bits without a branch (g64, g32); rtn inside at W3/W2 only.
#            One section per bit width (budgets-w3, budgets-w2, budgets-w4 run one of them; budgets runs all).
#   paired:  the rows that decide "FBQuant against GPTQ at equal bits" at W3 and W2 g128, each scored against GPTQ
#            token by token (paired differences), with the output error against the float model reported for
#            every row, --float-target (asymmetric calibration) and --true-sequential for GPTQ and FBQuant, and GPTQ
#            on two other calibration seeds (how much PPL moves with the calibration sample alone).
#   drift:   the same models as paired (quantized only, not scored), with the residual stream's drift from the
#            float model after every layer beside the per-linear error: which of the two follows PPL.
#   block:   FBQuant trained through the whole decoder block (--reconstruct block) at W3/W2 g128 with a 0.25-bit
#            branch, beside GPTQ g128/g64, LWC (learnable clipping, no branch) and layer-wise FBQuant, paired vs GPTQ.
# Calibration: train.txt, 64 training + 32 held-out windows × 256 tokens, seed 0; PPL on whole test files.
# Usage: scripts/fbquant_study.sh [--quick] [--resume] [tuning] [budgets | budgets-w3 | budgets-w2 | budgets-w4] [paired] [drift] [block]
#   (default: all parts; ~4.5 h on 2 cores)
#   --quick: 8+4 calibration windows and 20 PPL windows (smoke run); --resume: keep rows already measured.
resume=0 quick=0 parts=()
for arg in "$@"; do
  case "$arg" in
    --quick) quick=1 ;;
    --resume) resume=1 ;;
    tuning|paired|drift|block) parts+=("$arg") ;;
    budgets) parts+=(budgets-w3 budgets-w2 budgets-w4) ;;
    budgets-w[234]) parts+=("$arg") ;;
    *) echo "usage: $0 [--quick] [--resume] [tuning] [budgets | budgets-w3 | budgets-w2 | budgets-w4] [paired] [drift] [block]" >&2; exit 2 ;;
  esac
done
((${#parts[@]})) || parts=(tuning budgets-w3 budgets-w2 budgets-w4 paired drift block)
if ((quick)); then export NSAMPLES=8 VAL=4 WINDOWS=20; else export NSAMPLES=64 VAL=32 WINDOWS=0; fi
source "$(dirname "$0")/lib/results.sh"
fb=(--method fbquant)

for part in "${parts[@]}"; do
  results_open "fbquant-$part" "$resume"
  if [ "$part" = tuning ]; then
    t=(tuning 3 128 moby)
    b=(--branch-bits 0.3)
    row "${t[0]}" "RTN (no branch)" 3 128 moby --method rtn
    row "${t[0]}" "GPTQ (no branch)" 3 128 moby --method gptq
    row "${t[0]}" "LQER (L2QER)" 3 128 moby --method lqer "${b[@]}"
    for inner in rtn gptq; do
      row tuning "$inner inside, svd init, 0 steps (= $inner + scaled-SVD branch)" 3 128 moby "${fb[@]}" "${b[@]}" -O inner=$inner -O steps=0
      for lr in 1e-3 3e-3 1e-2; do
        for steps in 100 300; do
          # GPTQ inside costs more per step: its grid is lr 1e-3/3e-3 at 100 steps and 3e-3 at 300
          [ $inner = gptq ] && { [ $lr = 1e-2 ] || { [ $steps = 300 ] && [ $lr != 3e-3 ]; }; } && continue
          row tuning "$inner inside, svd init, lr $lr, $steps steps" 3 128 moby "${fb[@]}" "${b[@]}" -O inner=$inner -O lr=$lr -O steps=$steps
        done
      done
      [ $inner = rtn ] && row tuning "$inner inside, zero init, lr 3e-3, 300 steps" 3 128 moby "${fb[@]}" "${b[@]}" -O inner=$inner -O init=zero -O steps=300
      row tuning "$inner inside, svd init, lr 3e-3, 300 steps, kept iterate by training H" 3 128 moby "${fb[@]}" "${b[@]}" -O inner=$inner -O steps=300 -O select=train
    done
    row tuning "gptq inside re-run every step, lr 3e-3, 100 steps" 3 128 moby "${fb[@]}" "${b[@]}" -O inner=gptq -O gptq_every=1 -O steps=100
    # Generalisation: the same rows scored on both texts, at 64 and at 256 calibration windows.
    for n in $NSAMPLES $((NSAMPLES * 4)); do
      NSAMPLES=$n row generalisation "GPTQ (no branch), $n windows" 3 128 "sotu moby" --method gptq
      for inner in rtn gptq; do
        NSAMPLES=$n row generalisation "FBQuant $inner inside, 300 steps, $n windows" 3 128 "sotu moby" "${fb[@]}" "${b[@]}" -O inner=$inner -O steps=300
      done
    done
    render fbquant-tuning
  elif [ "$part" = paired ]; then
    f=(--report-float-error)
    for bits in 3 2; do
      row paired "GPTQ" $bits 128 "sotu moby" --method gptq "${f[@]}"
      # The calibration-sample lottery: the same method on other windows (and seeds) of the same text.
      for seed in 1 2; do SEED=$seed row paired "GPTQ, calibration seed $seed" $bits 128 "sotu moby" --method gptq "${f[@]}"; done
      row paired "GPTQ, float target" $bits 128 "sotu moby" --method gptq --float-target
      row paired "GPTQ g64" $bits 64 "sotu moby" --method gptq "${f[@]}"
      row paired "LQER, 0.25-bit branch" $bits 128 "sotu moby" --method lqer --branch-bits 0.25 "${f[@]}"
      row paired "FBQuant rtn inside, 0.25-bit branch" $bits 128 "sotu moby" "${fb[@]}" --branch-bits 0.25 -O inner=rtn -O steps=300 "${f[@]}"
      row paired "FBQuant gptq inside, 0.25-bit branch" $bits 128 "sotu moby" "${fb[@]}" --branch-bits 0.25 -O steps=300 "${f[@]}"
      row paired "FBQuant gptq inside, 0.25-bit branch, float target" $bits 128 "sotu moby" "${fb[@]}" --branch-bits 0.25 -O steps=300 --float-target
      row paired "GPTQ, true sequential" $bits 128 "sotu moby" --method gptq --true-sequential "${f[@]}"
      row paired "GPTQ, true sequential, float target" $bits 128 "sotu moby" --method gptq --true-sequential --float-target
      row paired "FBQuant gptq inside, 0.25-bit branch, true sequential, float target" $bits 128 "sotu moby" "${fb[@]}" --branch-bits 0.25 -O steps=300 --true-sequential --float-target
      render fbquant-paired
    done
  elif [ "$part" = block ]; then
    blk=(--reconstruct block --block-steps 60 --block-batch 4 --block-lr 1e-3)
    for bits in 3 2; do
      row block "GPTQ" $bits 128 "sotu moby" --method gptq
      row block "GPTQ g64" $bits 64 "sotu moby" --method gptq
      row block "LWC (RTN + learnable clipping, block-trained, no branch)" $bits 128 "sotu moby" --method rtn --lwc "${blk[@]}"
      row block "FBQuant gptq inside, 0.25-bit branch, layer-wise" $bits 128 "sotu moby" "${fb[@]}" --branch-bits 0.25
      row block "FBQuant gptq inside, 0.25-bit branch, block-trained" $bits 128 "sotu moby" "${fb[@]}" --branch-bits 0.25 "${blk[@]}"
      row block "FBQuant gptq inside, 0.25-bit branch, block-trained + norms" $bits 128 "sotu moby" "${fb[@]}" --branch-bits 0.25 "${blk[@]}" --block-norms
      [ $bits = 3 ] && row block "FBQuant gptq inside, 0.25-bit branch, block-trained, float input" $bits 128 "sotu moby" "${fb[@]}" --branch-bits 0.25 "${blk[@]}" --block-input float
      render fbquant-block
    done
  elif [ "$part" = drift ]; then
    f=(--report-float-error)
    for bits in 2 3; do
      row drift "GPTQ" $bits 128 "" --method gptq "${f[@]}"
      row drift "GPTQ, float target" $bits 128 "" --method gptq --float-target
      row drift "GPTQ g64" $bits 64 "" --method gptq "${f[@]}"
      row drift "FBQuant gptq inside, 0.25-bit branch" $bits 128 "" "${fb[@]}" --branch-bits 0.25 -O steps=300 "${f[@]}"
      row drift "FBQuant gptq inside, 0.25-bit branch, float target" $bits 128 "" "${fb[@]}" --branch-bits 0.25 -O steps=300 --float-target
      [ $bits = 2 ] && row drift "GPTQ, true sequential, float target" $bits 128 "" --method gptq --true-sequential --float-target
      render fbquant-drift
    done
  else
    bits=${part#budgets-w}
    row budgets "RTN" $bits 128 "sotu moby" --method rtn
    row budgets "GPTQ" $bits 128 "sotu moby" --method gptq
    row budgets "AWQ (+ clip)" $bits 128 "sotu moby" --method awq --clip-search
    row budgets "GPTQ g64" $bits 64 "sotu moby" --method gptq
    row budgets "AWQ g64 (+ clip)" $bits 64 "sotu moby" --method awq --clip-search
    row budgets "GPTQ g32" $bits 32 "sotu moby" --method gptq
    for x in 0.25 0.5 1; do
      row budgets "LQER, $x-bit branch" $bits 128 "sotu moby" --method lqer --branch-bits $x
      row budgets "FBQuant gptq inside, $x-bit branch" $bits 128 "sotu moby" "${fb[@]}" --branch-bits $x -O inner=gptq -O steps=300
      [ $bits = 4 ] || row budgets "FBQuant rtn inside, $x-bit branch" $bits 128 "sotu moby" "${fb[@]}" --branch-bits $x -O inner=rtn -O steps=300
    done
    render "fbquant-$part"
  fi
done
