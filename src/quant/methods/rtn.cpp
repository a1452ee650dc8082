// Round-to-nearest, group-wise min/max; with --clip-search, each group's range is shrunk by the clip ratio
// (grid 1.00, 0.95, ..., 0.50) that minimises that group's H-weighted error (diag(H) weighting, which keeps
// groups independent).
#include "quant/method.h"

namespace fbq {
namespace {

class RtnMethod final : public QuantMethod {
 public:
  std::string name() const override { return "rtn"; }

  QuantizedLayer quantize(const std::vector<float>& weights, int m, int n, const LayerStats& stats,
                          const MethodOptions& options) const override {
    const auto& spec = options.spec;
    QuantizedLayer layer;
    layer.weights = quantize_rtn(weights.data(), m, n, spec);
    if (!options.clip_search) return layer;
    const int g = spec.group_size;
#pragma omp parallel for schedule(dynamic, 4)
    for (int r = 0; r < m; ++r)
      for (int c = 0; c < n; c += g) {
        const float* group = &weights[static_cast<std::size_t>(r) * n + c];
        double best_error = -1.0;
        GroupParams best{};
        for (int step = 0; step <= 10; ++step) {
          const float clip = 1.0f - 0.05f * static_cast<float>(step);
          const auto params = fit_group(group, g, spec.bits, clip);
          double error = 0.0;
          for (int j = 0; j < g; ++j) {
            const double diff = dequantize_value(quantize_value(group[j], params, spec.levels()), params) - group[j];
            error += diff * diff * stats.hessian[static_cast<std::size_t>(c + j) * n + c + j];
          }
          if (best_error < 0.0 || error < best_error) {
            best_error = error;
            best = params;
          }
        }
        quantize_group_into(layer.weights, r, c, group, g, best);
      }
    return layer;
  }
};

FBQ_REGISTER_METHOD("rtn", RtnMethod);

}  // namespace
}  // namespace fbq
