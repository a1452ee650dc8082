#pragma once
// Next-token choice: greedy (temperature 0) or temperature + nucleus (top-p) sampling with a seeded,
// platform-independent RNG so a seed reproduces the same text everywhere.
#include <cstdint>
#include <span>
#include <vector>

namespace fbq {

class Sampler {
 public:
  Sampler(float temperature, float top_p, std::uint64_t seed);
  int sample(std::span<const float> logits);

 private:
  float next_uniform();  // [0, 1)

  float temperature_, top_p_;
  std::uint64_t state_;
  std::vector<std::pair<float, int>> candidates_;
};

int argmax(std::span<const float> values);

}  // namespace fbq
