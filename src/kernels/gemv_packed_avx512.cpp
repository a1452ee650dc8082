// AVX-512 row kernel. A 32-code block is `b` whole words of the row stream; its h-th 16 codes are the 2b
// bytes at bit offset 16b·h (put together from two words in registers where 3-bit codes straddle them):
// broadcast them, let a byte shuffle give lanes 0–7 the dword at byte 0 and lanes 8–15 the dword at byte b,
// then shift lane i by b·(i mod 8) and mask (b = 2, 3). 8-bit widens bytes; 4-bit widens bytes and splits
// them into nibbles, which is cheaper than shifting but yields the columns in nibble order.
#include <immintrin.h>

#include "kernels/gemv_internal.h"

namespace fbq::kernels {
namespace {

// Codes 16h … 16h+15 of a 32-code block; for 4-bit, the low (h = 0) or high (h = 1) nibbles of its 16
// bytes, i.e. the columns in nibble order (gemv_internal.h), both from one widened load.
template <int Bits>
FBQ_AVX512 inline __m512i decode16(const std::uint32_t* block, int h, __m512i gather, __m512i shifts, __m512i mask) {
  if constexpr (Bits == 4) {
    const __m512i bytes = _mm512_cvtepu8_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(block)));
    return h == 0 ? _mm512_and_si512(bytes, mask) : _mm512_srli_epi32(bytes, 4);
  } else if constexpr (Bits == 8) {
    return _mm512_cvtepu8_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(block + 4 * h)));
  } else {
    const auto bytes = static_cast<long long>(block_bits(block, 16 * Bits * h, 16 * Bits));
    const __m512i words = _mm512_shuffle_epi8(_mm512_set1_epi64(bytes), gather);
    return _mm512_and_si512(_mm512_srlv_epi32(words, shifts), mask);
  }
}

template <int Bits, int T>
FBQ_AVX512 void rows_kernel(const RowArgs& a, int first_row, int end_row) {
  const PackedKernelView& w = *a.w;
  const int n = w.cols, m = w.rows, r = w.rank, g = w.group_size, groups = n / g;
  constexpr int U = T <= 4 ? 2 : 1;  // independent accumulators per token to hide the FMA latency
  // Byte indices 0..3 in every dword; +Bits in the upper 256 bits (lanes 8–15 start at byte Bits).
  const __m512i gather = _mm512_add_epi8(_mm512_set1_epi32(0x03020100),
                                         _mm512_inserti64x4(_mm512_setzero_si512(), _mm256_set1_epi8(Bits), 1));
  const __m512i shifts = _mm512_setr_epi32(0, Bits, 2 * Bits, 3 * Bits, 4 * Bits, 5 * Bits, 6 * Bits, 7 * Bits, 0, Bits,
                                           2 * Bits, 3 * Bits, 4 * Bits, 5 * Bits, 6 * Bits, 7 * Bits);
  const __m512i mask = _mm512_set1_epi32((1 << Bits) - 1);
  for (int row = first_row; row < end_row; ++row) {
    const std::uint32_t* codes = w.codes + static_cast<std::size_t>(row) * w.code_words_per_row;
    __m512 acc[T][U];
    for (int t = 0; t < T; ++t)
      for (int u = 0; u < U; ++u) acc[t][u] = _mm512_setzero_ps();
    for (int group = 0; group < groups; ++group) {
      const std::int64_t index = static_cast<std::int64_t>(row) * groups + group;
      const float scale = _cvtsh_ss(w.scales[index]);
      const __m512 vscale = _mm512_set1_ps(scale);
      // ŵ = s·q − s·z: one FMA per 16 weights, shared by all tokens
      const __m512 voffset = _mm512_set1_ps(-scale * static_cast<float>(read_bits(w.zeros, index, Bits)));
      for (int j = group * g; j < (group + 1) * g; j += 32) {
        const std::uint32_t* block = codes + j / 32 * Bits;
#pragma GCC unroll 2
        for (int h = 0; h < 2; ++h) {
          const __m512 weight =
              _mm512_fmadd_ps(_mm512_cvtepi32_ps(decode16<Bits>(block, h, gather, shifts, mask)), vscale, voffset);
          for (int t = 0; t < T; ++t)
            acc[t][h % U] = _mm512_fmadd_ps(weight, _mm512_loadu_ps(a.x + static_cast<std::size_t>(t) * n + j + 16 * h),
                                            acc[t][h % U]);
        }
      }
    }
    const float* b_row = w.lora_b + static_cast<std::size_t>(row) * r;
    for (int t = 0; t < T; ++t) {
      __m512 sum = acc[t][0];
      for (int u = 1; u < U; ++u) sum = _mm512_add_ps(sum, acc[t][u]);
      const float* branch = a.branch + t * r;  // fused branch: B[row,:]·t joins the row's sum before the store
      int k = 0;
      for (; k + 16 <= r; k += 16) sum = _mm512_fmadd_ps(_mm512_loadu_ps(b_row + k), _mm512_loadu_ps(branch + k), sum);
      if (k < r) {
        const __mmask16 tail = static_cast<__mmask16>((1u << (r - k)) - 1u);
        sum = _mm512_fmadd_ps(_mm512_maskz_loadu_ps(tail, b_row + k), _mm512_maskz_loadu_ps(tail, branch + k), sum);
      }
      a.y[static_cast<std::size_t>(t) * m + row] = _mm512_reduce_add_ps(sum);
    }
  }
}

}  // namespace

RowsFn rows_avx512(int bits, int batch) {
  return select_rows(bits, batch, []<int Bits, int T>() -> RowsFn { return rows_kernel<Bits, T>; });
}

FBQ_AVX512 float dot_avx512(const float* a, const float* b, int n) {
  __m512 s0 = _mm512_setzero_ps(), s1 = _mm512_setzero_ps();
  int j = 0;
  for (; j + 32 <= n; j += 32) {
    s0 = _mm512_fmadd_ps(_mm512_loadu_ps(a + j), _mm512_loadu_ps(b + j), s0);
    s1 = _mm512_fmadd_ps(_mm512_loadu_ps(a + j + 16), _mm512_loadu_ps(b + j + 16), s1);
  }
  float sum = _mm512_reduce_add_ps(_mm512_add_ps(s0, s1));
  for (; j < n; ++j) sum += a[j] * b[j];
  return sum;
}

}  // namespace fbq::kernels
