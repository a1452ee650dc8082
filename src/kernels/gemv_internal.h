#pragma once
// Interface between the kernel dispatcher (gemv_packed.cpp) and the per-ISA row kernels.
#include <cstdint>

#include "kernels/gemv_packed.h"
#include "pack/bit_stream.h"

// The AVX-512 functions of the kernel files, compiled for that target whatever the build's -march.
#define FBQ_AVX512 __attribute__((target("avx512f,avx512bw,avx512vl,avx512dq,f16c")))

// GCC 12 warns about the _mm512_undefined_*() placeholders inside its own intrinsics (GCC PR105593).
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic ignored "-Wuninitialized"
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#endif

namespace fbq::kernels {

// One call's operands after the shared preparation: x already divided by input_scale, branch = A·x.
struct RowArgs {
  const PackedKernelView* w;
  // batch × cols; for the 4-bit SIMD kernels in nibble order (see nibble_span).
  const float* x;
  int batch;            // 1..kKernelMaxBatch
  const float* branch;  // batch × rank: t = A·x (unscaled x)
  float* y;             // batch × rows
};

// The 4-bit SIMD kernels widen whole code bytes to lanes and split them into low nibbles (even columns) and
// high nibbles (odd columns), so they want x reordered once per call: within each span of this many columns,
// the even columns first, then the odd ones. 0 = plain order.
int nibble_span(KernelIsa isa, int bits);

using RowsFn = void (*)(const RowArgs& args, int first_row, int end_row);
using DotFn = float (*)(const std::uint16_t* a_half, const float* x, int n);  // Σ a_j·x_j, a in float16

// Row kernel for `bits` ∈ {2, 3, 4, 8} and `batch` ∈ 1..kKernelMaxBatch (the scalar one ignores both).
RowsFn rows_scalar(int bits, int batch);
RowsFn rows_avx2(int bits, int batch);
RowsFn rows_avx512(int bits, int batch);
float dot_scalar(const std::uint16_t* a_half, const float* x, int n);
float dot_avx2(const std::uint16_t* a_half, const float* x, int n);
float dot_avx512(const std::uint16_t* a_half, const float* x, int n);

// The row kernel for runtime `bits` and `batch`, from a kernel family given as a captureless lambda
// `[]<int Bits, int Batch>() -> RowsFn { return my_kernel<Bits, Batch>; }` (each ISA file passes its own).
template <typename Pick>
auto select_rows(int bits, int batch, Pick pick) {
  const auto for_bits = [&]<int Bits>() {
    switch (batch) {
      case 1: return pick.template operator()<Bits, 1>();
      case 2: return pick.template operator()<Bits, 2>();
      case 3: return pick.template operator()<Bits, 3>();
      case 4: return pick.template operator()<Bits, 4>();
      case 5: return pick.template operator()<Bits, 5>();
      case 6: return pick.template operator()<Bits, 6>();
      case 7: return pick.template operator()<Bits, 7>();
      default: return pick.template operator()<Bits, 8>();
    }
  };
  switch (bits) {
    case 2: return for_bits.template operator()<2>();
    case 3: return for_bits.template operator()<3>();
    case 4: return for_bits.template operator()<4>();
    default: return for_bits.template operator()<8>();
  }
}

// Bits [offset, offset + width) (width ≤ 64) of a 32-code block of the row stream — `bits` words, word-
// aligned because every row and every group starts on a 32-code boundary. Touches only the words holding
// those bits, so it never reads past the row; with constant arguments it folds to one or two loads.
inline std::uint64_t block_bits(const std::uint32_t* block, int offset, int width) {
  const int word = offset / 32, shift = offset % 32;
  std::uint64_t value = block[word] >> shift;
  if (shift + width > 32) value |= static_cast<std::uint64_t>(block[word + 1]) << (32 - shift);
  if (shift + width > 64) value |= static_cast<std::uint64_t>(block[word + 2]) << (64 - shift);
  return value;
}

}  // namespace fbq::kernels
