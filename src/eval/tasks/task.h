#pragma once
// Zero-shot tasks as lm-evaluation-harness v0.4.x builds them (../shared/data/zeroshot/LM_EVAL_FORMATS.md):
// each document is a list of log-likelihood requests (context, continuation), one per choice.
#include <filesystem>
#include <string>
#include <vector>

namespace fbq {

struct Request {
  std::string context;
  std::string continuation;
};

enum class TaskKind {
  multiple_choice,  // acc (and acc_norm) over the choices' log-likelihoods
  last_word,        // one request per document: perplexity of the target and greedy accuracy (lambada)
};

struct Document {
  int id = 0;                        // 0-based position in the source file
  std::vector<Request> requests;     // one per choice (last_word: exactly one)
  std::vector<std::string> choices;  // doc_to_choice's strings: acc_norm divides by their length in characters
  int gold = 0;
};

struct Task {
  std::string name;
  TaskKind kind = TaskKind::multiple_choice;
  bool reports_acc_norm = false;
  std::string group;   // "mmlu" for the MMLU subjects
  std::string source;  // the file the documents came from
  std::string note;    // where the data cannot reproduce lm-eval exactly
  int total_documents = 0;  // in the file, before --limit
  std::vector<Document> documents;
};

struct TaskSources {
  std::filesystem::path data_dir = "../shared/data/zeroshot";  // lm-eval task data
  std::filesystem::path text_dir = "../shared/data";           // texts of the derived last-word tasks
  int limit = 0;  // the first N documents of each task (each MMLU subject), 0 = all
};

// Task names: the lm-eval tasks (builtin_task_names()), `all` (all of them), `mmlu` (its 57 subjects),
// `mmlu_<subject>`, the derived `last_word_sotu` / `last_word_moby`, `last_word:FILE` (any paragraph text),
// or a path to a JSONL file of multiple-choice documents (see docs/EVAL.md).
std::vector<Task> load_tasks(const std::vector<std::string>& names, const TaskSources& sources);

std::vector<std::string> builtin_task_names();

// Builders, one per source format (exposed for tests).
Task load_builtin_task(const std::string& name, const TaskSources& sources);
std::vector<Task> load_mmlu(const TaskSources& sources, const std::string& only_subject = "");
Task load_jsonl_task(const std::filesystem::path& path, int limit);
Task load_last_word_task(const std::string& name, const std::filesystem::path& text, int limit);

// A multiple-choice document with lm-eval's default target delimiter: continuations " " + choice.
Document multiple_choice_document(int id, const std::string& context, std::vector<std::string> choices, int gold);

}  // namespace fbq
