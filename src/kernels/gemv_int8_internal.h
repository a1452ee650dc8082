#pragma once
// Interface between the integer-path dispatcher (gemv_int8.cpp) and its per-ISA tile kernels.
#include "kernels/gemv_int8.h"
#include "kernels/gemv_internal.h"

// The VNNI kernel's target, whatever the build's -march.
#define FBQ_AVX512_VNNI __attribute__((target("avx512f,avx512bw,avx512vl,avx512dq,avx512vnni,f16c")))

namespace fbq::kernels {

struct Int8Args {
  const Int8Tiles* w;
  const Int8Activations* x;  // batch tokens
  int batch;                 // 1..kKernelMaxBatch
  const float* branch;       // batch × rank: t = A·x
  float* y;                  // batch × rows
};

using TilesFn = void (*)(const Int8Args& args, int first_tile, int end_tile);
// One group of x' = x / input_scale (input_scale may be null) to int8: q, its scale d and Σq, exactly as
// quantize_activations (same float operations; max and the integer sum do not depend on the order).
using QuantizeGroupFn = void (*)(const float* x, const float* input_scale, int count, std::int8_t* q, float* scale,
                                 std::int32_t* sum);

TilesFn int8_tiles_scalar(int bits, int batch);
TilesFn int8_tiles_avx2(int bits, int batch);
TilesFn int8_tiles_avx512(int bits, int batch);
void quantize_group_scalar(const float* x, const float* input_scale, int count, std::int8_t* q, float* scale,
                           std::int32_t* sum);
void quantize_group_avx2(const float* x, const float* input_scale, int count, std::int8_t* q, float* scale,
                         std::int32_t* sum);
void quantize_group_avx512(const float* x, const float* input_scale, int count, std::int8_t* q, float* scale,
                           std::int32_t* sum);

}  // namespace fbq::kernels
