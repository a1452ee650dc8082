#include "eval/sampler.h"

#include <algorithm>
#include <cmath>

#include "util/error.h"

namespace fbq {

int argmax(std::span<const float> values) {
  return static_cast<int>(std::max_element(values.begin(), values.end()) - values.begin());
}

Sampler::Sampler(float temperature, float top_p, std::uint64_t seed)
    : temperature_(temperature), top_p_(top_p), state_(seed ? seed : 0x9e3779b97f4a7c15ull) {
  if (!(temperature >= 0.0f)) fail("--temp must be >= 0 (got {})", temperature);
  if (!(top_p > 0.0f && top_p <= 1.0f)) fail("--top-p must be in (0, 1] (got {})", top_p);
}

float Sampler::next_uniform() {
  // xorshift64*: small, fast, identical on every platform (std distributions are not).
  state_ ^= state_ >> 12;
  state_ ^= state_ << 25;
  state_ ^= state_ >> 27;
  return static_cast<float>((state_ * 0x2545f4914f6cdd1dull) >> 40) / 16777216.0f;
}

int Sampler::sample(std::span<const float> logits) {
  if (temperature_ == 0.0f) return argmax(logits);
  const float max_logit = *std::max_element(logits.begin(), logits.end());
  candidates_.clear();
  double total = 0.0;
  for (std::size_t i = 0; i < logits.size(); ++i) {
    const float p = std::exp((logits[i] - max_logit) / temperature_);
    candidates_.emplace_back(p, static_cast<int>(i));
    total += p;
  }
  std::sort(candidates_.begin(), candidates_.end(), std::greater<>());
  // Keep the smallest prefix whose mass reaches top_p, then draw from it.
  double kept = 0.0;
  std::size_t count = 0;
  while (count < candidates_.size() && kept < top_p_ * total) kept += candidates_[count++].first;
  const double target = next_uniform() * kept;
  double cumulative = 0.0;
  for (std::size_t i = 0; i < count; ++i) {
    cumulative += candidates_[i].first;
    if (target < cumulative) return candidates_[i].second;
  }
  return candidates_[count - 1].second;
}

}  // namespace fbq
