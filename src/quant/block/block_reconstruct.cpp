#include "quant/block/block_reconstruct.h"

#include <cblas.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <memory>
#include <numeric>
#include <random>

#include "quant/adam.h"
#include "quant/block/learnable_clipping.h"
#include "quant/fbquant.h"
#include "util/error.h"

namespace fbq {
namespace {

// What the block training moves for one linear: it materialises the effective weights W_F of the current
// iterate, takes an Adam step from G = ∂L/∂W_F, and hands back the iterate in packed form.
class TrainableLinear {
 public:
  virtual ~TrainableLinear() = default;
  // W_F of the current iterate into `effective`; `refresh` re-runs a quantizer that is not refitted every step.
  virtual void materialize(bool refresh, std::vector<float>& effective) = 0;
  virtual void step(const std::vector<float>& grad, double lr, int t) = 0;
  // The iterate last materialised, as it is packed.
  virtual QuantizedLayer snapshot() const = 0;
};

// FBQuant's feedback branch: W_F = Q(W − B·A) + B·A, A and B rounded to f16 before use (what is packed).
class BranchLinear final : public TrainableLinear {
 public:
  BranchLinear(BlockLinearStart start, std::uint64_t seed)
      : w_(std::move(start.weights)), m_(start.layer.weights.rows), n_(start.layer.weights.cols), r_(start.rank),
        spec_(start.layer.weights.spec), gptq_(std::move(start.gptq)), current_(std::move(start.layer.weights)) {
    if (start.layer.rank == r_) {
      a_ = std::move(start.layer.lora_a);
      b_ = std::move(start.layer.lora_b);
    } else {  // B = 0 starts exactly at the layer-wise result; A must be non-zero for B to get a gradient
      std::mt19937_64 rng(seed);
      std::normal_distribution<float> normal(0.0f, 1.0f / std::sqrt(static_cast<float>(n_)));
      a_.resize(static_cast<std::size_t>(r_) * n_);
      for (auto& v : a_) v = normal(rng);
      b_.assign(static_cast<std::size_t>(m_) * r_, 0.0f);
    }
    adam_a_ = std::make_unique<Adam>(a_.size());
    adam_b_ = std::make_unique<Adam>(b_.size());
  }

  void materialize(bool refresh, std::vector<float>& effective) override {
    a16_ = a_;
    b16_ = b_;
    round_to_f16(a16_);
    round_to_f16(b16_);
    sigma_.resize(w_.size());
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, m_, n_, r_, 1.0f, b16_.data(), r_, a16_.data(), n_, 0.0f,
                sigma_.data(), n_);
    effective.resize(w_.size());
    if (!gptq_) {  // RTN refitted on W − Σ: W_F = W + (Q(R) − R)
      feedback_quantize_rtn(w_, sigma_, m_, n_, spec_, current_, error_);
      for (std::size_t i = 0; i < w_.size(); ++i) effective[i] = w_[i] + error_[i];
      return;
    }
    if (refresh) {
      std::vector<float> residual(w_.size());
      for (std::size_t i = 0; i < w_.size(); ++i) residual[i] = w_[i] - sigma_[i];
      current_ = gptq_quantize(residual, m_, n_, *gptq_, spec_);
      current_.dequantize_into(dequantized_);
    } else if (dequantized_.empty()) {
      current_.dequantize_into(dequantized_);
    }
    for (std::size_t i = 0; i < w_.size(); ++i) effective[i] = dequantized_[i] + sigma_[i];
  }

  // ∂L/∂B = G·Aᵀ (m × r), ∂L/∂A = Bᵀ·G (r × n), at the f16 iterate that produced G.
  void step(const std::vector<float>& grad, double lr, int t) override {
    grad_a_.resize(a_.size());
    grad_b_.resize(b_.size());
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, m_, r_, n_, 1.0f, grad.data(), n_, a16_.data(), n_, 0.0f,
                grad_b_.data(), r_);
    cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, r_, n_, m_, 1.0f, b16_.data(), r_, grad.data(), n_, 0.0f,
                grad_a_.data(), n_);
    adam_a_->step(a_, grad_a_, lr, t);
    adam_b_->step(b_, grad_b_, lr, t);
  }

  QuantizedLayer snapshot() const override {
    QuantizedLayer layer;
    layer.weights = current_;
    layer.rank = r_;
    layer.lora_a = a16_;
    layer.lora_b = b16_;
    return layer;
  }

 private:
  std::vector<float> w_;
  int m_, n_, r_;
  QuantSpec spec_;
  std::optional<GptqFactor> gptq_;
  QuantizedMatrix current_;
  std::vector<float> a_, b_, a16_, b16_, sigma_, error_, dequantized_, grad_a_, grad_b_;
  std::unique_ptr<Adam> adam_a_, adam_b_;
};

// OmniQuant's learnable weight clipping (quant/block/learnable_clipping.h), no branch.
class ClippedLinear final : public TrainableLinear {
 public:
  static constexpr float kInitialLogit = 4.0f;  // σ(4) ≈ 0.982, OmniQuant's initialisation

  explicit ClippedLinear(BlockLinearStart start)
      : w_(std::move(start.weights)), current_(std::move(start.layer.weights)),
        logits_{std::vector<float>(current_.params.size(), kInitialLogit),
                std::vector<float>(current_.params.size(), kInitialLogit)},
        adam_high_(logits_.high.size()), adam_low_(logits_.low.size()) {
    if (start.layer.rank > 0) fail("lwc: the layer-wise result has a branch (use --method rtn without --rank)");
  }

  void materialize(bool, std::vector<float>& effective) override {
    quantize_clipped(w_, logits_, current_);
    current_.dequantize_into(effective);
  }

  void step(const std::vector<float>& grad, double lr, int t) override {
    const auto grads = clipping_gradients(w_, logits_, current_, grad);
    adam_high_.step(logits_.high, grads.high, lr, t);
    adam_low_.step(logits_.low, grads.low, lr, t);
  }

  QuantizedLayer snapshot() const override {
    QuantizedLayer layer;
    layer.weights = current_;
    return layer;
  }

 private:
  std::vector<float> w_;
  QuantizedMatrix current_;
  ClippingLogits logits_;
  Adam adam_high_, adam_low_;
};

double squared_norm(const float* values, std::size_t count) {
  double total = 0;
  for (std::size_t i = 0; i < count; ++i) total += static_cast<double>(values[i]) * values[i];
  return total;
}

// ‖block(x) − target‖² / ‖target‖² over windows [begin, end).
double relative_loss(BlockForwardBackward<float>& block, const BlockTensors<float>& weights, const BlockWindows& data,
                     std::size_t window_size, int begin, int end) {
  double error = 0, energy = 0;
  for (int w = begin; w < end; ++w) {
    const float* target = data.target + w * window_size;
    error += block.squared_error(weights, data.input + w * window_size, target);
    energy += squared_norm(target, window_size);
  }
  return energy > 0 ? error / energy : 0.0;
}

// The training windows in a fresh seeded order each pass, `batch` at a time.
class WindowSampler {
 public:
  WindowSampler(int windows, std::uint64_t seed) : order_(windows), rng_(seed) {}
  std::vector<int> next(int batch) {
    std::vector<int> picked;
    while (static_cast<int>(picked.size()) < batch) {
      if (position_ == 0) {
        std::iota(order_.begin(), order_.end(), 0);
        std::shuffle(order_.begin(), order_.end(), rng_);
      }
      picked.push_back(order_[position_]);
      position_ = (position_ + 1) % order_.size();
    }
    return picked;
  }

 private:
  std::vector<int> order_;
  std::size_t position_ = 0;
  std::mt19937_64 rng_;
};

struct KeptIterate {
  double loss = INFINITY;
  int step = 0;
  std::array<QuantizedLayer, kBlockLinearCount> layers;
  std::vector<float> attn_norm, ffn_norm;
};

}  // namespace

void BlockTrainingOptions::validate() const {
  if (steps < 0) fail("--block-steps must be >= 0 (got {})", steps);
  if (!(lr > 0)) fail("--block-lr must be positive (got {})", lr);
  if (batch < 1) fail("--block-batch must be >= 1 (got {})", batch);
  if (eval_every < 1 || refresh_every < 1) fail("block reconstruction: eval_every and refresh_every must be >= 1");
}

BlockResult reconstruct_block(const BlockShape& shape, std::array<BlockLinearStart, kBlockLinearCount> linears,
                              const std::vector<float>& attn_norm, const std::vector<float>& ffn_norm,
                              const BlockWindows& data, const BlockTrainingOptions& options) {
  options.validate();
  if (data.train_windows < 1) fail("block reconstruction needs training windows");
  const auto start = std::chrono::steady_clock::now();
  std::array<std::unique_ptr<TrainableLinear>, kBlockLinearCount> trainable;
  for (int i = 0; i < kBlockLinearCount; ++i)
    trainable[i] = options.lwc ? std::unique_ptr<TrainableLinear>(std::make_unique<ClippedLinear>(std::move(linears[i])))
                               : std::make_unique<BranchLinear>(std::move(linears[i]), options.seed + i);

  BlockTensors<float> weights;
  weights.attn_norm = attn_norm;
  weights.ffn_norm = ffn_norm;
  const auto materialize = [&](bool refresh) {
    for (int i = 0; i < kBlockLinearCount; ++i) trainable[i]->materialize(refresh, weights.linears[i]);
  };
  BlockForwardBackward<float> block(shape, data.tokens);
  const std::size_t window_size = static_cast<std::size_t>(data.tokens) * shape.dim;
  const bool held_out = data.windows > data.train_windows;
  const auto selection_loss = [&] {
    return held_out ? relative_loss(block, weights, data, window_size, data.train_windows, data.windows)
                    : relative_loss(block, weights, data, window_size, 0, data.train_windows);
  };

  BlockResult result;
  KeptIterate kept;
  auto grads = BlockTensors<float>::zeros(shape);
  Adam adam_attn_norm(attn_norm.size()), adam_ffn_norm(ffn_norm.size());
  WindowSampler sampler(data.train_windows, options.seed);
  materialize(true);
  result.stats.train_loss_init = relative_loss(block, weights, data, window_size, 0, data.train_windows);
  for (int t = 0; t <= options.steps; ++t) {
    if (t % options.eval_every == 0 || t == options.steps) {
      const double loss = selection_loss();
      if (t == 0) result.stats.val_loss_init = loss;
      result.stats.curve_steps.push_back(t);
      result.stats.curve_val_loss.push_back(loss);
      if (loss < kept.loss) {
        kept = {loss, t, {}, weights.attn_norm, weights.ffn_norm};
        for (int i = 0; i < kBlockLinearCount; ++i) kept.layers[i] = trainable[i]->snapshot();
      }
    }
    if (t == options.steps) break;
    const auto batch = sampler.next(options.batch);
    double energy = 0;  // the loss is relative to the batch's target energy, as the evaluations are
    for (const int w : batch) energy += squared_norm(data.target + w * window_size, window_size);
    grads.set_zero();
    for (const int w : batch)
      block.forward_backward(weights, data.input + w * window_size, data.target + w * window_size, 1.0 / energy, grads);
    const double lr = cosine_lr(options.lr, t, options.steps);
    for (int i = 0; i < kBlockLinearCount; ++i) trainable[i]->step(grads.linears[i], lr, t + 1);
    if (options.train_norms) {
      adam_attn_norm.step(weights.attn_norm, grads.attn_norm, lr, t + 1);
      adam_ffn_norm.step(weights.ffn_norm, grads.ffn_norm, lr, t + 1);
    }
    const int next = t + 1;
    materialize(next % options.refresh_every == 0 || next % options.eval_every == 0 || next == options.steps);
  }

  // The kept iterate's loss on the training windows, from its packed form.
  for (int i = 0; i < kBlockLinearCount; ++i) weights.linears[i] = kept.layers[i].effective_weights();
  weights.attn_norm = kept.attn_norm;
  weights.ffn_norm = kept.ffn_norm;
  result.stats.train_loss_best = relative_loss(block, weights, data, window_size, 0, data.train_windows);
  result.stats.val_loss_best = kept.loss;
  result.stats.best_step = kept.step;
  result.layers = std::move(kept.layers);
  result.attn_norm = std::move(kept.attn_norm);
  result.ffn_norm = std::move(kept.ffn_norm);
  result.stats.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  return result;
}

}  // namespace fbq
