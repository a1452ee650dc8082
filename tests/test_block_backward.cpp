// The decoder block's backward pass (src/quant/block) against PyTorch autograd (tests/oracle/
// block_grad_oracle.py, float64) on a random small block, in double and in float; its forward against the
// runtime's layer (model/transformer.cpp) on the bundled model.
#include <fmt/core.h>

#include <cmath>
#include <map>
#include <random>

#include "model/model.h"
#include "model/transformer.h"
#include "quant/block/block_forward_backward.h"
#include "quant/block/learnable_clipping.h"
#include "test_support.h"

namespace fbq {
namespace {

constexpr const char* kLinearNames[] = {"q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"};

std::vector<double> read_f64(const std::filesystem::path& path) {
  const auto bytes = test::read_file(path);
  std::vector<double> values(bytes.size() / sizeof(double));
  std::memcpy(values.data(), bytes.data(), values.size() * sizeof(double));
  return values;
}

template <typename Real>
std::vector<Real> cast(const std::vector<double>& values) {
  return {values.begin(), values.end()};
}

// The oracle's block (its default shape: 4 query heads over 2 KV heads, so GQA is exercised).
struct OracleBlock {
  BlockShape shape{32, 48, 4, 2, 8, 1e-5, 10000.0};
  int tokens = 9;
  std::filesystem::path dir;

  std::vector<double> tensor(const std::string& name) const { return read_f64(dir / (name + ".f64")); }
  template <typename Real>
  BlockTensors<Real> weights(const std::string& prefix = "") const {
    BlockTensors<Real> w;
    for (int i = 0; i < kBlockLinearCount; ++i) w.linears[i] = cast<Real>(tensor(prefix + kLinearNames[i]));
    w.attn_norm = cast<Real>(tensor(prefix + "attn_norm"));
    w.ffn_norm = cast<Real>(tensor(prefix + "ffn_norm"));
    return w;
  }
};

double max_abs_difference(const std::vector<double>& expected, const std::vector<double>& actual, double& scale) {
  EXPECT_EQ(expected.size(), actual.size());
  double worst = 0;
  scale = 0;
  for (std::size_t i = 0; i < expected.size() && i < actual.size(); ++i) {
    worst = std::max(worst, std::fabs(expected[i] - actual[i]));
    scale = std::max(scale, std::fabs(expected[i]));
  }
  return worst;
}

// Every gradient within `tolerance` of autograd's, relative to the largest entry of that gradient.
template <typename Real>
void expect_gradients_match(double tolerance) {
  const auto* output = test::oracle_output("block_grad_oracle.py");
  if (!output) GTEST_SKIP() << "PyTorch oracle not available (Debian python3-torch: scripts/setup.sh)";
  const OracleBlock oracle{.dir = output->path()};
  const auto weights = oracle.weights<Real>();
  const auto input = cast<Real>(oracle.tensor("input")), target = cast<Real>(oracle.tensor("target"));
  auto grads = BlockTensors<Real>::zeros(oracle.shape);
  BlockForwardBackward<Real> block(oracle.shape, oracle.tokens);
  const double loss =
      block.forward_backward(weights, input.data(), target.data(), 1.0 / (oracle.tokens * oracle.shape.dim), grads);
  const double expected_loss = std::stod(test::read_file(output->path() / "loss.txt"));
  EXPECT_NEAR(loss, expected_loss, tolerance * expected_loss);
  const auto expected = oracle.weights<double>("grad_");
  const auto check = [&](const std::string& name, const std::vector<double>& want, const std::vector<Real>& got) {
    double scale = 0;
    const double worst = max_abs_difference(want, std::vector<double>(got.begin(), got.end()), scale);
    EXPECT_LE(worst, tolerance * scale) << name << ": max |Δ| " << worst << " of max |grad| " << scale;
  };
  for (int i = 0; i < kBlockLinearCount; ++i) check(kLinearNames[i], expected.linears[i], grads.linears[i]);
  check("attn_norm", expected.attn_norm, grads.attn_norm);
  check("ffn_norm", expected.ffn_norm, grads.ffn_norm);
}

TEST(BlockBackward, MatchesPyTorchAutogradInDouble) { expect_gradients_match<double>(1e-10); }

TEST(BlockBackward, MatchesPyTorchAutogradInFloat) { expect_gradients_match<float>(2e-4); }

// Accumulating two windows' gradients equals the sum of each one's.
TEST(BlockBackward, GradientsAccumulateAcrossWindows) {
  const BlockShape shape{16, 24, 2, 1, 8, 1e-5, 10000.0};
  std::mt19937 rng(3);
  std::normal_distribution<double> normal(0.0, 0.3);
  auto weights = BlockTensors<double>::zeros(shape);
  for (auto& w : weights.linears)
    for (auto& v : w) v = normal(rng);
  for (auto& v : weights.attn_norm) v = 1.0 + normal(rng);
  for (auto& v : weights.ffn_norm) v = 1.0 + normal(rng);
  std::vector<double> x(5 * 16), y(5 * 16), x2(5 * 16), y2(5 * 16);
  for (auto* v : {&x, &y, &x2, &y2})
    for (auto& e : *v) e = normal(rng);
  BlockForwardBackward<double> block(shape, 5);
  auto both = BlockTensors<double>::zeros(shape), first = both, second = both;
  block.forward_backward(weights, x.data(), y.data(), 1.0, both);
  block.forward_backward(weights, x2.data(), y2.data(), 1.0, both);
  block.forward_backward(weights, x.data(), y.data(), 1.0, first);
  block.forward_backward(weights, x2.data(), y2.data(), 1.0, second);
  for (int i = 0; i < kBlockLinearCount; ++i)
    for (std::size_t j = 0; j < both.linears[i].size(); ++j)
      EXPECT_NEAR(both.linears[i][j], first.linears[i][j] + second.linears[i][j], 1e-12);
}

// LWC's straight-through gradients w.r.t. the clipping logits, against autograd (float32, the same rounding
// of the scale up to f16): the quantized weights agree, and so do the gradients up to float32 rounding.
TEST(LearnableClipping, MatchesPyTorchStraightThrough) {
  const auto* output = test::oracle_output("lwc_grad_oracle.py");
  if (!output) GTEST_SKIP() << "PyTorch oracle not available (Debian python3-torch: scripts/setup.sh)";
  const auto load = [&](const std::string& name) { return test::read_npy<float>(output->path() / (name + ".npy"), "<f4").values; };
  const auto weights = load("w"), grad = load("grad"), expected_w = load("w_hat");
  const ClippingLogits logits{load("high"), load("low")};
  QuantizedMatrix quantized{6, 64, {3, 16}, {}, {}};
  quantize_clipped(weights, logits, quantized);
  const auto dequantized = quantized.dequantize();
  for (std::size_t i = 0; i < dequantized.size(); ++i) EXPECT_FLOAT_EQ(dequantized[i], expected_w[i]) << i;
  const auto grads = clipping_gradients(weights, logits, quantized, grad);
  const auto check = [](const std::string& name, const std::vector<float>& want, const std::vector<float>& got) {
    double scale = 0;
    const double worst = max_abs_difference({want.begin(), want.end()}, {got.begin(), got.end()}, scale);
    EXPECT_GT(scale, 0.0) << name;
    EXPECT_LE(worst, 1e-4 * scale) << name << ": max |Δ| " << worst << " of max |grad| " << scale;
  };
  check("high", load("grad_high"), grads.high);
  check("low", load("grad_low"), grads.low);
}

// The block's float forward is the runtime's decoder layer (layer 0 of the bundled model, 64 tokens).
TEST(BlockForward, MatchesTheRuntimeLayer) {
  const CheckpointReader reader(test::bundled_model());
  const auto& c = reader.config();
  const DecoderLayer layer = reader.layer(0);
  BlockTensors<float> weights;
  const std::unique_ptr<Linear> DecoderLayer::*members[] = {&DecoderLayer::q_proj,    &DecoderLayer::k_proj,
                                                             &DecoderLayer::v_proj,    &DecoderLayer::o_proj,
                                                             &DecoderLayer::gate_proj, &DecoderLayer::up_proj,
                                                             &DecoderLayer::down_proj};
  for (int i = 0; i < kBlockLinearCount; ++i)
    weights.linears[i] = dynamic_cast<const DenseLinear&>(*(layer.*members[i])).weights();
  weights.attn_norm = layer.attn_norm;
  weights.ffn_norm = layer.ffn_norm;
  const int tokens = 64;
  std::mt19937 rng(1);
  std::normal_distribution<float> normal(0.0f, 1.0f);
  std::vector<float> hidden(static_cast<std::size_t>(tokens) * c.dim);
  for (auto& v : hidden) v = normal(rng);
  std::vector<float> ours(hidden.size());
  BlockForwardBackward<float> block(BlockShape::of(c), tokens);
  block.forward(weights, hidden.data(), ours.data());
  Model shell;
  shell.config = c;
  InferenceSession session(shell, tokens);
  session.forward_layer(layer, 0, hidden.data(), tokens, 0);
  double worst = 0, scale = 0;
  for (std::size_t i = 0; i < hidden.size(); ++i) {
    worst = std::max(worst, std::fabs(static_cast<double>(hidden[i]) - ours[i]));
    scale = std::max(scale, std::fabs(static_cast<double>(hidden[i])));
  }
  EXPECT_LE(worst, 1e-5 * scale) << "max |Δ| " << worst << " of max |h| " << scale;
}

}  // namespace
}  // namespace fbq
