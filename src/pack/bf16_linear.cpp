#include "pack/bf16_linear.h"

#include <cblas.h>

#include <algorithm>

#include "io/dtype.h"
#include "kernels/gemv_dense.h"
#include "util/error.h"

namespace fbq {

Bf16Linear::Bf16Linear(int out_features, int in_features, std::vector<std::uint16_t> weights)
    : Linear(out_features, in_features), weights_(std::move(weights)) {
  if (weights_.size() != static_cast<std::size_t>(out_features) * in_features)
    fail("bf16 linear {}x{} given {} weights", out_features, in_features, weights_.size());
}

void Bf16Linear::forward(const float* x, int n_tokens, float* y) const {
  const int m = out_features(), n = in_features();
  if (n_tokens <= kKernelMaxBatch) {  // decode: memory-bound, read the bf16 rows once
    gemv_bf16(weights_.data(), m, n, x, n_tokens, y);
    return;
  }
  const int tile_rows = std::clamp((1 << 20) / n, 16, m);  // ~4 MiB of f32 per GEMM
  std::vector<float> tile(static_cast<std::size_t>(tile_rows) * n);
  for (int r = 0; r < m; r += tile_rows) {
    const int rows = std::min(tile_rows, m - r);
    const std::uint16_t* source = weights_.data() + static_cast<std::size_t>(r) * n;
#pragma omp parallel for schedule(static)
    for (std::int64_t i = 0; i < static_cast<std::int64_t>(rows) * n; ++i) tile[i] = bf16_to_float(source[i]);
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, n_tokens, rows, n, 1.0f, x, n, tile.data(), n, 0.0f, y + r, m);
  }
}

}  // namespace fbq
