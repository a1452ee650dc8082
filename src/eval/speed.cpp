#include "eval/speed.h"

#include <algorithm>
#include <vector>

#include "model/transformer.h"
#include "util/error.h"
#include "util/progress.h"

namespace fbq {

SpeedResult measure_speed(const Model& model, const SpeedOptions& options) {
  const auto& c = model.config;
  const int total = options.prompt_tokens + options.decode_tokens;
  if (options.prompt_tokens < 1 || options.decode_tokens < 1 || options.repeats < 1)
    fail("bench: prompt tokens, decode tokens and repeats must be >= 1");
  if (total > c.max_seq_len) fail("bench: {} tokens exceed the model's context of {}", total, c.max_seq_len);
  std::vector<int> tokens(total);
  tokens[0] = c.bos_id;
  for (int i = 1; i < total; ++i) tokens[i] = static_cast<int>((1000003LL * i) % c.vocab_size);

  InferenceSession session(model, total);
  SpeedResult result;
  result.weight_bytes = static_cast<double>(model.weight_bytes());
  for (int repeat = 0; repeat < options.repeats; ++repeat) {
    session.reset();
    auto start = std::chrono::steady_clock::now();
    session.forward(std::span(tokens).first(options.prompt_tokens), 0, false);
    result.prefill_tokens_per_second =
        std::max(result.prefill_tokens_per_second, options.prompt_tokens / seconds_since(start));
    start = std::chrono::steady_clock::now();
    for (int i = options.prompt_tokens; i < total; ++i) session.forward(std::span(tokens).subspan(i, 1), i, false);
    result.decode_tokens_per_second =
        std::max(result.decode_tokens_per_second, options.decode_tokens / seconds_since(start));
  }
  return result;
}

}  // namespace fbq
