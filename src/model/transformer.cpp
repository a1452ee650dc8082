#include "model/transformer.h"

#include <cblas.h>
#include <omp.h>

#include <algorithm>
#include <cmath>

#include "util/error.h"

namespace fbq {
namespace {

// HF rotate-half RoPE on one head: dimension i is paired with i + head_dim/2.
void apply_rope(float* head, const float* cos, const float* sin, int half) {
  for (int i = 0; i < half; ++i) {
    const float x0 = head[i], x1 = head[i + half];
    head[i] = x0 * cos[i] - x1 * sin[i];
    head[i + half] = x0 * sin[i] + x1 * cos[i];
  }
}

void add_in_place(float* x, const float* delta, std::size_t count) {
  for (std::size_t i = 0; i < count; ++i) x[i] += delta[i];
}

// y (n_tokens × bias.size()) += bias on every token; nothing when the layer has no bias.
void add_bias(float* y, const std::vector<float>& bias, int n_tokens) {
  for (int t = 0; t < n_tokens; ++t) add_in_place(y + static_cast<std::size_t>(t) * bias.size(), bias.data(), bias.size());
}

// Why positions past the model's limit are refused: its own context, or a sliding window we do not implement.
[[noreturn]] void fail_positions(const ModelConfig& c, int end) {
  if (c.max_exact_positions() < c.max_seq_len)
    fail("forward: position {} is beyond the sliding window of {} tokens; attention past the window is not "
         "implemented", end - 1, c.sliding_window);
  fail("forward: position {} is beyond the model's max_position_embeddings ({})", end - 1, c.max_seq_len);
}

}  // namespace

void rms_norm(const float* x, const float* weight, int size, float eps, float* out) {
  float sum_squares = 0.0f;
  for (int i = 0; i < size; ++i) sum_squares += x[i] * x[i];
  const float inv_rms = 1.0f / std::sqrt(sum_squares / static_cast<float>(size) + eps);
  for (int i = 0; i < size; ++i) out[i] = weight[i] * (inv_rms * x[i]);
}

InferenceSession::InferenceSession(const Model& model, int max_context)
    : model_(model),
      max_context_(max_context > 0 ? max_context : model.config.max_seq_len),
      max_positions_(model.config.max_exact_positions()) {
  const auto& c = model.config;
  const int half = c.head_dim / 2;
  // Positions the cache can hold, at most the model's: a session's positions grow with its slots.
  const int table_positions = std::min(max_context_, max_positions_);
  rope_cos_.resize(static_cast<std::size_t>(table_positions) * half);
  rope_sin_.resize(rope_cos_.size());
  // float32 frequencies and angles, as the reference PyTorch and llama2.c implementations compute them.
  const auto inv_freq = c.rope_inverse_frequencies();
  for (int i = 0; i < half; ++i) {
    for (int pos = 0; pos < table_positions; ++pos) {
      const float angle = static_cast<float>(pos) * inv_freq[i];
      rope_cos_[static_cast<std::size_t>(pos) * half + i] = std::cos(angle);
      rope_sin_[static_cast<std::size_t>(pos) * half + i] = std::sin(angle);
    }
  }
  const std::size_t cache = static_cast<std::size_t>(c.n_layers) * max_context_ * c.kv_dim();
  key_cache_.assign(cache, 0.0f);
  value_cache_.assign(cache, 0.0f);
  scores_.resize(static_cast<std::size_t>(omp_get_max_threads()) * max_context_ *
                 (model_.config.n_heads / model_.config.n_kv_heads));
}

void InferenceSession::ensure_scratch(int n_tokens) {
  if (n_tokens <= scratch_tokens_) return;
  const auto& c = model_.config;
  const std::size_t n = n_tokens;
  x_.resize(n * c.dim);
  normed_.resize(n * c.dim);
  q_.resize(n * c.q_dim());
  k_.resize(n * c.kv_dim());
  v_.resize(n * c.kv_dim());
  attn_out_.resize(n * c.q_dim());
  gate_.resize(n * c.hidden_dim);
  up_.resize(n * c.hidden_dim);
  projected_.resize(n * c.dim);
  scratch_tokens_ = n_tokens;
}

void InferenceSession::place_sequential(int n_tokens, int position) {
  placement_.resize(n_tokens);
  for (int t = 0; t < n_tokens; ++t) placement_[t] = {position + t, position + t, 0, 0, 0};
}

// Per token and KV head: the `group` query heads that share the KV head are scored against the visible
// slots with two small GEMMs per slot range (the shared prefix, then the token's own sequence up to itself),
// softmax per head, and the weighted values with two more: keys and values are read once per group, and
// BLAS vectorizes across slots instead of reducing one dot product at a time.
void InferenceSession::attention(int layer, int n_tokens) {
  const auto& c = model_.config;
  const int head_dim = c.head_dim, kv_dim = c.kv_dim(), q_dim = c.q_dim();
  const int group = c.n_heads / c.n_kv_heads;
  const float* keys = &key_cache_[static_cast<std::size_t>(layer) * max_context_ * kv_dim];
  const float* values = &value_cache_[static_cast<std::size_t>(layer) * max_context_ * kv_dim];
  const float scale = 1.0f / std::sqrt(static_cast<float>(head_dim));

#pragma omp parallel for collapse(2) schedule(static)
  for (int t = 0; t < n_tokens; ++t) {
    for (int kv = 0; kv < c.n_kv_heads; ++kv) {
      float* scores = &scores_[static_cast<std::size_t>(omp_get_thread_num()) * max_context_ * group];  // visible × group
      const float* queries = &q_[static_cast<std::size_t>(t) * q_dim + kv * group * head_dim];      // group × head_dim
      float* out = &attn_out_[static_cast<std::size_t>(t) * q_dim + kv * group * head_dim];
      const TokenPlacement& p = placement_[t];
      const int ranges[2][2] = {{p.prefix_begin, p.prefix_end - p.prefix_begin}, {p.own_begin, p.slot - p.own_begin + 1}};
      const int visible = ranges[0][1] + ranges[1][1];
      for (int r = 0, row = 0; r < 2; row += ranges[r][1], ++r)
        if (ranges[r][1] > 0)
          cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, ranges[r][1], group, head_dim, scale,
                      keys + static_cast<std::size_t>(ranges[r][0]) * kv_dim + kv * head_dim, kv_dim, queries, head_dim,
                      0.0f, scores + static_cast<std::size_t>(row) * group, group);
      for (int h = 0; h < group; ++h) {  // softmax over the visible slots, per head (a column of scores)
        float max_score = -INFINITY, total = 0.0f;
        for (int s = 0; s < visible; ++s) max_score = std::max(max_score, scores[s * group + h]);
        for (int s = 0; s < visible; ++s) total += scores[s * group + h] = std::exp(scores[s * group + h] - max_score);
        for (int s = 0; s < visible; ++s) scores[s * group + h] /= total;
      }
      float beta = 0.0f;
      for (int r = 0, row = 0; r < 2; row += ranges[r][1], ++r)
        if (ranges[r][1] > 0) {
          cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, group, head_dim, ranges[r][1], 1.0f,
                      scores + static_cast<std::size_t>(row) * group, group,
                      values + static_cast<std::size_t>(ranges[r][0]) * kv_dim + kv * head_dim, kv_dim, beta, out,
                      head_dim);
          beta = 1.0f;
        }
    }
  }
}

void InferenceSession::check_positions(int n, int position) const {
  if (position + n > max_context_)
    fail("forward: {} tokens at position {} exceed the context of {} tokens", n, position, max_context_);
  if (position + n > max_positions_) fail_positions(model_.config, position + n);
}

void InferenceSession::forward_layer(const DecoderLayer& layer, int l, float* hidden, int n, int position) {
  check_positions(n, position);
  ensure_scratch(n);
  place_sequential(n, position);
  run_layer(layer, l, hidden, n);
}

void InferenceSession::run_layer(const DecoderLayer& layer, int l, float* hidden, int n) {
  const auto& c = model_.config;
  const int half = c.head_dim / 2, kv_dim = c.kv_dim();
  for (int t = 0; t < n; ++t)
    rms_norm(&hidden[static_cast<std::size_t>(t) * c.dim], layer.attn_norm.data(), c.dim, c.rms_eps,
             &normed_[static_cast<std::size_t>(t) * c.dim]);
  layer.q_proj->forward(normed_.data(), n, q_.data());
  layer.k_proj->forward(normed_.data(), n, k_.data());
  layer.v_proj->forward(normed_.data(), n, v_.data());
  add_bias(q_.data(), layer.q_bias, n);
  add_bias(k_.data(), layer.k_bias, n);
  add_bias(v_.data(), layer.v_bias, n);

  for (int t = 0; t < n; ++t) {
    const std::size_t pos = placement_[t].position;
    const float* cos = &rope_cos_[pos * half];
    const float* sin = &rope_sin_[pos * half];
    for (int h = 0; h < c.n_heads; ++h) apply_rope(&q_[static_cast<std::size_t>(t) * c.q_dim() + h * c.head_dim], cos, sin, half);
    for (int h = 0; h < c.n_kv_heads; ++h) apply_rope(&k_[static_cast<std::size_t>(t) * kv_dim + h * c.head_dim], cos, sin, half);
    const std::size_t slot = (static_cast<std::size_t>(l) * max_context_ + placement_[t].slot) * kv_dim;
    std::copy_n(&k_[static_cast<std::size_t>(t) * kv_dim], kv_dim, &key_cache_[slot]);
    std::copy_n(&v_[static_cast<std::size_t>(t) * kv_dim], kv_dim, &value_cache_[slot]);
  }
  attention(l, n);
  layer.o_proj->forward(attn_out_.data(), n, projected_.data());
  add_bias(projected_.data(), layer.o_bias, n);
  add_in_place(hidden, projected_.data(), static_cast<std::size_t>(n) * c.dim);

  for (int t = 0; t < n; ++t)
    rms_norm(&hidden[static_cast<std::size_t>(t) * c.dim], layer.ffn_norm.data(), c.dim, c.rms_eps,
             &normed_[static_cast<std::size_t>(t) * c.dim]);
  layer.gate_proj->forward(normed_.data(), n, gate_.data());
  layer.up_proj->forward(normed_.data(), n, up_.data());
  const std::int64_t gated = static_cast<std::int64_t>(n) * c.hidden_dim;
#pragma omp parallel for schedule(static) if (gated > 65536)
  for (std::int64_t i = 0; i < gated; ++i) {
    const float g = gate_[i];
    gate_[i] = g / (1.0f + std::exp(-g)) * up_[i];  // SwiGLU: silu(gate) · up
  }
  layer.down_proj->forward(gate_.data(), n, projected_.data());
  add_in_place(hidden, projected_.data(), static_cast<std::size_t>(n) * c.dim);
}

void InferenceSession::embed(std::span<const int> tokens) {
  const auto& c = model_.config;
  for (std::size_t t = 0; t < tokens.size(); ++t) {
    const int token = tokens[t];
    if (token < 0 || token >= c.vocab_size) fail("forward: token id {} outside the vocabulary [0, {})", token, c.vocab_size);
    model_.embedding.widen_rows(token, 1, &x_[t * c.dim]);
  }
}

// Final norm and lm_head for the hidden states of `rows` only (gathered into normed_).
std::span<const float> InferenceSession::logits_of(std::span<const int> rows) {
  const auto& c = model_.config;
  for (std::size_t r = 0; r < rows.size(); ++r)
    rms_norm(&x_[static_cast<std::size_t>(rows[r]) * c.dim], model_.final_norm.data(), c.dim, c.rms_eps,
             &normed_[r * c.dim]);
  logits_.resize(rows.size() * c.vocab_size);
  if (!rows.empty()) model_.lm_head->forward(normed_.data(), static_cast<int>(rows.size()), logits_.data());
  return logits_;
}

std::span<const float> InferenceSession::forward(std::span<const int> tokens, int position, bool all_logits) {
  const auto& c = model_.config;
  const int n = static_cast<int>(tokens.size());
  if (n == 0) fail("forward: no tokens");
  if (position != cached_tokens_) fail("forward: position {} but {} tokens are cached", position, cached_tokens_);
  check_positions(n, position);
  ensure_scratch(n);
  embed(tokens);
  place_sequential(n, position);
  for (int l = 0; l < c.n_layers; ++l) run_layer(model_.layers[l], l, x_.data(), n);
  cached_tokens_ += n;

  std::vector<int> rows;
  for (int t = all_logits ? 0 : n - 1; t < n; ++t) rows.push_back(t);
  return logits_of(rows);
}

void InferenceSession::truncate(int tokens) {
  if (tokens < 0 || tokens > cached_tokens_) fail("truncate: {} tokens but {} are cached", tokens, cached_tokens_);
  cached_tokens_ = tokens;
}

std::span<const float> InferenceSession::forward_packed(std::span<const int> tokens,
                                                        std::span<const TokenPlacement> placement,
                                                        std::span<const int> logit_rows) {
  const auto& c = model_.config;
  const int n = static_cast<int>(tokens.size());
  if (n == 0) fail("forward: no tokens");
  if (placement.size() != tokens.size()) fail("forward: {} placements for {} tokens", placement.size(), n);
  if (n > max_context_) fail("forward: a packed batch of {} tokens exceeds the cache of {} slots", n, max_context_);
  for (int t = 0; t < n; ++t) {
    const auto& p = placement[t];
    if (p.position >= max_positions_) fail_positions(c, p.position + 1);
    if (p.slot != t || p.position < 0 || p.position >= max_context_ || p.prefix_begin < 0 || p.prefix_begin > p.prefix_end ||
        p.prefix_end > p.own_begin || p.own_begin > p.slot)
      fail("forward: invalid placement of packed token {}", t);
  }
  for (const int row : logit_rows)
    if (row < 0 || row >= n) fail("forward: logit row {} outside the batch of {} tokens", row, n);
  ensure_scratch(std::max(n, static_cast<int>(logit_rows.size())));
  embed(tokens);
  placement_.assign(placement.begin(), placement.end());
  for (int l = 0; l < c.n_layers; ++l) run_layer(model_.layers[l], l, x_.data(), n);
  cached_tokens_ = 0;
  return logits_of(logit_rows);
}

}  // namespace fbq
