// AVX512-VNNI tile kernel: one 64-byte chunk load serves 16 rows; its bit slices, masked out (the top bit of
// 3-bit codes added from a 64-bit mask), are the u8 operands of one vpdpbusd each against 4 activation bytes
// broadcast to every lane. One int32 accumulator per token holds a group's 16 row sums, so there is no
// horizontal reduction: scale, zero point and branch are applied lane-wise and the 16 outputs stored at once.
#include <immintrin.h>

#include <cstring>

#include "kernels/gemv_int8_internal.h"

namespace fbq::kernels {
namespace {

// Slice s of a chunk: the codes of columns j+4s … j+4s+3 of all 16 rows, one per byte.
template <int Bits>
FBQ_AVX512_VNNI inline __m512i slice_codes(const std::uint8_t* chunk, __m512i loaded, int slice) {
  if constexpr (Bits == 8) {
    return loaded;
  } else {
    constexpr int kWidth = Bits == 3 ? 2 : Bits;
    const __m512i codes = _mm512_and_si512(_mm512_srli_epi16(loaded, kWidth * slice),
                                           _mm512_set1_epi8(static_cast<char>((1 << kWidth) - 1)));
    if constexpr (Bits != 3) return codes;
    std::uint64_t high;
    std::memcpy(&high, chunk + 64 + 8 * slice, 8);
    return _mm512_mask_add_epi8(codes, _cvtu64_mask64(high), codes, _mm512_set1_epi8(4));
  }
}

// acc += u8 codes · the 4 s8 bytes at q broadcast to every lane. Written as asm because GCC 12 neither folds
// the broadcast into vpdpbusd's {1to16} memory operand nor keeps the accumulators in place across the loop
// (it copies all of them every iteration at batch 8: a third of the instructions).
FBQ_AVX512_VNNI inline void dot_broadcast(__m512i& acc, __m512i codes, const std::int8_t* q) {
  asm("vpdpbusd %2%{1to16%}, %1, %0" : "+v"(acc) : "v"(codes), "m"(*reinterpret_cast<const std::int32_t*>(q)));
}

// acc[t] += the chunk's 16 row sums of c·q for token t.
template <int Bits, int Batch>
FBQ_AVX512_VNNI inline void chunk_dot(const std::uint8_t* chunk, const std::int8_t* const* q, int column, __m512i* acc) {
  const __m512i loaded = _mm512_loadu_si512(chunk);
  for (int slice = 0; slice < int8_chunk_columns(Bits) / 4; ++slice) {
    const __m512i codes = slice_codes<Bits>(chunk, loaded, slice);
    for (int t = 0; t < Batch; ++t)
      dot_broadcast(acc[t], codes, q[t] + column + 4 * slice);
  }
}

template <int Bits, int Batch>
FBQ_AVX512_VNNI void tiles_kernel(const Int8Args& a, int first_tile, int end_tile) {
  const Int8Tiles& w = *a.w;
  constexpr int kColumns = int8_chunk_columns(Bits), kBytes = int8_chunk_bytes(Bits);
  const std::int8_t* q[Batch];
  for (int t = 0; t < Batch; ++t) q[t] = a.x[t].q.data();
  for (int tile = first_tile; tile < end_tile; ++tile) {
    __m512 y[Batch];
    for (int t = 0; t < Batch; ++t) y[t] = _mm512_setzero_ps();
    for (int g = 0; g < w.groups; ++g) {
      const std::uint8_t* chunk = w.tile_codes(tile, g);
      __m512i acc[Batch];
      for (int t = 0; t < Batch; ++t) acc[t] = _mm512_setzero_si512();
      for (int j = g * w.group_size, end = j + w.group_size; j < end; j += kColumns, chunk += kBytes)
        chunk_dot<Bits, Batch>(chunk, q, j, acc);
      const TileGroupMeta& meta = w.meta[static_cast<std::size_t>(tile) * w.groups + g];
      const __m512 scale = _mm512_cvtph_ps(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(meta.scale)));
      const __m512i zero = _mm512_cvtepu8_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(meta.zero)));
      for (int t = 0; t < Batch; ++t) {
        const __m512i dot = _mm512_sub_epi32(acc[t], _mm512_mullo_epi32(zero, _mm512_set1_epi32(a.x[t].sum[g])));
        y[t] = _mm512_fmadd_ps(_mm512_mul_ps(scale, _mm512_set1_ps(a.x[t].scale[g])), _mm512_cvtepi32_ps(dot), y[t]);
      }
    }
    const std::uint16_t* b = w.branch_b.data() + static_cast<std::size_t>(tile) * w.rank * kTileRows;
    for (int k = 0; k < w.rank; ++k, b += kTileRows) {
      const __m512 column = _mm512_cvtph_ps(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(b)));
      for (int t = 0; t < Batch; ++t) y[t] = _mm512_fmadd_ps(column, _mm512_set1_ps(a.branch[t * w.rank + k]), y[t]);
    }
    const int valid = std::min(kTileRows, w.rows - tile * kTileRows);
    const __mmask16 rows = static_cast<__mmask16>((1u << valid) - 1u);
    for (int t = 0; t < Batch; ++t)
      _mm512_mask_storeu_ps(a.y + static_cast<std::size_t>(t) * w.rows + tile * kTileRows, rows, y[t]);
  }
}

}  // namespace

// 16 columns per step (group sizes are multiples of 16).
FBQ_AVX512_VNNI void quantize_group_avx512(const float* x, const float* input_scale, int count, std::int8_t* q,
                                           float* scale, std::int32_t* sum) {
  const auto value = [&](int j) {
    const __m512 v = _mm512_loadu_ps(x + j);
    return input_scale ? _mm512_div_ps(v, _mm512_loadu_ps(input_scale + j)) : v;
  };
  __m512 amax = _mm512_setzero_ps();
  for (int j = 0; j < count; j += 16) amax = _mm512_max_ps(amax, _mm512_abs_ps(value(j)));
  const float top = _mm512_reduce_max_ps(amax), inverse = top > 0.0f ? 127.0f / top : 0.0f;
  __m512i total = _mm512_setzero_si512();
  for (int j = 0; j < count; j += 16) {
    // cvtps rounds to nearest even (the default MXCSR mode, as nearbyint); |v·inverse| ≤ 127 up to rounding.
    const __m512i codes = _mm512_max_epi32(_mm512_min_epi32(_mm512_cvtps_epi32(_mm512_mul_ps(value(j), _mm512_set1_ps(inverse))),
                                                            _mm512_set1_epi32(127)),
                                           _mm512_set1_epi32(-127));
    _mm_storeu_si128(reinterpret_cast<__m128i*>(q + j), _mm512_cvtepi32_epi8(codes));
    total = _mm512_add_epi32(total, codes);
  }
  *scale = top / 127.0f;
  *sum = _mm512_reduce_add_epi32(total);
}

TilesFn int8_tiles_avx512(int bits, int batch) {
  return select_rows(bits, batch, []<int Bits, int T>() -> TilesFn { return tiles_kernel<Bits, T>; });
}

}  // namespace fbq::kernels
