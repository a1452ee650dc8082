#pragma once
// One LLaMA decoder block, forward and backward, in the llm.c manner: every layer's forward beside its
// backward, plain loops plus BLAS, the activations of one block and one calibration window in memory.
// The block is the runtime's (model/transformer.cpp): RMSNorm, q/k/v projections, HF rotate-half RoPE,
// GQA causal softmax attention, o projection, residual, RMSNorm, SwiGLU MLP, residual.
//
// The backward pass gives ∂L/∂W of every linear's (effective) weight and ∂L/∂g of both RMSNorm weights for
// L = scale·‖block(x) − target‖², the block-wise reconstruction loss; the block's input is a constant.
// Templated on the scalar so tests can check it in double against PyTorch autograd.
#include <array>
#include <vector>

#include "model/config.h"

namespace fbq {

// The seven linears of a block, in the order the pipeline quantizes them.
enum BlockLinear { kQProj, kKProj, kVProj, kOProj, kGateProj, kUpProj, kDownProj, kBlockLinearCount };

struct BlockShape {
  int dim = 0, hidden_dim = 0, n_heads = 0, n_kv_heads = 0, head_dim = 0;
  double rms_eps = 1e-5, rope_theta = 10000.0;

  static BlockShape of(const ModelConfig& config);
  int q_dim() const { return n_heads * head_dim; }
  int kv_dim() const { return n_kv_heads * head_dim; }
  int out_features(BlockLinear linear) const;
  int in_features(BlockLinear linear) const;
};

// Weights of one block (or their gradients, same layout): each linear m × n row-major (out × in).
template <typename Real>
struct BlockTensors {
  std::array<std::vector<Real>, kBlockLinearCount> linears;
  std::vector<Real> attn_norm, ffn_norm;

  static BlockTensors zeros(const BlockShape& shape);
  void set_zero();
};

template <typename Real>
class BlockForwardBackward {
 public:
  // `n_tokens`: the length of every window it runs (positions 0 .. n_tokens − 1, causal).
  BlockForwardBackward(const BlockShape& shape, int n_tokens);

  // block(input) into `output` (n_tokens × dim); keeps the activations for backward().
  void forward(const BlockTensors<Real>& weights, const Real* input, Real* output);
  // Runs forward and adds ∂L/∂θ of L = scale·‖block(input) − target‖² into `grads`; returns L.
  double forward_backward(const BlockTensors<Real>& weights, const Real* input, const Real* target, double scale,
                          BlockTensors<Real>& grads);
  // ‖block(input) − target‖² (forward only).
  double squared_error(const BlockTensors<Real>& weights, const Real* input, const Real* target);

 private:
  void attention_forward();
  void attention_backward(std::vector<Real>& d_attn, std::vector<Real>& d_q, std::vector<Real>& d_k,
                          std::vector<Real>& d_v) const;

  BlockShape shape_;
  int n_;  // tokens
  std::vector<Real> rope_cos_, rope_sin_;  // n × head_dim/2
  // Activations of the last forward (row-major, one row per token).
  std::vector<Real> input_, inv_rms1_, normed1_, q_, k_, v_, probs_, attn_, hidden1_, inv_rms2_, normed2_, gate_, up_,
      act_, output_;
};

}  // namespace fbq
