#pragma once
// Calibration data: token windows sampled from a text file, and the per-input statistics (H = X·Xᵀ/N,
// mean |x|) accumulated from the activations a linear layer sees.
#include <cstdint>
#include <filesystem>
#include <vector>

#include "quant/method.h"
#include "tokenizer/tokenizer.h"

namespace fbq {

// `count` windows of `length` tokens from non-overlapping, paragraph-aligned pieces of the text, drawn with
// a seeded shuffle. Each window starts with BOS, as the model sees text at position 0. Throws when the text
// is too short for `count` windows.
std::vector<std::vector<int>> sample_calibration_windows(const Tokenizer& tokenizer, const std::filesystem::path& text,
                                                         int count, int length, std::uint64_t seed);

class HessianAccumulator {
 public:
  explicit HessianAccumulator(int n);
  void add(const float* x, int n_tokens);  // x: n_tokens × n row-major
  LayerStats finish() const;               // H symmetrised and divided by the token count
  int dim() const { return n_; }

 private:
  int n_;
  std::int64_t tokens_ = 0;
  std::vector<double> sum_outer_;  // upper triangle of Σ x·xᵀ
  std::vector<double> sum_abs_;
  std::vector<double> chunk_;
};

}  // namespace fbq
