#pragma once
// Block-wise reconstruction (`fbq quantize --reconstruct block`): after the layer-wise pipeline has
// quantized a decoder block, Adam trains what parametrises its seven quantized linears through the whole
// block, minimising ‖block_q(x) − block_float(x̄)‖² / ‖block_float(x̄)‖² over the calibration windows
// (the float model's stream is the target), and keeps the iterate that is best on the held-out windows.
//
// Two parametrisations:
// - the FBQuant feedback branch: W_F = Q(W − B·A) + B·A with A, B trained (straight-through:
//   ∂W_F/∂Σ = I, so ∂L/∂B = G·Aᵀ and ∂L/∂A = Bᵀ·G, G = ∂L/∂W_F). Q is the method's own quantizer
//   (RTN: refit at every step, so |W − W_F| ≤ s/2 holds for every iterate; GPTQ: re-run every k steps);
// - learnable weight clipping (OmniQuant's LWC), no branch: per group, the range [σ(β)·min, σ(γ)·max]
//   sets scale and zero, the gradient reaching γ, β through round() by the straight-through estimator.
// Optionally the two RMSNorm weights are trained too.
#include <array>
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "quant/block/block_forward_backward.h"
#include "quant/gptq.h"
#include "quant/method.h"

namespace fbq {

struct BlockTrainingOptions {
  int steps = 100;
  double lr = 1e-3;         // Adam, cosine schedule to 0
  int batch = 4;            // calibration windows per step
  int eval_every = 10;      // steps between held-out evaluations (kept-iterate candidates)
  int refresh_every = 10;   // GPTQ inside: re-run it on W − B·A every k steps (RTN is refitted every step)
  bool train_norms = false;  // also train both RMSNorm weights
  bool lwc = false;         // learnable weight clipping instead of the branch
  std::uint64_t seed = 0;

  void validate() const;  // throws fbq::Error with one readable line
};

// One linear of the block as the layer-wise pipeline left it.
struct BlockLinearStart {
  std::vector<float> weights;      // the float weights W (m × n)
  QuantizedLayer layer;            // the layer-wise result the training starts from
  std::optional<GptqFactor> gptq;  // the quantizer inside: GPTQ with this factor of H, RTN when empty
  int rank = 0;                    // branch rank to train (a layer-wise result without one starts at B = 0)
};

// The block's calibration windows: `windows` × tokens × dim rows of inputs and float-model targets; the first
// `train_windows` are trained on, the rest held out.
struct BlockWindows {
  const float* input = nullptr;
  const float* target = nullptr;
  int windows = 0, train_windows = 0, tokens = 0;
};

// How one block's training went. Relative block loss ‖out − target‖² / ‖target‖² on the training and
// held-out windows, at the start (the layer-wise result) and of the kept iterate (validation = training when
// nothing is held out).
struct BlockTrainingStats {
  double train_loss_init = 0, train_loss_best = 0, val_loss_init = 0, val_loss_best = 0;
  int best_step = 0;
  double seconds = 0;
  std::vector<double> curve_steps, curve_val_loss;  // the held-out loss at every evaluation
};

struct BlockResult {
  std::array<QuantizedLayer, kBlockLinearCount> layers;
  std::vector<float> attn_norm, ffn_norm;
  BlockTrainingStats stats;
};

BlockResult reconstruct_block(const BlockShape& shape, std::array<BlockLinearStart, kBlockLinearCount> linears,
                              const std::vector<float>& attn_norm, const std::vector<float>& ffn_norm,
                              const BlockWindows& data, const BlockTrainingOptions& options);

}  // namespace fbq
