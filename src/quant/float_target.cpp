#include "quant/float_target.h"

#include <cblas.h>

#include "quant/method.h"
#include "util/error.h"
#include "util/linalg.h"

namespace fbq {
namespace {

// P = W·Kᵀ (m × n, double): the drift's output W·D correlated with the input, the term both functions need.
std::vector<double> drift_projection(const std::vector<float>& weights, int m, int n, const InputDrift& drift) {
  if (drift.n != n || drift.cross.size() != static_cast<std::size_t>(n) * n)
    fail("input drift statistics are {}-dimensional, the layer has {} inputs", drift.n, n);
  const std::vector<double> w(weights.begin(), weights.end());
  std::vector<double> projection(static_cast<std::size_t>(m) * n);
  cblas_dgemm(CblasRowMajor, CblasNoTrans, CblasTrans, m, n, n, 1.0, w.data(), n, drift.cross.data(), n, 0.0,
              projection.data(), n);
  return projection;
}

double dot(const std::vector<float>& a, const std::vector<double>& b) {
  double total = 0.0;
  for (std::size_t i = 0; i < a.size(); ++i) total += a[i] * b[i];
  return total;
}

}  // namespace

std::vector<float> float_target_weights(const std::vector<float>& weights, int m, int n,
                                        const std::vector<double>& hessian, const InputDrift& drift, double damp) {
  if (!(damp > 0.0)) fail("float target: damp {} must be positive", damp);
  const auto projection = drift_projection(weights, m, n, drift);
  double mean_diagonal = 0.0;
  for (int i = 0; i < n; ++i) mean_diagonal += hessian[static_cast<std::size_t>(i) * n + i] / n;
  std::vector<double> inverse;
  double lambda = damp * (mean_diagonal > 0.0 ? mean_diagonal : 1.0);
  for (int attempt = 0;; ++attempt, lambda *= 10.0) {
    inverse = hessian;
    for (int i = 0; i < n; ++i) inverse[static_cast<std::size_t>(i) * n + i] += lambda;
    if (invert_spd(inverse, n)) break;
    if (attempt == 3) fail("float target: H + λI is not positive definite (λ = {:g})", lambda);
  }
  std::vector<double> correction(projection.size());
  cblas_dgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, m, n, n, 1.0, projection.data(), n, inverse.data(), n, 0.0,
              correction.data(), n);
  std::vector<float> target(weights.size());
  for (std::size_t i = 0; i < target.size(); ++i) target[i] = static_cast<float>(weights[i] - correction[i]);
  return target;
}

double float_output_error(const std::vector<float>& weights, const std::vector<float>& reconstructed, int m, int n,
                          const std::vector<double>& hessian, const InputDrift& drift) {
  // With E = W_F − W and P = W·Kᵀ: ‖W_F·X − W·X̄‖²/N = tr(E·H·Eᵀ) + 2⟨E, P⟩ + tr(W·M·Wᵀ), and
  // ‖W·X̄‖²/N = tr(W·H·Wᵀ) − 2⟨W, P⟩ + tr(W·M·Wᵀ) (X̄·X̄ᵀ/N = H − K − Kᵀ + M).
  const auto projection = drift_projection(weights, m, n, drift);
  std::vector<float> error(weights.size());
  for (std::size_t i = 0; i < error.size(); ++i) error[i] = reconstructed[i] - weights[i];
  const double drift_energy = h_weighted_norm(weights.data(), m, n, drift.energy);
  const double numerator =
      h_weighted_norm(error.data(), m, n, hessian) + 2.0 * dot(error, projection) + drift_energy;
  const double reference = h_weighted_norm(weights.data(), m, n, hessian) - 2.0 * dot(weights, projection) + drift_energy;
  return reference > 0.0 ? numerator / reference : 0.0;
}

}  // namespace fbq
