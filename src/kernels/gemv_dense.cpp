#include "kernels/gemv_dense.h"

#include <immintrin.h>

#include <algorithm>

#include "io/dtype.h"
#include "kernels/gemv_internal.h"
#include "util/error.h"

namespace fbq {
namespace {

using RowsFn = void (*)(const std::uint16_t* w, int rows, int cols, const float* x, int batch, float* y, int first,
                        int end);

// The reference: widen each weight, plain float dot products in column order.
void rows_scalar(const std::uint16_t* w, int rows, int cols, const float* x, int batch, float* y, int first, int end) {
  for (int i = first; i < end; ++i)
    for (int t = 0; t < batch; ++t) {
      float sum = 0.0f;
      for (int j = 0; j < cols; ++j) sum += bf16_to_float(w[static_cast<std::size_t>(i) * cols + j]) * x[t * cols + j];
      y[static_cast<std::size_t>(t) * rows + i] = sum;
    }
}

// bf16 → f32 is a 16-bit left shift: widen 16 values to dwords and shift, then one FMA per token.
template <int T>
FBQ_AVX512 void rows_avx512(const std::uint16_t* w, int rows, int cols, const float* x, int, float* y, int first,
                            int end) {
  for (int i = first; i < end; ++i) {
    const std::uint16_t* row = w + static_cast<std::size_t>(i) * cols;
    __m512 acc[T];
    for (int t = 0; t < T; ++t) acc[t] = _mm512_setzero_ps();
    int j = 0;
    for (; j + 16 <= cols; j += 16) {
      const __m256i raw = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(row + j));
      const __m512 weight = _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(raw), 16));
      for (int t = 0; t < T; ++t) acc[t] = _mm512_fmadd_ps(weight, _mm512_loadu_ps(x + t * cols + j), acc[t]);
    }
    for (int t = 0; t < T; ++t) {
      float sum = _mm512_reduce_add_ps(acc[t]);
      for (int k = j; k < cols; ++k) sum += bf16_to_float(row[k]) * x[t * cols + k];
      y[static_cast<std::size_t>(t) * rows + i] = sum;
    }
  }
}

RowsFn pick_avx512(int batch) {
  switch (batch) {
    case 1: return rows_avx512<1>;
    case 2: return rows_avx512<2>;
    case 3: return rows_avx512<3>;
    case 4: return rows_avx512<4>;
    case 5: return rows_avx512<5>;
    case 6: return rows_avx512<6>;
    case 7: return rows_avx512<7>;
    default: return rows_avx512<8>;
  }
}

}  // namespace

void gemv_bf16(const std::uint16_t* w, int rows, int cols, const float* x, int batch, float* y, KernelIsa isa) {
  if (isa == KernelIsa::avx2) fail("the bf16 GEMV has scalar and avx512 variants only");
  if (isa != KernelIsa::best && !kernel_isa_supported(isa)) fail("this CPU lacks {} for the bf16 GEMV", kernel_isa_name(isa));
  const bool simd = isa == KernelIsa::avx512 || (isa == KernelIsa::best && kernel_isa_supported(KernelIsa::avx512));
  for (int t0 = 0; t0 < batch; t0 += kKernelMaxBatch) {
    const int chunk = std::min(kKernelMaxBatch, batch - t0);
    const RowsFn fn = simd ? pick_avx512(chunk) : rows_scalar;
    const float* xs = x + static_cast<std::size_t>(t0) * cols;
    float* ys = y + static_cast<std::size_t>(t0) * rows;
    constexpr int kChunkRows = 16;
#pragma omp parallel for schedule(static) if (static_cast<std::int64_t>(rows) * cols >= (1 << 16))
    for (int c = 0; c < (rows + kChunkRows - 1) / kChunkRows; ++c)
      fn(w, rows, cols, xs, chunk, ys, c * kChunkRows, std::min(rows, (c + 1) * kChunkRows));
  }
}

}  // namespace fbq
