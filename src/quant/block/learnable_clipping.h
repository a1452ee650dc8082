#pragma once
// Learnable weight clipping (OmniQuant's LWC) of one matrix: per group, logits γ (max side) and β (min side);
// the group is quantized on [σ(β)·min, σ(γ)·max] (min/max widened to contain 0 and the scale rounded up to f16,
// as fit_group does). The gradient reaches γ, β through round() by the straight-through estimator.
#include <vector>

#include "quant/group_quant.h"

namespace fbq {

struct ClippingLogits {
  std::vector<float> high, low;  // γ and β, one per group (rows × cols/g, row-major)
};

// Quantizes the row-major `weights` (out.rows × out.cols, out.spec) with each group's clipped range into `out`.
void quantize_clipped(const std::vector<float>& weights, const ClippingLogits& logits, QuantizedMatrix& out);

// ∂L/∂γ and ∂L/∂β from G = ∂L/∂Ŵ (row-major like `weights`), at the quantization `quantized` of these logits.
ClippingLogits clipping_gradients(const std::vector<float>& weights, const ClippingLogits& logits,
                                  const QuantizedMatrix& quantized, const std::vector<float>& grad);

}  // namespace fbq
