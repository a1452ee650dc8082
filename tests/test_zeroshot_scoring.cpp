// Zero-shot scoring: _encode_pair, the packed shared-context path against scoring each request alone,
// greedy accuracy, acc_norm by characters, lm-eval's standard errors (the MMLU group, the bootstrap),
// paired differences, the PyTorch oracle and the CLI's error paths.
#include <fmt/format.h>

#include <cmath>

#include "eval/loglikelihood.h"
#include "eval/zeroshot.h"
#include "eval/zeroshot_report.h"
#include "model/transformer.h"
#include "test_support.h"
#include "util/error.h"
#include "util/python_random.h"

namespace fbq {
namespace {

std::filesystem::path zeroshot_dir() { return test::shared_dir() / "data" / "zeroshot"; }

class ZeroShotScoring : public ::testing::Test {
 protected:
  static void SetUpTestSuite() { model_ = new Model(load_model(test::bundled_model())); }
  static void TearDownTestSuite() { delete model_; }
  static const Model& model() { return *model_; }

  static std::vector<Request> requests_of(const std::vector<Task>& tasks) {
    std::vector<Request> requests;
    for (const auto& task : tasks)
      for (const auto& doc : task.documents) requests.insert(requests.end(), doc.requests.begin(), doc.requests.end());
    return requests;
  }
  static TaskSources sources(int limit) {
    TaskSources s;
    s.data_dir = zeroshot_dir();
    s.limit = limit;
    return s;
  }

 private:
  static inline Model* model_ = nullptr;
};

TEST_F(ZeroShotScoring, EncodePairMovesTrailingSpacesAndTokenizesTheJointString) {
  const auto& tokenizer = *model().tokenizer;
  for (const bool bos : {true, false}) {
    const auto moved = encode_pair(tokenizer, "Question: why?\nAnswer: ", "yes", bos);
    const auto plain = encode_pair(tokenizer, "Question: why?\nAnswer:", " yes", bos);
    EXPECT_EQ(moved.context, plain.context);
    EXPECT_EQ(moved.continuation, plain.continuation);
    EXPECT_EQ(moved.context.front() == tokenizer.bos_id(), bos);
    const auto whole = tokenizer.encode("Question: why?\nAnswer: yes", bos);
    const auto context = tokenizer.encode("Question: why?\nAnswer:", bos);
    EXPECT_EQ(plain.continuation, std::vector<int>(whole.begin() + context.size(), whole.end()));
  }
  // Where the boundary falls inside a word, the joint string's tail differs from the continuation tokenized
  // alone (and the context's own tokens are not a prefix of the joint ones): lm-eval keeps the joint tail.
  const auto split = encode_pair(tokenizer, "It is un", "believable", false);
  const auto whole = tokenizer.encode("It is unbelievable", false);
  EXPECT_EQ(split.continuation, std::vector<int>(whole.begin() + split.context.size(), whole.end()));
  EXPECT_NE(split.continuation, tokenizer.encode("believable", false));
  const auto empty = encode_pair(tokenizer, "", " yes", true);
  EXPECT_EQ(empty.context, std::vector<int>{tokenizer.bos_id()});
}

// The packed batch (contexts once, continuations branching off the cached keys/values, many documents per
// pass) against one plain forward per request, for every task shape, at several batch sizes.
TEST_F(ZeroShotScoring, SharedContextPathMatchesScoringEachRequestAlone) {
  FBQ_REQUIRE_FILE(zeroshot_dir());
  std::vector<Task> tasks;
  for (const auto* name : {"arc_easy", "winogrande", "hellaswag", "lambada_openai", "mmlu_abstract_algebra", "boolq"})
    for (auto& task : load_tasks({name}, sources(6))) tasks.push_back(std::move(task));
  const auto requests = requests_of(tasks);
  for (const bool bos : {true, false}) {
    ScoreOptions options;
    options.bos = bos;
    std::vector<RequestScore> alone;
    for (const auto& request : requests) alone.push_back(score_request_alone(model(), request, options));
    for (const int batch_tokens : {1, 300, 100000}) {
      options.batch_tokens = batch_tokens;
      const auto packed = score_requests(model(), requests, options);
      ASSERT_EQ(packed.size(), requests.size());
      for (std::size_t i = 0; i < requests.size(); ++i) {
        EXPECT_NEAR(packed[i].loglikelihood, alone[i].loglikelihood, 1e-4) << "request " << i << " batch " << batch_tokens;
        EXPECT_EQ(packed[i].greedy, alone[i].greedy) << i;
        EXPECT_EQ(packed[i].continuation_tokens, alone[i].continuation_tokens) << i;
      }
    }
  }
}

// LAMBADA's acc: every target token must be the argmax at its position; checked against a full forward.
TEST_F(ZeroShotScoring, GreedyMeansEveryTargetTokenIsTheArgmax) {
  FBQ_REQUIRE_FILE(zeroshot_dir());
  auto tasks = load_tasks({"last_word_sotu"}, [] {
    auto s = sources(40);
    s.text_dir = test::shared_dir() / "data";
    return s;
  }());
  const auto requests = requests_of(tasks);
  const auto scores = score_requests(model(), requests, {});
  int multi_token = 0, greedy = 0;
  for (std::size_t i = 0; i < requests.size(); ++i) {
    const auto encoded = encode_pair(*model().tokenizer, requests[i].context, requests[i].continuation, true);
    std::vector<int> input = encoded.context;
    input.insert(input.end(), encoded.continuation.begin(), encoded.continuation.end() - 1);
    InferenceSession session(model(), static_cast<int>(input.size()));
    const auto logits = session.forward(input, 0, true);
    const int vocab = model().config.vocab_size;
    std::vector<bool> right;
    for (std::size_t j = 0; j < encoded.continuation.size(); ++j) {
      const float* row = logits.data() + (encoded.context.size() - 1 + j) * vocab;
      right.push_back(std::max_element(row, row + vocab) - row == encoded.continuation[j]);
    }
    const bool all = std::all_of(right.begin(), right.end(), [](bool b) { return b; });
    EXPECT_EQ(scores[i].greedy, all) << i;
    multi_token += encoded.continuation.size() > 1;
    greedy += all;
  }
  EXPECT_GT(multi_token, 10);
  EXPECT_GT(greedy, 0);  // the derived task is one the small model can do
}

TEST(ZeroShotMetrics, AccNormDividesByCharactersNotBytes) {
  Task task{.name = "t", .reports_acc_norm = true};
  Document doc{.id = 0, .choices = {"\u00e9\u00e9\u00e9", "abcd"}, .gold = 1};  // 3 characters (6 bytes), 4 characters
  doc.requests = {{"c", " \u00e9\u00e9\u00e9"}, {"c", " abcd"}};
  const std::vector<RequestScore> scores = {{.loglikelihood = -3.0}, {.loglikelihood = -3.2}};
  const auto score = score_document(task, doc, scores);
  EXPECT_EQ(score.pred, 0);       // -3.0 > -3.2
  EXPECT_EQ(score.pred_norm, 1);  // per character -1.0 < -0.8; per byte it would be -0.5 > -0.8
}

TEST(ZeroShotMetrics, StderrsAsLmEval) {
  // mean_stderr: Bessel-corrected sample standard deviation over sqrt(n).
  const std::vector<double> values = {1, 0, 0, 1, 1};
  EXPECT_NEAR(*mean_stderr(values), std::sqrt(0.3) / std::sqrt(5.0), 1e-12);
  EXPECT_FALSE(mean_stderr({1.0}).has_value());

  // The MMLU group: size-weighted mean and pooled_sample_stderr; it equals the stderr of all documents pooled.
  std::vector<TaskResult> results;
  std::vector<double> pooled;
  for (const int size : {3, 5, 8}) {
    TaskResult r{.name = fmt::format("mmlu_{}", size), .group = "mmlu"};
    for (int d = 0; d < size; ++d) {
      r.documents.push_back({.id = d, .gold = 0, .loglikelihoods = {0.0}, .greedy = {false}, .pred = (d * 7 + size) % 3 == 0 ? 0 : 1});
      pooled.push_back(r.documents.back().acc());
    }
    r.metrics = task_metrics(TaskKind::multiple_choice, false, r.documents, 0);
    results.push_back(r);
  }
  const auto groups = group_results(results);
  ASSERT_EQ(groups.size(), 1u);
  double weighted = 0;
  std::vector<double> stderrs;
  for (const auto& r : results) {
    weighted += r.metric("acc")->value * r.documents.size();
    stderrs.push_back(*r.metric("acc")->stderr);
  }
  EXPECT_NEAR(groups[0].metrics[0].value, weighted / 16.0, 1e-12);
  double var = 0;
  const int sizes[] = {3, 5, 8};
  for (int i = 0; i < 3; ++i) var += (sizes[i] - 1) * stderrs[i] * stderrs[i] * sizes[i];
  EXPECT_NEAR(*groups[0].metrics[0].stderr, std::sqrt(var / (16 - 3) / 16), 1e-12);
  EXPECT_EQ(groups[0].documents, 16);
}

TEST(ZeroShotMetrics, PythonRandomAndBootstrapMatchCPython) {
  EXPECT_DOUBLE_EQ(PythonRandom(0).random(), 0.8444218515250481);  // random.Random(0).random()
  EXPECT_DOUBLE_EQ(PythonRandom(1).random(), 0.13436424411240122);
  std::vector<double> lls;
  for (int i = 0; i < 40; ++i) lls.push_back(-0.1 * ((i * 37) % 23) - 0.5);
  const double ours = bootstrap_perplexity_stderr(lls, 3000);
  // lm-eval's bootstrap_stderr, run by CPython itself (the standard library is enough).
  std::string list;
  for (const double v : lls) list += fmt::format("{:.17g},", v);
  const auto script = fmt::format(
      "import random, math\nxs=[{}]\nres=[]\nfor i in range(3):\n r=random.Random()\n r.seed(i)\n for _ in range(1000):\n"
      "  s=r.choices(xs,k=len(xs))\n  res.append(math.exp(-(sum(s)/len(s))))\nmu=sum(res)/len(res)\n"
      "print(repr(math.sqrt(sum((x-mu)**2 for x in res)/(len(res)-1))))\n",
      list);
  test::TempDir tmp;
  test::write_file(tmp.path() / "b.py", script);
  const auto out = tmp.path() / "out.txt";
  if (std::system(fmt::format("/usr/bin/python3 '{}' > '{}' 2>/dev/null", (tmp.path() / "b.py").string(), out.string()).c_str()) != 0)
    GTEST_SKIP() << "/usr/bin/python3 not runnable";
  EXPECT_NEAR(ours, std::stod(test::read_file(out)), 1e-12);
}

TEST_F(ZeroShotScoring, TruncatesFromTheLeftAndCounts) {
  FBQ_REQUIRE_FILE(zeroshot_dir());
  auto tasks = load_tasks({"boolq"}, sources(8));
  EvalOptions options;
  options.progress = false;
  options.scoring.max_length = 48;  // boolq passages are far longer
  const auto results = evaluate_tasks(model(), tasks, options);
  EXPECT_EQ(results[0].truncated, 8);
  const auto& doc = tasks[0].documents[0];
  const auto alone = score_request_alone(model(), doc.requests[1], options.scoring);
  EXPECT_TRUE(alone.truncated);
  EXPECT_NEAR(results[0].documents[0].loglikelihoods[1], alone.loglikelihood, 1e-4);
  // Truncation keeps the last max_length + 1 tokens: the same as scoring the tail of the context by hand.
  const auto encoded = encode_pair(*model().tokenizer, doc.requests[1].context, doc.requests[1].continuation, true);
  std::vector<int> all = encoded.context;
  all.insert(all.end(), encoded.continuation.begin(), encoded.continuation.end());
  std::vector<int> input(all.end() - 49, all.end() - 1);
  InferenceSession session(model(), 48);
  const auto logits = session.forward(input, 0, true);
  double ll = 0;
  const int vocab = model().config.vocab_size;
  for (std::size_t j = 0; j < encoded.continuation.size(); ++j) {
    const float* row = logits.data() + (48 - encoded.continuation.size() + j) * vocab;
    double total = 0;
    const float top = *std::max_element(row, row + vocab);
    for (int v = 0; v < vocab; ++v) total += std::exp(double(row[v]) - top);
    ll += row[encoded.continuation[j]] - (std::log(total) + top);
  }
  EXPECT_NEAR(alone.loglikelihood, ll, 1e-4);
}

TEST_F(ZeroShotScoring, PairedDifferenceAgainstItselfIsZeroAndReportsAreShaped) {
  FBQ_REQUIRE_FILE(zeroshot_dir());
  const auto tasks = load_tasks({"arc_easy", "mmlu_anatomy", "mmlu_virology", "lambada_openai"}, sources(10));
  EvalOptions options;
  options.progress = false;
  options.bootstrap_iterations = 1000;
  const auto results = evaluate_tasks(model(), tasks, options);
  for (const auto& p : paired_metrics(results, results)) {
    EXPECT_EQ(p.difference, 0.0) << p.task << " " << p.metric;
    EXPECT_EQ(p.documents, p.task == "mmlu" ? 20 : 10);
  }
  const auto json = results_json(results, {"m", true, 10, 4096, "d"});
  EXPECT_TRUE(json["results"]["arc_easy"].contains("acc_norm_stderr,none"));
  EXPECT_EQ(json["results"]["arc_easy"]["alias"], "arc_easy");
  EXPECT_TRUE(json["results"]["lambada_openai"].contains("perplexity,none"));
  EXPECT_TRUE(json["groups"].contains("mmlu"));
  EXPECT_EQ(json["n-samples"]["arc_easy"]["effective"], 10);
  EXPECT_EQ(json["n-samples"]["arc_easy"]["original"], 2376);
  EXPECT_EQ(json["config"]["bos"], true);
  const auto table = format_results_table(results, false);
  EXPECT_NE(table.find("mmlu (2 subtasks)"), std::string::npos);
  EXPECT_EQ(table.find("mmlu_anatomy"), std::string::npos);
  EXPECT_NE(table.find("average over 3 tasks"), std::string::npos);
}

// The whole evaluation against an independent PyTorch re-implementation of lm-eval's scoring.
TEST(ZeroShotOracle, PyTorchReimplementationAgrees) {
  FBQ_REQUIRE_FILE(zeroshot_dir());
  const auto oracle = test::source_dir() / "tests" / "oracle" / "zeroshot_oracle.py";
  if (std::system("/usr/bin/python3 -c 'import torch, sentencepiece' >/dev/null 2>&1") != 0)
    GTEST_SKIP() << "PyTorch oracle not available (Debian python3-torch, python3-sentencepiece: scripts/setup.sh)";
  test::TempDir tmp;
  for (const auto& [tasks, limit, bos] : std::vector<std::tuple<std::string, int, std::string>>{
           {"arc_easy,arc_challenge,piqa,hellaswag,winogrande,boolq,openbookqa,lambada_openai", 50, "on"},
           {"mmlu", 1, "on"},
           {"arc_easy,winogrande,lambada_openai,mmlu_college_biology", 10, "off"}}) {
    const auto samples = tmp.path() / "samples.jsonl";
    const auto log = tmp.path() / "log.txt";
    ASSERT_EQ(std::system(fmt::format("'{}' eval '{}' --tasks {} --limit {} --bos {} --data '{}' --samples-out '{}' --quiet "
                                      ">'{}' 2>&1",
                                      FBQ_CLI_PATH, test::bundled_model().string(), tasks, limit, bos,
                                      zeroshot_dir().string(), samples.string(), log.string())
                              .c_str()),
              0)
        << test::read_file(log);
    const int status = std::system(fmt::format("/usr/bin/python3 '{}' --model '{}' --data '{}' --samples '{}' --bos {} >'{}' 2>&1",
                                               oracle.string(), test::bundled_model().string(), zeroshot_dir().string(),
                                               samples.string(), bos, log.string())
                                       .c_str());
    EXPECT_EQ(status, 0) << tasks << " bos " << bos << ":\n" << test::read_file(log);
  }
}

TEST(ZeroShotCli, BadInputIsOneErrorLineAndExitOne) {
  test::TempDir tmp;
  const auto err = tmp.path() / "err.txt";
  const auto run = [&](const std::string& args) {
    const int status = std::system(fmt::format("'{}' eval '{}' {} >/dev/null 2>'{}'", FBQ_CLI_PATH,
                                               test::bundled_model().string(), args, err.string()).c_str());
    return std::pair{WEXITSTATUS(status), test::read_file(err)};
  };
  const auto expect_error = [&](const std::string& args, const std::string& message) {
    const auto [status, text] = run(args);
    EXPECT_EQ(status, 1) << args;
    EXPECT_NE(text.find("fbq: error: " + message), std::string::npos) << args << ": " << text;
    EXPECT_EQ(std::count(text.begin(), text.end(), '\n'), 1) << text;
  };
  expect_error("--tasks nonsense", "unknown task 'nonsense'");
  expect_error(fmt::format("--tasks arc_easy --data '{}'", tmp.path().string()),
               (tmp.path() / "arc_easy" / "ARC-Easy-Test.jsonl").string() + ": file not found");
  test::write_file(tmp.path() / "t.jsonl", "{\"context\": \"a\", \"choices\": [\"x\", \"y\"], \"gold\": 0}\n{oops\n");
  expect_error(fmt::format("--tasks '{}'", (tmp.path() / "t.jsonl").string()), (tmp.path() / "t.jsonl").string() + ":2: malformed JSON");
  expect_error(fmt::format("--tasks '{}' --bos maybe", (tmp.path() / "t.jsonl").string()), "--bos must be on or off");
}

}  // namespace
}  // namespace fbq
