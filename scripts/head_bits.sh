#!/usr/bin/env bash
# Cost of a quantized output head (section "head-bits" of docs/RESULTS.md): ref-llama-12m at W4 g128 (RTN, so the
# linears are identical across rows) with the head as stored, and with `--head-bits 8` / `--head-bits 4`; size on
# disk and PPL on both test texts, paired against the stored-head row on the same tokens.
# Usage: scripts/head_bits.sh   (NSAMPLES calibration windows, default 64)
source "$(dirname "$0")/lib/results.sh"
results_open head-bits 0
row head-bits "head as stored" 4 128 "sotu moby" --method rtn
row head-bits "--head-bits 8" 4 128 "sotu moby" --method rtn --head-bits 8
row head-bits "--head-bits 8 --sym" 4 128 "sotu moby" --method rtn --head-bits 8 --sym
row head-bits "--head-bits 4" 4 128 "sotu moby" --method rtn --head-bits 4
render head-bits
