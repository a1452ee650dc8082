#include "quant/block/learnable_clipping.h"

#include <algorithm>
#include <cmath>
#include <utility>

namespace fbq {
namespace {

float sigmoid(float x) { return 1.0f / (1.0f + std::exp(-x)); }

// [min, max] of a group, widened to contain 0 (as fit_group does).
std::pair<float, float> group_range(const float* values, int count) {
  float low = 0.0f, high = 0.0f;
  for (int i = 0; i < count; ++i) low = std::min(low, values[i]), high = std::max(high, values[i]);
  return {low, high};
}

}  // namespace

void quantize_clipped(const std::vector<float>& weights, const ClippingLogits& logits, QuantizedMatrix& out) {
  const int m = out.rows, n = out.cols, g = out.spec.group_size;
  out.codes.resize(static_cast<std::size_t>(m) * n);
  out.params.resize(static_cast<std::size_t>(m) * (n / g));
#pragma omp parallel for schedule(static)
  for (int row = 0; row < m; ++row)
    for (int c = 0; c < n; c += g) {
      const std::size_t group = static_cast<std::size_t>(row) * (n / g) + c / g;
      const float* values = &weights[static_cast<std::size_t>(row) * n + c];
      quantize_group_into(out, row, c, values, g,
                          fit_group_clipped(values, g, out.spec, sigmoid(logits.low[group]), sigmoid(logits.high[group])));
    }
}

// Straight-through round(): unclamped, ŵ = s·round(w/s) so ∂ŵ/∂s = round(w/s) − w/s; clamped to code c,
// ŵ = s·(c − z) with z = round(−lo/s), so ∂ŵ/∂s = c − z − lo/s and ∂ŵ/∂lo = 1. The f16 rounding of s passes
// the gradient through; s = (hi − lo)/L, hi = σ(γ)·max, lo = σ(β)·min.
ClippingLogits clipping_gradients(const std::vector<float>& weights, const ClippingLogits& logits,
                                  const QuantizedMatrix& quantized, const std::vector<float>& grad) {
  const int m = quantized.rows, n = quantized.cols, g = quantized.spec.group_size, levels = quantized.spec.levels();
  ClippingLogits out{std::vector<float>(logits.high.size()), std::vector<float>(logits.low.size())};
#pragma omp parallel for schedule(static)
  for (int row = 0; row < m; ++row)
    for (int c = 0; c < n; c += g) {
      const std::size_t group = static_cast<std::size_t>(row) * (n / g) + c / g;
      const std::size_t offset = static_cast<std::size_t>(row) * n + c;
      const auto [low_range, high_range] = group_range(&weights[offset], g);
      const float sig_high = sigmoid(logits.high[group]), sig_low = sigmoid(logits.low[group]);
      const auto& params = quantized.params[group];
      const double low = sig_low * low_range;
      double d_scale = 0, d_low = 0;
      for (int j = 0; j < g; ++j) {
        const int code = quantized.codes[offset + j];
        const float u = weights[offset + j] / params.scale;
        const float rounded = std::nearbyint(u);
        const bool clamped = rounded + static_cast<float>(params.zero) != static_cast<float>(code);
        d_scale += grad[offset + j] * (clamped ? code - params.zero - low / params.scale : rounded - u);
        if (clamped) d_low += grad[offset + j];
      }
      // ∂s/∂hi = 1/L, ∂s/∂lo = −1/L.
      out.high[group] = static_cast<float>(d_scale / levels * sig_high * (1 - sig_high) * high_range);
      out.low[group] = static_cast<float>((d_low - d_scale / levels) * sig_low * (1 - sig_low) * low_range);
    }
  return out;
}

}  // namespace fbq
