#include "util/python_random.h"

#include <omp.h>

#include <algorithm>
#include <cmath>
#include <vector>

namespace fbq {

// MT19937 reference code (Matsumoto & Nishimura), as CPython's _randommodule.c carries it.
PythonRandom::PythonRandom(std::uint32_t seed) {
  state_[0] = 19650218u;
  for (int i = 1; i < 624; ++i) state_[i] = 1812433253u * (state_[i - 1] ^ (state_[i - 1] >> 30)) + i;
  // init_by_array with the one-word key [seed] (CPython splits an int seed into 32-bit words; 0 gives [0]).
  const std::uint32_t key[1] = {seed};
  int i = 1, j = 0;
  for (int k = 624; k > 0; --k) {
    state_[i] = (state_[i] ^ ((state_[i - 1] ^ (state_[i - 1] >> 30)) * 1664525u)) + key[j] + j;
    ++i;
    j = 0;
    if (i >= 624) {
      state_[0] = state_[623];
      i = 1;
    }
  }
  for (int k = 623; k > 0; --k) {
    state_[i] = (state_[i] ^ ((state_[i - 1] ^ (state_[i - 1] >> 30)) * 1566083941u)) - i;
    if (++i >= 624) {
      state_[0] = state_[623];
      i = 1;
    }
  }
  state_[0] = 0x80000000u;
  index_ = 624;
}

std::uint32_t PythonRandom::next_u32() {
  constexpr std::uint32_t kUpper = 0x80000000u, kLower = 0x7fffffffu, kMatrix = 0x9908b0dfu;
  if (index_ >= 624) {
    for (int k = 0; k < 624; ++k) {
      const std::uint32_t y = (state_[k] & kUpper) | (state_[(k + 1) % 624] & kLower);
      state_[k] = state_[(k + 397) % 624] ^ (y >> 1) ^ ((y & 1u) ? kMatrix : 0u);
    }
    index_ = 0;
  }
  std::uint32_t y = state_[index_++];
  y ^= y >> 11;
  y ^= (y << 7) & 0x9d2c5680u;
  y ^= (y << 15) & 0xefc60000u;
  y ^= y >> 18;
  return y;
}

double PythonRandom::random() {
  const std::uint32_t a = next_u32() >> 5, b = next_u32() >> 6;
  return (a * 67108864.0 + b) * (1.0 / 9007199254740992.0);
}

double bootstrap_perplexity_stderr(std::span<const double> loglikelihoods, int iterations) {
  const std::size_t n = loglikelihoods.size();
  if (n == 0 || iterations < 2) return 0.0;
  const int chunk = std::min(1000, iterations);
  const int chunks = iterations / chunk;
  std::vector<double> perplexities(static_cast<std::size_t>(chunks) * chunk);
#pragma omp parallel for schedule(dynamic)
  for (int c = 0; c < chunks; ++c) {
    PythonRandom rng(static_cast<std::uint32_t>(c));
    for (int r = 0; r < chunk; ++r) {
      double sum = 0.0;  // lm-eval's mean() is sum(arr) / len(arr): the same double sum, in the same order
      for (std::size_t k = 0; k < n; ++k) sum += loglikelihoods[rng.choice_index(n)];
      perplexities[static_cast<std::size_t>(c) * chunk + r] = std::exp(-sum / static_cast<double>(n));
    }
  }
  double mean = 0.0;
  for (const double p : perplexities) mean += p;
  mean /= static_cast<double>(perplexities.size());
  double squares = 0.0;
  for (const double p : perplexities) squares += (p - mean) * (p - mean);
  return std::sqrt(squares / static_cast<double>(perplexities.size() - 1));
}

}  // namespace fbq
