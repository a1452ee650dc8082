// LQER (Zhang et al., 2024): quantize W by RTN, then add a rank-r branch B·A fitted to the quantization error
// E = W − Q(W), so the layer applies Q(W) + B·A. With --scaled-svd (L2QER, the default) E's columns are
// scaled by sqrt(diag(H)) before the SVD, so the branch spends its rank on the error that the inputs
// actually excite (a diagonal approximation of the layer objective tr(E·H·Eᵀ)); otherwise plain SVD of E.
#include <algorithm>

#include "quant/low_rank.h"
#include "quant/method.h"
#include "util/error.h"

namespace fbq {
namespace {

class LqerMethod final : public QuantMethod {
 public:
  std::string name() const override { return "lqer"; }
  bool uses_rank() const override { return true; }

  QuantizedLayer quantize(const std::vector<float>& weights, int m, int n, const LayerStats& stats,
                          const MethodOptions& options) const override {
    // rank = min(m, n) would be a full-precision copy of the error: no longer a quantized layer.
    const int rank_limit = std::min(m, n);
    const int rank = options.branch_rank(m, n);
    if (rank < 1 || rank >= rank_limit)
      fail("lqer needs 1 <= rank < min(out, in) = {} (got {})", rank_limit, rank);

    // The base is exactly what the rtn method produces (same clip search), so the two compare like for like.
    MethodOptions base_options = options;
    base_options.rank = 0;
    base_options.branch_bits = 0.0;
    QuantizedLayer layer = make_method("rtn")->quantize(weights, m, n, stats, base_options);

    const auto dequantized = layer.weights.dequantize();
    std::vector<float> error(weights.size());
    for (std::size_t i = 0; i < error.size(); ++i) error[i] = weights[i] - dequantized[i];
    LowRank branch = scaled_low_rank(error, m, n, rank, options.scaled_svd ? &stats.hessian : nullptr);
    round_to_f16(branch.a);
    round_to_f16(branch.b);

    layer.rank = rank;
    layer.lora_a = std::move(branch.a);
    layer.lora_b = std::move(branch.b);
    layer.note = options.scaled_svd ? "scaled" : "plain";
    return layer;
  }
};

FBQ_REGISTER_METHOD("lqer", LqerMethod);

}  // namespace
}  // namespace fbq
