#pragma once
// A float linear kept as stored, in bf16: half the bytes of an f32 copy, and exactly the same weights (bf16 → f32
// is exact). Packed models hold their lm_head so, since one decode step reads all of it (on a 1.1B model a third
// of the step's bytes as f32). Decode multiplies the bf16 rows directly (gemv_bf16, widened in registers);
// prefill widens tiles of rows to f32 for one GEMM each, never the whole matrix at once.
#include <cstdint>
#include <string>
#include <vector>

#include "model/linear.h"

namespace fbq {

class Bf16Linear final : public Linear {
 public:
  Bf16Linear(int out_features, int in_features, std::vector<std::uint16_t> weights);
  void forward(const float* x, int n_tokens, float* y) const override;
  std::size_t weight_bytes() const override { return weights_.size() * sizeof(std::uint16_t); }
  std::string describe() const override { return "bf16 dense"; }

 private:
  std::vector<std::uint16_t> weights_;  // out × in, bf16 bits
};

}  // namespace fbq
