// AVX2 tile kernel (no VNNI): the same tiles as the AVX-512 kernel, each 16-row tile taken as two halves of 8
// rows (bytes 0–31 and 32–63 of every chunk; the second half finds the tile's codes still in L2). u8 × s8
// products go through vpmaddubsw, whose int16 pair sums cannot saturate for codes ≤ 15 (|2·15·127| ≤ 3810,
// and a chunk's slices summed stay below 32767), then vpmaddwd against ones into int32. 8-bit codes are split
// into nibbles, the high one weighted 16 in the vpmaddwd.
#include <immintrin.h>

#include <algorithm>
#include <cstring>
#include <utility>

#include "kernels/gemv_int8_internal.h"

#define FBQ_AVX2 __attribute__((target("avx2,fma,f16c")))

namespace fbq::kernels {
namespace {

constexpr int kHalf = kTileRows / 2;

FBQ_AVX2 inline __m256i broadcast_4_bytes(const std::int8_t* q) {
  std::int32_t word;
  std::memcpy(&word, q, 4);
  return _mm256_set1_epi32(word);
}

// 0xFF in byte k where bit k of `bits` is set.
FBQ_AVX2 inline __m256i expand_bits(std::uint32_t bits) {
  const __m256i spread = _mm256_shuffle_epi8(
      _mm256_set1_epi32(static_cast<int>(bits)),
      _mm256_setr_epi8(0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1, 2, 2, 2, 2, 2, 2, 2, 2, 3, 3, 3, 3, 3, 3, 3, 3));
  const __m256i select = _mm256_set1_epi64x(static_cast<long long>(0x8040201008040201ull));
  return _mm256_cmpeq_epi8(_mm256_and_si256(spread, select), select);
}

// Slice s of a half chunk as bytes ≤ 15: the codes of columns j+4s … j+4s+3 (8-bit: s = 0 low, 1 high nibble
// of columns j … j+3).
template <int Bits, int Slice>
FBQ_AVX2 inline __m256i slice_codes(const std::uint8_t* chunk, __m256i loaded, int half) {
  constexpr int kWidth = Bits == 8 ? 4 : Bits == 3 ? 2 : Bits;
  const __m256i codes = _mm256_and_si256(_mm256_srli_epi16(loaded, kWidth * Slice),
                                         _mm256_set1_epi8(static_cast<char>((1 << kWidth) - 1)));
  if constexpr (Bits != 3) return codes;
  std::uint64_t high;
  std::memcpy(&high, chunk + 64 + 8 * Slice, 8);
  return _mm256_or_si256(codes, _mm256_and_si256(expand_bits(static_cast<std::uint32_t>(high >> (32 * half))),
                                                 _mm256_set1_epi8(4)));
}

constexpr int slices(int bits) { return bits == 8 ? 2 : int8_chunk_columns(bits) / 4; }

template <int Bits, int Batch>
FBQ_AVX2 inline void chunk_dot(const std::uint8_t* chunk, int half, const std::int8_t* const* q, int column,
                               __m256i* acc) {
  const __m256i loaded = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(chunk + 32 * half));
  __m256i codes[slices(Bits)];
  [&]<int... S>(std::integer_sequence<int, S...>) {
    ((codes[S] = slice_codes<Bits, S>(chunk, loaded, half)), ...);
  }(std::make_integer_sequence<int, slices(Bits)>());
  const __m256i ones = _mm256_set1_epi16(1);
  for (int t = 0; t < Batch; ++t) {
    if constexpr (Bits == 8) {
      const __m256i x = broadcast_4_bytes(q[t] + column);
      acc[t] = _mm256_add_epi32(acc[t], _mm256_add_epi32(_mm256_madd_epi16(_mm256_maddubs_epi16(codes[0], x), ones),
                                                         _mm256_madd_epi16(_mm256_maddubs_epi16(codes[1], x),
                                                                           _mm256_set1_epi16(16))));
    } else {
      __m256i pairs = _mm256_maddubs_epi16(codes[0], broadcast_4_bytes(q[t] + column));
      for (int s = 1; s < slices(Bits); ++s)
        pairs = _mm256_add_epi16(pairs, _mm256_maddubs_epi16(codes[s], broadcast_4_bytes(q[t] + column + 4 * s)));
      acc[t] = _mm256_add_epi32(acc[t], _mm256_madd_epi16(pairs, ones));
    }
  }
}

template <int Bits, int Batch>
FBQ_AVX2 void half_tile(const Int8Args& a, int tile, int half, const std::int8_t* const* q) {
  const Int8Tiles& w = *a.w;
  constexpr int kColumns = int8_chunk_columns(Bits), kBytes = int8_chunk_bytes(Bits);
  __m256 y[Batch];
  for (int t = 0; t < Batch; ++t) y[t] = _mm256_setzero_ps();
  for (int g = 0; g < w.groups; ++g) {
    const std::uint8_t* chunk = w.tile_codes(tile, g);
    __m256i acc[Batch];
    for (int t = 0; t < Batch; ++t) acc[t] = _mm256_setzero_si256();
    for (int j = g * w.group_size, end = j + w.group_size; j < end; j += kColumns, chunk += kBytes)
      chunk_dot<Bits, Batch>(chunk, half, q, j, acc);
    const TileGroupMeta& meta = w.meta[static_cast<std::size_t>(tile) * w.groups + g];
    const __m256 scale = _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(meta.scale + kHalf * half)));
    std::int64_t zero_bytes;
    std::memcpy(&zero_bytes, meta.zero + kHalf * half, 8);
    const __m256i zero = _mm256_cvtepu8_epi32(_mm_cvtsi64_si128(zero_bytes));
    for (int t = 0; t < Batch; ++t) {
      const __m256i dot = _mm256_sub_epi32(acc[t], _mm256_mullo_epi32(zero, _mm256_set1_epi32(a.x[t].sum[g])));
      y[t] = _mm256_fmadd_ps(_mm256_mul_ps(scale, _mm256_set1_ps(a.x[t].scale[g])), _mm256_cvtepi32_ps(dot), y[t]);
    }
  }
  for (int k = 0; k < w.rank; ++k) {  // (B is empty without a branch: no pointer into it then)
    const std::uint16_t* b = w.branch_b.data() + (static_cast<std::size_t>(tile) * w.rank + k) * kTileRows + kHalf * half;
    const __m256 column = _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(b)));
    for (int t = 0; t < Batch; ++t) y[t] = _mm256_fmadd_ps(column, _mm256_set1_ps(a.branch[t * w.rank + k]), y[t]);
  }
  const int first_row = tile * kTileRows + kHalf * half, valid = std::min(kHalf, w.rows - first_row);
  for (int t = 0; t < Batch; ++t) {
    float* out = a.y + static_cast<std::size_t>(t) * w.rows + first_row;
    if (valid == kHalf) {
      _mm256_storeu_ps(out, y[t]);
    } else {
      alignas(32) float lanes[kHalf];
      _mm256_store_ps(lanes, y[t]);
      for (int i = 0; i < valid; ++i) out[i] = lanes[i];
    }
  }
}

template <int Bits, int Batch>
FBQ_AVX2 void tiles_kernel(const Int8Args& a, int first_tile, int end_tile) {
  const std::int8_t* q[Batch];
  for (int t = 0; t < Batch; ++t) q[t] = a.x[t].q.data();
  for (int tile = first_tile; tile < end_tile; ++tile)
    for (int half = 0; half < 2 && tile * kTileRows + kHalf * half < a.w->rows; ++half)
      half_tile<Bits, Batch>(a, tile, half, q);
}

}  // namespace

// 8 columns per step.
FBQ_AVX2 void quantize_group_avx2(const float* x, const float* input_scale, int count, std::int8_t* q, float* scale,
                                  std::int32_t* sum) {
  const auto value = [&](int j) {
    const __m256 v = _mm256_loadu_ps(x + j);
    return input_scale ? _mm256_div_ps(v, _mm256_loadu_ps(input_scale + j)) : v;
  };
  const __m256 sign = _mm256_set1_ps(-0.0f);
  __m256 amax = _mm256_setzero_ps();
  for (int j = 0; j < count; j += 8) amax = _mm256_max_ps(amax, _mm256_andnot_ps(sign, value(j)));
  alignas(32) float lanes[8];
  _mm256_store_ps(lanes, amax);
  float top = 0.0f;
  for (const float lane : lanes) top = std::max(top, lane);
  const float inverse = top > 0.0f ? 127.0f / top : 0.0f;
  __m256i total = _mm256_setzero_si256();
  for (int j = 0; j < count; j += 8) {
    const __m256i codes = _mm256_max_epi32(_mm256_min_epi32(_mm256_cvtps_epi32(_mm256_mul_ps(value(j), _mm256_set1_ps(inverse))),
                                                            _mm256_set1_epi32(127)),
                                           _mm256_set1_epi32(-127));
    alignas(32) std::int32_t words[8];
    _mm256_store_si256(reinterpret_cast<__m256i*>(words), codes);
    for (int i = 0; i < 8; ++i) q[j + i] = static_cast<std::int8_t>(words[i]);
    total = _mm256_add_epi32(total, codes);
  }
  alignas(32) std::int32_t totals[8];
  _mm256_store_si256(reinterpret_cast<__m256i*>(totals), total);
  *scale = top / 127.0f;
  *sum = totals[0] + totals[1] + totals[2] + totals[3] + totals[4] + totals[5] + totals[6] + totals[7];
}

TilesFn int8_tiles_avx2(int bits, int batch) {
  return select_rows(bits, batch, []<int Bits, int T>() -> TilesFn { return tiles_kernel<Bits, T>; });
}

}  // namespace fbq::kernels
