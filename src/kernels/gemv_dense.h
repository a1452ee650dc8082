#pragma once
// Dense bfloat16 GEMV, the unquantized baseline the packed kernels are measured against (`fbq bench kernels`):
// y[t] = W·x[t] for W stored as bf16 (what most checkpoints ship), widened to f32 in registers.
#include <cstdint>

#include "kernels/gemv_packed.h"

namespace fbq {

// w: rows × cols bf16 bits; x: batch × cols; y: batch × rows. Batches above kKernelMaxBatch run in chunks.
void gemv_bf16(const std::uint16_t* w, int rows, int cols, const float* x, int batch, float* y,
               KernelIsa isa = KernelIsa::best);

}  // namespace fbq
