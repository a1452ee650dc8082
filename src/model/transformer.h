#pragma once
// The LLaMA forward pass on CPU in float32: batched prefill through Linear::forward (BLAS GEMM for dense
// weights) and one-token decode against a KV cache.
#include <span>
#include <vector>

#include "model/model.h"

namespace fbq {

class InferenceSession {
 public:
  // `max_context`: KV-cache length in tokens (defaults to the model's max_seq_len).
  explicit InferenceSession(const Model& model, int max_context = 0);

  // Runs `tokens` at positions [position, position + n), appending to the KV cache, and writes logits:
  // n × vocab when `all_logits`, otherwise only the last token's vocab values. Returns a view of them,
  // valid until the next call. `position` must equal the number of tokens already cached.
  std::span<const float> forward(std::span<const int> tokens, int position, bool all_logits);

  // Runs one decoder layer in place on `hidden` (n_tokens × dim) at positions [position, position + n),
  // writing that layer's KV cache. `layer` need not belong to the model (the quantization pipeline passes
  // the layer it is working on); forward() calls this for every layer.
  void forward_layer(const DecoderLayer& layer, int layer_index, float* hidden, int n_tokens, int position);

  void reset() { cached_tokens_ = 0; }
  int cached_tokens() const { return cached_tokens_; }
  int max_context() const { return max_context_; }

 private:
  void attention(int layer, int n_tokens, int position);
  void ensure_scratch(int n_tokens);

  const Model& model_;
  int max_context_;
  int cached_tokens_ = 0;
  std::vector<float> rope_cos_, rope_sin_;  // max_context × head_dim/2
  std::vector<float> key_cache_, value_cache_;  // layer × position × kv_dim
  // Scratch for a batch of tokens, grown on demand.
  int scratch_tokens_ = 0;
  std::vector<float> x_, normed_, q_, k_, v_, attn_out_, gate_, up_, projected_, logits_, scores_;
};

// RMSNorm: out = x / sqrt(mean(x²) + eps) · weight.
void rms_norm(const float* x, const float* weight, int size, float eps, float* out);

}  // namespace fbq
