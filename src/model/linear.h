#pragma once
// A linear layer y = W·x (W is out×in, PyTorch layout). The runtime only sees this interface, so dense
// float weights and packed quantized weights (with an optional low-rank branch) are interchangeable.
#include <cstddef>
#include <memory>
#include <string>
#include <vector>

namespace fbq {

class Linear {
 public:
  Linear(int out_features, int in_features) : out_(out_features), in_(in_features) {}
  virtual ~Linear() = default;

  int out_features() const { return out_; }
  int in_features() const { return in_; }

  // y[t·out + i] = Σ_j W[i, j]·x[t·in + j] for t < n_tokens (row-major token batches).
  virtual void forward(const float* x, int n_tokens, float* y) const = 0;
  // Bytes of weight storage this layer reads per forward pass.
  virtual std::size_t weight_bytes() const = 0;
  virtual std::string describe() const = 0;

 private:
  int out_, in_;
};

// Float32 weights multiplied with BLAS (GEMV for one token, GEMM for a batch). The storage is shared so a
// tied lm_head can reuse the embedding table without a copy.
class DenseLinear final : public Linear {
 public:
  DenseLinear(int out_features, int in_features, std::shared_ptr<const std::vector<float>> weights);
  void forward(const float* x, int n_tokens, float* y) const override;
  std::size_t weight_bytes() const override { return weights_->size() * sizeof(float); }
  std::string describe() const override { return "f32 dense"; }
  const std::vector<float>& weights() const { return *weights_; }

 private:
  std::shared_ptr<const std::vector<float>> weights_;
};

}  // namespace fbq
