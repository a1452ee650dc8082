// Zero-shot tasks: requests exactly as LM_EVAL_FORMATS.md's worked examples, the data formats, the derived
// last-word rule, user JSONL tasks, and every bad-input path.
#include <fmt/format.h>

#include "eval/tasks/task.h"
#include "io/text_files.h"
#include "test_support.h"
#include "util/error.h"

namespace fbq {
namespace {

std::filesystem::path zeroshot_dir() { return test::shared_dir() / "data" / "zeroshot"; }

TaskSources limited(int limit) {
  TaskSources sources;
  sources.data_dir = zeroshot_dir();
  sources.text_dir = test::shared_dir() / "data";
  sources.limit = limit;
  return sources;
}

std::string error_of(const std::function<void()>& run) {
  try {
    run();
  } catch (const Error& e) {
    return e.what();
  }
  return "(no error)";
}

TEST(ZeroShotTasks, ArcEasyWorkedExample) {
  FBQ_REQUIRE_FILE(zeroshot_dir() / "arc_easy");
  const auto task = load_builtin_task("arc_easy", limited(3));
  ASSERT_EQ(task.documents.size(), 3u);
  EXPECT_EQ(task.total_documents, 2376);
  const auto& doc = task.documents[0];
  EXPECT_EQ(doc.requests[0].context,
            "Question: Which statement best explains why photosynthesis is the foundation of most food webs?\nAnswer:");
  EXPECT_EQ(doc.requests[0].continuation, " Sunlight is the source of energy for nearly all ecosystems.");
  EXPECT_EQ(doc.requests[1].continuation, " Most ecosystems are found on land instead of in water.");
  EXPECT_EQ(doc.gold, 0);
  EXPECT_TRUE(task.reports_acc_norm);
  EXPECT_EQ(load_builtin_task("arc_challenge", limited(0)).documents.size(), 1172u);
}

TEST(ZeroShotTasks, MmluWorkedExampleAndSubjects) {
  FBQ_REQUIRE_FILE(zeroshot_dir() / "mmlu");
  const auto subjects = load_mmlu(limited(0));
  ASSERT_EQ(subjects.size(), 57u);
  std::size_t questions = 0;
  for (const auto& s : subjects) questions += s.documents.size();
  EXPECT_EQ(questions, 14042u);
  const auto& algebra = subjects.front();
  EXPECT_EQ(algebra.name, "mmlu_abstract_algebra");
  EXPECT_EQ(algebra.group, "mmlu");
  EXPECT_FALSE(algebra.reports_acc_norm);
  const auto& doc = algebra.documents[0];
  EXPECT_EQ(doc.requests[0].context,
            "The following are multiple choice questions (with answers) about abstract algebra.\n\nFind the degree for "
            "the given field extension Q(sqrt(2), sqrt(3), sqrt(18)) over Q.\nA. 0\nB. 4\nC. 2\nD. 6\nAnswer:");
  ASSERT_EQ(doc.requests.size(), 4u);
  EXPECT_EQ(doc.requests[0].continuation, " A");
  EXPECT_EQ(doc.requests[3].continuation, " D");
  EXPECT_EQ(doc.gold, 1);  // ' B'
  // A quoted CSV field with a comma: "0,1" is one choice.
  EXPECT_NE(algebra.documents[2].requests[0].context.find("\nC. 0,1\nD. 0,4\n"), std::string::npos);
  EXPECT_EQ(load_tasks({"mmlu_high_school_us_history"}, limited(5)).size(), 1u);
}

TEST(ZeroShotTasks, WinograndeScoresOnlyTheSharedSuffix) {
  FBQ_REQUIRE_FILE(zeroshot_dir() / "winogrande");
  const auto task = load_builtin_task("winogrande", limited(0));
  EXPECT_EQ(task.documents.size(), 1267u);
  EXPECT_FALSE(task.reports_acc_norm);
  const auto& doc = task.documents[0];
  ASSERT_EQ(doc.requests.size(), 2u);
  EXPECT_EQ(doc.requests[0].context, "Sarah was a much better surgeon than Maria so Sarah");
  EXPECT_EQ(doc.requests[1].context, "Sarah was a much better surgeon than Maria so Maria");
  EXPECT_EQ(doc.requests[0].continuation, " always got the easier cases.");
  EXPECT_EQ(doc.requests[1].continuation, doc.requests[0].continuation);
  EXPECT_EQ(doc.gold, 1);
}

TEST(ZeroShotTasks, HellaswagFromTheLlamaCppFile) {
  FBQ_REQUIRE_FILE(zeroshot_dir() / "hellaswag");
  const auto task = load_builtin_task("hellaswag", limited(2));
  EXPECT_EQ(task.total_documents, 10042);
  const auto& doc = task.documents[0];
  // LM_EVAL_FORMATS.md: lm-eval has "... roof. He"; this file keeps ctx_b uncapitalized (the note says so).
  EXPECT_EQ(doc.requests[0].context, "Roof shingle removal: A man is sitting on a roof. he");
  EXPECT_EQ(doc.requests[0].continuation, " is using wrap to wrap a pair of skis.");
  EXPECT_EQ(doc.requests[3].continuation, " starts pulling up roofing on a roof.");
  EXPECT_EQ(doc.gold, 3);
  EXPECT_FALSE(task.note.empty());
}

TEST(ZeroShotTasks, BoolqPiqaOpenbookqaLambada) {
  FBQ_REQUIRE_FILE(zeroshot_dir() / "boolq");
  const auto boolq = load_builtin_task("boolq", limited(0));
  EXPECT_EQ(boolq.documents.size(), 3270u);
  const auto& b = boolq.documents[0];
  EXPECT_TRUE(b.requests[0].context.starts_with("Ethanol fuel -- All biomass"));
  EXPECT_TRUE(b.requests[0].context.ends_with("\nQuestion: does ethanol take more energy make that produces?\nAnswer:"));
  EXPECT_EQ(b.requests[0].continuation, " no");
  EXPECT_EQ(b.requests[1].continuation, " yes");
  EXPECT_EQ(b.gold, 0);  // "label": false

  const auto piqa = load_builtin_task("piqa", limited(0));
  EXPECT_EQ(piqa.documents.size(), 1838u);
  EXPECT_EQ(piqa.documents[0].requests[0].context, "Question: How do I ready a guinea pig cage for it's new occupants?\nAnswer:");
  EXPECT_EQ(piqa.documents[1].requests[1].continuation, " finish, woodgrain with  bobby pin ");

  const auto obqa = load_builtin_task("openbookqa", limited(0));
  EXPECT_EQ(obqa.documents.size(), 500u);
  EXPECT_TRUE(obqa.documents[0].requests[0].context.starts_with("A person wants to start saving money"));  // bare stem
  EXPECT_EQ(obqa.documents[0].requests[1].continuation, " quit eating lunch out");
  EXPECT_EQ(obqa.documents[0].gold, 1);

  const auto lambada = load_builtin_task("lambada_openai", limited(0));
  EXPECT_EQ(lambada.documents.size(), 5153u);
  EXPECT_EQ(lambada.kind, TaskKind::last_word);
  const auto& l = lambada.documents[0];
  EXPECT_TRUE(l.requests[0].context.ends_with("his mouth curved in a confident grin, I don't care about"));
  EXPECT_EQ(l.requests[0].continuation, " signs");
}

TEST(ZeroShotTasks, AllAndLimit) {
  FBQ_REQUIRE_FILE(zeroshot_dir());
  const auto tasks = load_tasks({"all"}, limited(2));
  EXPECT_EQ(tasks.size(), 8u + 57u);
  for (const auto& task : tasks) EXPECT_EQ(task.documents.size(), 2u) << task.name;
}

TEST(ZeroShotTasks, DerivedLastWordRule) {
  test::TempDir tmp;
  const std::string words20 = "one two three four five six seven eight nine ten eleven twelve thirteen fourteen "
                              "fifteen sixteen seventeen eighteen nineteen twenty";
  test::write_file(tmp.path() / "t.txt", words20 + " whale.\u201D\n\nshort paragraph ends here.\n\n" + words20 +
                                              " 1851.\n\n" + words20 + "\nline\nbroken Ahab!\n");
  const auto task = load_last_word_task("last_word_t", tmp.path() / "t.txt", 0);
  ASSERT_EQ(task.documents.size(), 2u);  // the short paragraph and the number are skipped
  EXPECT_EQ(task.documents[0].requests[0].context, words20);
  EXPECT_EQ(task.documents[0].requests[0].continuation, " whale");
  EXPECT_EQ(task.documents[1].requests[0].context, words20 + "\nline\nbroken");
  EXPECT_EQ(task.documents[1].requests[0].continuation, " Ahab");

  FBQ_REQUIRE_FILE(test::shared_dir() / "data" / "sotu-test.txt");
  for (const auto* name : {"last_word_sotu", "last_word_moby"}) {
    const auto real = load_tasks({name}, limited(0));
    EXPECT_GT(real[0].documents.size(), 200u) << name;
  }
}

TEST(ZeroShotTasks, UserJsonlTask) {
  test::TempDir tmp;
  test::write_file(tmp.path() / "mine.jsonl",
                   R"({"context": "The sky is", "choices": ["blue", "green"], "gold": 0})" "\n\n"
                   R"({"context": "Water is", "choices": ["wet", "dry", "café"], "gold": 2})" "\n");
  const auto task = load_jsonl_task(tmp.path() / "mine.jsonl", 0);
  EXPECT_EQ(task.name, "mine");
  ASSERT_EQ(task.documents.size(), 2u);
  EXPECT_EQ(task.documents[1].requests[2].continuation, " café");
  EXPECT_EQ(task.documents[1].id, 1);
  EXPECT_TRUE(task.reports_acc_norm);

  test::write_file(tmp.path() / "wino.jsonl",
                   R"({"context": "Tom gave Ann a gift because ", "choices": ["Tom", "Ann"], "gold": 1, "continuation_suffix": "was kind."})" "\n");
  const auto wino = load_jsonl_task(tmp.path() / "wino.jsonl", 0);
  EXPECT_FALSE(wino.reports_acc_norm);
  EXPECT_EQ(wino.documents[0].requests[1].context, "Tom gave Ann a gift because Ann");
  EXPECT_EQ(wino.documents[0].requests[1].continuation, " was kind.");
}

TEST(ZeroShotTasks, BadInputIsOneClearError) {
  test::TempDir tmp;
  const auto path = tmp.path() / "bad.jsonl";
  EXPECT_NE(error_of([&] { load_tasks({"arc_hard"}, limited(0)); }).find("unknown task 'arc_hard'"), std::string::npos);
  EXPECT_NE(error_of([&] { load_jsonl_task(path, 0); }).find("bad.jsonl: file not found"), std::string::npos);
  test::write_file(path, "");
  EXPECT_NE(error_of([&] { load_jsonl_task(path, 0); }).find("is empty"), std::string::npos);
  test::write_file(path, "{\"context\": \"a\", \"choices\": [\"x\", \"y\"], \"gold\": 0}\n{\"context\": \"a\", \n");
  EXPECT_NE(error_of([&] { load_jsonl_task(path, 0); }).find("bad.jsonl:2: malformed JSON"), std::string::npos);
  test::write_file(path, "{\"context\": \"a\", \"choices\": [\"x\", \"y\"], \"gold\": 2}\n");
  EXPECT_NE(error_of([&] { load_jsonl_task(path, 0); }).find("bad.jsonl:1: gold 2 is outside the 2 choices"),
            std::string::npos);
  test::write_file(path, "{\"context\": \"a\", \"choices\": [\"x\", \"y\"]}\n");
  EXPECT_NE(error_of([&] { load_jsonl_task(path, 0); }).find("bad.jsonl:1: missing field \"gold\""), std::string::npos);
  // Found by fuzz_text and fuzz_zeroshot: a number beyond double's range made nlohmann::json throw out_of_range,
  // which terminated the process (tests/corpus/regressions/zeroshot-number-overflow.jsonl is a line "0666…6").
  test::write_file(path, "{\"context\": \"a\", \"choices\": [\"x\", \"y\"], \"gold\": 1e47777777777}\n");
  EXPECT_NE(error_of([&] { load_jsonl_task(path, 0); }).find("bad.jsonl:1: malformed JSON ([json.exception.out_of_range.406]"),
            std::string::npos);
  const auto overflow = test::source_dir() / "tests" / "corpus" / "regressions" / "zeroshot-number-overflow.jsonl";
  EXPECT_NE(error_of([&] { load_jsonl_task(overflow, 0); }).find("malformed JSON"), std::string::npos);
  test::write_file(path, "{\"context\": 3, \"choices\": [\"x\", \"y\"], \"gold\": 0}\n");
  EXPECT_NE(error_of([&] { load_jsonl_task(path, 0); }).find("\"context\" must be a string"), std::string::npos);

  // A data directory with one broken file per format: each error names the file (and line).
  TaskSources sources;
  sources.data_dir = tmp.path();
  EXPECT_NE(error_of([&] { load_tasks({"piqa"}, sources); }).find(fmt::format("{}: file not found", (tmp.path() / "piqa" / "valid-labels.lst").string())),
            std::string::npos);
  // Found by fuzz_zeroshot: a label of 37 digits overflowed std::stoi (std::out_of_range terminated the process).
  std::filesystem::create_directories(tmp.path() / "piqa");
  test::write_file(tmp.path() / "piqa" / "valid.jsonl", R"({"goal": "g", "sol1": "a", "sol2": "b"})" "\n");
  test::write_file(tmp.path() / "piqa" / "valid-labels.lst", "1111111111111111111111111111111111111\n");
  EXPECT_NE(error_of([&] { load_tasks({"piqa"}, sources); }).find("valid-labels.lst:1: label '1111"), std::string::npos);
  std::filesystem::create_directories(tmp.path() / "arc_easy");
  test::write_file(tmp.path() / "arc_easy" / "ARC-Easy-Test.jsonl",
                   R"({"question": {"stem": "q", "choices": [{"text": "a", "label": "A"}]}, "answerKey": "C"})" "\n");
  EXPECT_NE(error_of([&] { load_tasks({"arc_easy"}, sources); }).find("ARC-Easy-Test.jsonl:1: answerKey \"C\" is not one of"),
            std::string::npos);
  std::filesystem::create_directories(tmp.path() / "hellaswag");
  test::write_file(tmp.path() / "hellaswag" / "hellaswag_val_full.txt.bz2", "not bzip2");
  EXPECT_NE(error_of([&] { load_tasks({"hellaswag"}, sources); }).find("corrupt or truncated bzip2"), std::string::npos);
  std::filesystem::create_directories(tmp.path() / "mmlu" / "test");
  test::write_file(tmp.path() / "mmlu" / "test" / "x_test.csv", "q,1,2,3,4,E\n");
  EXPECT_NE(error_of([&] { load_tasks({"mmlu"}, sources); }).find("x_test.csv: row 1: answer 'E' is outside the choices A-D"),
            std::string::npos);
  EXPECT_NE(error_of([&] { load_tasks({"mmlu_nothing"}, sources); }).find("unknown task 'mmlu_nothing'"), std::string::npos);
}

// The fuzz_zeroshot seeds (tests/corpus/zeroshot, fuzz/make_seeds.py) are valid files of their formats, so the
// fuzzer starts inside every loader rather than at its first error.
TEST(ZeroShotTasks, FuzzSeedsLoad) {
  test::TempDir tmp;
  const auto seeds = test::source_dir() / "tests" / "corpus" / "zeroshot";
  const std::pair<const char*, const char*> placed[] = {
      {"arc.jsonl", "arc_easy/ARC-Easy-Test.jsonl"}, {"piqa.jsonl", "piqa/valid.jsonl"},
      {"piqa-labels.lst", "piqa/valid-labels.lst"}, {"hellaswag.txt.bz2", "hellaswag/hellaswag_val_full.txt.bz2"},
      {"winogrande.jsonl", "winogrande/dev.jsonl"}, {"boolq.jsonl", "boolq/val.jsonl"},
      {"openbookqa.jsonl", "openbookqa/test.jsonl"}, {"lambada.jsonl", "lambada_openai/lambada_test.jsonl"},
      {"mmlu.csv", "mmlu/test/anatomy_test.csv"}};
  for (const auto& [seed, path] : placed) {
    std::filesystem::create_directories((tmp.path() / path).parent_path());
    std::filesystem::copy_file(seeds / seed, tmp.path() / path);
  }
  TaskSources sources;
  sources.data_dir = tmp.path();
  for (const auto* name : {"arc_easy", "piqa", "hellaswag", "winogrande", "boolq", "openbookqa", "lambada_openai"})
    EXPECT_EQ(load_builtin_task(name, sources).documents.size(), 1u) << name;
  EXPECT_EQ(load_mmlu(sources, "anatomy").at(0).documents.size(), 1u);
}

TEST(TextFiles, CsvQuotingAndBz2) {
  test::TempDir tmp;
  test::write_file(tmp.path() / "a.csv", "plain,\"with, comma\",\"say \"\"hi\"\"\",\"two\nlines\"\r\nx,y\n");
  const auto rows = read_csv(tmp.path() / "a.csv");
  ASSERT_EQ(rows.size(), 2u);
  EXPECT_EQ(rows[0], (std::vector<std::string>{"plain", "with, comma", "say \"hi\"", "two\nlines"}));
  EXPECT_EQ(rows[1], (std::vector<std::string>{"x", "y"}));
  test::write_file(tmp.path() / "b.csv", "\"open\n");
  EXPECT_THROW(read_csv(tmp.path() / "b.csv"), Error);
  FBQ_REQUIRE_FILE(zeroshot_dir() / "hellaswag" / "hellaswag_val_full.txt.bz2");
  const auto whole = test::read_file(zeroshot_dir() / "hellaswag" / "hellaswag_val_full.txt.bz2");
  test::write_file(tmp.path() / "cut.bz2", whole.substr(0, whole.size() / 2));
  EXPECT_NE(error_of([&] { read_text_file(tmp.path() / "cut.bz2"); }).find("corrupt or truncated bzip2"), std::string::npos);
  EXPECT_EQ(read_lines(zeroshot_dir() / "hellaswag" / "hellaswag_val_full.txt.bz2").size(), 60252u);
}

}  // namespace
}  // namespace fbq
