// GPTQ: column-by-column quantization with Hessian-weighted error feedback (src/quant/gptq.h).
#include <fmt/format.h>

#include "quant/gptq.h"
#include "quant/method.h"
#include "util/error.h"

namespace fbq {
namespace {

class GptqMethod final : public QuantMethod {
 public:
  std::string name() const override { return "gptq"; }

  QuantizedLayer quantize(const std::vector<float>& weights, int m, int n, const LayerStats& stats,
                          const MethodOptions& options) const override {
    if (options.rank != 0)
      fail("gptq has no low-rank branch: --rank must be 0 (got {})", options.rank);
    const GptqOptions gptq{options.damp, options.block_size, options.act_order};
    GptqInfo info;
    QuantizedLayer layer;
    layer.weights = gptq_quantize(weights, m, n, stats.hessian, options.spec, gptq, &info);
    layer.note = fmt::format("damp={:g}", info.damp);
    return layer;
  }
};

FBQ_REGISTER_METHOD("gptq", GptqMethod);

}  // namespace
}  // namespace fbq
