#pragma once
// Layers for the quantization-method tests: seeded Gaussian values, the statistics (H, mean |x|) of random
// correlated activations, and a real layer — layer 0's q_proj of the bundled model with H of its real input.
// Statistics always go through the library's HessianAccumulator, so the tests exercise it too.
#include <algorithm>
#include <cstdint>
#include <filesystem>
#include <functional>
#include <random>
#include <string>
#include <vector>

#include "calib/calibration.h"
#include "model/linear.h"
#include "model/model.h"
#include "model/transformer.h"
#include "quant/method.h"
#include "test_support.h"

namespace fbq::test {

// `count` independent N(0, stddev²) values, the same for the same seed.
inline std::vector<float> gaussian(std::size_t count, std::uint64_t seed, float stddev = 1.0f) {
  std::mt19937_64 rng(seed);
  std::normal_distribution<float> normal(0.0f, stddev);
  std::vector<float> values(count);
  for (auto& value : values) value = normal(rng);
  return values;
}

// H = Xᵀ·X / N and mean |x_j| of the N row-major activation rows of width n in x.
inline LayerStats stats_from_activations(const std::vector<float>& x, int n) {
  HessianAccumulator accumulator(n);
  accumulator.add(x.data(), static_cast<int>(x.size() / n));
  return accumulator.finish();
}

// How random_activation_stats shapes its activations.
struct ActivationShape {
  float coupling = 0.6f;  // each channel adds this much of its (already scaled) left neighbour
  // Channel j is multiplied by channel_scale(j): by default every 17th channel is a 4× outlier.
  std::function<float(int)> channel_scale = [](int j) { return j % 17 == 0 ? 4.0f : 1.0f; };
};

// The statistics of random activations with what real layer inputs have and i.i.d. noise lacks: correlated
// channels (by default a chain through neighbours, so H is dense) and uneven channel magnitudes (by default a
// few outlier channels). N = 4n activation rows.
inline LayerStats random_activation_stats(int n, std::uint64_t seed, const ActivationShape& shape = {}) {
  const int tokens = 4 * n;
  std::vector<float> scale(n);
  for (int j = 0; j < n; ++j) scale[j] = shape.channel_scale(j);
  auto x = gaussian(static_cast<std::size_t>(tokens) * n, seed);
  for (int t = 0; t < tokens; ++t) {
    float* row = &x[static_cast<std::size_t>(t) * n];
    for (int j = 0; j < n; ++j) {
      if (j > 0) row[j] += shape.coupling * row[j - 1];
      row[j] *= scale[j];
    }
  }
  return stats_from_activations(x, n);
}

struct RealLayer {
  std::string missing;         // the reference file that was not found; empty when the layer is loaded
  int m = 0, n = 0;            // out × in features
  std::vector<float> weights;  // m × n row-major
  LayerStats stats;            // of the layer's input on real text
};

// Layer 0's q_proj of the bundled model, with the statistics of its real input: RMSNorm(embedding) of the
// first 4096 tokens of the training text. Computed once per process.
inline const RealLayer& real_q_proj_layer() {
  static const RealLayer layer = [] {
    RealLayer out;
    const auto model_dir = bundled_model();
    const auto text_path = shared_dir() / "data" / "train.txt";
    for (const auto& path : {model_dir / "model.safetensors", text_path})
      if (!std::filesystem::exists(path)) {
        out.missing = path.string();
        return out;
      }
    const auto model = load_model(model_dir);
    auto text = read_file(text_path);
    // 20 KB of this text is > 4096 tokens; tokenizing more only costs test time.
    text.resize(std::min<std::size_t>(text.size(), 20 * 1024));
    auto ids = model.tokenizer->encode(text, true);
    ids.resize(std::min<std::size_t>(ids.size(), 4096));

    const int dim = model.config.dim;
    const auto& decoder = model.layers[0];
    std::vector<float> x(ids.size() * dim);
    std::vector<float> row(dim);
    for (std::size_t t = 0; t < ids.size(); ++t) {
      model.embedding.widen_rows(ids[t], 1, row.data());
      rms_norm(row.data(), decoder.attn_norm.data(), dim, model.config.rms_eps, &x[t * dim]);
    }
    out.m = decoder.q_proj->out_features();
    out.n = decoder.q_proj->in_features();
    out.weights = dynamic_cast<const DenseLinear&>(*CheckpointReader(model_dir).layer(0).q_proj).weights();
    out.stats = stats_from_activations(x, dim);
    return out;
  }();
  return layer;
}

// Skips the current test, visibly, when real_q_proj_layer() could not be loaded.
#define FBQ_REQUIRE_REAL_LAYER(layer)                                                               \
  do {                                                                                              \
    if (!(layer).missing.empty()) GTEST_SKIP() << "reference data not found: " << (layer).missing; \
  } while (0)

}  // namespace fbq::test
