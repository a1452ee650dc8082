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

// How a linear layer's input drifts from the float model's as earlier layers are quantized. For the same
// tokens, X is the input the quantized model feeds the layer and X̄ the float model's, D = X − X̄. Aiming the
// layer at the float model's output W·X̄ instead of W·X (asymmetric calibration, as in GPTAQ) needs these two
// moments: ‖W_F·X − W·X̄‖²/N = tr(E·H·Eᵀ) + 2·⟨E, W·Kᵀ⟩ + tr(W·M·Wᵀ) with E = W_F − W.
struct InputDrift {
  int n = 0;
  std::vector<double> cross;   // K = X·Dᵀ/N (n × n, not symmetric)
  std::vector<double> energy;  // M = D·Dᵀ/N (n × n, symmetric)
};

class DriftAccumulator {
 public:
  explicit DriftAccumulator(int n);
  // x (quantized model) and x_float (float model): n_tokens × n row-major, the same tokens in the same order.
  void add(const float* x, const float* x_float, int n_tokens);
  InputDrift finish() const;

 private:
  int n_;
  std::int64_t tokens_ = 0;
  std::vector<double> sum_cross_, sum_energy_;  // Σ x·dᵀ (full), upper triangle of Σ d·dᵀ
  std::vector<double> x_chunk_, d_chunk_;
};

}  // namespace fbq
