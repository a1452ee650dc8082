#pragma once
// The LLaMA forward pass on CPU in float32: batched prefill through Linear::forward (BLAS GEMM for dense
// weights) and one-token decode against a KV cache.
#include <span>
#include <vector>

#include "model/model.h"

namespace fbq {

// Where one token of a packed forward sits: its KV-cache slot, its RoPE position, and the cache slots it
// attends to: a shared prefix [prefix_begin, prefix_end) and its own sequence [own_begin, slot]. Packing
// lets many independent sequences, and continuations branching off one shared context, run as one batch.
struct TokenPlacement {
  int slot = 0;
  int position = 0;
  int prefix_begin = 0, prefix_end = 0;
  int own_begin = 0;
};

class InferenceSession {
 public:
  // `max_context`: KV-cache length in tokens (defaults to the model's max_seq_len).
  explicit InferenceSession(const Model& model, int max_context = 0);

  // Runs `tokens` at positions [position, position + n), appending to the KV cache, and writes logits:
  // n × vocab when `all_logits`, otherwise only the last token's vocab values. Returns a view of them,
  // valid until the next call. `position` must equal the number of tokens already cached.
  std::span<const float> forward(std::span<const int> tokens, int position, bool all_logits);

  // Runs a packed batch on an empty cache: token t sits at slot t with `placement[t]` (slots and visible
  // ranges within [0, n)), and logits are written for the tokens listed in `logit_rows` (row r of the
  // result = token logit_rows[r]). Leaves the cache empty: the next forward() starts at position 0.
  std::span<const float> forward_packed(std::span<const int> tokens, std::span<const TokenPlacement> placement,
                                        std::span<const int> logit_rows);

  // Runs one decoder layer in place on `hidden` (n_tokens × dim) at positions [position, position + n),
  // writing that layer's KV cache. `layer` need not belong to the model (the quantization pipeline passes
  // the layer it is working on); forward() calls this for every layer.
  void forward_layer(const DecoderLayer& layer, int layer_index, float* hidden, int n_tokens, int position);

  void reset() { cached_tokens_ = 0; }
  // Keeps the first `tokens` cached tokens and forgets the rest: the next forward() continues at that position
  // (a conversation that diverges from what is cached re-runs only the tokens after the common prefix).
  void truncate(int tokens);
  int cached_tokens() const { return cached_tokens_; }
  int max_context() const { return max_context_; }

 private:
  void run_layer(const DecoderLayer& layer, int layer_index, float* hidden, int n_tokens);
  void attention(int layer, int n_tokens);
  void embed(std::span<const int> tokens);
  std::span<const float> logits_of(std::span<const int> rows);
  void ensure_scratch(int n_tokens);
  void place_sequential(int n_tokens, int position);
  void check_positions(int n_tokens, int position) const;

  const Model& model_;
  int max_context_;    // KV-cache slots
  int max_positions_;  // the model's exact positions (ModelConfig::max_exact_positions)
  int cached_tokens_ = 0;
  std::vector<TokenPlacement> placement_;  // of the tokens in the current call
  std::vector<float> rope_cos_, rope_sin_;  // max_positions × head_dim/2
  std::vector<float> key_cache_, value_cache_;  // layer × position × kv_dim
  // Scratch for a batch of tokens, grown on demand.
  int scratch_tokens_ = 0;
  std::vector<float> x_, normed_, q_, k_, v_, attn_out_, gate_, up_, projected_, logits_, scores_;
};

// RMSNorm: out = x / sqrt(mean(x²) + eps) · weight.
void rms_norm(const float* x, const float* weight, int size, float eps, float* out);

}  // namespace fbq
