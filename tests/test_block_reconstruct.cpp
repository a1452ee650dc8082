// Block-wise reconstruction (`fbq quantize --reconstruct block`, src/quant/block/block_reconstruct.h) on the
// bundled model: the feedback bound with RTN inside, the kept iterate never worse than the layer-wise start on
// any block, byte-identical output for a fixed seed, LWC without a branch, and bad options.
#include <fmt/core.h>

#include <nlohmann/json.hpp>
#include <regex>

#include "quant/quantize_model.h"
#include "test_support.h"
#include "util/error.h"

namespace fbq {
namespace {

using json = nlohmann::json;

class BlockReconstruction : public ::testing::Test {
 protected:
  void SetUp() override {
    calib_ = test::shared_dir() / "data" / "train.txt";
    FBQ_REQUIRE_FILE(calib_);
  }
  // A small but complete run: 6 training + 3 held-out windows of 64 tokens, a few Adam steps per block.
  QuantizeOptions options(const std::string& method, const std::string& out_name) const {
    QuantizeOptions o;
    o.model = test::bundled_model();
    o.output = tmp_.path() / out_name;
    o.calibration_text = calib_;
    o.method = method;
    o.method_options.spec = {3, 128};
    if (method == "fbquant" || method == "gptq") o.method_options.branch_bits = 0.25;
    if (method == "fbquant") o.method_options.params = {{"steps", "10"}};
    o.nsamples = 6;
    o.validation_samples = 3;
    o.seqlen = 64;
    o.seed = 5;
    o.progress = false;
    o.reconstruct = "block";
    o.block.steps = 8;
    o.block.batch = 2;
    o.block.eval_every = 2;
    o.block.lr = 3e-3;
    return o;
  }
  static json report(const QuantizeOptions& o) { return json::parse(test::read_file(o.output / "quant_report.json")); }
  // Every block's kept iterate is no worse than the layer-wise start on the held-out windows it is chosen on.
  static void expect_blocks_never_worse(const json& report) {
    ASSERT_EQ(report["blocks"].size(), 6u);
    for (const auto& block : report["blocks"]) {
      EXPECT_LE(block["val_loss_best"].get<double>(), block["val_loss_init"].get<double>()) << block.dump();
      EXPECT_GT(block["val_loss_init"].get<double>(), 0.0);
      EXPECT_GE(block["seconds"].get<double>(), 0.0);
    }
  }
  std::filesystem::path calib_;
  test::TempDir tmp_;
};

// With RTN inside the feedback loop, every trained linear keeps |W − W_F| ≤ s/2.
TEST_F(BlockReconstruction, RtnInsideKeepsTheHalfStepBound) {
  auto o = options("fbquant", "rtn-inside");
  o.method_options.params["inner"] = "rtn";
  const auto summary = quantize_model(o);
  ASSERT_EQ(summary.blocks.size(), 6u);
  const auto r = report(o);
  expect_blocks_never_worse(r);
  for (const auto& layer : r["layers"]) {
    ASSERT_TRUE(layer.contains("block_max_error_over_half_step")) << layer["name"];
    EXPECT_LE(layer["block_max_error_over_half_step"].get<double>(), 1.0 + 1e-4) << layer["name"];
  }
  EXPECT_EQ(r["options"]["reconstruct"]["input"], "quantized");
}

// GPTQ inside (fbquant's default) and a branch added beside plain GPTQ both train and never end worse.
TEST_F(BlockReconstruction, GptqInsideAndABranchBesideGptqNeverEndWorse) {
  const auto fbquant = options("fbquant", "fbquant");
  quantize_model(fbquant);
  expect_blocks_never_worse(report(fbquant));
  auto gptq = options("gptq", "gptq");
  gptq.block_float_input = true;
  const auto summary = quantize_model(gptq);
  expect_blocks_never_worse(report(gptq));
  EXPECT_GT(summary.bits_per_weight, 3.0 + 19.0 / 128 + 0.1) << "the branch beside GPTQ is stored";
  EXPECT_EQ(report(gptq)["options"]["reconstruct"]["input"], "float");
}

TEST_F(BlockReconstruction, SameSeedGivesByteIdenticalOutput) {
  auto a = options("fbquant", "a"), b = options("fbquant", "b");
  a.block.train_norms = b.block.train_norms = true;
  quantize_model(a);
  quantize_model(b);
  for (const auto& name : {"config.json", "model.safetensors"})
    EXPECT_EQ(test::read_file(a.output / name), test::read_file(b.output / name)) << name;
  const auto without_timings = [](const std::filesystem::path& path) {
    return std::regex_replace(test::read_file(path), std::regex(R"("seconds": [0-9.e+-]+)"), "");
  };
  EXPECT_EQ(without_timings(a.output / "quant_report.json"), without_timings(b.output / "quant_report.json"));
}

// LWC: rtn without a branch, the clipping trained; the result costs what RTN costs.
TEST_F(BlockReconstruction, LwcTrainsClippingWithoutABranch) {
  auto o = options("rtn", "lwc");
  o.block.lwc = true;
  const auto summary = quantize_model(o);
  EXPECT_NEAR(summary.bits_per_weight, 3.0 + 19.0 / 128, 1e-6);
  expect_blocks_never_worse(report(o));
  EXPECT_EQ(report(o)["options"]["reconstruct"]["lwc"], true);
}

TEST_F(BlockReconstruction, BadOptionsFailBeforeAnyWork) {
  const auto expect_error = [&](QuantizeOptions o, const std::string& expected) {
    try {
      validate_quantize_options(o);
      ADD_FAILURE() << "expected an error mentioning '" << expected << "'";
    } catch (const Error& e) {
      EXPECT_NE(std::string(e.what()).find(expected), std::string::npos) << e.what();
    }
  };
  auto o = options("fbquant", "x");
  o.reconstruct = "model";
  expect_error(o, "--reconstruct must be layer or block");
  o = options("awq", "x");
  expect_error(o, "works with fbquant, rtn or gptq");
  o = options("fbquant", "x");
  o.float_target = true;
  expect_error(o, "drop --float-target");
  o = options("rtn", "x");
  expect_error(o, "give --rank R or --branch-bits X");
  o = options("fbquant", "x");
  o.block.lwc = true;
  expect_error(o, "--lwc trains the clipping of --method rtn");
  o = options("rtn", "x");
  o.reconstruct = "layer";
  o.block.lwc = true;
  expect_error(o, "--lwc needs --reconstruct block");
  o = options("fbquant", "x");
  o.block.batch = 0;
  expect_error(o, "--block-batch");
  test::TempDir scratch;
  test::expect_cli_fails(fmt::format("quantize '{}' -o '{}' --method fbquant --branch-bits 0.25 --reconstruct block "
                                     "--block-input sideways",
                                     test::bundled_model().string(), (scratch.path() / "out").string()),
                         scratch.path());
}

}  // namespace
}  // namespace fbq
