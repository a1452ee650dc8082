#pragma once
// Fused decode kernel for packed linears (DESIGN §3): for a batch of 1..8 tokens, computes
//   y[t] = dequant(Q)·(x[t] / input_scale) + B·(A·x[t])
// streaming the packed codes once for the whole batch, dequantizing in registers and adding each row's
// branch term B[row,:]·(A·x[t]) before that row's single store. Works straight on the file layout
// (docs/FORMAT.md): no repacked copy of the weights is kept.
#include <cstdint>

namespace fbq {

enum class KernelIsa { scalar, avx2, avx512, best };

// Tokens one pass of the kernel serves; beyond that, prefill is compute-bound and wants a GEMM.
inline constexpr int kKernelMaxBatch = 8;

// Borrowed pointers into a packed linear (see PackedWeights / PackedLinear); m = rows, n = cols.
struct PackedKernelView {
  int rows = 0, cols = 0, bits = 4, group_size = 128;
  const std::uint32_t* codes = nullptr;  // rows × code_words_per_row, per-row little-endian bit streams
  int code_words_per_row = 0;
  const std::uint32_t* zeros = nullptr;   // one bit stream over rows × groups
  const std::uint16_t* scales = nullptr;  // rows × groups, float16 bits
  const float* input_scale = nullptr;     // n divisors, or null
  int rank = 0;
  const std::uint16_t* lora_a = nullptr;  // r × n, float16 bits
  const std::uint16_t* lora_b = nullptr;  // m × r, float16 bits
};

// Whether this CPU runs `isa` (scalar and best: always).
bool kernel_isa_supported(KernelIsa isa);
const char* kernel_isa_name(KernelIsa isa);

// What `KernelIsa::best` runs: the best ISA this CPU supports, unless the environment variable FBQ_KERNEL_ISA
// (scalar, avx2, avx512) or set_preferred_kernel_isa() chose another — to compare whole-model results of
// the SIMD kernels with the scalar reference, or to measure one ISA. An unsupported choice throws fbq::Error.
void set_preferred_kernel_isa(KernelIsa isa);
KernelIsa preferred_kernel_isa();

// x: batch × n (row-major, any alignment), y: batch × m (batch 0: nothing to do). Batches above 8 run in chunks of 8 (callers use a
// GEMM there). An explicitly requested ISA the CPU lacks throws fbq::Error; the SIMD kernels need
// group_size % 32 == 0 and otherwise fall back to the scalar kernel.
void gemv_packed(const PackedKernelView& w, const float* x, int batch, float* y, KernelIsa isa = KernelIsa::best);

}  // namespace fbq
