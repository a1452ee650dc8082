// The quantization engine: group quantizer bounds, exact pack/unpack, the packed linear layer against its
// scalar reference, calibration sampling, and the `fbq quantize` pipeline end to end (packed model ≡ its
// dequantized f32 twin, reproducible output, errors before any work).
#include <fmt/core.h>
#include <sys/wait.h>

#include <cmath>
#include <nlohmann/json.hpp>
#include <random>

#include "calib/calibration.h"
#include "dequantized_twin.h"
#include "eval/perplexity.h"
#include "model/model.h"
#include "pack/packed_linear.h"
#include "io/dtype.h"
#include "kernels/gemv_int8.h"
#include "kernels/gemv_packed.h"
#include "quant/quantize_model.h"
#include "test_support.h"
#include "util/error.h"

namespace fbq {
namespace {

std::vector<float> random_matrix(int rows, int cols, std::uint64_t seed, float spread = 1.0f) {
  std::mt19937 rng(static_cast<unsigned>(seed));
  std::normal_distribution<float> normal(0.0f, spread);
  std::vector<float> values(static_cast<std::size_t>(rows) * cols);
  for (auto& v : values) v = normal(rng);
  return values;
}

// Every grid setting keeps |w − ŵ| ≤ s/2 and its own promise: zero points in range (≥ 1 for GPTQ v1's,
// 2^(b−1) when symmetric), scales with at most scale_bits significant bits. Rows 1 and 2 are all-positive and
// all-negative, where the widest grid's zero point sits at an end.
TEST(GroupQuant, RtnErrorIsAtMostHalfAStepOnEveryGrid) {
  for (const auto zero_points : {ZeroPoints::any, ZeroPoints::nonzero, ZeroPoints::symmetric})
    for (const int scale_bits : {11, 7})
      for (const int bits : {2, 3, 4, 8})
        for (const int group : {32, 64, 128}) {
          const int rows = 13, cols = 256;
          auto weights = random_matrix(rows, cols, bits * 100 + group);
          weights[5] = 40.0f;  // an outlier widens one group's range
          for (int c = 0; c < cols; ++c) {
            weights[cols + c] = std::fabs(weights[cols + c]) + 0.1f;
            weights[2 * cols + c] = -std::fabs(weights[2 * cols + c]);
          }
          const QuantSpec spec{bits, group, zero_points, scale_bits};
          const auto q = quantize_rtn(weights.data(), rows, cols, spec);
          const auto restored = q.dequantize();
          const auto where = [&](int r, int c) {
            return fmt::format("{} zeros, {} scale bits, bits {} group {} at {},{}", zero_points_name(zero_points),
                               scale_bits, bits, group, r, c);
          };
          for (int r = 0; r < rows; ++r)
            for (int c = 0; c < cols; ++c) {
              const std::size_t i = static_cast<std::size_t>(r) * cols + c;
              const auto& p = q.group(r, c);
              ASSERT_LE(std::fabs(restored[i] - weights[i]), 0.5f * p.scale * (1.0f + 1e-5f)) << where(r, c);
              const int lowest = zero_points == ZeroPoints::nonzero ? 1 : 0;
              ASSERT_GE(p.zero, lowest) << where(r, c);
              ASSERT_LE(p.zero, (1 << bits) - 1) << where(r, c);
              if (zero_points == ZeroPoints::symmetric) ASSERT_EQ(p.zero, 1 << (bits - 1)) << where(r, c);
              const std::uint16_t half = float_to_half(p.scale);
              ASSERT_EQ(half_to_float(half), p.scale) << where(r, c);
              ASSERT_EQ(half & ((1u << (11 - scale_bits)) - 1), 0u) << where(r, c);
            }
        }
}

TEST(GroupQuant, RejectsUnsupportedSpecs) {
  EXPECT_THROW((QuantSpec{5, 128}.validate(256)), Error);
  EXPECT_THROW((QuantSpec{4, 100}.validate(256)), Error);
  EXPECT_THROW((QuantSpec{4, 0}.validate(256)), Error);
  EXPECT_THROW((QuantSpec{4, 128, ZeroPoints::any, 12}.validate(256)), Error);
  EXPECT_THROW((QuantSpec{4, 128, ZeroPoints::any, 1}.validate(256)), Error);
  EXPECT_NO_THROW((QuantSpec{3, 256}.validate(256)));  // per-channel
  EXPECT_EQ(parse_zero_points("gptq"), ZeroPoints::nonzero);
  EXPECT_EQ(parse_zero_points("symmetric"), ZeroPoints::symmetric);
  EXPECT_THROW(parse_zero_points("asym"), Error);
}

TEST(Packing, RoundTripEveryBitsAndGroup) {
  for (const int bits : {2, 3, 4, 8})
    for (const int group : {32, 64, 128, 0})
      for (const auto& [rows, cols] : {std::pair{7, 128}, std::pair{1, 384}, std::pair{33, 96 * 4}}) {
        const int g = group == 0 ? cols : group;  // 0 = per-channel
        if (cols % g) continue;
        const auto weights = random_matrix(rows, cols, rows * cols + bits);
        const auto q = quantize_rtn(weights.data(), rows, cols, {bits, g});
        const auto packed = pack(q);
        EXPECT_EQ(packed.codes.size(), static_cast<std::size_t>(rows) * ((cols * bits + 31) / 32));
        const auto back = unpack(packed);
        ASSERT_EQ(back.codes, q.codes) << bits << " bits, group " << g << ", " << rows << "x" << cols;
        for (std::size_t i = 0; i < q.params.size(); ++i) {
          ASSERT_EQ(back.params[i].scale, q.params[i].scale);
          ASSERT_EQ(back.params[i].zero, q.params[i].zero);
        }
      }
}

TEST(Packing, BitFieldsStraddleWords) {
  std::vector<std::uint32_t> words(3, 0u);
  for (int i = 0; i < 32; ++i) write_bits(words.data(), i, 3, static_cast<std::uint32_t>(i % 8));
  for (int i = 0; i < 32; ++i) ASSERT_EQ(read_bits(words.data(), i, 3), static_cast<std::uint32_t>(i % 8));
  write_bits(words.data(), 10, 3, 5);  // field 10 spans bits 30..32
  EXPECT_EQ(read_bits(words.data(), 10, 3), 5u);
  EXPECT_EQ(read_bits(words.data(), 9, 3), 1u);
  EXPECT_EQ(read_bits(words.data(), 11, 3), 3u);
}

TEST(PackedLinear, BatchedPathMatchesScalarReference) {
  const int m = 37, n = 128, rank = 5, tokens = 9;
  const auto weights = random_matrix(m, n, 1);
  QuantizedLayer layer;
  layer.weights = quantize_rtn(weights.data(), m, n, {3, 32});
  layer.rank = rank;
  layer.lora_a = random_matrix(rank, n, 2, 0.1f);
  layer.lora_b = random_matrix(m, rank, 3, 0.1f);
  layer.input_scale = random_matrix(1, n, 4, 0.2f);
  for (auto& s : layer.input_scale) s = 1.0f + std::fabs(s);
  round_to_f16(layer.lora_a);
  round_to_f16(layer.lora_b);
  round_to_f16(layer.input_scale);
  const auto linear = PackedLinear::from_layer(layer);
  const auto x = random_matrix(tokens, n, 5);
  std::vector<float> batched(static_cast<std::size_t>(tokens) * m), single(m);
  linear.forward(x.data(), tokens, batched.data());
  const auto effective = layer.effective_weights();
  for (int t = 0; t < tokens; ++t) {
    linear.forward_reference(&x[static_cast<std::size_t>(t) * n], single.data());
    for (int r = 0; r < m; ++r) {
      double expected = 0.0;
      for (int j = 0; j < n; ++j) expected += double(effective[static_cast<std::size_t>(r) * n + j]) * x[t * n + j];
      ASSERT_NEAR(single[r], expected, 1e-4 * (1.0 + std::fabs(expected)));
      ASSERT_NEAR(batched[static_cast<std::size_t>(t) * m + r], single[r], 1e-4 * (1.0 + std::fabs(single[r])));
    }
  }
  // 37·4 groups × 3 zero bits = 444 bits, stored in 14 words.
  const double zero_bits = 14 * 32;
  EXPECT_NEAR(linear.bits_per_weight(), 3 + (16.0 * 37 * 4 + zero_bits + 16.0 * (rank * (m + n) + n)) / (m * n), 1e-9);
}

TEST(Calibration, WindowsAreSeededAndStartWithBos) {
  const auto model_dir = test::bundled_model();
  FBQ_REQUIRE_FILE(model_dir / "tokenizer.model");
  const auto tokenizer = load_tokenizer(model_dir / "tokenizer.model");
  test::TempDir tmp;
  std::string text;
  for (int p = 0; p < 200; ++p) text += fmt::format("Paragraph {} talks about the state of the union and whales.\n\n", p);
  test::write_file(tmp.path() / "calib.txt", text);
  const auto a = sample_calibration_windows(*tokenizer, tmp.path() / "calib.txt", 4, 32, 7);
  const auto b = sample_calibration_windows(*tokenizer, tmp.path() / "calib.txt", 4, 32, 7);
  const auto c = sample_calibration_windows(*tokenizer, tmp.path() / "calib.txt", 4, 32, 8);
  EXPECT_EQ(a, b);
  EXPECT_NE(a, c);
  for (const auto& window : a) {
    ASSERT_EQ(window.size(), 32u);
    EXPECT_EQ(window[0], tokenizer->bos_id());
  }
  EXPECT_THROW(sample_calibration_windows(*tokenizer, tmp.path() / "calib.txt", 500, 32, 7), Error)
      << "the text is too short for 500 windows";
}

class QuantizePipeline : public ::testing::Test {
 protected:
  void SetUp() override {
    model_ = test::bundled_model();
    calib_ = test::shared_dir() / "data" / "train.txt";
    if (!std::filesystem::exists(model_ / "model.safetensors") || !std::filesystem::exists(calib_))
      GTEST_SKIP() << "reference data not found: " << model_ << " / " << calib_;
  }
  QuantizeOptions options(const std::string& method, int bits, const std::string& out_name) const {
    QuantizeOptions o;
    o.model = model_;
    o.output = tmp_.path() / out_name;
    o.calibration_text = calib_;
    o.method = method;
    o.method_options.spec = {bits, 128};
    o.nsamples = 4;
    o.seqlen = 64;
    o.seed = 3;
    o.progress = false;
    return o;
  }
  // The first `windows` windows of `ctx` tokens of moby-test, quietly.
  static PerplexityOptions scoring(int ctx, int windows) {
    PerplexityOptions ppl;
    ppl.ctx = ctx;
    ppl.max_windows = windows;
    ppl.progress = false;
    return ppl;
  }
  static std::vector<int> moby_tokens(const Model& model) {
    return model.tokenizer->encode(read_paragraph_text(test::shared_dir() / "data" / "moby-test.txt"), true);
  }
  std::filesystem::path model_, calib_;
  test::TempDir tmp_;
};

TEST_F(QuantizePipeline, PackedModelPerplexityEqualsDequantizedModel) {
  const auto o = options("rtn", 4, "w4");
  const auto summary = quantize_model(o);
  EXPECT_EQ(summary.linears.size(), 42u);
  EXPECT_NEAR(summary.bits_per_weight, 4 + 20.0 / 128, 1e-3);
  for (const auto& name : {"config.json", "model.safetensors", "tokenizer.model", "quant_report.json"})
    EXPECT_TRUE(std::filesystem::exists(o.output / name)) << name;

  FBQ_REQUIRE_FILE(test::shared_dir() / "data" / "moby-test.txt");
  auto packed = load_model(o.output);
  EXPECT_EQ(packed.format, "fbquant-packed");
  const auto tokens = moby_tokens(packed);
  const auto ppl = scoring(256, 3);
  const auto packed_ppl = evaluate_perplexity(packed, tokens, ppl).ppl;
  dequantize_in_place(packed);
  const auto dense_ppl = evaluate_perplexity(packed, tokens, ppl).ppl;
  EXPECT_NEAR(packed_ppl / dense_ppl, 1.0, 1e-4) << packed_ppl << " vs " << dense_ppl;
  const auto original_ppl = evaluate_perplexity(load_model(model_), tokens, ppl).ppl;
  EXPECT_GT(packed_ppl, original_ppl * 0.98) << "quantization is not free";
  EXPECT_LT(packed_ppl, original_ppl * 1.10) << "W4 g128 stays close to the float model";
}

// A Qwen2-style model (bf16, tied, q/k/v biases: tests/oracle/arch_oracle.py) quantizes like a Llama one:
// the biases pass through exactly, and the packed model is its dequantized twin.
TEST_F(QuantizePipeline, Qwen2WithBiasesQuantizes) {
  const auto* oracle = test::oracle_output("arch_oracle.py");
  if (!oracle) GTEST_SKIP() << "PyTorch oracle not available (Debian python3-torch: scripts/setup.sh)";
  const auto tokenizer = test::shared_dir() / "models" / "stories260K" / "tok512.model";
  FBQ_REQUIRE_FILE(tokenizer);
  FBQ_REQUIRE_FILE(test::shared_dir() / "data" / "moby-test.txt");
  auto o = options("fbquant", 4, "qwen2-w4");
  o.model = oracle->path() / "qwen2";
  o.tokenizer = tokenizer;
  o.method_options.spec = {4, 32};  // hidden size 64
  o.method_options.rank = 4;
  o.seqlen = 32;
  quantize_model(o);

  auto packed = load_model(o.output);
  const auto original = load_model(o.model, {.tokenizer = tokenizer});
  EXPECT_EQ(packed.config.model_type, "qwen2");
  ASSERT_TRUE(packed.config.qkv_bias && !packed.config.o_bias);
  for (int l = 0; l < original.config.n_layers; ++l) {
    ASSERT_FALSE(original.layers[l].q_bias.empty());
    EXPECT_EQ(packed.layers[l].q_bias, original.layers[l].q_bias) << "layer " << l;
    EXPECT_EQ(packed.layers[l].k_bias, original.layers[l].k_bias) << "layer " << l;
    EXPECT_EQ(packed.layers[l].v_bias, original.layers[l].v_bias) << "layer " << l;
  }
  const auto tokens = moby_tokens(packed);
  const auto ppl = scoring(32, 8);
  const auto packed_ppl = evaluate_perplexity(packed, tokens, ppl).ppl;
  dequantize_in_place(packed);
  EXPECT_NEAR(packed_ppl / evaluate_perplexity(packed, tokens, ppl).ppl, 1.0, 1e-4);
}

// Issue 4: the decode kernels (SIMD, fused branch) leave the whole-model perplexity where the scalar kernel
// puts it, and where the batched prefill path puts it.
TEST_F(QuantizePipeline, DecodeKernelsGiveTheScalarPerplexity) {
  auto o = options("lqer", 3, "w3-branch");
  o.method_options.rank = 8;
  quantize_model(o);
  FBQ_REQUIRE_FILE(test::shared_dir() / "data" / "moby-test.txt");
  const auto packed = load_model(o.output);
  const auto tokens = moby_tokens(packed);
  auto ppl = scoring(64, 2);
  const double prefill = evaluate_perplexity(packed, tokens, ppl).ppl;
  ppl.decode = true;
  const auto before = preferred_kernel_isa();
  const auto activations_before = activations();
  set_activations(Activations::exact);  // the float kernels agree with each other and with prefill to rounding
  const double simd = evaluate_perplexity(packed, tokens, ppl).ppl;
  set_preferred_kernel_isa(KernelIsa::scalar);
  const double scalar = evaluate_perplexity(packed, tokens, ppl).ppl;
  set_preferred_kernel_isa(before);
  EXPECT_NEAR(simd / scalar, 1.0, 1e-4) << kernel_isa_name(before) << " " << simd << " vs scalar " << scalar;
  EXPECT_NEAR(prefill / scalar, 1.0, 1e-4) << "prefill " << prefill << " vs decode " << scalar;
  // int8 activations (the decode default): new numerics, within 0.3% of the float path. (Its ISAs differ here by
  // more than rounding: t = A·x differs in the last bit between ISAs, and that flips some activations' int8
  // rounding in later layers.)
  set_activations(Activations::int8_decode);
  const double int8 = evaluate_perplexity(packed, tokens, ppl).ppl;
  set_activations(activations_before);
  EXPECT_NEAR(int8 / scalar, 1.0, 3e-3) << "int8 activations " << int8 << " vs float " << scalar;
}

// --float-target: the float model's stream runs beside the quantized one. Layer 0 sees the same input in both
// (no drift yet), so its output error against the float model is its H-error; deeper layers, aimed at the float
// model, end closer to it than the same method aimed at the drifted input. Only reporting the float error
// (--report-float-error) changes nothing in the model.
TEST_F(QuantizePipeline, FloatTargetAimsAtTheFloatModel) {
  auto plain = options("gptq", 3, "plain"), aimed = options("gptq", 3, "aimed");
  const auto untracked = options("gptq", 3, "untracked");
  plain.report_float_error = true;
  aimed.float_target = true;
  const auto mean_float_error = [](const QuantizeSummary& summary) {
    double total = 0.0;
    for (std::size_t i = 7; i < summary.linears.size(); ++i) total += *summary.linears[i].error_float;
    return total / static_cast<double>(summary.linears.size() - 7);
  };
  const auto plain_summary = quantize_model(plain), aimed_summary = quantize_model(aimed);
  for (const auto* summary : {&plain_summary, &aimed_summary})
    for (std::size_t i = 0; i < 7; ++i) {
      const auto& r = summary->linears[i];
      ASSERT_TRUE(r.error_float);
      EXPECT_NEAR(*r.error_float, r.error, 1e-9 * r.error) << r.name;
    }
  EXPECT_LT(mean_float_error(aimed_summary), 0.97 * mean_float_error(plain_summary));
  // The residual stream's drift from the float model, after every layer: nonzero once anything is quantized.
  ASSERT_EQ(plain_summary.stream_drift.size(), 6u);
  for (const auto& d : plain_summary.stream_drift) {
    EXPECT_GT(d.train, 0.0);
    EXPECT_LT(d.train, 1.0);
    EXPECT_FALSE(d.validation) << "no held-out windows in this run";
  }
  EXPECT_NE(test::read_file(plain.output / "quant_report.json").find("\"stream_drift\""), std::string::npos);
  EXPECT_NE(test::read_file(plain.output / "model.safetensors"), test::read_file(aimed.output / "model.safetensors"));
  EXPECT_TRUE(quantize_model(untracked).stream_drift.empty());
  EXPECT_EQ(test::read_file(plain.output / "model.safetensors"), test::read_file(untracked.output / "model.safetensors"));
  EXPECT_GT(mean_float_error(plain_summary), 0.0);
}

// --true-sequential: q/k/v of layer 0 read the embeddings either way (same H, same result), but o_proj's input
// then comes through the quantized q/k/v, so its statistics and everything after them change.
TEST_F(QuantizePipeline, TrueSequentialFeedsEachProjectionTheQuantizedOnesBeforeIt) {
  const auto together = options("gptq", 3, "together");
  auto sequential = options("gptq", 3, "sequential");
  sequential.true_sequential = true;
  const auto a = quantize_model(together), b = quantize_model(sequential);
  ASSERT_EQ(a.linears.size(), b.linears.size());
  for (std::size_t i = 0; i < 3; ++i) EXPECT_EQ(a.linears[i].error, b.linears[i].error) << a.linears[i].name;
  EXPECT_NE(a.linears[3].error, b.linears[3].error) << a.linears[3].name;
  for (std::size_t i = 0; i < a.linears.size(); ++i) EXPECT_EQ(a.linears[i].name, b.linears[i].name);
}

TEST_F(QuantizePipeline, SameSeedGivesByteIdenticalOutput) {
  const auto a = options("gptq", 3, "a"), b = options("gptq", 3, "b");
  quantize_model(a);
  quantize_model(b);
  for (const auto& name : {"config.json", "model.safetensors", "tokenizer.model"})
    EXPECT_EQ(test::read_file(a.output / name), test::read_file(b.output / name)) << name;
  // The report is identical but for its wall-clock timings.
  const auto without_timings = [](const std::filesystem::path& path) {
    return std::regex_replace(test::read_file(path), std::regex(R"("seconds": [0-9.e+-]+)"), "");
  };
  EXPECT_EQ(without_timings(a.output / "quant_report.json"), without_timings(b.output / "quant_report.json"));
}

TEST_F(QuantizePipeline, BadOptionsFailBeforeAnyWork) {
  const auto expect_error = [&](QuantizeOptions o, const std::string& expected) {
    try {
      quantize_model(o);
      ADD_FAILURE() << "expected an error mentioning '" << expected << "'";
    } catch (const Error& e) {
      EXPECT_NE(std::string(e.what()).find(expected), std::string::npos) << e.what();
    }
    // Nothing was written: no output and no temporary directory beside it.
    EXPECT_FALSE(std::filesystem::exists(o.output));
    for (const auto& entry : std::filesystem::directory_iterator(tmp_.path()))
      EXPECT_EQ(entry.path().filename().string().find(".partial"), std::string::npos) << entry.path();
  };
  auto o = options("rtn", 5, "x");
  expect_error(o, "--bits 5");
  o = options("rtn", 4, "x");
  o.method_options.spec.group_size = 100;
  expect_error(o, "does not divide");
  o = options("lqer", 4, "x");
  o.method_options.rank = 128;
  expect_error(o, "not below min(m, n)");
  o = options("rtn", 4, "x");
  o.method_options.rank = 4;
  expect_error(o, "no low-rank branch");
  o = options("no-such-method", 4, "x");
  expect_error(o, "unknown method");
  o = options("rtn", 4, "x");
  o.output = "/proc/forbidden/out";
  expect_error(o, "does not exist");
  test::write_file(tmp_.path() / "short.txt", "Just one short paragraph.\n");
  o = options("rtn", 4, "x");
  o.calibration_text = tmp_.path() / "short.txt";
  expect_error(o, "windows");
}

TEST_F(QuantizePipeline, CliReportsErrorsInOneLine) {
  const auto err = tmp_.path() / "err.txt";
  const auto command = fmt::format("'{}' quantize '{}' -o '{}' --calib '{}' --bits 4 --group-size 96 >/dev/null 2>'{}'",
                                   FBQ_CLI_PATH, model_.string(), (tmp_.path() / "out").string(), calib_.string(),
                                   err.string());
  const int status = std::system(command.c_str());
  ASSERT_TRUE(WIFEXITED(status));
  EXPECT_EQ(WEXITSTATUS(status), 1);
  const auto message = test::read_file(err);
  EXPECT_EQ(message, "fbq: error: --group-size 96 does not divide the input dimension 1024\n");
}

// `fbq bench checkpoint` commits one layer's checkpoint of the given shape: the stream's bytes plus
// checkpoint.json, and nothing is left behind.
TEST(BenchCli, CheckpointCostCountsTheStreamAndCleansUp) {
  test::TempDir tmp;
  const auto out = tmp.path() / "out.txt";
  const auto command = fmt::format("'{}' bench checkpoint --hidden 64 --windows 4 --seqlen 32 --float-stream --dir '{}' >'{}'",
                                   FBQ_CLI_PATH, tmp.path().string(), out.string());
  ASSERT_EQ(std::system(command.c_str()), 0);
  const auto line = test::read_file(out);
  // 2 streams × 64 × 4 × 32 floats = 65,536 bytes, plus a JSON file of a few hundred.
  EXPECT_NE(line.find("checkpoint of one layer (hidden 64, 4 windows of 32 tokens, float stream too): 0.1 MB in"),
            std::string::npos) << line;
  EXPECT_EQ(std::distance(std::filesystem::directory_iterator(tmp.path()), std::filesystem::directory_iterator()), 1)
      << "only out.txt remains";
}

// `fbq bench` refuses impossible settings with one line and exit status 1, before measuring anything.
TEST(BenchCli, BadSettingsFailInOneLine) {
  test::TempDir tmp;
  const auto err = tmp.path() / "err.txt";
  for (const auto& [args, expected] : std::vector<std::pair<std::string, std::string>>{
           {"bench kernels --shapes 4096by4096", "--shapes expects ROWSxCOLS (got '4096by4096')"},
           {"bench kernels --bits 5", "bench kernels: bits must be 2, 3, 4 or 8 (got 5)"},
           {"bench kernels --batches 9", "bench kernels: batch must be 1..8 (got 9)"},
           {"bench kernels --shapes 64x100", "bench kernels: group size 128 does not divide 100 columns"},
           {"bench", "bench: give MODEL paths, or `bench kernels`"},
           {"bench /no/such/model", "/no/such/model"}}) {
    SCOPED_TRACE(args);
    const int status = std::system(fmt::format("'{}' {} >/dev/null 2>'{}'", FBQ_CLI_PATH, args, err.string()).c_str());
    ASSERT_TRUE(WIFEXITED(status));
    EXPECT_EQ(WEXITSTATUS(status), 1);
    const auto message = test::read_file(err);
    EXPECT_EQ(message.rfind("fbq: error: ", 0), 0u) << message;
    EXPECT_NE(message.find(expected), std::string::npos) << message;
    EXPECT_EQ(std::count(message.begin(), message.end(), '\n'), 1) << message;
  }
}

}  // namespace
}  // namespace fbq

namespace fbq {
namespace {

// From a fresh clone (nothing from ../shared): the bundled model and the bundled calibration and evaluation
// texts give a packed model and a verdict, as text and as JSON; a missing --eval-text fails before any work.
TEST(QuantizeVerdict, BundledTextAndVerdict) {
  const auto model = test::bundled_model();
  FBQ_REQUIRE_FILE(model / "model.safetensors");
  const test::TempDir tmp;
  const auto out = tmp.path() / "out.txt";
  const auto quantize = [&](const std::string& extra) {
    const auto command = fmt::format("'{}' quantize '{}' -o '{}' --overwrite --method rtn --bits 4 --nsamples 4 "
                                     "--seqlen 64 --eval-ctx 128 --quiet {} >'{}' 2>/dev/null",
                                     FBQ_CLI_PATH, model.string(), (tmp.path() / "q").string(), extra, out.string());
    EXPECT_EQ(std::system(command.c_str()), 0) << command;
    return test::read_file(out);
  };
  const auto text = quantize("");
  EXPECT_NE(text.find("== verdict: "), std::string::npos) << text;
  EXPECT_NE(text.find("bits/weight"), std::string::npos) << text;
  EXPECT_NE(text.find("data/eval.txt"), std::string::npos) << "the bundled evaluation text is the default: " << text;
  const auto json = nlohmann::json::parse(quantize("--json"));
  EXPECT_GT(json["source_bytes"].get<double>(), 2 * json["output_bytes"].get<double>());
  EXPECT_NEAR(json["bits_per_weight"].get<double>(), 4.156, 0.01);
  const auto& eval = json["eval"];
  EXPECT_GT(eval["windows"].get<int>(), 100);
  EXPECT_NEAR(eval["result_ppl"].get<double>() - eval["original_ppl"].get<double>(), eval["ppl_difference"].get<double>(), 1e-9);
  EXPECT_GT(eval["ppl_difference"].get<double>(), 0.0) << "W4 RTN is a little worse than the original";
  EXPECT_FALSE(nlohmann::json::parse(quantize("--json --no-eval")).contains("eval"));
  const auto message = test::expect_cli_fails("quantize '" + model.string() + "' -o '" + (tmp.path() / "never").string() +
                                              "' --eval-text '" + (tmp.path() / "missing.txt").string() + "'",
                                              tmp.path());
  EXPECT_NE(message.find("--eval-text"), std::string::npos) << message;
  EXPECT_FALSE(std::filesystem::exists(tmp.path() / "never"));
}

}  // namespace
}  // namespace fbq
