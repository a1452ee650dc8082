// AWQ (Lin et al., 2024): scale input channel j of W by s_j = mean|x_j|^α before quantizing, so channels that
// carry large activations get relatively finer quantization steps, and divide the input by s at run time:
// y = Q(W·diag(s))·(x / s). α is chosen on the grid 0, 0.05, …, 1 by the true layer error tr(E·H·Eᵀ) of the
// effective weights Q(W·diag(s))·diag(1/s). With --clip-search each group's range is also shrunk as in
// rtn.cpp (weighted by diag(H) of the scaled inputs x / s), inside the α search, so α is chosen for the
// quantizer actually used. The reference AWQ picks α without clipping and clips afterwards; on ref-llama-12m
// that ended behind plain rtn + clip at W3/W2.
#include <cblas.h>
#include <fmt/format.h>

#include <algorithm>
#include <cmath>

#include "quant/method.h"
#include "util/error.h"

namespace fbq {
namespace {

constexpr int kAlphaSteps = 20;  // α = step / 20
// Channels with (almost) no activation would get s ≈ 0; floor mean|x| at this fraction of its maximum, which
// also bounds the scales to [1e-2, 1e2] after normalisation: well inside float16.
constexpr double kMeanAbsFloor = 1e-4;
// Each α costs rows·n² multiply-adds. Past this budget the grid is scored on evenly spaced rows (one global
// α does not need every row to be chosen well), but never on fewer than kMinGridRows.
constexpr double kGridBudgetMacs = 4e9;
constexpr int kMinGridRows = 256;

// s_j = mean|x_j|^α / sqrt(max·min): dividing by the geometric middle of the range (as the reference AWQ code
// does) centres log s on 0, leaving f16 the most headroom on both sides. RTN is scale-equivariant, so the
// normalisation does not change the result beyond f16 rounding. The scales are rounded to f16 here, before
// any quantization, so the stored scales are exactly the ones the weights were quantized with.
std::vector<float> channel_scales(const std::vector<float>& mean_abs, double alpha) {
  const float largest = *std::max_element(mean_abs.begin(), mean_abs.end());
  const double floor = largest > 0.0f ? kMeanAbsFloor * largest : 1.0;
  std::vector<double> raw(mean_abs.size());
  for (std::size_t j = 0; j < raw.size(); ++j) raw[j] = std::pow(std::max<double>(mean_abs[j], floor), alpha);
  const auto [low, high] = std::minmax_element(raw.begin(), raw.end());
  const double middle = std::sqrt(*low * *high);
  std::vector<float> scales(raw.size());
  for (std::size_t j = 0; j < raw.size(); ++j) scales[j] = static_cast<float>(raw[j] / middle);
  round_to_f16(scales);
  return scales;
}


struct ScaledQuantization {
  QuantizedMatrix weights;    // Q(W·diag(s))
  std::vector<float> scales;  // s, f16 values
};

// Q(W·diag(s)) of the rows × n matrix W for the scales of one α.
ScaledQuantization quantize_scaled(const std::vector<float>& weights, int rows, int n, double alpha,
                                   const LayerStats& stats, const MethodOptions& options) {
  auto scales = channel_scales(stats.mean_abs, alpha);
  std::vector<float> scaled(weights.size());
  for (int i = 0; i < rows; ++i)
    for (int j = 0; j < n; ++j) {
      const std::size_t index = static_cast<std::size_t>(i) * n + j;
      scaled[index] = weights[index] * scales[j];
    }
  if (!options.clip_search) return {quantize_rtn(scaled.data(), rows, n, options.spec), std::move(scales)};
  // An error e in the scaled weights is e / s_j in W's units: column j counts H_jj / s_j².
  std::vector<double> column_weights(n);
  for (int j = 0; j < n; ++j)
    column_weights[j] =
        stats.hessian[static_cast<std::size_t>(j) * n + j] / (static_cast<double>(scales[j]) * scales[j]);
  return {quantize_rtn_clip_searched(scaled.data(), rows, n, options.spec, column_weights), std::move(scales)};
}

// tr(E·H·Eᵀ) with E = dequant(Q)·diag(1/s) − W over the rows × n matrix W.
double layer_error(const ScaledQuantization& quantization, const std::vector<float>& weights, int rows, int n,
                   const std::vector<double>& hessian) {
  const auto dequantized = quantization.weights.dequantize();
  std::vector<double> error(weights.size()), error_h(weights.size());
  for (int i = 0; i < rows; ++i)
    for (int j = 0; j < n; ++j) {
      const std::size_t index = static_cast<std::size_t>(i) * n + j;
      error[index] = static_cast<double>(dequantized[index]) / quantization.scales[j] - weights[index];
    }
  cblas_dsymm(CblasRowMajor, CblasRight, CblasUpper, rows, n, 1.0, hessian.data(), n, error.data(), n, 0.0,
              error_h.data(), n);
  return cblas_ddot(static_cast<int>(error.size()), error.data(), 1, error_h.data(), 1);
}

// The rows the α grid is scored on: all of them when affordable, else an evenly spaced sample.
std::vector<float> grid_rows(const std::vector<float>& weights, int m, int n) {
  const double macs_per_row = static_cast<double>(n) * n;
  const int count = std::min(m, std::max(kMinGridRows, static_cast<int>(kGridBudgetMacs / macs_per_row)));
  if (count == m) return weights;
  std::vector<float> sample(static_cast<std::size_t>(count) * n);
  for (int i = 0; i < count; ++i) {
    const std::size_t row = static_cast<std::size_t>(i) * m / count;
    std::copy_n(&weights[row * n], n, &sample[static_cast<std::size_t>(i) * n]);
  }
  return sample;
}

class AwqMethod final : public QuantMethod {
 public:
  std::string name() const override { return "awq"; }

  QuantizedLayer quantize(const std::vector<float>& weights, int m, int n, const LayerStats& stats,
                          const MethodOptions& options) const override {
    if (options.rank != 0) fail("awq has no low-rank branch (got --rank {}); use lqer or fbquant", options.rank);
    options.spec.validate(n);
    if (stats.mean_abs.size() != static_cast<std::size_t>(n) || stats.hessian.size() != static_cast<std::size_t>(n) * n)
      fail("awq needs mean |x| and H for {} input channels", n);

    // Each α is scored with the quantizer that will be used, clip search included. α = 0 (s = 1) is then exactly
    // the rtn method with the same options, so AWQ never ends worse than it on the scored rows.
    const auto sample = grid_rows(weights, m, n);
    const int sample_rows = static_cast<int>(sample.size() / n);
    double best_alpha = 0.0, best_error = -1.0;
    for (int step = 0; step <= kAlphaSteps; ++step) {
      const double alpha = static_cast<double>(step) / kAlphaSteps;
      const double error = layer_error(quantize_scaled(sample, sample_rows, n, alpha, stats, options), sample,
                                       sample_rows, n, stats.hessian);
      if (best_error < 0.0 || error < best_error) {
        best_error = error;
        best_alpha = alpha;
      }
    }

    auto best = quantize_scaled(weights, m, n, best_alpha, stats, options);
    QuantizedLayer layer;
    layer.weights = std::move(best.weights);
    layer.input_scale = std::move(best.scales);
    layer.note = fmt::format("alpha={:.2f}", best_alpha);
    return layer;
  }
};

FBQ_REGISTER_METHOD("awq", AwqMethod);

}  // namespace
}  // namespace fbq
