// AVX-512 row kernel. A 32-code block is `b` whole words of the row stream (4b bytes). For b = 2, 3 one masked
// load brings the block's bytes into a register, broadcast to all four 128-bit lanes; for the h-th 16 codes a
// byte shuffle gives lane i the two bytes holding code 16h + i, a per-lane shift and a mask finish it — no
// scalar bit work. Codes of ≤ 4 bits then index a 16-float table of the group's dequantized values (see
// dequantize16); 8-bit widens bytes, converts and scales.
#include <immintrin.h>

#include "kernels/gemv_internal.h"

namespace fbq::kernels {
namespace {

FBQ_AVX512 inline __m512 load_half16(const std::uint16_t* halves) {  // 16 float16 → float32
  return _mm512_cvtph_ps(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(halves)));
}

// Shuffle control and shifts that cut codes 16h … 16h+15 out of a block broadcast to every 128-bit lane.
template <int Bits>
struct Unpacker {
  __m512i control[2], shifts[2];
  FBQ_AVX512 Unpacker() {
    alignas(64) std::uint8_t bytes[2][64];
    alignas(64) std::uint32_t shift[2][16];
    for (int h = 0; h < 2; ++h)
      for (int i = 0; i < 16; ++i) {
        const int bit = Bits * (16 * h + i);
        bytes[h][4 * i] = static_cast<std::uint8_t>(bit / 8);
        bytes[h][4 * i + 1] = static_cast<std::uint8_t>(bit / 8 + 1);  // may be the next block's byte: shifted out
        bytes[h][4 * i + 2] = bytes[h][4 * i + 3] = 0x80;               // 0x80: shuffle writes zero
        shift[h][i] = static_cast<std::uint32_t>(bit % 8);
      }
    for (int h = 0; h < 2; ++h) {
      control[h] = _mm512_load_si512(bytes[h]);
      shifts[h] = _mm512_load_si512(shift[h]);
    }
  }
};

// The block's 4b bytes in every 128-bit lane (b = 2, 3). A plain 16-byte load (masked byte loads are twice
// as slow here); only blocks within 16 bytes of the end of the codes take the copying path.
template <int Bits>
FBQ_AVX512 inline __m512i load_block(const std::uint32_t* block, const std::uint32_t* end) {
  if constexpr (Bits == 2 || Bits == 3) {
    if (block + 4 <= end) return _mm512_broadcast_i32x4(_mm_loadu_si128(reinterpret_cast<const __m128i*>(block)));
    alignas(16) std::uint32_t copy[4] = {};
    for (int i = 0; i < Bits; ++i) copy[i] = block[i];
    return _mm512_broadcast_i32x4(_mm_load_si128(reinterpret_cast<const __m128i*>(copy)));
  } else {
    return _mm512_setzero_si512();
  }
}

// The dequantized weights of codes 16h … 16h+15 of a 32-code block. For b ≤ 4 a code indexes the group's table
// of its 2^b values s·(q − z) (vpermps reads an index's low 4 bits; the table repeats every 2^b entries, so bits
// of neighbouring codes above a code's own are harmless): exactly the reference's dequantized weights, with no
// mask, conversion or multiply per weight. 4-bit splits widened bytes into their low (h = 0) and high (h = 1)
// nibbles, i.e. the columns in nibble order (gemv_internal.h). 8-bit converts and scales.
template <int Bits>
FBQ_AVX512 inline __m512 dequantize16(const std::uint32_t* block, int h, __m512i loaded, const Unpacker<Bits>& unpack,
                                      __m512 table, __m512 scale, __m512 offset) {
  if constexpr (Bits == 4) {
    const __m512i bytes = _mm512_cvtepu8_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(block)));
    return _mm512_permutexvar_ps(h == 0 ? bytes : _mm512_srli_epi32(bytes, 4), table);
  } else if constexpr (Bits == 8) {
    const __m512i codes = _mm512_cvtepu8_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(block + 4 * h)));
    return _mm512_fmadd_ps(_mm512_cvtepi32_ps(codes), scale, offset);  // s·q − s·z
  } else {
    const __m512i pairs = _mm512_shuffle_epi8(loaded, unpack.control[h]);
    return _mm512_permutexvar_ps(_mm512_srlv_epi32(pairs, unpack.shifts[h]), table);
  }
}

template <int Bits, int T>
FBQ_AVX512 void rows_kernel(const RowArgs& a, int first_row, int end_row) {
  const PackedKernelView& w = *a.w;
  const int n = w.cols, m = w.rows, r = w.rank, g = w.group_size, groups = n / g;
  constexpr int U = T <= 4 ? 2 : 1;  // independent accumulators per token to hide the FMA latency
  const Unpacker<Bits> unpack;
  const std::uint32_t* end = w.codes + static_cast<std::size_t>(m) * w.code_words_per_row;
  // Lane i of a group's table: s·((i mod 2^b) − z), computed as the reference computes s·(q − z).
  const __m512i table_codes = _mm512_and_si512(_mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15),
                                               _mm512_set1_epi32(Bits < 8 ? (1 << Bits) - 1 : 15));
  for (int row = first_row; row < end_row; ++row) {
    const std::uint32_t* codes = w.codes + static_cast<std::size_t>(row) * w.code_words_per_row;
    __m512 acc[T][U];
    for (int t = 0; t < T; ++t)
      for (int u = 0; u < U; ++u) acc[t][u] = _mm512_setzero_ps();
    for (int group = 0; group < groups; ++group) {
      const std::int64_t index = static_cast<std::int64_t>(row) * groups + group;
      const float scale = _cvtsh_ss(w.scales[index]);
      const int zero = static_cast<int>(read_bits(w.zeros, index, Bits));
      const __m512 vscale = _mm512_set1_ps(scale);
      const __m512 voffset = _mm512_set1_ps(-scale * static_cast<float>(zero));
      const __m512 table =
          _mm512_mul_ps(vscale, _mm512_cvtepi32_ps(_mm512_sub_epi32(table_codes, _mm512_set1_epi32(zero))));
      for (int j = group * g; j < (group + 1) * g; j += 32) {
        const std::uint32_t* block = codes + j / 32 * Bits;
        const __m512i loaded = load_block<Bits>(block, end);
#pragma GCC unroll 2
        for (int h = 0; h < 2; ++h) {
          const __m512 weight = dequantize16<Bits>(block, h, loaded, unpack, table, vscale, voffset);
          for (int t = 0; t < T; ++t)
            acc[t][h % U] = _mm512_fmadd_ps(weight, _mm512_loadu_ps(a.x + static_cast<std::size_t>(t) * n + j + 16 * h),
                                            acc[t][h % U]);
        }
      }
    }
    const std::uint16_t* b_row = w.lora_b + static_cast<std::size_t>(row) * r;
    for (int t = 0; t < T; ++t) {
      __m512 sum = acc[t][0];
      for (int u = 1; u < U; ++u) sum = _mm512_add_ps(sum, acc[t][u]);
      const float* branch = a.branch + t * r;  // fused branch: B[row,:]·t joins the row's sum before the store
      int k = 0;
      for (; k + 16 <= r; k += 16) sum = _mm512_fmadd_ps(load_half16(b_row + k), _mm512_loadu_ps(branch + k), sum);
      if (k < r) {
        const __mmask16 tail = static_cast<__mmask16>((1u << (r - k)) - 1u);
        sum = _mm512_fmadd_ps(_mm512_cvtph_ps(_mm256_maskz_loadu_epi16(tail, b_row + k)),
                              _mm512_maskz_loadu_ps(tail, branch + k), sum);
      }
      a.y[static_cast<std::size_t>(t) * m + row] = _mm512_reduce_add_ps(sum);
    }
  }
}

}  // namespace

RowsFn rows_avx512(int bits, int batch) {
  return select_rows(bits, batch, []<int Bits, int T>() -> RowsFn { return rows_kernel<Bits, T>; });
}

FBQ_AVX512 float dot_avx512(const std::uint16_t* a_half, const float* x, int n) {
  __m512 s0 = _mm512_setzero_ps(), s1 = _mm512_setzero_ps();
  int j = 0;
  for (; j + 32 <= n; j += 32) {
    s0 = _mm512_fmadd_ps(load_half16(a_half + j), _mm512_loadu_ps(x + j), s0);
    s1 = _mm512_fmadd_ps(load_half16(a_half + j + 16), _mm512_loadu_ps(x + j + 16), s1);
  }
  float sum = _mm512_reduce_add_ps(_mm512_add_ps(s0, s1));
  for (; j < n; ++j) sum += _cvtsh_ss(a_half[j]) * x[j];
  return sum;
}

}  // namespace fbq::kernels
