#include "model/linear.h"

#include <cblas.h>

#include "util/error.h"

namespace fbq {

DenseLinear::DenseLinear(int out_features, int in_features, std::shared_ptr<const std::vector<float>> weights)
    : Linear(out_features, in_features), weights_(std::move(weights)) {
  if (weights_->size() != static_cast<std::size_t>(out_features) * in_features)
    fail("dense linear {}x{} given {} weights", out_features, in_features, weights_->size());
}

void DenseLinear::forward(const float* x, int n_tokens, float* y) const {
  const int m = out_features(), n = in_features();
  if (n_tokens == 1) {
    cblas_sgemv(CblasRowMajor, CblasNoTrans, m, n, 1.0f, weights_->data(), n, x, 1, 0.0f, y, 1);
  } else {
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, n_tokens, m, n, 1.0f, x, n, weights_->data(), n, 0.0f, y,
                m);
  }
}

}  // namespace fbq
