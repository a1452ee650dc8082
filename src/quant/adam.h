#pragma once
// Adam (Kingma & Ba) on a flat parameter vector: what FBQuant's layer-wise and block-wise training share.
#include <cmath>
#include <cstddef>
#include <vector>

namespace fbq {

class Adam {
 public:
  explicit Adam(std::size_t size) : first_(size, 0.0f), second_(size, 0.0f) {}
  // One update with the gradient `grads` at step t (1-based, for the bias corrections).
  void step(std::vector<float>& params, const std::vector<float>& grads, double lr, int t) {
    constexpr double kBeta1 = 0.9, kBeta2 = 0.999, kEps = 1e-8;
    const double correction1 = 1.0 - std::pow(kBeta1, t), correction2 = 1.0 - std::pow(kBeta2, t);
    for (std::size_t i = 0; i < params.size(); ++i) {
      first_[i] = static_cast<float>(kBeta1 * first_[i] + (1 - kBeta1) * grads[i]);
      second_[i] = static_cast<float>(kBeta2 * second_[i] + (1 - kBeta2) * grads[i] * grads[i]);
      const double update = (first_[i] / correction1) / (std::sqrt(second_[i] / correction2) + kEps);
      params[i] -= static_cast<float>(lr * update);
    }
  }

 private:
  std::vector<float> first_, second_;
};

// The cosine schedule both trainings use: lr at step t of `steps`, from `lr` down to 0.
inline double cosine_lr(double lr, int t, int steps) { return lr * 0.5 * (1.0 + std::cos(M_PI * t / steps)); }

}  // namespace fbq
