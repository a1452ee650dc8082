// The float32 runtime against external references: PyTorch logits for ref-llama-12m, llama2.c's own greedy
// output for stories260K, and self-consistency between batched prefill and one-token decode.
#include <fmt/core.h>
#include <sys/wait.h>

#include <algorithm>
#include <cmath>
#include <cstring>

#include "eval/generate.h"
#include "eval/perplexity.h"
#include "model/model.h"
#include "model/transformer.h"
#include "test_stories260k.h"
#include "test_support.h"
#include "util/error.h"

namespace fbq {
namespace {

using test::bundled_model;
using test::shared_dir;

TEST(Transformer, BundledModelMatchesPyTorchLogits) {
  const auto dir = bundled_model();
  FBQ_REQUIRE_FILE(dir / "reference_logits.npy");
  const auto ids = test::read_npy<std::int32_t>(dir / "reference_ids.npy", "<i4");
  const auto expected = test::read_npy<float>(dir / "reference_logits.npy", "<f4");
  const auto model = load_model(dir);
  ASSERT_EQ(expected.shape, (std::vector<std::int64_t>{static_cast<std::int64_t>(ids.values.size()), model.config.vocab_size}));

  InferenceSession session(model);
  const std::vector<int> tokens(ids.values.begin(), ids.values.end());
  const auto logits = session.forward(tokens, 0, /*all_logits=*/true);
  ASSERT_EQ(logits.size(), expected.values.size());
  float max_logit = 0.0f, max_diff = 0.0f;
  for (std::size_t i = 0; i < logits.size(); ++i) {
    max_logit = std::max(max_logit, std::fabs(expected.values[i]));
    max_diff = std::max(max_diff, std::fabs(logits[i] - expected.values[i]));
  }
  RecordProperty("max_abs_diff", std::to_string(max_diff));
  EXPECT_LE(max_diff, 1e-3f * max_logit) << "max |diff| " << max_diff << ", max |logit| " << max_logit;
}

TEST(Transformer, DecodeWithKvCacheEqualsBatchedPrefill) {
  const auto dir = bundled_model();
  FBQ_REQUIRE_FILE(dir / "model.safetensors");
  const auto model = load_model(dir);
  const std::vector<int> tokens = {1, 450, 1023, 7, 99, 2048, 3000, 12, 5, 600, 4095, 42};
  const int vocab = model.config.vocab_size;

  InferenceSession batched(model, 64);
  const auto all = batched.forward(tokens, 0, true);
  const std::vector<float> expected(all.begin(), all.end());

  InferenceSession stepwise(model, 64);
  // A 5-token prefill, then single-token steps: exercises both paths over one cache.
  const auto first = stepwise.forward(std::span(tokens).first(5), 0, true);
  for (std::size_t i = 0; i < first.size(); ++i) ASSERT_NEAR(first[i], expected[i], 1e-3f);
  for (std::size_t t = 5; t < tokens.size(); ++t) {
    const auto logits = stepwise.forward(std::span(tokens).subspan(t, 1), static_cast<int>(t), false);
    for (int v = 0; v < vocab; ++v) ASSERT_NEAR(logits[v], expected[t * vocab + v], 1e-3f) << "token " << t;
  }
}

TEST(Transformer, RejectsContextOverflowAndBadTokens) {
  const auto dir = bundled_model();
  FBQ_REQUIRE_FILE(dir / "model.safetensors");
  const auto model = load_model(dir);
  InferenceSession session(model, 4);
  const std::vector<int> too_long = {1, 2, 3, 4, 5};
  EXPECT_THROW(session.forward(too_long, 0, false), Error);
  const std::vector<int> bad_token = {1, model.config.vocab_size};
  EXPECT_THROW(session.forward(bad_token, 0, false), Error);
  const std::vector<int> ok = {1, 2};
  EXPECT_THROW(session.forward(ok, 1, false), Error) << "position must match the cache";
}

TEST(Transformer, Stories260KGreedyMatchesLlama2c) {
  const auto dir = shared_dir() / "models" / "stories260K";
  FBQ_REQUIRE_FILE(dir / "stories260K.bin");
  LoadOptions options;
  options.tokenizer = dir / "tok512.bin";
  const auto model = load_model(dir / "stories260K.bin", options);
  EXPECT_EQ(test::llama2c_greedy_256(model), test::read_file(dir / "reference_greedy_256.txt"));
}

TEST(Transformer, BabyLlamaGeneratesReadableText) {
  const auto dir = shared_dir() / "models" / "babyllama-128";
  FBQ_REQUIRE_FILE(dir / "model.bin");
  LoadOptions options;
  options.tokenizer = dir / "tok105.bin";
  const auto model = load_model(dir / "model.bin", options);
  GenerateOptions generate_options;
  generate_options.max_new_tokens = 200;
  const auto result = generate(model, "Once upon a time", generate_options);
  ASSERT_GT(result.generated.size(), 50u);
  // Readable: mostly letters, spaces and punctuation, and made of common English words.
  const auto text = result.text;
  const auto printable = std::count_if(text.begin(), text.end(), [](unsigned char c) { return std::isprint(c) || c == '\n'; });
  EXPECT_EQ(printable, static_cast<long>(text.size())) << text;
  int common = 0;
  for (const char* word : {" the ", " was ", " a ", " and ", " to ", " she ", " he "})
    common += text.find(word) != std::string::npos;
  EXPECT_GE(common, 3) << text;
}

TEST(Perplexity, ParagraphTextJoinsWithBlankLines) {
  test::TempDir tmp;
  test::write_file(tmp.path() / "t.txt", "first line\nsame paragraph\n\n\n  \nsecond\r\n\r\nthird\n");
  EXPECT_EQ(read_paragraph_text(tmp.path() / "t.txt"), "first line\nsame paragraph\n\nsecond\n\nthird");
  test::write_file(tmp.path() / "empty.txt", "\n\n  \n");
  EXPECT_THROW(read_paragraph_text(tmp.path() / "empty.txt"), Error);
}

TEST(Perplexity, WindowsAndScoredTokens) {
  const auto dir = bundled_model();
  FBQ_REQUIRE_FILE(dir / "model.safetensors");
  const auto model = load_model(dir);
  std::vector<int> tokens = model.tokenizer->encode(
      "It was the best of times, it was the worst of times, it was the age of wisdom, it was the age of foolishness.",
      true);
  PerplexityOptions options;
  options.ctx = 8;
  options.progress = false;
  const auto result = evaluate_perplexity(model, tokens, options);
  const auto n = static_cast<std::int64_t>(tokens.size());
  const auto windows = n / 8;  // whole windows only
  EXPECT_EQ(result.windows, windows);
  EXPECT_EQ(result.tokens, n - windows);  // every token but each window's first
  EXPECT_TRUE(std::isfinite(result.ppl));
  EXPECT_GT(result.ppl, 1.0);
  EXPECT_LT(result.ppl, model.config.vocab_size);
  EXPECT_GT(result.ppl_stderr, 0.0);
  options.max_windows = 1;
  EXPECT_EQ(evaluate_perplexity(model, tokens, options).tokens, 7);
  options.ctx = static_cast<int>(n) + 1;
  EXPECT_THROW(evaluate_perplexity(model, tokens, options), Error) << "text shorter than one window";
}

TEST(Perplexity, TokenNllsAddUpAndRoundTripThroughNllOut) {
  const auto dir = bundled_model();
  FBQ_REQUIRE_FILE(dir / "model.safetensors");
  const auto model = load_model(dir);
  const auto tokens = model.tokenizer->encode("Call me Ishmael. Some years ago, never mind how long precisely.", true);
  PerplexityOptions options;
  options.ctx = 6;
  options.progress = false;
  const auto result = evaluate_perplexity(model, tokens, options);
  ASSERT_EQ(static_cast<std::int64_t>(result.token_nll.size()), result.tokens);
  double sum = 0.0;
  for (const float nll : result.token_nll) sum += nll;
  EXPECT_NEAR(sum / result.tokens, result.mean_nll, 1e-6);
  test::TempDir tmp;
  write_token_nll(tmp.path() / "nll.f32", result.token_nll);
  const auto bytes = test::read_file(tmp.path() / "nll.f32");
  ASSERT_EQ(bytes.size(), result.token_nll.size() * sizeof(float));
  EXPECT_EQ(std::memcmp(bytes.data(), result.token_nll.data(), bytes.size()), 0);
  EXPECT_THROW(write_token_nll(tmp.path() / "missing-dir" / "nll.f32", result.token_nll), Error);
}

TEST(Perplexity, PairedDifferenceCountsWindowsNotTokens) {
  PerplexityResult baseline, candidate;
  baseline.windows = candidate.windows = 2;
  baseline.token_nll = {1.0f, 2.0f, 3.0f, 1.0f, 2.0f, 3.0f};
  candidate.token_nll = {1.1f, 2.1f, 3.1f, 1.3f, 2.3f, 3.3f};  // window means shift by 0.1 and 0.3
  baseline.ppl = 10.0;
  candidate.ppl = 12.0;
  const auto d = paired_difference(baseline, candidate);
  EXPECT_EQ(d.windows, 2);
  EXPECT_NEAR(d.nll_difference, 0.2, 1e-6);
  EXPECT_NEAR(d.nll_difference_stderr, 0.1, 1e-6);  // sd of {0.1, 0.3} is 0.1414, over sqrt(2) windows
  EXPECT_NEAR(d.ppl_difference, 2.0, 1e-12);
  EXPECT_NEAR(d.ppl_difference_stderr, 1.2, 1e-5);
  const auto same = paired_difference(baseline, baseline);
  EXPECT_EQ(same.nll_difference, 0.0);
  EXPECT_EQ(same.nll_difference_stderr, 0.0);
  candidate.token_nll.pop_back();
  EXPECT_THROW(paired_difference(baseline, candidate), Error);
}

// `fbq compare`: a model against itself differs by exactly nothing; two models whose tokenizers cut the text
// differently cannot be paired, which is one error line before any scoring.
TEST(CompareCli, PairsTheSameTokensOrRefuses) {
  const auto dir = bundled_model();
  const auto text = shared_dir() / "data" / "moby-test.txt";
  const auto stories = shared_dir() / "models" / "stories260K" / "stories260K.bin";
  FBQ_REQUIRE_FILE(dir / "model.safetensors");
  FBQ_REQUIRE_FILE(text);
  FBQ_REQUIRE_FILE(stories);
  test::TempDir tmp;
  const auto other = tmp.path() / "stories";  // a model with its own tokenizer, found beside it
  std::filesystem::create_directories(other);
  std::filesystem::copy_file(stories, other / "stories260K.bin");
  std::filesystem::copy_file(stories.parent_path() / "tok512.bin", other / "tokenizer.bin");
  const auto out = tmp.path() / "out.json", err = tmp.path() / "err.txt";
  const auto run = [&](const std::filesystem::path& candidate) {
    const auto command = fmt::format("'{}' compare '{}' '{}' --text '{}' --ctx 64 --max-windows 3 --json >'{}' 2>'{}'",
                                     FBQ_CLI_PATH, dir.string(), candidate.string(), text.string(), out.string(),
                                     err.string());
    const int status = std::system(command.c_str());
    return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  };
  ASSERT_EQ(run(dir), 0) << test::read_file(err);
  const auto json = test::read_file(out);
  EXPECT_NE(json.find("\"ppl_difference\":0.0"), std::string::npos) << json;
  EXPECT_NE(json.find("\"ppl_difference_stderr\":0.0"), std::string::npos) << json;
  EXPECT_NE(json.find("\"windows\":3"), std::string::npos) << json;
  EXPECT_EQ(run(other / "stories260K.bin"), 1);
  const auto message = test::read_file(err);
  EXPECT_NE(message.find("fbq: error: the two models' tokenizers cut"), std::string::npos) << message;
  EXPECT_EQ(message.find("perplexity:"), std::string::npos) << "refused before scoring: " << message;
}

}  // namespace
}  // namespace fbq
