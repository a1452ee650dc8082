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

TilesFn int8_tiles_scalar(int bits, int batch);
TilesFn int8_tiles_avx2(int bits, int batch);
TilesFn int8_tiles_avx512(int bits, int batch);

}  // namespace fbq::kernels
