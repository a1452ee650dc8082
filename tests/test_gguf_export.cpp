// `fbq export --to gguf`: every block type dequantizes (by the GGUF reader's own decoders, written from
// llama.cpp's formulas apart from the exporter) to exactly the packed model's s·(q − z), q/k rows in llama.cpp's
// RoPE order; the branch adapter holds A and B bit for bit; the real llama.cpp (npm's node-llama-cpp) scores the
// export as fbquant scores the packed model; whatever cannot be written exactly is refused in one line.
#include <fmt/core.h>
#include <gtest/gtest.h>
#include <sys/wait.h>

#include <cmath>
#include <nlohmann/json.hpp>

#include "eval/perplexity.h"
#include "export/gguf_export.h"
#include "io/dtype.h"
#include "io/gguf.h"
#include "io/gguf_blocks.h"
#include "io/text_files.h"
#include "model/model.h"
#include "model/synthetic_model.h"
#include "model/transformer.h"
#include "pack/packed_linear.h"
#include "quant/quantize_model.h"
#include "test_support.h"
#include "util/error.h"

namespace fbq {
namespace {

namespace fs = std::filesystem;

struct Projection {
  const char* gguf;  // llama.cpp's name under blk.N.
  std::unique_ptr<Linear> DecoderLayer::*member;
};
const Projection kProjections[] = {{"attn_q", &DecoderLayer::q_proj},       {"attn_k", &DecoderLayer::k_proj},
                                   {"attn_v", &DecoderLayer::v_proj},       {"attn_output", &DecoderLayer::o_proj},
                                   {"ffn_gate", &DecoderLayer::gate_proj},  {"ffn_up", &DecoderLayer::up_proj},
                                   {"ffn_down", &DecoderLayer::down_proj}};

struct Grid {
  int bits, group;
  ZeroPoints zero_points;
  int scale_bits;
  GgmlType expected;
};

class GgufExport : public ::testing::Test {
 protected:
  void SetUp() override {
    calib_ = test::shared_dir() / "data" / "train.txt";
    if (!fs::exists(test::bundled_model() / "model.safetensors") || !fs::exists(calib_))
      GTEST_SKIP() << "reference data not found: " << test::bundled_model() << " / " << calib_;
  }

  // ref-llama-12m quantized by `method` into tmp/NAME (few windows: the export, not the quality, is tested).
  fs::path quantize(const std::string& method, const QuantSpec& spec, int rank, const std::string& name) const {
    return quantize_model_dir(test::bundled_model(), name, spec, method, rank);
  }
  fs::path quantize_model_dir(const fs::path& model, const std::string& name, const QuantSpec& spec,
                              const std::string& method = "rtn", int rank = 0) const {
    QuantizeOptions o;
    o.model = model;
    o.output = tmp_.path() / name;
    o.calibration_text = calib_;
    o.method = method;
    o.method_options.spec = spec;
    o.method_options.rank = rank;
    o.nsamples = 4;
    o.seqlen = 64;
    o.seed = 3;
    o.progress = false;
    quantize_model(o);
    return o.output;
  }

  GgufExportSummary export_to(const fs::path& model, const std::string& name) const {
    return export_gguf({.model = model, .output = tmp_.path() / name});
  }

  fs::path calib_;
  test::TempDir tmp_;
};

// GGUF row h·hd + 2i + c of q/k is Hugging Face row h·hd + c·hd/2 + i (the convert script's permutation),
// written here from that formula rather than taken from the exporter.
int hf_row(int gguf_row, bool rope, int head_dim) {
  if (!rope) return gguf_row;
  const int head = gguf_row / head_dim, within = gguf_row % head_dim;
  return head * head_dim + (within % 2) * head_dim / 2 + within / 2;
}

TEST_F(GgufExport, EveryBlockTypeDequantizesToThePackedWeightsExactly) {
  const Grid grids[] = {{4, 32, ZeroPoints::any, 11, GgmlType::Q5_0},   {4, 32, ZeroPoints::symmetric, 11, GgmlType::Q4_0},
                        {4, 64, ZeroPoints::any, 7, GgmlType::Q4_1},    {3, 64, ZeroPoints::any, 11, GgmlType::Q4_0},
                        {2, 128, ZeroPoints::any, 11, GgmlType::Q4_0},  {8, 32, ZeroPoints::symmetric, 11, GgmlType::Q8_0}};
  for (const auto& grid : grids) {
    const auto where = fmt::format("W{} g{} {} zeros, {} scale bits", grid.bits, grid.group,
                                   zero_points_name(grid.zero_points), grid.scale_bits);
    const auto name = fmt::format("w{}g{}{}{}", grid.bits, grid.group, zero_points_name(grid.zero_points), grid.scale_bits);
    const auto model_dir = quantize("rtn", {grid.bits, grid.group, grid.zero_points, grid.scale_bits}, 0, name);
    const auto summary = export_to(model_dir, name + ".gguf");
    ASSERT_EQ(summary.linear_types.size(), 1u) << where;
    EXPECT_EQ(summary.linear_types.begin()->first, ggml_type_name(grid.expected)) << where;
    EXPECT_TRUE(summary.branch_output.empty()) << where;

    const GgufFile file(tmp_.path() / (name + ".gguf"));
    const Model packed = load_model(model_dir);
    const auto& c = packed.config;
    EXPECT_EQ(file.get_string("general.architecture"), "llama");
    EXPECT_EQ(file.get_int("llama.block_count"), c.n_layers);
    EXPECT_EQ(file.get_int("llama.attention.head_count_kv"), c.n_kv_heads);
    EXPECT_EQ(file.get_string_array("tokenizer.ggml.tokens")->size(), static_cast<std::size_t>(c.vocab_size));
    for (int layer = 0; layer < c.n_layers; ++layer)
      for (const auto& [gguf, member] : kProjections) {
        const auto* tensor = file.find_tensor(fmt::format("blk.{}.{}.weight", layer, gguf));
        ASSERT_NE(tensor, nullptr) << where << " layer " << layer << " " << gguf;
        EXPECT_EQ(tensor->type, grid.expected) << where << " " << gguf;
        const auto& linear = dynamic_cast<const PackedLinear&>(*(packed.layers[layer].*member));
        const auto expected = unpack(linear.packed()).dequantize();
        const int rows = linear.out_features(), cols = linear.in_features();
        ASSERT_EQ(tensor->dims, (std::vector<std::int64_t>{cols, rows})) << where << " " << gguf;
        const auto values = dequantize_gguf_tensor(*tensor, file.path());
        const bool rope = std::string_view(gguf) == "attn_q" || std::string_view(gguf) == "attn_k";
        for (int r = 0; r < rows; ++r)
          for (int k = 0; k < cols; ++k)
            ASSERT_EQ(values[static_cast<std::size_t>(r) * cols + k],
                      expected[static_cast<std::size_t>(hf_row(r, rope, c.head_dim)) * cols + k])
                << where << " " << gguf << " layer " << layer << " at " << r << "," << k;
      }
    // fbquant reads the GGUF back (dense f32 weights, its own RoPE un-permutation): the same perplexity.
    const Model gguf_model = load_model(tmp_.path() / (name + ".gguf"));
    PerplexityOptions ppl;
    ppl.ctx = 128;
    ppl.max_windows = 2;
    ppl.progress = false;
    const auto tokens = packed.tokenizer->encode(read_paragraph_text(test::shared_dir() / "data" / "moby-test.txt"), true);
    const double expected_ppl = evaluate_perplexity(packed, tokens, ppl).ppl,
                 exported_ppl = evaluate_perplexity(gguf_model, tokens, ppl).ppl;
    EXPECT_NEAR(exported_ppl, expected_ppl, 1e-4 * expected_ppl) << where;
  }
}

// Log-probabilities of each window's next tokens by fbquant's own forward pass.
std::vector<double> fbquant_logprobs(const Model& model, const std::vector<std::vector<int>>& windows) {
  std::vector<double> out;
  for (const auto& window : windows) {
    InferenceSession session(model, static_cast<int>(window.size()));
    const auto logits = session.forward(window, 0, /*all_logits=*/true);
    const int vocab = model.config.vocab_size;
    for (std::size_t t = 0; t + 1 < window.size(); ++t) {
      const float* row = &logits[t * vocab];
      double max = row[0], sum = 0.0;
      for (int v = 1; v < vocab; ++v) max = std::max<double>(max, row[v]);
      for (int v = 0; v < vocab; ++v) sum += std::exp(row[v] - max);
      out.push_back(row[window[t + 1]] - max - std::log(sum));
    }
  }
  return out;
}

std::vector<int> fbquant_greedy(const Model& model, const std::vector<int>& prompt, int count) {
  InferenceSession session(model, static_cast<int>(prompt.size()) + count);
  std::vector<int> out;
  auto logits = session.forward(prompt, 0, false);
  for (int i = 0; i < count; ++i) {
    const int next = static_cast<int>(std::max_element(logits.begin(), logits.end()) - logits.begin());
    out.push_back(next);
    logits = session.forward(std::vector<int>{next}, static_cast<int>(prompt.size()) + i, false);
  }
  return out;
}

fs::path llama_cpp_tools() { return test::source_dir() / "tools" / "llama-cpp"; }

bool llama_cpp_installed() {
  return std::system("node --version >/dev/null 2>&1") == 0 && fs::exists(llama_cpp_tools() / "node_modules" / "node-llama-cpp");
}

// Runs tools/llama-cpp/score.mjs (node-llama-cpp's prebuilt llama.cpp) on `request`.
nlohmann::json run_llama_cpp(const nlohmann::json& request, const fs::path& scratch) {
  write_file_atomically(scratch / "request.json", request.dump());
  const auto command = fmt::format("node '{}' < '{}' > '{}' 2> '{}'", (llama_cpp_tools() / "score.mjs").string(),
                                   (scratch / "request.json").string(), (scratch / "reply.json").string(),
                                   (scratch / "node.err").string());
  const int status = std::system(command.c_str());
  if (!WIFEXITED(status) || WEXITSTATUS(status) != 0)
    throw std::runtime_error("score.mjs failed: " + test::read_file(scratch / "node.err"));
  return nlohmann::json::parse(test::read_file(scratch / "reply.json"));
}

struct Agreement {
  double max_abs = 0, mean_abs = 0, fbquant_ppl = 0, llama_ppl = 0;
};

Agreement agreement(const std::vector<double>& ours, const nlohmann::json& reply) {
  std::vector<double> theirs;
  for (const auto& window : reply["logprobs"])
    for (const double value : window) theirs.push_back(value);
  EXPECT_EQ(theirs.size(), ours.size());
  Agreement a;
  double our_nll = 0, their_nll = 0;
  for (std::size_t i = 0; i < ours.size(); ++i) {
    a.max_abs = std::max(a.max_abs, std::fabs(ours[i] - theirs[i]));
    a.mean_abs += std::fabs(ours[i] - theirs[i]);
    our_nll -= ours[i];
    their_nll -= theirs[i];
  }
  a.mean_abs /= static_cast<double>(ours.size());
  a.fbquant_ppl = std::exp(our_nll / static_cast<double>(ours.size()));
  a.llama_ppl = std::exp(their_nll / static_cast<double>(ours.size()));
  return a;
}

// A byte-level BPE vocabulary (SmolLM2's tokenizer.json, on a 2-layer model of its shape) becomes llama.cpp's
// `gpt2` vocabulary with the pre-tokenizer llama.cpp's converter names for it: llama.cpp tokenizes text as
// fbquant does, and scores the random-weight model as fbquant does.
TEST_F(GgufExport, ByteLevelBpeVocabularyTokenizesAsInFbquant) {
  if (!llama_cpp_installed()) GTEST_SKIP() << "llama.cpp not installed (scripts/setup.sh runs npm ci in tools/llama-cpp)";
  const auto tokenizers = test::shared_dir() / "tokenizers";
  SynthOptions synth{.shape = "smollm2-135m", .output = tmp_.path() / "smol", .layers = 2, .tokenizer_dir = tokenizers,
                     .progress = false};
  write_synthetic_model(synth);
  const auto model_dir = quantize_model_dir(synth.output, "smol_w4", {4, 64, ZeroPoints::symmetric});
  const auto summary = export_to(model_dir, "smol.gguf");
  EXPECT_EQ(summary.linear_types.at("Q4_0"), 14);
  const GgufFile file(tmp_.path() / "smol.gguf");
  EXPECT_EQ(file.get_string("tokenizer.ggml.model"), "gpt2");
  EXPECT_EQ(file.get_string("tokenizer.ggml.pre"), "starcoder");  // SmolLM's digits-then-GPT-2 splitting

  const Model packed = load_model(model_dir);
  const std::vector<std::string> texts = {"Hello world! 12345 naïve café, it's 3.14 — ok?",
                                          "  Two  spaces,\ttabs\nand a newline; emoji 🙂 and 日本語."};
  const nlohmann::json request = {{"model", tmp_.path() / "smol.gguf"}, {"context", 64}, {"texts", texts},
                                  {"sequences", {packed.tokenizer->encode(texts[0], false)}}};
  const auto reply = run_llama_cpp(request, tmp_.path());
  for (std::size_t i = 0; i < texts.size(); ++i)
    EXPECT_EQ(reply["tokenized"][i].get<std::vector<int>>(), packed.tokenizer->encode(texts[i], false)) << texts[i];
  const auto a = agreement(fbquant_logprobs(packed, {packed.tokenizer->encode(texts[0], false)}), reply);
  EXPECT_LE(a.mean_abs, 0.02) << "max " << a.max_abs << " mean " << a.mean_abs;
}

// The real engine: W4 g32 FBQuant with a rank-8 branch, exported as Q5_0 + a LoRA adapter. llama.cpp's CPU
// matmuls quantize activations to 8 bits (Q8_0/Q8_1), so logits agree within a tolerance, not bit for bit:
// per token |Δ log p| ≤ 0.3 and ≤ 0.02 on average, perplexity within 0.5%. The adapter must matter: without
// it the mean disagreement is over twice as large (so it is applied, and at scale 1).
TEST_F(GgufExport, LlamaCppScoresTheExportAsFbquantScoresThePackedModel) {
  if (!llama_cpp_installed()) GTEST_SKIP() << "llama.cpp not installed (scripts/setup.sh runs npm ci in tools/llama-cpp)";
  const auto model_dir = quantize("fbquant", {4, 32}, 8, "fbq_w4_r8");
  const auto summary = export_to(model_dir, "fbq_w4_r8.gguf");
  EXPECT_EQ(summary.linear_types.at("Q5_0"), 42);
  EXPECT_EQ(summary.branch_tensors, 84);

  const Model packed = load_model(model_dir);
  const auto tokens = packed.tokenizer->encode(read_paragraph_text(test::shared_dir() / "data" / "moby-test.txt"), true);
  std::vector<std::vector<int>> windows;
  for (int w = 0; w < 3; ++w) windows.emplace_back(tokens.begin() + w * 128, tokens.begin() + (w + 1) * 128);
  const auto ours = fbquant_logprobs(packed, windows);
  const std::vector<int> prompt(tokens.begin(), tokens.begin() + 16);
  nlohmann::json request = {{"model", tmp_.path() / "fbq_w4_r8.gguf"}, {"lora", summary.branch_output},
                            {"context", 160}, {"sequences", windows}, {"greedy", {{"prompt", prompt}, {"tokens", 24}}}};
  const auto with_branch = agreement(ours, run_llama_cpp(request, tmp_.path()));
  request["lora"] = nullptr;
  const auto reply_without = run_llama_cpp(request, tmp_.path());
  const auto without_branch = agreement(ours, reply_without);
  request["lora"] = summary.branch_output;
  request["sequences"] = nlohmann::json::array();
  const std::vector<int> llama_greedy = run_llama_cpp(request, tmp_.path())["greedy"];
  const auto our_greedy = fbquant_greedy(packed, prompt, 24);

  const auto report = fmt::format(
      "with the adapter: max |dlogp| {:.4f}, mean {:.5f}, ppl {:.4f} (llama.cpp) vs {:.4f} (fbquant); without: mean {:.5f}",
      with_branch.max_abs, with_branch.mean_abs, with_branch.llama_ppl, with_branch.fbquant_ppl, without_branch.mean_abs);
  std::cout << report << "\n";
  EXPECT_LE(with_branch.max_abs, 0.3) << report;
  EXPECT_LE(with_branch.mean_abs, 0.02) << report;
  EXPECT_NEAR(with_branch.llama_ppl, with_branch.fbquant_ppl, 0.005 * with_branch.fbquant_ppl) << report;
  EXPECT_GT(without_branch.mean_abs, 2.0 * with_branch.mean_abs) << report;
  EXPECT_EQ(llama_greedy, our_greedy) << "greedy continuations of 24 tokens differ";
}

TEST_F(GgufExport, BranchAdapterHoldsAAndBBitForBit) {
  const auto model_dir = quantize("lqer", {3, 64}, 5, "lqer_w3_r5");
  const auto summary = export_to(model_dir, "lqer.gguf");
  ASSERT_EQ(summary.branch_output, tmp_.path() / "lqer.lora.gguf");
  const GgufFile adapter(summary.branch_output);
  EXPECT_EQ(adapter.get_string("general.type"), "adapter");
  EXPECT_EQ(adapter.get_string("general.architecture"), "llama");
  EXPECT_EQ(adapter.get_string("adapter.type"), "lora");
  EXPECT_EQ(adapter.get_float("adapter.lora.alpha"), 0.0);
  const Model packed = load_model(model_dir);
  const int head_dim = packed.config.head_dim;
  for (int layer = 0; layer < packed.config.n_layers; ++layer)
    for (const auto& [gguf, member] : kProjections) {
      const auto& linear = dynamic_cast<const PackedLinear&>(*(packed.layers[layer].*member));
      const int r = linear.rank(), rows = linear.out_features(), cols = linear.in_features();
      const auto name = fmt::format("blk.{}.{}.weight", layer, gguf);
      const auto* a = adapter.find_tensor(name + ".lora_a");
      const auto* b = adapter.find_tensor(name + ".lora_b");
      ASSERT_TRUE(a && b) << name;
      ASSERT_EQ(a->dims, (std::vector<std::int64_t>{cols, r})) << name;
      ASSERT_EQ(b->dims, (std::vector<std::int64_t>{r, rows})) << name;
      EXPECT_EQ(dequantize_gguf_tensor(*a, adapter.path()), linear.lora_a()) << name;
      const auto b_values = dequantize_gguf_tensor(*b, adapter.path());
      const auto expected_b = linear.lora_b();
      const bool rope = std::string_view(gguf) == "attn_q" || std::string_view(gguf) == "attn_k";
      for (int row = 0; row < rows; ++row)
        for (int k = 0; k < r; ++k)
          ASSERT_EQ(b_values[static_cast<std::size_t>(row) * r + k],
                    expected_b[static_cast<std::size_t>(hf_row(row, rope, head_dim)) * r + k])
              << name << " row " << row;
    }
}

TEST_F(GgufExport, RefusesWhatItCannotWriteExactlyAndLeavesNothing) {
  const auto& dir = tmp_.path();
  const auto g16 = quantize("rtn", {4, 16}, 0, "g16");
  const auto awq = quantize("awq", {4, 32}, 0, "awq");
  const auto w8 = quantize("rtn", {8, 32}, 0, "w8");
  const auto good = quantize("rtn", {3, 32}, 0, "good");
  const auto out = (dir / "out.gguf").string();
  const auto refused = [&](const std::string& arguments, const std::string& reason) {
    const auto message = test::expect_cli_fails("export " + arguments, dir);
    EXPECT_NE(message.find(reason), std::string::npos) << arguments << ": " << message;
  };
  refused(fmt::format("'{}' --to gguf -o '{}'", test::bundled_model().string(), out), "is not quantized");
  refused(fmt::format("'{}' --to gguf -o '{}'", (dir / "missing").string(), out), "not a packed model directory");
  refused(fmt::format("'{}' --to gguf -o '{}'", g16.string(), out), "group size 16 is not a multiple");
  refused(fmt::format("'{}' --to gguf -o '{}'", awq.string(), out), "AWQ input scales");
  refused(fmt::format("'{}' --to gguf -o '{}'", w8.string(), out), "--sym for Q8_0");
  refused(fmt::format("'{}' --to onnx -o '{}'", good.string(), out), "--to onnx is not a known target");
  refused(fmt::format("'{}' --to gguf -o '{}'", good.string(), (dir / "no" / "such" / "x.gguf").string()), "does not exist");
  test::write_file(dir / "taken.gguf", "keep me");
  refused(fmt::format("'{}' --to gguf -o '{}'", good.string(), (dir / "taken.gguf").string()), "--overwrite");
  EXPECT_EQ(test::read_file(dir / "taken.gguf"), "keep me");
  for (const auto& entry : fs::directory_iterator(dir))
    EXPECT_FALSE(entry.path().extension() == ".gguf" && entry.path().filename() != "taken.gguf" ||
                 entry.path().extension() == ".tmp")
        << "left behind: " << entry.path();
}

}  // namespace
}  // namespace fbq
