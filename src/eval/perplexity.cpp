#include "eval/perplexity.h"

#include <algorithm>
#include <bit>
#include <cmath>
#include <fstream>

#include "model/transformer.h"
#include "io/text_files.h"
#include "util/error.h"
#include "util/progress.h"

namespace fbq {
namespace {

// -log softmax(logits)[target], accumulated in double.
double negative_log_likelihood(std::span<const float> logits, int target) {
  const float max_logit = *std::max_element(logits.begin(), logits.end());
  double total = 0.0;
  for (const float logit : logits) total += std::exp(static_cast<double>(logit) - max_logit);
  return std::log(total) + max_logit - logits[target];
}

}  // namespace

PerplexityResult evaluate_perplexity(const Model& model, std::span<const int> tokens, const PerplexityOptions& options) {
  if (options.ctx < 2) fail("perplexity: --ctx must be at least 2 (got {})", options.ctx);
  if (options.ctx > model.config.max_seq_len)
    fail("perplexity: --ctx {} exceeds the model's context of {} tokens", options.ctx, model.config.max_seq_len);
  const std::int64_t total = static_cast<std::int64_t>(tokens.size());
  // Whole windows only: the reference PyTorch figures drop the partial tail window.
  int windows = static_cast<int>(total / options.ctx);
  if (options.max_windows > 0) windows = std::min(windows, options.max_windows);
  if (windows == 0) fail("perplexity: the text has {} tokens, fewer than one window of --ctx {}", total, options.ctx);

  const auto start = std::chrono::steady_clock::now();
  InferenceSession session(model, options.ctx);
  Progress progress("perplexity", windows, options.progress);
  double sum = 0.0, sum_squares = 0.0;
  std::int64_t scored = 0;
  std::vector<float> token_nll;
  token_nll.reserve(static_cast<std::size_t>(windows) * (options.ctx - 1));
  for (int w = 0; w < windows; ++w) {
    const std::int64_t begin = static_cast<std::int64_t>(w) * options.ctx;
    const auto window = tokens.subspan(begin, options.ctx);
    const auto score = [&](std::span<const float> logits, int target) {
      const double nll = negative_log_likelihood(logits, target);
      sum += nll;
      sum_squares += nll * nll;
      token_nll.push_back(static_cast<float>(nll));
      ++scored;
    };
    const std::size_t vocab = model.config.vocab_size;
    session.reset();
    if (options.decode) {
      for (int t = 0; t + 1 < options.ctx; ++t) score(session.forward(window.subspan(t, 1), t, false), window[t + 1]);
    } else {
      const auto logits = session.forward(window, 0, /*all_logits=*/true);
      for (int t = 0; t + 1 < options.ctx; ++t) score(logits.subspan(t * vocab, vocab), window[t + 1]);
    }
    progress.update(w + 1, fmt::format("ppl {:.3f}", std::exp(sum / scored)));
  }
  PerplexityResult result;
  result.mean_nll = sum / scored;
  result.ppl = std::exp(result.mean_nll);
  const double variance = std::max(0.0, sum_squares / scored - result.mean_nll * result.mean_nll);
  result.ppl_stderr = scored > 1 ? result.ppl * std::sqrt(variance / static_cast<double>(scored - 1)) : 0.0;
  result.tokens = scored;
  result.windows = windows;
  result.seconds = seconds_since(start);
  result.token_nll = std::move(token_nll);
  progress.finish(fmt::format("ppl {:.3f}", result.ppl));
  return result;
}

PerplexityComparison compare_perplexity(const Model& baseline, const Model& candidate, const std::string& text,
                                        const std::string& text_name, const PerplexityOptions& options) {
  const auto tokens = baseline.tokenizer->encode(text, /*add_bos=*/true);
  if (candidate.tokenizer->encode(text, /*add_bos=*/true) != tokens)
    fail("the two models' tokenizers cut {} into different tokens: a paired comparison needs the same ones", text_name);
  PerplexityComparison out;
  out.baseline = evaluate_perplexity(baseline, tokens, options);
  out.candidate = evaluate_perplexity(candidate, tokens, options);
  out.difference = paired_difference(out.baseline, out.candidate);
  return out;
}

PairedDifference paired_difference(const PerplexityResult& baseline, const PerplexityResult& candidate) {
  const auto& a = baseline.token_nll;
  const auto& b = candidate.token_nll;
  if (a.empty() || a.size() != b.size() || baseline.windows != candidate.windows || a.size() % baseline.windows != 0)
    fail("paired comparison needs the same tokens: {} tokens in {} windows against {} in {}", a.size(), baseline.windows,
         b.size(), candidate.windows);
  const std::size_t per_window = a.size() / baseline.windows;
  double sum = 0.0, sum_squares = 0.0;
  for (int w = 0; w < baseline.windows; ++w) {
    double window = 0.0;
    for (std::size_t i = w * per_window; i < (w + 1) * per_window; ++i) window += static_cast<double>(b[i]) - a[i];
    window /= static_cast<double>(per_window);
    sum += window;
    sum_squares += window * window;
  }
  PairedDifference d;
  d.windows = baseline.windows;
  d.nll_difference = sum / d.windows;
  const double variance = std::max(0.0, (sum_squares - sum * d.nll_difference) / std::max(1, d.windows - 1));
  d.nll_difference_stderr = std::sqrt(variance / d.windows);
  d.ppl_difference = candidate.ppl - baseline.ppl;
  d.ppl_difference_stderr = candidate.ppl * d.nll_difference_stderr;
  return d;
}

void write_token_nll(const std::filesystem::path& path, const std::vector<float>& token_nll) {
  static_assert(std::endian::native == std::endian::little, "--nll-out writes little-endian float32");
  write_file_atomically(path, [&](std::ostream& out) {
    out.write(reinterpret_cast<const char*>(token_nll.data()),
              static_cast<std::streamsize>(token_nll.size() * sizeof(float)));
  });
}

}  // namespace fbq
