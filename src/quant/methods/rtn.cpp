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
    QuantizedLayer layer;
    if (!options.clip_search) {
      layer.weights = quantize_rtn(weights.data(), m, n, options.spec);
      return layer;
    }
    std::vector<double> diagonal(n);
    for (int j = 0; j < n; ++j) diagonal[j] = stats.hessian[static_cast<std::size_t>(j) * n + j];
    layer.weights = quantize_rtn_clip_searched(weights.data(), m, n, options.spec, diagonal);
    return layer;
  }
};

FBQ_REGISTER_METHOD("rtn", RtnMethod);

}  // namespace
}  // namespace fbq
