// FBQuant: the feedback bound, the analytic gradient, best-iterate bookkeeping through the real pipeline,
// reproducibility and option errors.
#include <cmath>
#include <nlohmann/json.hpp>

#include "quant/fbquant.h"
#include "quant/method.h"
#include "quant/quantize_model.h"
#include "test_layers.h"
#include "util/error.h"

namespace fbq {
namespace {

using test::gaussian;
using test::random_activation_stats;

double metric(const QuantizedLayer& layer, const std::string& name) {
  for (const auto& [key, value] : layer.metrics)
    if (key == name) return value;
  ADD_FAILURE() << "no metric " << name;
  return NAN;
}

TEST(Fbquant, FeedbackKeepsEveryWeightWithinHalfAStep) {
  const int m = 48, n = 128;
  const auto weights = gaussian(static_cast<std::size_t>(m) * n, 1, 0.05f);
  const auto stats = random_activation_stats(n, 2);
  const auto method = make_method("fbquant");
  for (const int bits : {2, 3, 4}) {
    MethodOptions options;
    options.spec = {bits, 32};
    options.rank = 8;
    options.params = {{"steps", "60"}, {"lr", "1e-2"}, {"inner", "rtn"}};  // a large lr: Σ moves far from its start
    const auto layer = method->quantize(weights, m, n, stats, options);
    const auto effective = layer.effective_weights();
    for (int i = 0; i < m; ++i)
      for (int j = 0; j < n; ++j) {
        const std::size_t k = static_cast<std::size_t>(i) * n + j;
        ASSERT_LE(std::fabs(effective[k] - weights[k]), 0.5f * layer.weights.group(i, j).scale * (1 + 1e-4f))
            << "W" << bits << " at " << i << "," << j;
      }
    EXPECT_LE(metric(layer, "max_error_over_half_step"), 1.0 + 1e-4);
    EXPECT_LT(metric(layer, "loss_best"), metric(layer, "loss_init")) << "W" << bits << ": learning helped";
  }
}

TEST(Fbquant, BeatsLqerWithRtnInsideAndGptqWithGptqInside) {
  const int m = 64, n = 128;
  const auto weights = gaussian(static_cast<std::size_t>(m) * n, 3, 0.05f);
  const auto stats = random_activation_stats(n, 4);
  MethodOptions options;
  options.spec = {3, 32};
  options.rank = 4;
  const auto error = [&](const std::string& name, const MethodOptions& o) {
    return relative_h_error(weights, make_method(name)->quantize(weights, m, n, stats, o).effective_weights(), m, n,
                            stats.hessian);
  };
  MethodOptions rtn_options = options;
  rtn_options.rank = 0;
  MethodOptions rtn_inside = options, gptq_inside = options;
  rtn_inside.params["inner"] = "rtn";
  gptq_inside.params["inner"] = "gptq";
  const double rtn = error("rtn", rtn_options), lqer = error("lqer", options), fbquant = error("fbquant", rtn_inside);
  EXPECT_LT(lqer, rtn);
  EXPECT_LT(fbquant, lqer) << "rtn " << rtn << ", lqer " << lqer << ", fbquant (rtn inside) " << fbquant;
  const double gptq = error("gptq", rtn_options), fbquant_gptq = error("fbquant", gptq_inside);
  EXPECT_LT(fbquant_gptq, gptq) << "gptq " << gptq << ", fbquant (gptq inside) " << fbquant_gptq;
}

// L(A, B) = tr(E·H·Eᵀ) with E = Wq − W + B·A and Wq held fixed: the region where no rounding boundary is crossed.
TEST(Fbquant, AnalyticGradientMatchesFiniteDifferences) {
  const int m = 12, n = 16, r = 3;
  const auto w = gaussian(static_cast<std::size_t>(m) * n, 5);
  const auto wq = gaussian(static_cast<std::size_t>(m) * n, 6);
  const auto a = gaussian(static_cast<std::size_t>(r) * n, 7, 0.3f);
  const auto b = gaussian(static_cast<std::size_t>(m) * r, 8, 0.3f);
  const auto stats = random_activation_stats(n, 9);
  const std::vector<float> h(stats.hessian.begin(), stats.hessian.end());
  const auto error_matrix = [&](const std::vector<float>& a_, const std::vector<float>& b_) {
    std::vector<float> e(static_cast<std::size_t>(m) * n);
    for (int i = 0; i < m; ++i)
      for (int j = 0; j < n; ++j) {
        double sigma = 0;
        for (int k = 0; k < r; ++k) sigma += double(b_[i * r + k]) * a_[k * n + j];
        e[i * n + j] = static_cast<float>(wq[i * n + j] - w[i * n + j] + sigma);
      }
    return e;
  };
  const auto loss = [&](const std::vector<float>& a_, const std::vector<float>& b_) {
    return reconstruction_loss(error_matrix(a_, b_), h, m, n);
  };
  const auto e = error_matrix(a, b);
  const auto grads = branch_gradients(e, h, a, b, m, n, r);
  const float delta = 1e-2f;
  const auto check = [&](const std::vector<float>& analytic, bool wrt_a) {
    for (std::size_t i = 0; i < analytic.size(); i += 5) {
      auto plus_a = a, minus_a = a, plus_b = b, minus_b = b;
      (wrt_a ? plus_a : plus_b)[i] += delta;
      (wrt_a ? minus_a : minus_b)[i] -= delta;
      const double numeric = (loss(plus_a, plus_b) - loss(minus_a, minus_b)) / (2 * delta);
      EXPECT_NEAR(analytic[i], numeric, 2e-3 * (1 + std::fabs(numeric))) << (wrt_a ? "dL/dA[" : "dL/dB[") << i << "]";
    }
  };
  check(grads.grad_a, true);
  check(grads.grad_b, false);
}

TEST(Fbquant, RejectsBadSettings) {
  const int m = 16, n = 64;
  const auto weights = gaussian(static_cast<std::size_t>(m) * n, 10);
  const auto stats = random_activation_stats(n, 11);
  const auto method = make_method("fbquant");
  MethodOptions options;
  options.spec = {4, 32};
  options.rank = 2;
  for (const auto& [key, value] : std::vector<std::pair<std::string, std::string>>{
           {"lr", "-1"}, {"steps", "abc"}, {"init", "random"}, {"inner", "awq"}, {"select", "validation"}}) {
    auto bad = options;
    bad.params[key] = value;
    EXPECT_THROW(method->quantize(weights, m, n, stats, bad), Error) << key << "=" << value;
  }
  auto unknown = options;
  unknown.params["momentum"] = "0.9";
  EXPECT_THROW(check_method_params(*method, unknown), Error);
  auto too_big = options;
  too_big.rank = 16;
  EXPECT_THROW(method->quantize(weights, m, n, stats, too_big), Error);
  auto budget = options;
  budget.branch_bits = 1.0;  // ⌊1·16·64 / (16·80)⌋ = 0 → at least 1
  EXPECT_EQ(budget.branch_rank(m, n), 1);
  budget.branch_bits = 4.0;
  EXPECT_EQ(budget.branch_rank(m, n), 3);
}

// Through the real pipeline on every linear of the bundled model: the packed iterate's H-error (computed by
// the pipeline from the stored weights) is the reported best loss, which is never above the initial loss.
TEST(Fbquant, PackedBestIterateOnEveryLinearOfTheBundledModel) {
  const auto model = test::bundled_model();
  const auto calib = test::shared_dir() / "data" / "train.txt";
  FBQ_REQUIRE_FILE(model / "model.safetensors");
  FBQ_REQUIRE_FILE(calib);
  test::TempDir tmp;
  QuantizeOptions o;
  o.model = model;
  o.calibration_text = calib;
  o.method = "fbquant";
  o.method_options.spec = {3, 128};
  o.method_options.branch_bits = 0.3;
  o.nsamples = 4;
  o.validation_samples = 2;
  o.seqlen = 64;
  o.progress = false;
  for (const std::string inner : {"rtn", "gptq"}) {
    SCOPED_TRACE("inner " + inner);
    o.method_options.params = {{"steps", "20"}, {"eval_every", "5"}, {"inner", inner}};
    for (const char* name : {"a", "b"}) {
      o.output = tmp.path() / (inner + name);
      quantize_model(o);
    }
    EXPECT_EQ(test::read_file(tmp.path() / (inner + "a") / "model.safetensors"),
              test::read_file(tmp.path() / (inner + "b") / "model.safetensors"))
        << "same seed, same bytes";
    const auto report = nlohmann::json::parse(test::read_file(tmp.path() / (inner + "a") / "quant_report.json"));
    ASSERT_EQ(report["layers"].size(), 42u);
    for (const auto& layer : report["layers"]) {
      const auto name = layer["name"].get<std::string>();
      EXPECT_LE(layer["val_loss_best"].get<double>(), layer["val_loss_init"].get<double>()) << name;
      EXPECT_NEAR(layer["h_error"].get<double>(), layer["loss_best"].get<double>(),
                  1e-4 * layer["loss_best"].get<double>())
          << name << ": the packed weights are the measured iterate";
      if (inner == "rtn") {
        EXPECT_LE(layer["max_error_over_half_step"].get<double>(), 1.0 + 1e-4) << name;
      }
    }
  }
}

}  // namespace
}  // namespace fbq
