// AVX2 row kernel. A 32-code block is `b` whole words of the row stream; its k-th 8 codes are the 8b bits
// at offset 8b·k (for 3-bit, pieces that straddle words are put together from two words in registers), so
// broadcast + per-lane variable shift (0, b, …, 7b) + mask yields 8 codes in 32-bit lanes (b = 2, 3).
// 8-bit widens bytes; 4-bit widens bytes and splits them into nibbles, which is cheaper than shifting but
// yields the columns in nibble order.
#include <immintrin.h>

#include <algorithm>

#include "kernels/gemv_internal.h"

#define FBQ_AVX2 __attribute__((target("avx2,fma,f16c")))

namespace fbq::kernels {
namespace {

// Codes 8k … 8k+7 of a 32-code block; for 4-bit, the low (k even) or high (k odd) nibbles of bytes
// 8·(k/2) … 8·(k/2)+7, i.e. the columns in nibble order (gemv_internal.h), two pieces per widened load.
template <int Bits>
FBQ_AVX2 inline __m256i decode8(const std::uint32_t* block, int k, __m256i shifts, __m256i mask) {
  if constexpr (Bits == 4) {
    const __m256i bytes = _mm256_cvtepu8_epi32(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(block + 2 * (k / 2))));
    return k % 2 == 0 ? _mm256_and_si256(bytes, mask) : _mm256_srli_epi32(bytes, 4);
  } else if constexpr (Bits == 8) {
    return _mm256_cvtepu8_epi32(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(block + 2 * k)));
  } else {
    const auto piece = static_cast<int>(block_bits(block, 8 * Bits * k, 8 * Bits));
    return _mm256_and_si256(_mm256_srlv_epi32(_mm256_set1_epi32(piece), shifts), mask);
  }
}

FBQ_AVX2 inline __m256 load_half8(const std::uint16_t* halves) {  // 8 float16 → float32
  return _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(halves)));
}

FBQ_AVX2 inline float hsum(__m256 v) {
  __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  s = _mm_add_ps(s, _mm_movehl_ps(s, s));
  return _mm_cvtss_f32(_mm_add_ss(s, _mm_movehdup_ps(s)));
}

FBQ_AVX2 inline __m256i tail_mask(int count) {  // first `count` (< 8) lanes set
  return _mm256_cmpgt_epi32(_mm256_set1_epi32(count), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
}

template <int Bits, int T>
FBQ_AVX2 void rows_kernel(const RowArgs& a, int first_row, int end_row) {
  const PackedKernelView& w = *a.w;
  const int n = w.cols, m = w.rows, r = w.rank, g = w.group_size, groups = n / g;
  // Independent accumulators per token hide the FMA latency when the batch alone cannot (≤ 8 registers).
  constexpr int U = T == 1 ? 4 : T == 2 ? 2 : 1;
  const __m256i shifts = _mm256_setr_epi32(0, Bits, 2 * Bits, 3 * Bits, 4 * Bits, 5 * Bits, 6 * Bits, 7 * Bits);
  const __m256i mask = _mm256_set1_epi32((1 << Bits) - 1);
  for (int row = first_row; row < end_row; ++row) {
    const std::uint32_t* codes = w.codes + static_cast<std::size_t>(row) * w.code_words_per_row;
    __m256 acc[T][U];
    for (int t = 0; t < T; ++t)
      for (int u = 0; u < U; ++u) acc[t][u] = _mm256_setzero_ps();
    for (int group = 0; group < groups; ++group) {
      const std::int64_t index = static_cast<std::int64_t>(row) * groups + group;
      const float scale = _cvtsh_ss(w.scales[index]);
      const __m256 vscale = _mm256_set1_ps(scale);
      // ŵ = s·q − s·z: one FMA per 8 weights, shared by all tokens
      const __m256 voffset = _mm256_set1_ps(-scale * static_cast<float>(read_bits(w.zeros, index, Bits)));
      for (int j = group * g; j < (group + 1) * g; j += 32) {
        const std::uint32_t* block = codes + j / 32 * Bits;
#pragma GCC unroll 4
        for (int k = 0; k < 4; ++k) {
          const __m256 weight = _mm256_fmadd_ps(_mm256_cvtepi32_ps(decode8<Bits>(block, k, shifts, mask)), vscale, voffset);
          for (int t = 0; t < T; ++t)
            acc[t][k % U] =
                _mm256_fmadd_ps(weight, _mm256_loadu_ps(a.x + static_cast<std::size_t>(t) * n + j + 8 * k), acc[t][k % U]);
        }
      }
    }
    const std::uint16_t* b_row = w.lora_b + static_cast<std::size_t>(row) * r;
    for (int t = 0; t < T; ++t) {
      __m256 sum = acc[t][0];
      for (int u = 1; u < U; ++u) sum = _mm256_add_ps(sum, acc[t][u]);
      const float* branch = a.branch + t * r;  // fused branch: B[row,:]·t joins the row's sum before the store
      int k = 0;
      for (; k + 8 <= r; k += 8) sum = _mm256_fmadd_ps(load_half8(b_row + k), _mm256_loadu_ps(branch + k), sum);
      if (k < r) {
        alignas(16) std::uint16_t rest[8] = {};
        std::copy(b_row + k, b_row + r, rest);
        sum = _mm256_fmadd_ps(load_half8(rest), _mm256_maskload_ps(branch + k, tail_mask(r - k)), sum);
      }
      a.y[static_cast<std::size_t>(t) * m + row] = hsum(sum);
    }
  }
}

}  // namespace

RowsFn rows_avx2(int bits, int batch) {
  return select_rows(bits, batch, []<int Bits, int T>() -> RowsFn { return rows_kernel<Bits, T>; });
}

FBQ_AVX2 float dot_avx2(const std::uint16_t* a_half, const float* x, int n) {
  __m256 s0 = _mm256_setzero_ps(), s1 = _mm256_setzero_ps();
  int j = 0;
  for (; j + 16 <= n; j += 16) {
    s0 = _mm256_fmadd_ps(load_half8(a_half + j), _mm256_loadu_ps(x + j), s0);
    s1 = _mm256_fmadd_ps(load_half8(a_half + j + 8), _mm256_loadu_ps(x + j + 8), s1);
  }
  float sum = hsum(_mm256_add_ps(s0, s1));
  for (; j < n; ++j) sum += _cvtsh_ss(a_half[j]) * x[j];
  return sum;
}

}  // namespace fbq::kernels
