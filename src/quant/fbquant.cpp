#include "quant/fbquant.h"

#include <cblas.h>

#include <algorithm>

namespace fbq {

BranchGradients branch_gradients(const std::vector<float>& error, const std::vector<float>& hessian,
                                 const std::vector<float>& a, const std::vector<float>& b, int m, int n, int r) {
  BranchGradients g{std::vector<float>(static_cast<std::size_t>(r) * n), std::vector<float>(static_cast<std::size_t>(m) * r)};
  // [A; Bᵀ·E] (2r×n) times H in one GEMM, so H (the largest operand) is streamed once: its top half is
  // A·H = (H·Aᵀ)ᵀ (H is symmetric), its bottom half (Bᵀ·E)·H = ∂L/∂A / 2.
  std::vector<float> stacked(2 * static_cast<std::size_t>(r) * n), product(stacked.size());
  std::copy(a.begin(), a.end(), stacked.begin());
  cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, r, n, m, 1.0f, b.data(), r, error.data(), n, 0.0f,
              stacked.data() + static_cast<std::size_t>(r) * n, n);
  cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, 2 * r, n, n, 1.0f, stacked.data(), n, hessian.data(), n, 0.0f,
              product.data(), n);
  for (std::size_t i = 0; i < g.grad_a.size(); ++i) g.grad_a[i] = 2.0f * product[static_cast<std::size_t>(r) * n + i];
  // ∂L/∂B = 2·E·(H·Aᵀ) = 2·E·(A·H)ᵀ.
  cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, m, r, n, 2.0f, error.data(), n, product.data(), n, 0.0f,
              g.grad_b.data(), r);
  return g;
}

void feedback_quantize_rtn(const std::vector<float>& weights, const std::vector<float>& sigma, int m, int n,
                           const QuantSpec& spec, QuantizedMatrix& out, std::vector<float>& error) {
  spec.validate(n);
  const int g = spec.group_size;
  out.rows = m;
  out.cols = n;
  out.spec = spec;
  out.codes.resize(static_cast<std::size_t>(m) * n);
  out.params.resize(static_cast<std::size_t>(m) * (n / g));
  error.resize(static_cast<std::size_t>(m) * n);
#pragma omp parallel
  {
    std::vector<float> residual(g);
#pragma omp for schedule(static)
    for (int row = 0; row < m; ++row)
      for (int c = 0; c < n; c += g) {
        const std::size_t offset = static_cast<std::size_t>(row) * n + c;
        for (int j = 0; j < g; ++j) residual[j] = weights[offset + j] - sigma[offset + j];
        const auto params = fit_group(residual.data(), g, spec);
        quantize_group_into(out, row, c, residual.data(), g, params);
        for (int j = 0; j < g; ++j) error[offset + j] = dequantize_value(out.codes[offset + j], params) - residual[j];
      }
  }
}

double reconstruction_loss(const std::vector<float>& error, const std::vector<float>& hessian, int m, int n) {
  std::vector<float> e_h(static_cast<std::size_t>(m) * n);
  cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, m, n, n, 1.0f, error.data(), n, hessian.data(), n, 0.0f,
              e_h.data(), n);
  double total = 0.0;
  for (std::size_t i = 0; i < e_h.size(); ++i) total += static_cast<double>(e_h[i]) * error[i];
  return total;
}

}  // namespace fbq
