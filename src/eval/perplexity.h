#pragma once
// Perplexity by the protocol of DESIGN §5: paragraphs joined with "\n\n", tokenized once with one BOS,
// non-overlapping windows of `ctx` tokens, every token but each window's first is scored.
#include <cstdint>
#include <filesystem>
#include <functional>
#include <span>
#include <string>
#include <vector>

#include "io/text_files.h"  // read_paragraph_text
#include "model/model.h"

namespace fbq {

struct PerplexityResult {
  double ppl = 0;
  double ppl_stderr = 0;   // delta method: ppl · sd(nll) / sqrt(n)
  double mean_nll = 0;
  std::int64_t tokens = 0;  // tokens scored
  int windows = 0;
  double seconds = 0;
  std::vector<float> token_nll;  // per scored token, in scoring order (windows × (ctx − 1))
};

struct PerplexityOptions {
  int ctx = 256;
  int max_windows = 0;  // 0 = the whole text
  bool progress = true;
  bool decode = false;  // score each window one token at a time through the KV cache (the decode kernels)
};

// Only whole windows are scored (a partial tail window is dropped, as in the reference PyTorch figures).
PerplexityResult evaluate_perplexity(const Model& model, std::span<const int> tokens, const PerplexityOptions& options);

// Candidate against baseline on the same tokens (same text, ctx and windows): the difference of mean NLLs
// and of PPLs, with standard errors that treat windows, not tokens, as the independent units (tokens of one
// window share their context, so the token-level spread would understate the error). Pairing removes the
// spread of the text itself, which dominates each PPL's own standard error.
struct PairedDifference {
  double nll_difference = 0;         // mean NLL(candidate) − mean NLL(baseline)
  double nll_difference_stderr = 0;  // over per-window mean differences
  double ppl_difference = 0;         // PPL(candidate) − PPL(baseline)
  double ppl_difference_stderr = 0;  // delta method: PPL(candidate) · nll_difference_stderr
  int windows = 0;
};
// Throws unless both results scored the same number of tokens in the same windows.
PairedDifference paired_difference(const PerplexityResult& baseline, const PerplexityResult& candidate);

struct PerplexityComparison {
  PerplexityResult baseline, candidate;
  PairedDifference difference;
};
// Both models on the same tokens of `text` (one BOS, DESIGN §5 windows); an error when their tokenizers cut
// the text differently (`text_name` names it in the message).
PerplexityComparison compare_perplexity(const Model& baseline, const Model& candidate, const std::string& text,
                                        const std::string& text_name, const PerplexityOptions& options);

// Writes per-token NLLs as raw little-endian float32 (`fbq perplexity --nll-out`), atomically (temp + rename),
// so that two models scored on the same text can be compared token by token (a paired difference).
void write_token_nll(const std::filesystem::path& path, const std::vector<float>& token_nll);

}  // namespace fbq
