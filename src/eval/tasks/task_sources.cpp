// MMLU (57 CSV files), user JSONL tasks, the derived last-word tasks, and resolving --tasks names.
#include <algorithm>
#include <cctype>
#include <optional>
#include <set>

#include <fmt/ranges.h>

#include "eval/tasks/json_fields.h"
#include "eval/tasks/task.h"
#include "io/text_files.h"
#include "util/error.h"

namespace fbq {
namespace {

constexpr std::string_view kMmluPrefix = "mmlu_";
constexpr std::string_view kLastWordPrefix = "last_word:";


Task mmlu_subject(const std::filesystem::path& path, const std::string& subject, int limit) {
  Task task{.name = std::string(kMmluPrefix) + subject, .group = "mmlu", .source = path.string()};
  std::string description = "The following are multiple choice questions (with answers) about " + subject + ".\n\n";
  std::replace(description.begin(), description.end(), '_', ' ');
  const auto rows = read_csv(path);
  for (std::size_t i = 0; i < rows.size(); ++i) {
    const auto& row = rows[i];
    if (row.size() == 1 && row[0].empty()) continue;  // a blank line
    if (row.size() != 6) fail("{}: row {} has {} fields, not 6 (question, A, B, C, D, answer)", path.string(), i + 1, row.size());
    const std::string& answer = row[5];
    if (answer.size() != 1 || answer[0] < 'A' || answer[0] > 'D')
      fail("{}: row {}: answer '{}' is outside the choices A-D", path.string(), i + 1, answer);
    const int id = task.total_documents++;
    if (limit > 0 && id >= limit) continue;
    const std::string context = description + strip_whitespace(row[0]) + "\nA. " + row[1] + "\nB. " + row[2] + "\nC. " + row[3] +
                                "\nD. " + row[4] + "\nAnswer:";
    task.documents.push_back(multiple_choice_document(id, context, {"A", "B", "C", "D"}, answer[0] - 'A'));
  }
  if (task.total_documents == 0) fail("{}: no questions", path.string());
  return task;
}

// The derived last-word task: LAMBADA's request shape on paragraphs of our own test texts, which a 12M model
// can actually do. The rule (docs/EVAL.md): drop the paragraph's trailing punctuation, quotes and dashes;
// the target is the last space-separated word, kept when it is ASCII letters only and at least 20 words
// precede it.
bool is_trailing_mark(std::string_view text) {
  for (const std::string_view mark : {"\u2018", "\u2019", "\u201C", "\u201D", "\u2013", "\u2014"})
    if (text.ends_with(mark)) return true;
  return false;
}

std::optional<Request> last_word_request(std::string paragraph) {
  while (!paragraph.empty()) {
    const unsigned char last = paragraph.back();
    if (last < 0x80 && !std::isalnum(last)) {
      paragraph.pop_back();
    } else if (is_trailing_mark(paragraph)) {
      paragraph.resize(paragraph.size() - 3);
    } else {
      break;
    }
  }
  const auto space = paragraph.rfind(' ');
  if (space == std::string::npos) return std::nullopt;
  const std::string word = paragraph.substr(space + 1);
  if (word.empty() || !std::all_of(word.begin(), word.end(), [](unsigned char c) { return c < 0x80 && std::isalpha(c); }))
    return std::nullopt;
  std::string context = paragraph.substr(0, space);
  const auto words = std::count(context.begin(), context.end(), ' ') + 1;
  if (words < 20 || context.find_first_not_of(" \n") == std::string::npos) return std::nullopt;
  return Request{std::move(context), " " + word};
}

}  // namespace

std::vector<Task> load_mmlu(const TaskSources& sources, const std::string& only_subject) {
  const auto dir = sources.data_dir / "mmlu" / "test";
  std::error_code error;
  if (!std::filesystem::is_directory(dir, error)) fail("{}: MMLU directory not found (57 <subject>_test.csv files)", dir.string());
  std::set<std::string> subjects;  // sorted, as lm-eval lists them
  for (const auto& entry : std::filesystem::directory_iterator(dir)) {
    const auto name = entry.path().filename().string();
    if (name.ends_with("_test.csv")) subjects.insert(name.substr(0, name.size() - 9));
  }
  if (subjects.empty()) fail("{}: no <subject>_test.csv files", dir.string());
  if (!only_subject.empty() && !subjects.count(only_subject))
    fail("unknown task 'mmlu_{}': no file {}", only_subject, (dir / (only_subject + "_test.csv")).string());
  std::vector<Task> tasks;
  for (const auto& subject : subjects)
    if (only_subject.empty() || subject == only_subject)
      tasks.push_back(mmlu_subject(dir / (subject + "_test.csv"), subject, sources.limit));
  return tasks;
}

Task load_jsonl_task(const std::filesystem::path& path, int limit) {
  Task task{.name = path.stem().string(), .reports_acc_norm = true, .source = path.string()};
  bool partial = false;
  for_each_json_line(path, [&](const nlohmann::json& object, int line) {
    const JsonRecord r{object, path, line};
    const int id = task.total_documents++;
    const auto context = r.string("context");
    const auto& choices_json = r.at("choices");
    if (!choices_json.is_array() || choices_json.size() < 2) r.error("\"choices\" must be an array of at least 2 strings");
    std::vector<std::string> choices;
    for (const auto& choice : choices_json) choices.push_back(r.as_string(choice, "choices[]"));
    const auto& gold = r.at("gold");
    if (!gold.is_number_integer()) r.error("\"gold\" must be an integer (the index of the right choice)");
    if (gold.get<long>() < 0 || gold.get<long>() >= static_cast<long>(choices.size()))
      r.error(fmt::format("gold {} is outside the {} choices", gold.get<long>(), choices.size()));
    const bool has_suffix = object.contains("continuation_suffix");
    if (id > 0 && has_suffix != partial) r.error("either every line has \"continuation_suffix\" or none does");
    partial = has_suffix;
    if (limit > 0 && id >= limit) return;
    if (!has_suffix) {
      task.documents.push_back(multiple_choice_document(id, context, std::move(choices), gold.get<int>()));
      return;
    }
    // WinoGrande-style: each choice completes the context, and only the shared suffix is scored.
    Document doc{.id = id, .gold = gold.get<int>()};
    const std::string suffix = fmt::format(" {}", r.string("continuation_suffix"));
    for (const auto& choice : choices) doc.requests.push_back({context + choice, suffix});
    doc.choices = std::move(choices);
    task.documents.push_back(std::move(doc));
  });
  task.reports_acc_norm = !partial;
  return task;
}

Task load_last_word_task(const std::string& name, const std::filesystem::path& text, int limit) {
  Task task{.name = name, .kind = TaskKind::last_word, .source = text.string()};
  for (auto& paragraph : read_paragraphs(text)) {
    auto request = last_word_request(std::move(paragraph));
    if (!request) continue;
    const int id = task.total_documents++;
    if (limit > 0 && id >= limit) continue;
    task.documents.push_back({.id = id, .requests = {*request}, .choices = {request->continuation.substr(1)}});
  }
  if (task.total_documents == 0) fail("{}: no paragraph qualifies for the last-word task", text.string());
  return task;
}

std::vector<Task> load_tasks(const std::vector<std::string>& names, const TaskSources& sources) {
  std::vector<Task> tasks;
  std::set<std::string> seen;
  const auto add = [&](Task task) {
    if (seen.insert(task.name).second) tasks.push_back(std::move(task));
  };
  for (const auto& name : names) {
    if (name == "all") {
      for (const auto& builtin : builtin_task_names())
        if (builtin == "mmlu") {
          for (auto& subject : load_mmlu(sources)) add(std::move(subject));
        } else {
          add(load_builtin_task(builtin, sources));
        }
    } else if (name == "mmlu") {
      for (auto& subject : load_mmlu(sources)) add(std::move(subject));
    } else if (name.starts_with(kMmluPrefix)) {
      for (auto& subject : load_mmlu(sources, name.substr(kMmluPrefix.size()))) add(std::move(subject));
    } else if (name == "last_word_sotu" || name == "last_word_moby") {
      add(load_last_word_task(name, sources.text_dir / (name.substr(10) + "-test.txt"), sources.limit));
    } else if (name.starts_with(kLastWordPrefix)) {
      const std::filesystem::path file = name.substr(kLastWordPrefix.size());
      add(load_last_word_task("last_word_" + file.stem().string(), file, sources.limit));
    } else if (name.ends_with(".jsonl")) {
      add(load_jsonl_task(name, sources.limit));
    } else {
      const auto known = builtin_task_names();
      if (std::find(known.begin(), known.end(), name) == known.end())
        fail("unknown task '{}' (tasks: {}, all, mmlu_<subject>, last_word_sotu, last_word_moby, last_word:FILE, FILE.jsonl)",
             name, fmt::format("{}", fmt::join(known, ", ")));
      add(load_builtin_task(name, sources));
    }
  }
  if (tasks.empty()) fail("no tasks given");
  return tasks;
}

}  // namespace fbq
