// `fbq quantize --head-bits B`: the output head RTN-quantized on the linears' grid and packed like them. Its
// codes stay within half a step of the float head; the packed model is its dequantized twin (prefill and the
// decode kernels); a tied model gets an untied quantized head beside its unchanged embedding; the exports
// carry the head exactly (GGUF Q8_0, GPTQ lm_head: true); bad options and a changed head fail before any work.
#include <fmt/core.h>
#include <gtest/gtest.h>

#include <cmath>
#include <nlohmann/json.hpp>

#include "dequantized_twin.h"
#include "eval/perplexity.h"
#include "export/gguf_export.h"
#include "export/gptq_export.h"
#include "io/gguf.h"
#include "io/gguf_blocks.h"
#include "io/text_files.h"
#include "kernels/gemv_int8.h"
#include "model/model.h"
#include "model/synthetic_model.h"
#include "pack/packed_linear.h"
#include "quant/checkpoint.h"
#include "quant/quantize_model.h"
#include "test_support.h"

namespace fbq {
namespace {

namespace fs = std::filesystem;

class HeadQuant : public ::testing::Test {
 protected:
  void SetUp() override {
    calib_ = test::shared_dir() / "data" / "train.txt";
    moby_ = test::shared_dir() / "data" / "moby-test.txt";
    if (!fs::exists(test::bundled_model() / "model.safetensors") || !fs::exists(calib_) || !fs::exists(moby_))
      GTEST_SKIP() << "reference data not found: " << test::bundled_model() << " / " << calib_ << " / " << moby_;
  }
  // ref-llama-12m (or `model`) by RTN into tmp/NAME with the head at `head_bits`, g`head_group`, on `spec`'s grid.
  QuantizeOptions options(const std::string& name, const QuantSpec& spec, int head_bits, int head_group = 128) const {
    QuantizeOptions o;
    o.model = test::bundled_model();
    o.output = tmp_.path() / name;
    o.calibration_text = calib_;
    o.method_options.spec = spec;
    o.head_bits = head_bits;
    o.head_group_size = head_group;
    o.nsamples = 4;
    o.seqlen = 64;
    o.seed = 3;
    o.progress = false;
    return o;
  }
  double perplexity(const Model& model, int ctx, bool decode = false) const {
    const auto tokens = model.tokenizer->encode(read_paragraph_text(moby_), true);
    return evaluate_perplexity(model, tokens, {.ctx = ctx, .max_windows = 2, .progress = false, .decode = decode}).ppl;
  }
  fs::path calib_, moby_;
  test::TempDir tmp_;
};

const PackedLinear& packed_head(const Model& model) { return dynamic_cast<const PackedLinear&>(*model.lm_head); }

// |w − ŵ| ≤ s/2 for every weight of the packed head against the float head it was made from.
void expect_within_half_step(const PackedLinear& head, const std::vector<float>& original) {
  const auto q = unpack(head.packed());
  const auto restored = q.dequantize();
  ASSERT_EQ(restored.size(), original.size());
  for (int r = 0; r < q.rows; ++r)
    for (int c = 0; c < q.cols; ++c) {
      const std::size_t i = static_cast<std::size_t>(r) * q.cols + c;
      ASSERT_LE(std::fabs(restored[i] - original[i]), 0.5f * q.group(r, c).scale * (1.0f + 1e-5f)) << r << "," << c;
    }
}

TEST_F(HeadQuant, Int8HeadIsWithinHalfAStepAndEqualsItsDequantizedTwin) {
  const auto o = options("w4h8", {4, 128}, 8);
  quantize_model(o);
  const auto config = read_json_file(o.output / "config.json");
  EXPECT_EQ(config["quantization_config"]["head"], (nlohmann::json{{"bits", 8}, {"group_size", 128}}));
  EXPECT_EQ(read_json_file(o.output / "quant_report.json")["options"]["head"]["bits"], 8);

  auto packed = load_model(o.output);
  EXPECT_EQ(packed.config.quant_head_bits, 8);
  const auto& head = packed_head(packed);
  EXPECT_EQ(head.packed().spec.bits, 8);
  EXPECT_EQ(head.packed().spec.group_size, 128);
  const auto original = CheckpointReader(o.model).lm_head();
  expect_within_half_step(head, dynamic_cast<const DenseLinear&>(*original).weights());
  // 8 bits + an f16 scale and an 8-bit zero per 128 weights, against 16 bits as stored.
  const double head_weights = static_cast<double>(packed.config.vocab_size) * packed.config.dim;
  EXPECT_NEAR(static_cast<double>(head.weight_bytes()), head_weights * (8 + 24.0 / 128) / 8, 64);

  // Decode runs the head through the packed decode kernels, as every linear: the float ones give the twin's
  // perplexity, int8 activations (the default) their own numerics, close to it.
  const auto default_activations = activations();
  const double prefill = perplexity(packed, 128), int8_decode = perplexity(packed, 32, /*decode=*/true);
  set_activations(Activations::exact);
  const double float_decode = perplexity(packed, 32, /*decode=*/true);
  set_activations(default_activations);
  dequantize_in_place(packed);
  EXPECT_NEAR(prefill / perplexity(packed, 128), 1.0, 1e-4);
  const double twin = perplexity(packed, 32);
  EXPECT_NEAR(float_decode / twin, 1.0, 1e-4);
  EXPECT_NEAR(int8_decode / twin, 1.0, 1e-2);
}

TEST_F(HeadQuant, TiedModelGetsAnUntiedQuantizedHead) {
  SynthOptions synth{.shape = "smollm2-135m", .output = tmp_.path() / "smol", .layers = 2,
                     .tokenizer_dir = test::shared_dir() / "tokenizers", .progress = false};
  FBQ_REQUIRE_FILE(synth.tokenizer_dir / "smollm2-tokenizer.json");
  write_synthetic_model(synth);
  auto o = options("smol_w4h4", {4, 64}, 4, 64);  // hidden size 576
  o.model = synth.output;
  quantize_model(o);

  const CheckpointReader source(synth.output), result(o.output);
  ASSERT_TRUE(source.config().tie_embeddings);
  EXPECT_FALSE(result.config().tie_embeddings);
  EXPECT_EQ(*result.embedding(), *source.embedding()) << "the lookup keeps the embedding as stored";
  EXPECT_EQ(result.dtype_of("model.embed_tokens.weight"), source.dtype_of("model.embed_tokens.weight"));
  auto packed = load_model(o.output);
  expect_within_half_step(packed_head(packed), *source.embedding());
  const double ppl = perplexity(packed, 32);
  EXPECT_TRUE(std::isfinite(ppl));
  dequantize_in_place(packed);
  EXPECT_NEAR(ppl / perplexity(packed, 32), 1.0, 1e-4);
}

// --sym makes the 8-bit head exactly llama.cpp's Q8_0: output.weight dequantizes to the packed head's weights.
TEST_F(HeadQuant, SymmetricInt8HeadExportsAsQ8_0Exactly) {
  const auto o = options("w4sym_h8", {4, 128, ZeroPoints::symmetric}, 8);
  quantize_model(o);
  const auto gguf = tmp_.path() / "w4sym_h8.gguf";
  const auto summary = export_gguf({.model = o.output, .output = gguf});
  EXPECT_EQ(summary.linear_types.at("Q4_0"), 42);
  EXPECT_EQ(summary.linear_types.at("Q8_0"), 1);

  const GgufFile file(gguf);
  const auto* output = file.find_tensor("output.weight");
  ASSERT_NE(output, nullptr);
  EXPECT_EQ(output->type, GgmlType::Q8_0);
  const auto packed = load_model(o.output);
  const auto& head = packed_head(packed);
  EXPECT_EQ(output->dims, (std::vector<std::int64_t>{head.in_features(), head.out_features()}));
  EXPECT_EQ(dequantize_gguf_tensor(*output, gguf), unpack(head.packed()).dequantize());
}

// GPTQ has one bits/group_size for every quantized linear: a head on the linears' grid is written as a GPTQ
// lm_head and read back code for code; another grid is refused before anything is written.
TEST_F(HeadQuant, GptqExportCarriesAHeadOnTheLinearsGrid) {
  const auto o = options("w4h4", {4, 128, ZeroPoints::nonzero}, 4);
  quantize_model(o);
  const auto out = tmp_.path() / "w4h4-gptq";
  const auto summary = export_gptq({o.output, out, GptqZeroFormat::v1});
  EXPECT_TRUE(summary.lm_head);
  EXPECT_EQ(summary.linears, 43);
  EXPECT_EQ(read_json_file(out / "config.json")["quantization_config"]["lm_head"], true);
  const auto exported = load_model(out), packed = load_model(o.output);
  const auto &back = packed_head(exported).packed(), &source = packed_head(packed).packed();
  EXPECT_EQ(back.codes, source.codes);
  EXPECT_EQ(back.zeros, source.zeros);
  EXPECT_EQ(back.scales, source.scales);

  const auto other = options("w4h8", {4, 128, ZeroPoints::nonzero}, 8);
  quantize_model(other);
  const auto message = test::expect_cli_fails(
      fmt::format("export '{}' --to gptq -o '{}'", other.output.string(), (tmp_.path() / "refused").string()), tmp_.path());
  EXPECT_NE(message.find("--head-bits 4 --head-group-size 128"), std::string::npos) << message;
  EXPECT_FALSE(fs::exists(tmp_.path() / "refused"));
}

TEST_F(HeadQuant, BadHeadOptionsFailBeforeAnyWork) {
  const auto out = tmp_.path() / "bad";
  const auto command = [&](const std::string& head_options) {
    return fmt::format("quantize '{}' -o '{}' --method rtn --calib '{}' --nsamples 4 --seqlen 64 --no-eval --quiet {}",
                       test::bundled_model().string(), out.string(), calib_.string(), head_options);
  };
  const std::pair<const char*, const char*> cases[] = {
      {"--head-bits 5", "--head-bits must be 8 or 4 (got 5)"},
      {"--head-bits 8 --head-group-size 100", "--head-group-size 100 does not divide the head's input dimension 384"},
      {"--head-group-size 64", "--head-group-size needs --head-bits"}};
  for (const auto& [head_options, expected] : cases) {
    const auto message = test::expect_cli_fails(command(head_options), tmp_.path());
    EXPECT_NE(message.find(expected), std::string::npos) << head_options << ": " << message;
    EXPECT_FALSE(fs::exists(out) || fs::exists(partial_output(out))) << head_options;
  }
}

// --resume compares the recorded settings: the head's are part of them, and a run without a quantized head
// records what it always did.
TEST_F(HeadQuant, HeadSettingsArePartOfTheRunIdentity) {
  const auto plain = options("a", {4, 128}, 0), int8 = options("a", {4, 128}, 8), int4 = options("a", {4, 128}, 4);
  EXPECT_FALSE(recorded_settings(plain)["options"].contains("head"));
  EXPECT_NE(recorded_settings(plain), recorded_settings(int8));
  EXPECT_NE(recorded_settings(int8), recorded_settings(int4));
  EXPECT_NE(recorded_settings(int8), recorded_settings(options("a", {4, 128}, 8, 64)));
}

}  // namespace
}  // namespace fbq
