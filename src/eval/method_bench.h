#pragma once
// Cost of one quantization method on one big layer (`fbq bench method`): a synthetic m × n layer with a
// realistic input covariance, so per-layer time can be measured at LLaMA-7B sizes on any machine.
#include <cstdint>
#include <string>

#include "quant/method.h"

namespace fbq {

struct SyntheticLayer {
  int rows = 0, cols = 0;
  std::vector<float> weights;  // rows × cols
  LayerStats stats;            // H only (no held-out H)
};

// W: Gaussian (σ = 0.02) with lognormal row scales. H = D·(U·Uᵀ/k + 0.1·I)·D with U an n × 64 Gaussian
// factor (a few dominant directions over a floor, as in real activations) and D lognormal channel scales
// with a handful of 20× outlier channels. Deterministic in `seed`.
SyntheticLayer synthetic_layer(int rows, int cols, std::uint64_t seed);

struct MethodBenchResult {
  double seconds = 0;
  double h_error = 0;  // tr(E·H·Eᵀ)/tr(W·H·Wᵀ) of the result
  QuantizedLayer layer;
};

MethodBenchResult bench_method(const std::string& method, const SyntheticLayer& layer, const MethodOptions& options);

}  // namespace fbq
