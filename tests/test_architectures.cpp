// Hugging Face checkpoints of several architectures against a float64 PyTorch forward
// (tests/oracle/arch_oracle.py): Llama 2 (GQA, bf16), Llama 3 (llama3 RoPE scaling, tied, bf16), linear RoPE
// scaling (f16), Qwen2 (q/k/v biases, tied, bf16), Mistral (explicit head_dim, sliding window) and Llama
// with attention_bias, each loaded the way a user's download is and run with its weights as stored.
#include <nlohmann/json.hpp>

#include <algorithm>
#include <cmath>
#include <cstring>

#include "model/model.h"
#include "model/transformer.h"
#include "test_support.h"
#include "util/error.h"

namespace fbq {
namespace {

struct OracleVariant {
  std::string name;
  std::filesystem::path dir;
  std::vector<int> tokens;
  std::vector<float> logits;  // tokens × vocab
  int vocab = 0;
};

template <typename T>
std::vector<T> read_raw(const std::filesystem::path& path) {
  const auto bytes = test::read_file(path);
  std::vector<T> values(bytes.size() / sizeof(T));
  std::memcpy(values.data(), bytes.data(), values.size() * sizeof(T));
  return values;
}

// The oracle's variants, or empty when PyTorch is missing.
std::vector<OracleVariant> oracle_variants() {
  const auto* output = test::oracle_output("arch_oracle.py");
  if (!output) return {};
  std::vector<OracleVariant> variants;
  const auto listing = nlohmann::json::parse(test::read_file(output->path() / "variants.json"));
  for (const auto& entry : listing) {
    OracleVariant v{entry.at("name"), output->path() / entry.at("name").get<std::string>(), {}, {}, entry.at("vocab")};
    v.tokens = read_raw<std::int32_t>(v.dir / "tokens.i32");
    v.logits = read_raw<float>(v.dir / "logits.f32");
    EXPECT_EQ(v.logits.size(), v.tokens.size() * v.vocab) << v.name;
    variants.push_back(std::move(v));
  }
  return variants;
}

Model load_variant(const OracleVariant& v) {
  LoadOptions options;
  options.require_tokenizer = false;
  return load_model(v.dir, options);
}

float max_abs(std::span<const float> values) {
  float m = 0;
  for (const float x : values) m = std::max(m, std::fabs(x));
  return m;
}

#define FBQ_REQUIRE_ORACLE(variants) \
  if ((variants).empty()) GTEST_SKIP() << "PyTorch oracle not available (Debian python3-torch: scripts/setup.sh)"

TEST(Architectures, EveryVariantMatchesPyTorchLogits) {
  const auto variants = oracle_variants();
  FBQ_REQUIRE_ORACLE(variants);
  ASSERT_EQ(variants.size(), 6u);
  for (const auto& v : variants) {
    const auto model = load_variant(v);
    InferenceSession session(model);
    const auto logits = session.forward(v.tokens, 0, /*all_logits=*/true);
    ASSERT_EQ(logits.size(), v.logits.size()) << v.name;
    // float32 activations against float64 on the same stored weights: rounding only.
    const float scale = max_abs(v.logits);
    float worst = 0;
    for (std::size_t i = 0; i < logits.size(); ++i) worst = std::max(worst, std::fabs(logits[i] - v.logits[i]));
    EXPECT_LT(worst, 1e-4f * scale) << v.name << ": max |Δlogit| " << worst << " of max |logit| " << scale;
  }
}

// The configs are read the way transformers reads them.
TEST(Architectures, ConfigsAreReadAsTransformersDoes) {
  const auto variants = oracle_variants();
  FBQ_REQUIRE_ORACLE(variants);
  const auto config_of = [&](const std::string& name) {
    for (const auto& v : variants)
      if (v.name == name) return load_variant(v).config;
    throw std::runtime_error("no variant " + name);
  };
  const auto llama3 = config_of("llama3"), linear = config_of("llama-linear"), qwen2 = config_of("qwen2"),
             mistral = config_of("mistral"), bias = config_of("llama-bias");
  EXPECT_EQ(llama3.rope_scaling.type, RopeScaling::Type::llama3);
  EXPECT_EQ(llama3.rope_scaling.original_max_positions, 64);
  EXPECT_EQ(linear.rope_scaling.type, RopeScaling::Type::linear);
  EXPECT_EQ(linear.rope_scaling.factor, 4.0f);
  EXPECT_EQ(qwen2.model_type, "qwen2");
  EXPECT_TRUE(qwen2.qkv_bias && !qwen2.o_bias);
  EXPECT_EQ(qwen2.sliding_window, 0) << "use_sliding_window is false";
  EXPECT_EQ(mistral.head_dim, 24);
  EXPECT_EQ(mistral.sliding_window, 24);
  EXPECT_TRUE(bias.qkv_bias && bias.o_bias);
}

// One token at a time through the KV cache gives the batched prefill's logits, for every architecture.
TEST(Architectures, DecodeEqualsPrefill) {
  const auto variants = oracle_variants();
  FBQ_REQUIRE_ORACLE(variants);
  for (const auto& v : variants) {
    const auto model = load_variant(v);
    InferenceSession prefill(model), decode(model);
    const auto all = prefill.forward(v.tokens, 0, true);
    const std::vector<float> expected(all.begin(), all.end());
    const float scale = max_abs(expected);
    for (std::size_t t = 0; t < v.tokens.size(); ++t) {
      const auto step = decode.forward(std::span(v.tokens).subspan(t, 1), static_cast<int>(t), false);
      for (int j = 0; j < v.vocab; ++j)
        ASSERT_NEAR(step[j], expected[t * v.vocab + j], 1e-5f * scale) << v.name << " position " << t;
    }
  }
}

// Attention past Mistral's window (24 tokens here) is not implemented, so it is refused, not run as full attention.
TEST(Architectures, SlidingWindowRefusesLongerContexts) {
  const auto variants = oracle_variants();
  FBQ_REQUIRE_ORACLE(variants);
  const auto mistral = std::find_if(variants.begin(), variants.end(), [](auto& v) { return v.name == "mistral"; });
  ASSERT_NE(mistral, variants.end());
  const auto model = load_variant(*mistral);
  InferenceSession session(model);
  session.forward(mistral->tokens, 0, false);  // exactly the window
  const std::vector<int> one_more = {mistral->tokens[0]};
  try {
    session.forward(one_more, 24, false);
    ADD_FAILURE() << "position 24 is past the window";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("beyond the sliding window of 24 tokens"), std::string::npos) << e.what();
  }
}

}  // namespace
}  // namespace fbq
