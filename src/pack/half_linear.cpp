#include "pack/half_linear.h"

#include <cblas.h>

#include <algorithm>

#include "kernels/gemv_dense.h"
#include "util/error.h"

namespace fbq {

HalfLinear::HalfLinear(StoredMatrix weights)
    : Linear(static_cast<int>(weights.rows()), static_cast<int>(weights.cols())), weights_(std::move(weights)) {
  if (weights_.dtype() != DType::BF16 && weights_.dtype() != DType::F16)
    fail("a 16-bit float linear holds BF16 or F16 weights, not {}", dtype_name(weights_.dtype()));
}

std::string HalfLinear::describe() const { return fmt::format("{} dense", weights_.dtype() == DType::BF16 ? "bf16" : "f16"); }

void HalfLinear::forward(const float* x, int n_tokens, float* y) const {
  const int m = out_features(), n = in_features();
  if (n_tokens <= kKernelMaxBatch) {  // decode: memory-bound, read the 16-bit rows once
    gemv_half(weights_.dtype(), weights_.halves(), m, n, x, n_tokens, y);
    return;
  }
  const int tile_rows = std::clamp((1 << 20) / n, 16, m);  // ~4 MiB of f32 per GEMM
  std::vector<float> tile(static_cast<std::size_t>(tile_rows) * n);
  for (int r = 0; r < m; r += tile_rows) {
    const int rows = std::min(tile_rows, m - r);
    weights_.widen_rows(r, rows, tile.data());
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, n_tokens, rows, n, 1.0f, x, n, tile.data(), n, 0.0f, y + r, m);
  }
}

}  // namespace fbq
