// `fbq synth`: the published shapes, a directory every loader reads, weights of the intended scale that do
// not depend on the thread count, and one clear error line for every bad request.
#include <omp.h>

#include <cmath>

#include "model/model.h"
#include "model/synthetic_model.h"
#include "test_support.h"
#include "util/error.h"

namespace fbq {
namespace {

SynthOptions smollm2(const std::filesystem::path& output) {
  SynthOptions o;
  o.shape = "smollm2-135m";  // the smallest shape: 135M parameters, 270 MB in bf16
  o.output = output;
  o.seed = 5;
  o.without_tokenizer = true;
  o.progress = false;
  return o;
}

TEST(Synth, PublishedShapesAsConfigJson) {
  const auto& llama2 = synthetic_shape("llama2-7b").config;
  EXPECT_EQ(llama2.dim, 4096);
  EXPECT_EQ(llama2.hidden_dim, 11008);
  EXPECT_EQ(llama2.n_kv_heads, 32);
  const auto& llama31 = synthetic_shape("llama3.1-8b").config;
  EXPECT_EQ(llama31.rope_scaling.type, RopeScaling::Type::llama3);
  EXPECT_EQ(llama31.rope_scaling.original_max_positions, 8192);
  EXPECT_EQ(llama31.vocab_size, 128256);
  const auto& qwen = synthetic_shape("qwen2.5-7b").config;
  EXPECT_TRUE(qwen.qkv_bias);
  EXPECT_EQ(qwen.dim, 3584);
  EXPECT_EQ(synthetic_shape("mistral-7b").config.sliding_window, 4096);
  for (const auto& shape : synthetic_shapes()) EXPECT_NO_THROW(shape.config.validate(shape.name));
}

TEST(Synth, WritesALoadableModelIndependentOfThreads) {
  test::TempDir tmp;
  const int threads = omp_get_max_threads();
  omp_set_num_threads(1);
  write_synthetic_model(smollm2(tmp.path() / "one-thread"));
  omp_set_num_threads(std::max(2, threads));
  write_synthetic_model(smollm2(tmp.path() / "threads"));
  omp_set_num_threads(threads);
  const auto a = test::read_file(tmp.path() / "one-thread" / "model.safetensors");
  EXPECT_TRUE(a == test::read_file(tmp.path() / "threads" / "model.safetensors")) << "thread count changed the weights";

  LoadOptions options;
  options.require_tokenizer = false;
  const auto model = load_model(tmp.path() / "threads", options);
  EXPECT_EQ(model.config.n_layers, 30);
  EXPECT_TRUE(model.config.tie_embeddings);
  EXPECT_EQ(model.embedding.dtype(), DType::BF16);
  const auto weights = CheckpointReader(tmp.path() / "threads").layer(0);
  const auto& q = dynamic_cast<const DenseLinear&>(*weights.q_proj).weights();
  double sum = 0, squares = 0;
  for (const float w : q) sum += w, squares += double(w) * w;
  const double mean = sum / q.size(), stddev = std::sqrt(squares / q.size() - mean * mean);
  EXPECT_NEAR(mean, 0.0, 1e-4);
  EXPECT_NEAR(stddev, 0.02, 2e-4) << "N(0, 0.02) weights";
  EXPECT_EQ(weights.attn_norm, std::vector<float>(576, 1.0f));
}

TEST(Synth, BadRequestsAreOneErrorLine) {
  test::TempDir tmp;
  const auto out = (tmp.path() / "m").string();
  test::expect_cli_fails("synth --shape llama9-1t -o '" + out + "' --no-tokenizer", tmp.path());
  test::expect_cli_fails("synth --shape smollm2-135m -o '" + out + "' --dtype int4 --no-tokenizer", tmp.path());
  test::expect_cli_fails("synth --shape smollm2-135m -o '" + out + "' --tokenizer-dir /no/such/dir", tmp.path());
  test::expect_cli_fails("synth --shape smollm2-135m", tmp.path());
  test::expect_cli_fails("synth --shape smollm2-135m -o '" + out + "' --layers 31 --no-tokenizer", tmp.path());
  test::expect_cli_fails("synth --shape smollm2-135m -o '" + tmp.path().string() + "' --no-tokenizer", tmp.path());
  EXPECT_FALSE(std::filesystem::exists(out)) << "nothing written on failure";
  const auto message =
      test::expect_cli_fails("synth --shape smollm2-135m -o '" + out + "' --tokenizer-dir /no/such/dir", tmp.path());
  EXPECT_NE(message.find("--tokenizer FILE or --no-tokenizer"), std::string::npos) << message;
}

TEST(Synth, CopiesTheShapesOwnTokenizer) {
  const auto dir = test::shared_dir() / "tokenizers";
  FBQ_REQUIRE_FILE(dir / "smollm2-tokenizer.json");
  test::TempDir tmp;
  auto options = smollm2(tmp.path() / "m");
  options.without_tokenizer = false;
  options.tokenizer_dir = dir;
  write_synthetic_model(options);
  const auto model = load_model(options.output);
  ASSERT_TRUE(model.tokenizer);
  EXPECT_EQ(model.tokenizer->vocab_size(), 49152);
  options.output = tmp.path() / "two-layers";
  options.layers = 2;
  write_synthetic_model(options);
  EXPECT_EQ(load_model(options.output).config.n_layers, 2);
}

}  // namespace
}  // namespace fbq
