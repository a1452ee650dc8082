#include "eval/generate.h"

#include <algorithm>
#include <chrono>
#include <utility>

#include "util/error.h"
#include "util/progress.h"
#include "util/utf8.h"

namespace fbq {

GenerateResult generate(const Model& model, std::string_view prompt, const GenerateOptions& options,
                        const std::function<void(const std::string&)>& on_text) {
  if (!model.tokenizer) fail("generate: the model has no tokenizer");
  if (options.max_new_tokens < 0) fail("generate: -n must be >= 0");
  const auto& tokenizer = *model.tokenizer;
  Sampler sampler(options.temperature, options.top_p, options.seed);

  GenerateResult result;
  result.prompt_tokens = tokenizer.encode(prompt, /*add_bos=*/true);
  const int prompt_length = static_cast<int>(result.prompt_tokens.size());
  if (prompt_length >= model.config.max_seq_len)
    fail("generate: the prompt has {} tokens; the model's context is {}", prompt_length, model.config.max_seq_len);
  const int new_tokens = std::min(options.max_new_tokens, model.config.max_seq_len - prompt_length);

  Utf8Stream stream;  // a byte-level token may end mid-character: pass on whole characters only
  const auto emit = [&](int previous, int token) {
    const auto piece = tokenizer.decode_piece(previous, token);
    result.text += piece;
    if (const auto text = stream.push(piece); on_text && !text.empty()) on_text(text);
  };
  for (int i = 1; i < prompt_length; ++i) emit(result.prompt_tokens[i - 1], result.prompt_tokens[i]);
  const auto finish = [&] {
    if (const auto rest = stream.flush(); on_text && !rest.empty()) on_text(rest);
    return result;
  };
  if (new_tokens == 0) return finish();

  InferenceSession session(model, prompt_length + new_tokens);
  const auto start = std::chrono::steady_clock::now();
  const auto logits = session.forward(result.prompt_tokens, 0, /*all_logits=*/false);
  result.prefill_seconds = seconds_since(start);

  // llama2.c models separate stories with BOS: it ends a generation as EOS does.
  const int stop_tokens[] = {model.config.eos_id, model.config.bos_id};
  int previous = result.prompt_tokens.back();
  const auto decoded = decode_tokens(session, sampler, logits, new_tokens, stop_tokens, [&](int token) {
    emit(std::exchange(previous, token), token);
    return true;
  });
  result.generated = decoded.tokens;
  result.decode_steps = decoded.steps;
  result.decode_seconds = decoded.seconds;
  return finish();
}

DecodeResult decode_tokens(InferenceSession& session, Sampler& sampler, std::span<const float> logits, int max_tokens,
                           std::span<const int> stop_tokens, const std::function<bool(int token)>& on_token) {
  DecodeResult result;
  if (max_tokens <= 0) return result;
  const auto is_stop = [&](int token) { return std::ranges::find(stop_tokens, token) != stop_tokens.end(); };
  const auto start = std::chrono::steady_clock::now();
  for (int token = sampler.sample(logits); !is_stop(token);) {
    result.tokens.push_back(token);
    if (!on_token(token) || static_cast<int>(result.tokens.size()) == max_tokens) break;
    const int single[] = {token};
    token = sampler.sample(session.forward(single, session.cached_tokens(), /*all_logits=*/false));
    ++result.steps;
  }
  result.seconds = seconds_since(start);
  return result;
}

}  // namespace fbq
