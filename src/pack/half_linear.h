#pragma once
// A float linear kept as stored, in bf16 or f16: half the bytes of an f32 copy and exactly the same weights
// (the widening is exact), multiplied straight from the memory-mapped checkpoint. Decode multiplies the 16-bit
// rows directly (gemv_half, widened in registers); prefill widens tiles of rows to f32 for one GEMM each, never
// the whole matrix at once.
#include <string>

#include "model/linear.h"
#include "model/stored_matrix.h"

namespace fbq {

class HalfLinear final : public Linear {
 public:
  explicit HalfLinear(StoredMatrix weights);  // BF16 or F16, out × in
  void forward(const float* x, int n_tokens, float* y) const override;
  std::size_t weight_bytes() const override { return weights_.bytes(); }
  std::string describe() const override;

 private:
  StoredMatrix weights_;
};

}  // namespace fbq
