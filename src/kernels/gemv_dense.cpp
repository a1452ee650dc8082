#include "kernels/gemv_dense.h"

#include "kernels/gemv_internal.h"  // first: its pragmas silence GCC's warnings inside the intrinsics headers

#include <immintrin.h>

#include <algorithm>

#include "util/error.h"

#define FBQ_AVX2 __attribute__((target("avx2,fma,f16c")))

namespace fbq {
namespace {

using RowsFn = void (*)(const std::uint16_t* w, int rows, int cols, const float* x, int batch, float* y, int first,
                        int end);

inline float widen(bool bf16, std::uint16_t bits) { return bf16 ? bf16_to_float(bits) : half_to_float(bits); }

// The reference: widen each weight, plain float dot products in column order.
template <bool Bf16>
void rows_scalar(const std::uint16_t* w, int rows, int cols, const float* x, int batch, float* y, int first, int end) {
  for (int i = first; i < end; ++i)
    for (int t = 0; t < batch; ++t) {
      float sum = 0.0f;
      for (int j = 0; j < cols; ++j) sum += widen(Bf16, w[static_cast<std::size_t>(i) * cols + j]) * x[t * cols + j];
      y[static_cast<std::size_t>(t) * rows + i] = sum;
    }
}

// bf16 → f32 is a 16-bit left shift of the zero-extended bits; f16 → f32 is vcvtph2ps.
template <bool Bf16>
FBQ_AVX512 inline __m512 widen16(const std::uint16_t* p) {
  const __m256i raw = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(p));
  if constexpr (Bf16) return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(raw), 16));
  return _mm512_cvtph_ps(raw);
}

template <bool Bf16>
FBQ_AVX2 inline __m256 widen8(const std::uint16_t* p) {
  const __m128i raw = _mm_loadu_si128(reinterpret_cast<const __m128i*>(p));
  if constexpr (Bf16) return _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(raw), 16));
  return _mm256_cvtph_ps(raw);
}

FBQ_AVX2 inline float hsum8(__m256 v) {
  __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  s = _mm_add_ps(s, _mm_movehl_ps(s, s));
  return _mm_cvtss_f32(_mm_add_ss(s, _mm_movehdup_ps(s)));
}

// One row at a time: its weights widened once, then one FMA per token.
template <bool Bf16, int T>
FBQ_AVX512 void rows_avx512(const std::uint16_t* w, int rows, int cols, const float* x, int, float* y, int first,
                            int end) {
  for (int i = first; i < end; ++i) {
    const std::uint16_t* row = w + static_cast<std::size_t>(i) * cols;
    __m512 acc[T];
    for (int t = 0; t < T; ++t) acc[t] = _mm512_setzero_ps();
    int j = 0;
    for (; j + 16 <= cols; j += 16) {
      const __m512 weight = widen16<Bf16>(row + j);
      for (int t = 0; t < T; ++t) acc[t] = _mm512_fmadd_ps(weight, _mm512_loadu_ps(x + t * cols + j), acc[t]);
    }
    for (int t = 0; t < T; ++t) {
      float sum = _mm512_reduce_add_ps(acc[t]);
      for (int k = j; k < cols; ++k) sum += widen(Bf16, row[k]) * x[t * cols + k];
      y[static_cast<std::size_t>(t) * rows + i] = sum;
    }
  }
}

template <bool Bf16, int T>
FBQ_AVX2 void rows_avx2(const std::uint16_t* w, int rows, int cols, const float* x, int, float* y, int first, int end) {
  for (int i = first; i < end; ++i) {
    const std::uint16_t* row = w + static_cast<std::size_t>(i) * cols;
    __m256 acc[T];
    for (int t = 0; t < T; ++t) acc[t] = _mm256_setzero_ps();
    int j = 0;
    for (; j + 8 <= cols; j += 8) {
      const __m256 weight = widen8<Bf16>(row + j);
      for (int t = 0; t < T; ++t) acc[t] = _mm256_fmadd_ps(weight, _mm256_loadu_ps(x + t * cols + j), acc[t]);
    }
    for (int t = 0; t < T; ++t) {
      float sum = hsum8(acc[t]);
      for (int k = j; k < cols; ++k) sum += widen(Bf16, row[k]) * x[t * cols + k];
      y[static_cast<std::size_t>(t) * rows + i] = sum;
    }
  }
}

// The row kernel of `isa` for a chunk of `batch` ≤ kKernelMaxBatch tokens.
template <bool Bf16>
RowsFn pick(KernelIsa isa, int batch) {
  if (isa == KernelIsa::scalar) return rows_scalar<Bf16>;
  const auto of = [&]<int T>() -> RowsFn {
    return isa == KernelIsa::avx512 ? rows_avx512<Bf16, T> : rows_avx2<Bf16, T>;
  };
  switch (batch) {
    case 1: return of.template operator()<1>();
    case 2: return of.template operator()<2>();
    case 3: return of.template operator()<3>();
    case 4: return of.template operator()<4>();
    case 5: return of.template operator()<5>();
    case 6: return of.template operator()<6>();
    case 7: return of.template operator()<7>();
    default: return of.template operator()<8>();
  }
}

KernelIsa resolve(KernelIsa isa) {
  if (isa == KernelIsa::best) return preferred_kernel_isa();  // FBQ_KERNEL_ISA chooses here too
  if (!kernel_isa_supported(isa)) fail("this CPU lacks {} for the 16-bit float GEMV", kernel_isa_name(isa));
  return isa;
}

}  // namespace

void gemv_half(DType dtype, const std::uint16_t* w, int rows, int cols, const float* x, int batch, float* y,
               KernelIsa isa) {
  if (dtype != DType::BF16 && dtype != DType::F16) fail("the 16-bit float GEMV takes BF16 or F16, not {}", dtype_name(dtype));
  const KernelIsa chosen = resolve(isa);
  for (int t0 = 0; t0 < batch; t0 += kKernelMaxBatch) {
    const int chunk = std::min(kKernelMaxBatch, batch - t0);
    const RowsFn fn = dtype == DType::BF16 ? pick<true>(chosen, chunk) : pick<false>(chosen, chunk);
    const float* xs = x + static_cast<std::size_t>(t0) * cols;
    float* ys = y + static_cast<std::size_t>(t0) * rows;
    constexpr int kChunkRows = 16;
#pragma omp parallel for schedule(static) if (static_cast<std::int64_t>(rows) * cols >= (1 << 16))
    for (int c = 0; c < (rows + kChunkRows - 1) / kChunkRows; ++c)
      fn(w, rows, cols, xs, chunk, ys, c * kChunkRows, std::min(rows, (c + 1) * kChunkRows));
  }
}

}  // namespace fbq
