#include "quant/block/block_forward_backward.h"

#include <cblas.h>

#include <algorithm>
#include <cmath>

#include "util/error.h"

namespace fbq {
namespace {

// Row-major GEMM C = alpha·op(A)·op(B) + beta·C in the block's scalar type.
void gemm(bool trans_a, bool trans_b, int m, int n, int k, float alpha, const float* a, int lda, const float* b,
          int ldb, float beta, float* c, int ldc) {
  cblas_sgemm(CblasRowMajor, trans_a ? CblasTrans : CblasNoTrans, trans_b ? CblasTrans : CblasNoTrans, m, n, k, alpha,
              a, lda, b, ldb, beta, c, ldc);
}
void gemm(bool trans_a, bool trans_b, int m, int n, int k, double alpha, const double* a, int lda, const double* b,
          int ldb, double beta, double* c, int ldc) {
  cblas_dgemm(CblasRowMajor, trans_a ? CblasTrans : CblasNoTrans, trans_b ? CblasTrans : CblasNoTrans, m, n, k, alpha,
              a, lda, b, ldb, beta, c, ldc);
}

// ---- linear: y = x·Wᵀ (x: tokens × n, W: m × n) ----
template <typename Real>
void linear_forward(const Real* x, const std::vector<Real>& w, int tokens, int m, int n, Real* y) {
  gemm(false, true, tokens, m, n, Real(1), x, n, w.data(), n, Real(0), y, m);
}
// dW += dyᵀ·x; dx (+)= dy·W (accumulated when `accumulate`, so q/k/v can share one input gradient).
template <typename Real>
void linear_backward(const Real* x, const std::vector<Real>& w, const Real* dy, int tokens, int m, int n,
                     std::vector<Real>& dw, Real* dx, bool accumulate) {
  gemm(true, false, m, n, tokens, Real(1), dy, m, x, n, Real(1), dw.data(), n);
  if (dx) gemm(false, false, tokens, n, m, Real(1), dy, m, w.data(), n, accumulate ? Real(1) : Real(0), dx, n);
}

// ---- RMSNorm: out = g ⊙ x·inv, inv = 1/sqrt(mean(x²) + eps) ----
template <typename Real>
void rms_norm_forward(const Real* x, const std::vector<Real>& g, int tokens, int dim, double eps, Real* inv, Real* out) {
  for (int t = 0; t < tokens; ++t) {
    const Real* row = x + static_cast<std::size_t>(t) * dim;
    Real sum_squares = 0;
    for (int j = 0; j < dim; ++j) sum_squares += row[j] * row[j];
    inv[t] = Real(1) / std::sqrt(sum_squares / static_cast<Real>(dim) + static_cast<Real>(eps));
    for (int j = 0; j < dim; ++j) out[static_cast<std::size_t>(t) * dim + j] = g[j] * (inv[t] * row[j]);
  }
}
// dg += Σ_t dout ⊙ x·inv;  dx += inv·(g ⊙ dout) − inv³/dim · x · Σ_j g_j·dout_j·x_j  (dx optional).
template <typename Real>
void rms_norm_backward(const Real* x, const std::vector<Real>& g, const Real* inv, const Real* dout, int tokens, int dim,
                       std::vector<Real>& dg, Real* dx) {
  for (int t = 0; t < tokens; ++t) {
    const std::size_t row = static_cast<std::size_t>(t) * dim;
    Real projection = 0;
    for (int j = 0; j < dim; ++j) {
      dg[j] += dout[row + j] * x[row + j] * inv[t];
      projection += g[j] * dout[row + j] * x[row + j];
    }
    if (!dx) continue;
    const Real coefficient = inv[t] * inv[t] * inv[t] * projection / static_cast<Real>(dim);
    for (int j = 0; j < dim; ++j) dx[row + j] += inv[t] * g[j] * dout[row + j] - coefficient * x[row + j];
  }
}

// ---- RoPE, HF rotate-half: dimension i pairs with i + half. `inverse` rotates back (its backward). ----
template <typename Real>
void rope(Real* rows, int tokens, int width, int head_dim, const std::vector<Real>& cos, const std::vector<Real>& sin,
          bool inverse) {
  const int half = head_dim / 2;
  const Real sign = inverse ? Real(-1) : Real(1);
  for (int t = 0; t < tokens; ++t)
    for (int h = 0; h < width / head_dim; ++h) {
      Real* head = rows + static_cast<std::size_t>(t) * width + h * head_dim;
      for (int i = 0; i < half; ++i) {
        const Real c = cos[static_cast<std::size_t>(t) * half + i], s = sign * sin[static_cast<std::size_t>(t) * half + i];
        const Real x0 = head[i], x1 = head[i + half];
        head[i] = x0 * c - x1 * s;
        head[i + half] = x0 * s + x1 * c;
      }
    }
}

// ---- SwiGLU: act = silu(gate)·up ----
template <typename Real>
Real sigmoid(Real x) {
  return Real(1) / (Real(1) + std::exp(-x));
}

}  // namespace

BlockShape BlockShape::of(const ModelConfig& c) {
  return {c.dim, c.hidden_dim, c.n_heads, c.n_kv_heads, c.head_dim, c.rms_eps, c.rope_theta};
}

int BlockShape::out_features(BlockLinear linear) const {
  switch (linear) {
    case kQProj: return q_dim();
    case kKProj: case kVProj: return kv_dim();
    case kOProj: case kDownProj: return dim;
    default: return hidden_dim;
  }
}

int BlockShape::in_features(BlockLinear linear) const {
  switch (linear) {
    case kOProj: return q_dim();
    case kDownProj: return hidden_dim;
    default: return dim;
  }
}

template <typename Real>
BlockTensors<Real> BlockTensors<Real>::zeros(const BlockShape& shape) {
  BlockTensors tensors;
  for (int i = 0; i < kBlockLinearCount; ++i) {
    const auto linear = static_cast<BlockLinear>(i);
    tensors.linears[i].assign(static_cast<std::size_t>(shape.out_features(linear)) * shape.in_features(linear), Real(0));
  }
  tensors.attn_norm.assign(shape.dim, Real(0));
  tensors.ffn_norm.assign(shape.dim, Real(0));
  return tensors;
}

template <typename Real>
void BlockTensors<Real>::set_zero() {
  for (auto& w : linears) std::fill(w.begin(), w.end(), Real(0));
  std::fill(attn_norm.begin(), attn_norm.end(), Real(0));
  std::fill(ffn_norm.begin(), ffn_norm.end(), Real(0));
}

template <typename Real>
BlockForwardBackward<Real>::BlockForwardBackward(const BlockShape& shape, int n_tokens) : shape_(shape), n_(n_tokens) {
  if (shape.n_heads % shape.n_kv_heads != 0 || shape.head_dim % 2 != 0 || n_tokens < 1)
    fail("block: {} heads over {} KV heads, head_dim {}, {} tokens", shape.n_heads, shape.n_kv_heads, shape.head_dim,
         n_tokens);
  const int half = shape.head_dim / 2;
  rope_cos_.resize(static_cast<std::size_t>(n_) * half);
  rope_sin_.resize(rope_cos_.size());
  for (int i = 0; i < half; ++i) {  // the runtime's formula, in the block's precision
    const Real inv_freq =
        Real(1) / std::pow(static_cast<Real>(shape.rope_theta), static_cast<Real>(2 * i) / static_cast<Real>(shape.head_dim));
    for (int pos = 0; pos < n_; ++pos) {
      rope_cos_[static_cast<std::size_t>(pos) * half + i] = std::cos(static_cast<Real>(pos) * inv_freq);
      rope_sin_[static_cast<std::size_t>(pos) * half + i] = std::sin(static_cast<Real>(pos) * inv_freq);
    }
  }
  const std::size_t n = n_;
  input_.resize(n * shape.dim);
  inv_rms1_.resize(n);
  normed1_.resize(n * shape.dim);
  q_.resize(n * shape.q_dim());
  k_.resize(n * shape.kv_dim());
  v_.resize(n * shape.kv_dim());
  probs_.resize(static_cast<std::size_t>(shape.n_heads) * n * n);
  attn_.resize(n * shape.q_dim());
  hidden1_.resize(n * shape.dim);
  inv_rms2_.resize(n);
  normed2_.resize(n * shape.dim);
  gate_.resize(n * shape.hidden_dim);
  up_.resize(n * shape.hidden_dim);
  act_.resize(n * shape.hidden_dim);
  output_.resize(n * shape.dim);
}

// Per query head: S = q_h·k_gᵀ/sqrt(d) (causal), P = softmax(S) row-wise, out_h = P·v_g.
template <typename Real>
void BlockForwardBackward<Real>::attention_forward() {
  const int d = shape_.head_dim, q_dim = shape_.q_dim(), kv_dim = shape_.kv_dim();
  const int group = shape_.n_heads / shape_.n_kv_heads;
  const Real scale = Real(1) / std::sqrt(static_cast<Real>(d));
#pragma omp parallel for schedule(static)
  for (int h = 0; h < shape_.n_heads; ++h) {
    const int g = h / group;
    Real* p = &probs_[static_cast<std::size_t>(h) * n_ * n_];
    gemm(false, true, n_, n_, d, scale, &q_[h * d], q_dim, &k_[g * d], kv_dim, Real(0), p, n_);
    for (int i = 0; i < n_; ++i) {
      Real* row = p + static_cast<std::size_t>(i) * n_;
      const Real max_score = *std::max_element(row, row + i + 1);
      Real total = 0;
      for (int j = 0; j <= i; ++j) total += row[j] = std::exp(row[j] - max_score);
      for (int j = 0; j <= i; ++j) row[j] /= total;
      std::fill(row + i + 1, row + n_, Real(0));  // masked: later tokens are invisible
    }
    gemm(false, false, n_, d, n_, Real(1), p, n_, &v_[g * d], kv_dim, Real(0), &attn_[h * d], q_dim);
  }
}

// dP = d_out_h·v_gᵀ, dv_g += Pᵀ·d_out_h, dS = P ⊙ (dP − rowsum(dP ⊙ P)), dq_h = dS·k_g/sqrt(d),
// dk_g += dSᵀ·q_h/sqrt(d). Parallel over KV heads: the query heads of a group add into the same dk, dv.
template <typename Real>
void BlockForwardBackward<Real>::attention_backward(std::vector<Real>& d_attn, std::vector<Real>& d_q,
                                                    std::vector<Real>& d_k, std::vector<Real>& d_v) const {
  const int d = shape_.head_dim, q_dim = shape_.q_dim(), kv_dim = shape_.kv_dim();
  const int group = shape_.n_heads / shape_.n_kv_heads;
  const Real scale = Real(1) / std::sqrt(static_cast<Real>(d));
  std::fill(d_k.begin(), d_k.end(), Real(0));
  std::fill(d_v.begin(), d_v.end(), Real(0));
#pragma omp parallel for schedule(static)
  for (int g = 0; g < shape_.n_kv_heads; ++g) {
    std::vector<Real> dp(static_cast<std::size_t>(n_) * n_);
    for (int h = g * group; h < (g + 1) * group; ++h) {
      const Real* p = &probs_[static_cast<std::size_t>(h) * n_ * n_];
      gemm(false, true, n_, n_, d, Real(1), &d_attn[h * d], q_dim, &v_[g * d], kv_dim, Real(0), dp.data(), n_);
      gemm(true, false, n_, d, n_, Real(1), p, n_, &d_attn[h * d], q_dim, Real(1), &d_v[g * d], kv_dim);
      for (int i = 0; i < n_; ++i) {
        Real* row = &dp[static_cast<std::size_t>(i) * n_];
        const Real* prob = p + static_cast<std::size_t>(i) * n_;
        Real weighted = 0;
        for (int j = 0; j <= i; ++j) weighted += row[j] * prob[j];
        for (int j = 0; j < n_; ++j) row[j] = prob[j] * (row[j] - weighted);
      }
      gemm(false, false, n_, d, n_, scale, dp.data(), n_, &k_[g * d], kv_dim, Real(0), &d_q[h * d], q_dim);
      gemm(true, false, n_, d, n_, scale, dp.data(), n_, &q_[h * d], q_dim, Real(1), &d_k[g * d], kv_dim);
    }
  }
}

template <typename Real>
void BlockForwardBackward<Real>::forward(const BlockTensors<Real>& w, const Real* input, Real* output) {
  const auto& s = shape_;
  const std::size_t n = n_;
  std::copy_n(input, n * s.dim, input_.data());
  rms_norm_forward(input, w.attn_norm, n_, s.dim, s.rms_eps, inv_rms1_.data(), normed1_.data());
  linear_forward(normed1_.data(), w.linears[kQProj], n_, s.q_dim(), s.dim, q_.data());
  linear_forward(normed1_.data(), w.linears[kKProj], n_, s.kv_dim(), s.dim, k_.data());
  linear_forward(normed1_.data(), w.linears[kVProj], n_, s.kv_dim(), s.dim, v_.data());
  rope(q_.data(), n_, s.q_dim(), s.head_dim, rope_cos_, rope_sin_, false);
  rope(k_.data(), n_, s.kv_dim(), s.head_dim, rope_cos_, rope_sin_, false);
  attention_forward();
  linear_forward(attn_.data(), w.linears[kOProj], n_, s.dim, s.q_dim(), hidden1_.data());
  for (std::size_t i = 0; i < n * s.dim; ++i) hidden1_[i] += input[i];

  rms_norm_forward(hidden1_.data(), w.ffn_norm, n_, s.dim, s.rms_eps, inv_rms2_.data(), normed2_.data());
  linear_forward(normed2_.data(), w.linears[kGateProj], n_, s.hidden_dim, s.dim, gate_.data());
  linear_forward(normed2_.data(), w.linears[kUpProj], n_, s.hidden_dim, s.dim, up_.data());
  for (std::size_t i = 0; i < n * s.hidden_dim; ++i) act_[i] = gate_[i] * sigmoid(gate_[i]) * up_[i];
  linear_forward(act_.data(), w.linears[kDownProj], n_, s.dim, s.hidden_dim, output_.data());
  for (std::size_t i = 0; i < n * s.dim; ++i) output_[i] += hidden1_[i];
  if (output) std::copy(output_.begin(), output_.end(), output);
}

template <typename Real>
double BlockForwardBackward<Real>::squared_error(const BlockTensors<Real>& weights, const Real* input, const Real* target) {
  forward(weights, input, nullptr);
  double total = 0;
  for (std::size_t i = 0; i < output_.size(); ++i) {
    const double diff = static_cast<double>(output_[i]) - target[i];
    total += diff * diff;
  }
  return total;
}

template <typename Real>
double BlockForwardBackward<Real>::forward_backward(const BlockTensors<Real>& w, const Real* input, const Real* target,
                                                    double scale, BlockTensors<Real>& grads) {
  const double loss = scale * squared_error(w, input, target);
  const auto& s = shape_;
  const std::size_t n = n_;
  // Output: L = scale·‖out − target‖²; out = hidden1 + down(act) (residual).
  std::vector<Real> d_out(n * s.dim), d_hidden1(n * s.dim), d_act(n * s.hidden_dim), d_up(n * s.hidden_dim);
  for (std::size_t i = 0; i < d_out.size(); ++i) d_out[i] = static_cast<Real>(2 * scale) * (output_[i] - target[i]);
  d_hidden1 = d_out;
  linear_backward(act_.data(), w.linears[kDownProj], d_out.data(), n_, s.dim, s.hidden_dim, grads.linears[kDownProj],
                  d_act.data(), false);
  // SwiGLU: act = silu(gate)·up, silu'(x) = σ(x)·(1 + x·(1 − σ(x))). d_act becomes d_gate in place.
  for (std::size_t i = 0; i < d_act.size(); ++i) {
    const Real sig = sigmoid(gate_[i]);
    d_up[i] = d_act[i] * gate_[i] * sig;
    d_act[i] *= up_[i] * sig * (Real(1) + gate_[i] * (Real(1) - sig));
  }
  std::vector<Real> d_normed(n * s.dim);
  linear_backward(normed2_.data(), w.linears[kGateProj], d_act.data(), n_, s.hidden_dim, s.dim, grads.linears[kGateProj],
                  d_normed.data(), false);
  linear_backward(normed2_.data(), w.linears[kUpProj], d_up.data(), n_, s.hidden_dim, s.dim, grads.linears[kUpProj],
                  d_normed.data(), true);
  rms_norm_backward(hidden1_.data(), w.ffn_norm, inv_rms2_.data(), d_normed.data(), n_, s.dim, grads.ffn_norm,
                    d_hidden1.data());

  // Attention: hidden1 = input + o(attn).
  std::vector<Real> d_attn(n * s.q_dim()), d_q(n * s.q_dim()), d_k(n * s.kv_dim()), d_v(n * s.kv_dim());
  linear_backward(attn_.data(), w.linears[kOProj], d_hidden1.data(), n_, s.dim, s.q_dim(), grads.linears[kOProj],
                  d_attn.data(), false);
  attention_backward(d_attn, d_q, d_k, d_v);
  rope(d_q.data(), n_, s.q_dim(), s.head_dim, rope_cos_, rope_sin_, true);
  rope(d_k.data(), n_, s.kv_dim(), s.head_dim, rope_cos_, rope_sin_, true);
  linear_backward(normed1_.data(), w.linears[kQProj], d_q.data(), n_, s.q_dim(), s.dim, grads.linears[kQProj],
                  d_normed.data(), false);
  linear_backward(normed1_.data(), w.linears[kKProj], d_k.data(), n_, s.kv_dim(), s.dim, grads.linears[kKProj],
                  d_normed.data(), true);
  linear_backward(normed1_.data(), w.linears[kVProj], d_v.data(), n_, s.kv_dim(), s.dim, grads.linears[kVProj],
                  d_normed.data(), true);
  // The block's input is a constant: only the norm weight's gradient is needed here.
  rms_norm_backward(input_.data(), w.attn_norm, inv_rms1_.data(), d_normed.data(), n_, s.dim, grads.attn_norm,
                    static_cast<Real*>(nullptr));
  return loss;
}

template struct BlockTensors<float>;
template struct BlockTensors<double>;
template class BlockForwardBackward<float>;
template class BlockForwardBackward<double>;

}  // namespace fbq
