// GPTQ: beats RTN on a real layer's Hessian, emits legitimate codes, reduces to RTN when H is diagonal,
// is deterministic, and rejects what it cannot honour.
#include <fmt/format.h>

#include <algorithm>
#include <chrono>
#include <functional>
#include <iostream>
#include <numeric>
#include <random>

#include "io/dtype.h"
#include "quant/gptq.h"
#include "quant/method.h"
#include "test_layers.h"
#include "util/error.h"

namespace fbq {
namespace {

// An m × n weight matrix of a layer's typical scale.
std::vector<float> random_weights(int m, int n, std::uint64_t seed) {
  return test::gaussian(static_cast<std::size_t>(m) * n, seed, 0.02f);
}

void expect_legitimate(const QuantizedMatrix& q, int m, int n, const QuantSpec& spec) {
  ASSERT_EQ(q.rows, m);
  ASSERT_EQ(q.cols, n);
  ASSERT_EQ(q.codes.size(), static_cast<std::size_t>(m) * n);
  ASSERT_EQ(q.params.size(), static_cast<std::size_t>(m) * (n / spec.group_size));
  for (auto code : q.codes) ASSERT_LE(code, spec.levels());
  for (const auto& p : q.params) {
    ASSERT_GE(p.zero, 0);
    ASSERT_LE(p.zero, spec.levels());
    ASSERT_TRUE(std::isfinite(p.scale) && p.scale > 0.0f) << p.scale;
    ASSERT_EQ(half_to_float(float_to_half(p.scale)), p.scale) << "scales are stored as float16";
  }
  const auto values = q.dequantize();
  for (int r = 0; r < m; ++r)
    for (int c = 0; c < n; ++c) {
      const std::size_t i = static_cast<std::size_t>(r) * n + c;
      const auto& p = q.group(r, c);
      ASSERT_EQ(values[i], p.scale * static_cast<float>(q.codes[i] - p.zero));
    }
}

TEST(GptqRealLayer, BeatsRtnOnLayer0QProjAtW4W3W2) {
  const auto& layer = test::real_q_proj_layer();
  FBQ_REQUIRE_REAL_LAYER(layer);
  const int m = layer.m, n = layer.n;
  for (int bits : {4, 3, 2}) {
    const QuantSpec spec{bits, 128};
    const auto rtn = quantize_rtn(layer.weights.data(), m, n, spec).dequantize();
    const double rtn_error = relative_h_error(layer.weights, rtn, m, n, layer.stats.hessian);
    double errors[2];
    for (bool act_order : {false, true}) {
      const auto start = std::chrono::steady_clock::now();
      const auto q = gptq_quantize(layer.weights, m, n, layer.stats.hessian, spec, {0.01, 128, act_order});
      const double ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - start).count();
      errors[act_order] = relative_h_error(layer.weights, q.dequantize(), m, n, layer.stats.hessian);
      std::cout << "[ gptq     ] layer0.q_proj " << m << "x" << n << " (" << layer.stats.tokens << " tokens) W" << bits
                << " g128 act_order=" << act_order << ": " << ms << " ms\n";
    }
    std::cout << "[ gptq     ] W" << bits << " g128 relative H-error: rtn " << rtn_error << ", gptq " << errors[0]
              << ", gptq+act_order " << errors[1] << "\n";
    RecordProperty("W" + std::to_string(bits) + "_rtn_gptq_act",
                   fmt::format("{:.5f} {:.5f} {:.5f}", rtn_error, errors[0], errors[1]));
    EXPECT_LT(errors[0], rtn_error) << "W" << bits;
    EXPECT_LT(errors[1], rtn_error) << "W" << bits << " act_order";
  }
}

TEST(GptqRealLayer, CodesAreALegitimateQuantization) {
  const auto& layer = test::real_q_proj_layer();
  FBQ_REQUIRE_REAL_LAYER(layer);
  for (int bits : {2, 3, 4})
    for (bool act_order : {false, true}) {
      SCOPED_TRACE(testing::Message() << "W" << bits << " act_order=" << act_order);
      const QuantSpec spec{bits, 128};
      expect_legitimate(
          gptq_quantize(layer.weights, layer.m, layer.n, layer.stats.hessian, spec, {0.01, 128, act_order}), layer.m,
          layer.n, spec);
    }
}

TEST(GptqDiagonalHessian, ReducesToRtn) {
  const int m = 64, n = 256;
  const QuantSpec spec{3, 64};
  const auto w = random_weights(m, n, 1);
  const auto rtn = quantize_rtn(w.data(), m, n, spec);
  std::vector<double> identity(static_cast<std::size_t>(n) * n, 0.0), diagonal = identity;
  std::mt19937 rng(2);
  std::uniform_real_distribution<double> uniform(0.1, 10.0);
  for (int j = 0; j < n; ++j) {
    identity[static_cast<std::size_t>(j) * n + j] = 1.0;
    diagonal[static_cast<std::size_t>(j) * n + j] = uniform(rng);
  }
  for (const auto* h : {&identity, &diagonal})
    for (bool act_order : {false, true}) {
      SCOPED_TRACE(testing::Message() << (h == &identity ? "identity" : "diagonal") << " act_order=" << act_order);
      // No off-diagonal coupling: a column's error reaches no other column, so every code is RTN's.
      const auto q = gptq_quantize(w, m, n, *h, spec, {0.01, 128, act_order});
      EXPECT_EQ(q.codes, rtn.codes);
      for (std::size_t i = 0; i < q.params.size(); ++i) {
        ASSERT_EQ(q.params[i].scale, rtn.params[i].scale);
        ASSERT_EQ(q.params[i].zero, rtn.params[i].zero);
      }
    }
}

TEST(GptqDeterminism, RepeatedRunsAndReusedFactorGiveIdenticalCodes) {
  const int m = 64, n = 256;
  const QuantSpec spec{3, 64};
  const auto w = random_weights(m, n, 3);
  const auto h = test::random_activation_stats(n, 4).hessian;
  for (bool act_order : {false, true}) {
    const GptqOptions options{0.01, 128, act_order};
    const auto first = gptq_quantize(w, m, n, h, spec, options);
    const auto second = gptq_quantize(w, m, n, h, spec, options);
    EXPECT_EQ(first.codes, second.codes);
    const auto factor = gptq_prepare(h, n, options);
    const auto reused = gptq_quantize(w, m, n, factor, spec);
    EXPECT_EQ(gptq_quantize(w, m, n, factor, spec).codes, reused.codes);
    EXPECT_EQ(reused.codes, first.codes);
    // On a correlated H the error feedback must pay off against RTN.
    const double rtn = relative_h_error(w, quantize_rtn(w.data(), m, n, spec).dequantize(), m, n, h);
    EXPECT_LT(relative_h_error(w, first.dequantize(), m, n, h), rtn) << "act_order=" << act_order;
  }
}

TEST(GptqBlocks, BlockSizeOnlyChangesRoundingOrder) {
  // Lazy batching is exact: every block size gives the same result up to float rounding order, which can
  // tip a few values across a rounding boundary. (Blocks are shrunk to align with group starts.)
  const int m = 32, n = 256;
  const QuantSpec spec{4, 64};
  const auto w = random_weights(m, n, 5);
  const auto h = test::random_activation_stats(n, 6).hessian;
  const auto reference = gptq_quantize(w, m, n, h, spec, {0.01, 128, false});
  const double reference_error = relative_h_error(w, reference.dequantize(), m, n, h);
  for (int block : {1, 48, 100, 256}) {
    const auto q = gptq_quantize(w, m, n, h, spec, {0.01, block, false});
    const auto differing = std::inner_product(q.codes.begin(), q.codes.end(), reference.codes.begin(), 0,
                                              std::plus<>(), std::not_equal_to<>());
    EXPECT_LE(differing, m * n / 100) << "block " << block;
    EXPECT_NEAR(relative_h_error(w, q.dequantize(), m, n, h), reference_error, 0.02 * reference_error);
  }
}

TEST(GptqDeadInputs, AreQuantizedToExactlyZero) {
  const int m = 16, n = 128;
  const QuantSpec spec{4, 32};
  const auto w = random_weights(m, n, 7);
  auto h = test::random_activation_stats(n, 8).hessian;
  for (int dead : {3, 100})
    for (int j = 0; j < n; ++j) h[static_cast<std::size_t>(dead) * n + j] = h[static_cast<std::size_t>(j) * n + dead] = 0.0;
  for (bool act_order : {false, true}) {
    GptqInfo info;
    const auto values = gptq_quantize(w, m, n, h, spec, {0.01, 128, act_order}, &info).dequantize();
    EXPECT_EQ(info.dead_columns, 2);
    for (int r = 0; r < m; ++r) {
      EXPECT_EQ(values[static_cast<std::size_t>(r) * n + 3], 0.0f);
      EXPECT_EQ(values[static_cast<std::size_t>(r) * n + 100], 0.0f);
    }
  }
}

TEST(GptqDamping, RaisedTenfoldUntilTheFactorExists) {
  // Two 2x2 blocks [[1, a], [a, 1]] with eigenvalues 1 ± a (mean diagonal 1).
  const auto blocks = [](double a) {
    std::vector<double> h(16, 0.0);
    for (int b : {0, 2}) {
      h[b * 4 + b] = h[(b + 1) * 4 + b + 1] = 1.0;
      h[b * 4 + b + 1] = h[(b + 1) * 4 + b] = a;
    }
    return h;
  };
  const std::vector<float> w = {0.1f, -0.2f, 0.3f, 0.05f};
  GptqInfo info;
  gptq_quantize(w, 1, 4, blocks(1.5), QuantSpec{4, 4}, {}, &info);  // needs λ > 0.5: damp 0.01 → 1
  EXPECT_NEAR(info.damp, 1.0, 1e-12);
  EXPECT_THROW(gptq_quantize(w, 1, 4, blocks(100.0), QuantSpec{4, 4}, {}), Error);
}

TEST(GptqMethod, MapsOptionsAndRejectsWhatItCannotHonour) {
  const int m = 16, n = 128;
  const auto w = random_weights(m, n, 9);
  auto stats = test::random_activation_stats(n, 10);
  const auto h = stats.hessian;
  const auto method = make_method("gptq");
  MethodOptions options;
  options.spec = {4, 64};
  const auto layer = method->quantize(w, m, n, stats, options);
  EXPECT_EQ(layer.note, "damp=0.01");
  EXPECT_EQ(layer.rank, 0);
  EXPECT_EQ(layer.weights.codes, gptq_quantize(w, m, n, h, options.spec, {}).codes);

  options.rank = 4;
  EXPECT_THROW(method->quantize(w, m, n, stats, options), Error) << "gptq has no branch";
  options.rank = 0;
  options.spec.group_size = 96;  // does not divide 128
  EXPECT_THROW(method->quantize(w, m, n, stats, options), Error);
  options.spec.group_size = 64;
  stats.hessian.resize(static_cast<std::size_t>(n) * (n - 1));
  EXPECT_THROW(method->quantize(w, m, n, stats, options), Error) << "Hessian of the wrong size";
  const auto other_factor = gptq_prepare(test::random_activation_stats(n / 2, 11).hessian, n / 2, {});
  EXPECT_THROW(gptq_quantize(w, m, n, other_factor, options.spec), Error) << "factor for another input dimension";
  EXPECT_THROW(gptq_quantize(std::vector<float>(w.begin(), w.end() - 1), m, n, h, options.spec, {}), Error)
      << "weights of the wrong size";
}

}  // namespace
}  // namespace fbq
