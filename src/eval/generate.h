#pragma once
// Text generation: one batched prefill of the prompt, then one-token decode steps against the KV cache.
#include <cstdint>
#include <functional>
#include <string>
#include <string_view>
#include <vector>

#include "model/model.h"

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

}  // namespace fbq
