// The lm-eval v0.4.x zero-shot tasks, built from the original dataset files in ../shared/data/zeroshot exactly
// as LM_EVAL_FORMATS.md §2 describes (prompt strings, choices, gold).
#include <algorithm>
#include <functional>
#include <map>

#include "eval/tasks/json_fields.h"
#include "eval/tasks/task.h"
#include "io/text_files.h"
#include "util/error.h"

namespace fbq {
namespace {

constexpr const char* kWhitespace = " \t\n\r\v\f";


bool limit_reached(const Task& task, int limit) {
  return limit > 0 && static_cast<int>(task.documents.size()) >= limit;
}

// ARC and OpenBookQA share AllenAI's record layout: question.stem, question.choices[{text,label}], answerKey.
struct AllenAiQuestion {
  std::string stem;
  std::vector<std::string> choices;
  int gold;
};

AllenAiQuestion allenai_question(const JsonRecord& r, bool strip_answer_key) {
  const auto& question = r.at("question");
  const JsonRecord q{question, r.path, r.line};
  AllenAiQuestion out;
  out.stem = q.string("stem");
  std::vector<std::string> labels;
  const auto& choices = q.at("choices");
  if (!choices.is_array() || choices.empty()) r.error("\"question.choices\" must be a non-empty array");
  for (const auto& choice : choices) {
    const JsonRecord c{choice, r.path, r.line};
    out.choices.push_back(c.string("text"));
    labels.push_back(c.string("label"));
  }
  std::string key = r.string("answerKey");
  if (strip_answer_key) key.erase(0, key.find_first_not_of(kWhitespace));
  const auto found = std::find(labels.begin(), labels.end(), key);
  if (found == labels.end()) r.error(fmt::format("answerKey \"{}\" is not one of the choice labels", key));
  out.gold = static_cast<int>(found - labels.begin());
  return out;
}

Task arc(const std::string& name, const std::filesystem::path& path, int limit) {
  Task task{.name = name, .reports_acc_norm = true, .source = path.string()};
  for_each_json_line(path, [&](const nlohmann::json& object, int line) {
    ++task.total_documents;
    if (limit_reached(task, limit)) return;
    const auto q = allenai_question({object, path, line}, /*strip_answer_key=*/false);
    task.documents.push_back(multiple_choice_document(task.total_documents - 1, "Question: " + q.stem + "\nAnswer:",
                                                      q.choices, q.gold));
  });
  return task;
}

Task openbookqa(const std::filesystem::path& path, int limit) {
  Task task{.name = "openbookqa", .reports_acc_norm = true, .source = path.string()};
  for_each_json_line(path, [&](const nlohmann::json& object, int line) {
    ++task.total_documents;
    if (limit_reached(task, limit)) return;
    const auto q = allenai_question({object, path, line}, /*strip_answer_key=*/true);
    task.documents.push_back(multiple_choice_document(task.total_documents - 1, q.stem, q.choices, q.gold));
  });
  return task;
}

// A labels file beside a JSONL file (PIQA, WinoGrande): one integer per line, aligned with the records.
std::vector<int> read_labels(const std::filesystem::path& path) {
  std::vector<int> labels;
  const auto lines = read_lines(path);
  for (std::size_t i = 0; i < lines.size(); ++i) {
    const auto value = strip_whitespace(lines[i]);
    if (value.empty()) continue;
    // Labels are choice indices: more than 9 digits is no label (and would overflow std::stoi).
    if (value.find_first_not_of("0123456789") != std::string::npos || value.size() > 9)
      fail("{}:{}: label '{}' is not a choice index", path.string(), i + 1, value.substr(0, 40));
    labels.push_back(std::stoi(value));
  }
  return labels;
}

Task piqa(const std::filesystem::path& dir, int limit) {
  const auto path = dir / "valid.jsonl", labels_path = dir / "valid-labels.lst";
  const auto labels = read_labels(labels_path);
  Task task{.name = "piqa", .reports_acc_norm = true, .source = path.string()};
  for_each_json_line(path, [&](const nlohmann::json& object, int line) {
    const JsonRecord r{object, path, line};
    const int id = task.total_documents++;
    if (id >= static_cast<int>(labels.size()))
      fail("{} has fewer labels ({}) than {} has records", labels_path.string(), labels.size(), path.string());
    if (labels[id] != 0 && labels[id] != 1)
      fail("{}:{}: label {} is outside the choices 0-1", labels_path.string(), id + 1, labels[id]);
    if (limit_reached(task, limit)) return;
    task.documents.push_back(multiple_choice_document(id, "Question: " + r.string("goal") + "\nAnswer:",
                                                      {r.string("sol1"), r.string("sol2")}, labels[id]));
  });
  if (task.total_documents != static_cast<int>(labels.size()))
    fail("{} has {} labels for {} records in {}", labels_path.string(), labels.size(), task.total_documents, path.string());
  return task;
}

// llama.cpp's HellaSwag file: 6 lines per document (query, gold 0-3, four endings), already preprocessed.
Task hellaswag(const std::filesystem::path& path, int limit) {
  Task task{.name = "hellaswag", .reports_acc_norm = true, .source = path.string()};
  task.note = "llama.cpp's preprocessed file: close to, not exactly, lm-eval's prompts (SOURCES.md)";
  auto lines = read_lines(path);
  while (!lines.empty() && lines.back().empty()) lines.pop_back();
  if (lines.size() % 6 != 0)
    fail("{}: {} lines, not a multiple of 6 (query, label, four endings per document)", path.string(), lines.size());
  task.total_documents = static_cast<int>(lines.size() / 6);
  for (int d = 0; d < task.total_documents && !limit_reached(task, limit); ++d) {
    const auto* block = &lines[static_cast<std::size_t>(d) * 6];
    const std::string label = strip_whitespace(block[1]);
    if (label.size() != 1 || label[0] < '0' || label[0] > '3')
      fail("{}:{}: label '{}' is outside the choices 0-3", path.string(), d * 6 + 2, block[1]);
    task.documents.push_back(multiple_choice_document(d, block[0], {block[2], block[3], block[4], block[5]}, label[0] - '0'));
  }
  return task;
}

// WinoGrande's partial evaluation: the blank filled with each option is the context; only the shared rest
// of the sentence is scored.
Task winogrande(const std::filesystem::path& path, int limit) {
  Task task{.name = "winogrande", .source = path.string()};
  for_each_json_line(path, [&](const nlohmann::json& object, int line) {
    const JsonRecord r{object, path, line};
    const int id = task.total_documents++;
    if (limit_reached(task, limit)) return;
    const auto sentence = r.string("sentence");
    const auto blank = sentence.find('_');
    if (blank == std::string::npos) r.error("the sentence has no blank '_'");
    const auto answer = r.string("answer");
    if (answer != "1" && answer != "2") r.error(fmt::format("answer \"{}\" is outside the options 1-2", answer));
    Document doc{.id = id, .gold = answer == "1" ? 0 : 1};
    const std::string continuation = " " + strip_whitespace(sentence.substr(blank + 1));
    for (const auto* option : {"option1", "option2"}) {
      doc.choices.push_back(sentence.substr(0, blank) + r.string(option));
      doc.requests.push_back({doc.choices.back(), continuation});
    }
    task.documents.push_back(std::move(doc));
  });
  return task;
}

Task boolq(const std::filesystem::path& path, int limit) {
  Task task{.name = "boolq", .source = path.string()};
  for_each_json_line(path, [&](const nlohmann::json& object, int line) {
    const JsonRecord r{object, path, line};
    const int id = task.total_documents++;
    if (limit_reached(task, limit)) return;
    const auto& label = r.at("label");
    if (!label.is_boolean()) r.error("\"label\" must be true or false");
    task.documents.push_back(multiple_choice_document(
        id, r.string("passage") + "\nQuestion: " + r.string("question") + "?\nAnswer:", {"no", "yes"}, label.get<bool>()));
  });
  return task;
}

Task lambada(const std::filesystem::path& path, int limit) {
  Task task{.name = "lambada_openai", .kind = TaskKind::last_word, .source = path.string()};
  for_each_json_line(path, [&](const nlohmann::json& object, int line) {
    const JsonRecord r{object, path, line};
    const int id = task.total_documents++;
    if (limit_reached(task, limit)) return;
    const auto text = r.string("text");
    // text.split(' ')[:-1] joined by ' ' is everything before the last space; the target is ' ' + the rest.
    const auto space = text.rfind(' ');
    const std::string context = space == std::string::npos ? "" : text.substr(0, space);
    const std::string word = space == std::string::npos ? text : text.substr(space + 1);
    task.documents.push_back({.id = id, .requests = {{context, " " + word}}, .choices = {word}});
  });
  return task;
}

using Builder = std::function<Task(const TaskSources&)>;

const std::map<std::string, Builder>& builders() {
  static const std::map<std::string, Builder> table = {
      {"arc_easy", [](const TaskSources& s) { return arc("arc_easy", s.data_dir / "arc_easy/ARC-Easy-Test.jsonl", s.limit); }},
      {"arc_challenge",
       [](const TaskSources& s) { return arc("arc_challenge", s.data_dir / "arc_challenge/ARC-Challenge-Test.jsonl", s.limit); }},
      {"piqa", [](const TaskSources& s) { return piqa(s.data_dir / "piqa", s.limit); }},
      {"hellaswag", [](const TaskSources& s) { return hellaswag(s.data_dir / "hellaswag/hellaswag_val_full.txt.bz2", s.limit); }},
      {"winogrande", [](const TaskSources& s) { return winogrande(s.data_dir / "winogrande/dev.jsonl", s.limit); }},
      {"boolq", [](const TaskSources& s) { return boolq(s.data_dir / "boolq/val.jsonl", s.limit); }},
      {"openbookqa", [](const TaskSources& s) { return openbookqa(s.data_dir / "openbookqa/test.jsonl", s.limit); }},
      {"lambada_openai", [](const TaskSources& s) { return lambada(s.data_dir / "lambada_openai/lambada_test.jsonl", s.limit); }},
  };
  return table;
}

}  // namespace

Document multiple_choice_document(int id, const std::string& context, std::vector<std::string> choices, int gold) {
  if (gold < 0 || gold >= static_cast<int>(choices.size()))
    fail("document {}: gold {} is outside the {} choices", id, gold, choices.size());
  Document doc{.id = id, .choices = std::move(choices), .gold = gold};
  for (const auto& choice : doc.choices) doc.requests.push_back({context, " " + choice});
  return doc;
}

std::vector<std::string> builtin_task_names() {
  return {"arc_easy", "arc_challenge", "piqa", "hellaswag", "winogrande", "boolq", "openbookqa", "lambada_openai", "mmlu"};
}

Task load_builtin_task(const std::string& name, const TaskSources& sources) {
  const auto found = builders().find(name);
  if (found == builders().end()) fail("unknown task '{}'", name);
  return found->second(sources);
}

}  // namespace fbq
