#pragma once
// CPython's `random.Random` (MT19937, init_by_array seeding, 53-bit random(), choices() without weights),
// bit for bit, so that statistics lm-evaluation-harness draws with it (its bootstrap standard errors)
// come out the same here.
#include <array>
#include <cstdint>
#include <span>

namespace fbq {

class PythonRandom {
 public:
  explicit PythonRandom(std::uint32_t seed);  // random.Random(seed) for 0 <= seed < 2**32
  std::uint32_t next_u32();                   // genrand_uint32
  double random();                            // random.random()
  std::size_t choice_index(std::size_t n) { return static_cast<std::size_t>(random() * static_cast<double>(n)); }

 private:
  std::array<std::uint32_t, 624> state_{};
  int index_ = 624;
};

// lm-eval's bootstrap_stderr(perplexity, items, iters): chunks of min(1000, iters) resamples, chunk i drawn
// with random.Random(i).choices(items, k=len(items)); the sample standard deviation of exp(-mean(resample)).
double bootstrap_perplexity_stderr(std::span<const double> loglikelihoods, int iterations);

}  // namespace fbq
