#pragma once
// Dense 16-bit float GEMV: y[t] = W·x[t] for W stored as bf16 or f16 (what checkpoints ship), widened to f32 in
// registers, so a model runs from its file's bytes without an f32 copy. Also the unquantized baseline the packed
// kernels are measured against (`fbq bench kernels`).
#include <cstdint>

#include "io/dtype.h"
#include "kernels/gemv_packed.h"

namespace fbq {

// w: rows × cols bf16 or f16 bits (`dtype` BF16 or F16); x: batch × cols; y: batch × rows. Batches above
// kKernelMaxBatch run in chunks. Every ISA computes the same float dot products in a different summation order.
void gemv_half(DType dtype, const std::uint16_t* w, int rows, int cols, const float* x, int batch, float* y,
               KernelIsa isa = KernelIsa::best);

}  // namespace fbq
