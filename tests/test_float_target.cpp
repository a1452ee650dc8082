// Asymmetric calibration (--float-target, quant/float_target.h): the drift moments against a direct
// computation, and the identity that lets any method aim at the float model by quantizing W̃.
#include <gtest/gtest.h>

#include "calib/calibration.h"
#include "quant/float_target.h"
#include "quant/method.h"
#include "test_layers.h"
#include "util/error.h"

namespace fbq {
namespace {

// Token-major activations: the quantized model's input X and the float model's X̄ = X − D, with a drift D
// that is partly a linear function of X (what a fitted correction can remove) and partly independent of it.
struct DriftingInputs {
  int n, tokens;
  std::vector<float> x, x_float;
};

DriftingInputs drifting_inputs(int n, int tokens, std::uint64_t seed) {
  DriftingInputs in{n, tokens, test::gaussian(static_cast<std::size_t>(tokens) * n, seed), {}};
  const auto mixing = test::gaussian(static_cast<std::size_t>(n) * n, seed + 1, 0.3f / std::sqrt(static_cast<float>(n)));
  const auto noise = test::gaussian(in.x.size(), seed + 2, 0.05f);
  in.x_float.resize(in.x.size());
  for (int t = 0; t < tokens; ++t)
    for (int j = 0; j < n; ++j) {
      double drift = noise[static_cast<std::size_t>(t) * n + j];
      for (int k = 0; k < n; ++k) drift += mixing[static_cast<std::size_t>(j) * n + k] * in.x[static_cast<std::size_t>(t) * n + k];
      in.x_float[static_cast<std::size_t>(t) * n + j] = in.x[static_cast<std::size_t>(t) * n + j] - static_cast<float>(drift);
    }
  return in;
}

// ‖A·X − W·X̄‖² / N computed from the activations themselves (m × n weights, token-major inputs).
double output_error(const std::vector<float>& a, const std::vector<float>& w, int m, const DriftingInputs& in) {
  double total = 0.0;
  for (int t = 0; t < in.tokens; ++t)
    for (int i = 0; i < m; ++i) {
      double y = 0.0;
      for (int j = 0; j < in.n; ++j)
        y += static_cast<double>(a[static_cast<std::size_t>(i) * in.n + j]) * in.x[static_cast<std::size_t>(t) * in.n + j] -
             static_cast<double>(w[static_cast<std::size_t>(i) * in.n + j]) * in.x_float[static_cast<std::size_t>(t) * in.n + j];
      total += y * y;
    }
  return total / in.tokens;
}

struct Moments {
  LayerStats stats;
  InputDrift drift;
};

Moments moments(const DriftingInputs& in) {
  HessianAccumulator h(in.n);
  DriftAccumulator d(in.n);
  const int half = in.tokens / 2;  // two chunks, as the pipeline adds one window at a time
  for (const auto& [first, count] : {std::pair{0, half}, std::pair{half, in.tokens - half}}) {
    h.add(&in.x[static_cast<std::size_t>(first) * in.n], count);
    d.add(&in.x[static_cast<std::size_t>(first) * in.n], &in.x_float[static_cast<std::size_t>(first) * in.n], count);
  }
  return {h.finish(), d.finish()};
}

TEST(FloatTarget, DriftMomentsMatchTheActivations) {
  const auto in = drifting_inputs(9, 40, 1);
  const auto [stats, drift] = moments(in);
  for (int i = 0; i < in.n; ++i)
    for (int j = 0; j < in.n; ++j) {
      double cross = 0.0, energy = 0.0;
      for (int t = 0; t < in.tokens; ++t) {
        const std::size_t ti = static_cast<std::size_t>(t) * in.n + i, tj = static_cast<std::size_t>(t) * in.n + j;
        const double di = in.x[ti] - static_cast<double>(in.x_float[ti]), dj = in.x[tj] - static_cast<double>(in.x_float[tj]);
        cross += in.x[ti] * dj;
        energy += di * dj;
      }
      const std::size_t ij = static_cast<std::size_t>(i) * in.n + j;
      ASSERT_NEAR(drift.cross[ij], cross / in.tokens, 1e-9) << i << "," << j;
      ASSERT_NEAR(drift.energy[ij], energy / in.tokens, 1e-9) << i << "," << j;
    }
}

TEST(FloatTarget, ShiftedWeightsCarryTheFloatModelsObjective) {
  const int m = 6, n = 16;
  const auto in = drifting_inputs(n, 400, 2);
  const auto [stats, drift] = moments(in);
  const auto w = test::gaussian(static_cast<std::size_t>(m) * n, 3);
  const auto shifted = float_target_weights(w, m, n, stats.hessian, drift, 1e-12);
  // Up to a constant, the float model's objective is the plain H-weighted distance to W̃, for any W_F.
  const auto& hessian = stats.hessian;  // clang 14 cannot capture a structured binding
  const auto h_distance = [&](const std::vector<float>& a) {
    std::vector<float> e(a.size());
    for (std::size_t i = 0; i < e.size(); ++i) e[i] = a[i] - shifted[i];
    return h_weighted_norm(e.data(), m, n, hessian);
  };
  std::vector<float> candidates[3] = {w, shifted, w};
  const auto noise = test::gaussian(w.size(), 4, 0.1f);
  for (std::size_t i = 0; i < w.size(); ++i) candidates[2][i] += noise[i];
  const double offset = output_error(candidates[0], w, m, in) - h_distance(candidates[0]);
  for (const auto& a : candidates)  // W̃ is held in float32: agreement to its precision
    EXPECT_NEAR(output_error(a, w, m, in) - h_distance(a), offset, 1e-4 * offset);
  // W̃ is the minimiser: it beats the float weights on the float model's objective, and by a margin here.
  EXPECT_LT(output_error(shifted, w, m, in), 0.5 * output_error(w, w, m, in));
  // The moment formula of the reported error is the direct ratio ‖W_F·X − W·X̄‖² / ‖W·X̄‖².
  const std::vector<float> zero(w.size(), 0.0f);
  for (const auto& a : candidates)
    EXPECT_NEAR(float_output_error(w, a, m, n, stats.hessian, drift), output_error(a, w, m, in) / output_error(zero, w, m, in),
                1e-6);
}

TEST(FloatTarget, RejectsMismatchedStatistics) {
  const auto in = drifting_inputs(8, 20, 5);
  const auto [stats, drift] = moments(in);
  const std::vector<float> w(4 * 16, 1.0f);
  EXPECT_THROW(float_target_weights(w, 4, 16, std::vector<double>(256, 0.0), drift, 0.01), Error);
  EXPECT_THROW(float_target_weights(std::vector<float>(32, 1.0f), 4, 8, stats.hessian, drift, 0.0), Error);
}

}  // namespace
}  // namespace fbq
