#pragma once
// Text generation: one batched prefill of the prompt, then one-token decode steps against the KV cache.
#include <cstdint>
#include <functional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "eval/sampler.h"
#include "model/model.h"
#include "model/transformer.h"

namespace fbq {

struct GenerateOptions {
  int max_new_tokens = 128;
  float temperature = 0.0f;  // 0 = greedy
  float top_p = 0.9f;
  std::uint64_t seed = 42;
};

struct GenerateResult {
  std::vector<int> prompt_tokens;  // BOS included
  std::vector<int> generated;
  std::string text;  // prompt + generated text, as streamed
  double prefill_seconds = 0, decode_seconds = 0;
  int decode_steps = 0;  // forward passes after the prefill
};

// Stops after max_new_tokens, at EOS or BOS (llama2.c models separate stories with BOS), or when the
// model's context is full. `on_text` receives each new piece of text as it is produced (prompt first).
GenerateResult generate(const Model& model, std::string_view prompt, const GenerateOptions& options,
                        const std::function<void(const std::string&)>& on_text = {});

struct DecodeResult {
  std::vector<int> tokens;  // the kept tokens, in order
  int steps = 0;            // forward passes: the kept tokens now in the KV cache (all but a last one kept)
  double seconds = 0;
};

// The decode loop of one reply, shared by generate() and chat: samples from `logits` (those of the last
// token fed to `session`) and feeds each kept token back, until a token in `stop_tokens` (not kept), the
// `max_tokens`-th token, or a token for which `on_token` returns false (a chat reply that completed a stop
// string). The last kept token is not fed: nothing would read its logits.
DecodeResult decode_tokens(InferenceSession& session, Sampler& sampler, std::span<const float> logits, int max_tokens,
                           std::span<const int> stop_tokens, const std::function<bool(int token)>& on_token);

}  // namespace fbq
