#include "eval/method_bench.h"

#include <cblas.h>

#include <cmath>
#include <random>

#include "util/error.h"
#include "util/progress.h"

namespace fbq {

SyntheticLayer synthetic_layer(int rows, int cols, std::uint64_t seed) {
  if (rows < 1 || cols < 1) fail("synthetic layer: {}x{} is not a shape", rows, cols);
  std::mt19937_64 rng(seed);
  std::normal_distribution<float> normal(0.0f, 1.0f);
  SyntheticLayer layer;
  layer.rows = rows;
  layer.cols = cols;
  layer.weights.resize(static_cast<std::size_t>(rows) * cols);
  for (int i = 0; i < rows; ++i) {
    const float row_scale = 0.02f * std::exp(0.3f * normal(rng));
    for (int j = 0; j < cols; ++j) layer.weights[static_cast<std::size_t>(i) * cols + j] = row_scale * normal(rng);
  }
  constexpr int kFactors = 64;
  std::vector<double> factor(static_cast<std::size_t>(cols) * kFactors), scale(cols);
  for (auto& v : factor) v = normal(rng);
  for (int j = 0; j < cols; ++j) scale[j] = std::exp(0.5 * normal(rng)) * (j % 509 == 7 ? 20.0 : 1.0);
  auto& h = layer.stats.hessian;
  h.assign(static_cast<std::size_t>(cols) * cols, 0.0);
  cblas_dsyrk(CblasRowMajor, CblasUpper, CblasNoTrans, cols, kFactors, 1.0 / kFactors, factor.data(), kFactors, 0.0,
              h.data(), cols);
  for (int i = 0; i < cols; ++i)
    for (int j = i; j < cols; ++j) {
      double& value = h[static_cast<std::size_t>(i) * cols + j];
      value = (value + (i == j ? 0.1 : 0.0)) * scale[i] * scale[j];
      h[static_cast<std::size_t>(j) * cols + i] = value;
    }
  layer.stats.n = cols;
  layer.stats.tokens = 1 << 16;
  layer.stats.mean_abs.resize(cols);
  for (int j = 0; j < cols; ++j)
    layer.stats.mean_abs[j] = static_cast<float>(std::sqrt(h[static_cast<std::size_t>(j) * cols + j] * 2.0 / M_PI));
  return layer;
}

MethodBenchResult bench_method(const std::string& method, const SyntheticLayer& layer, const MethodOptions& options) {
  const auto quantizer = make_method(method);
  check_method_params(*quantizer, options);
  MethodBenchResult result;
  const auto start = std::chrono::steady_clock::now();
  result.layer = quantizer->quantize(layer.weights, layer.rows, layer.cols, layer.stats, options);
  result.seconds = seconds_since(start);
  result.h_error =
      relative_h_error(layer.weights, result.layer.effective_weights(), layer.rows, layer.cols, layer.stats.hessian);
  return result;
}

}  // namespace fbq
