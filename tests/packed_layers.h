#pragma once
// Random packed linears and inputs shared by the kernel tests (test_kernels.cpp, test_int8_kernels.cpp).
#include <fmt/core.h>
#include <gtest/gtest.h>

#include <cmath>
#include <functional>
#include <random>

#include "io/dtype.h"
#include "pack/packed_linear.h"
#include "quant/group_quant.h"
#include "quant/method.h"

namespace fbq {

constexpr int kCols = 256;

inline std::vector<float> random_values(std::size_t count, std::uint64_t seed, float spread = 1.0f) {
  std::mt19937 rng(static_cast<unsigned>(seed));
  std::normal_distribution<float> normal(0.0f, spread);
  std::vector<float> values(count);
  for (auto& v : values) v = normal(rng);
  return values;
}

inline PackedLinear make_linear(int rows, int cols, int bits, int group, int rank, bool input_scale, std::uint64_t seed) {
  const auto weights = random_values(static_cast<std::size_t>(rows) * cols, seed);
  QuantizedLayer layer;
  layer.weights = quantize_rtn(weights.data(), rows, cols, {bits, group});
  layer.rank = rank;
  layer.lora_a = random_values(static_cast<std::size_t>(rank) * cols, seed + 1, 0.1f);
  layer.lora_b = random_values(static_cast<std::size_t>(rows) * rank, seed + 2, 0.1f);
  round_to_f16(layer.lora_a);
  round_to_f16(layer.lora_b);
  if (input_scale) {
    layer.input_scale = random_values(cols, seed + 3, 0.5f);
    for (auto& s : layer.input_scale) s = 0.5f + std::fabs(s);
    round_to_f16(layer.input_scale);
  }
  return PackedLinear::from_layer(layer);
}

// Every layer shape of the matrix: bits × group × rank × rows (odd and 1) × with/without input scale.
inline void for_each_layer(const std::function<void(const PackedLinear&)>& check) {
  std::uint64_t seed = 1;
  for (const int bits : {2, 3, 4, 8})
    for (const int group : {32, 64, 128})
      for (const int rank : {0, 7, 32})
        for (const int rows : {37, 1})
          for (const bool scaled : {false, true}) {
            SCOPED_TRACE(fmt::format("int{} g{} rank {} rows {} input scale {}", bits, group, rank, rows, scaled));
            check(make_linear(rows, kCols, bits, group, rank, scaled, seed += 10));
          }
}

// x for `batch` tokens deliberately one float past a 64-byte boundary.
struct Input {
  std::vector<float> storage;
  const float* data() const { return storage.data() + 1; }
};
inline Input unaligned_input(int batch, int cols, std::uint64_t seed) {
  return {random_values(static_cast<std::size_t>(batch) * cols + 1, seed)};
}

}  // namespace fbq
