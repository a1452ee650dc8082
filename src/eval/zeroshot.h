#pragma once
// Zero-shot evaluation scored as lm-evaluation-harness v0.4.x scores it (LM_EVAL_FORMATS.md §1, §3-§5):
// per-document predictions, acc / acc_norm / perplexity with lm-eval's standard errors, the size-weighted
// MMLU group, and paired differences between two models on the same documents.
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "eval/loglikelihood.h"
#include "eval/tasks/task.h"
#include "model/model.h"

namespace fbq {

struct DocumentScore {
  int id = 0;
  int gold = 0;
  std::vector<Request> requests;
  std::vector<double> loglikelihoods;  // one per request
  std::vector<bool> greedy;
  int pred = 0;        // argmax of the log-likelihoods (first maximum on ties)
  int pred_norm = -1;  // argmax of ll / len(choice) in characters; -1 where the task reports no acc_norm
  bool truncated = false;
  bool greedy_accuracy = false;  // last_word tasks: acc is 1 when the target was the greedy continuation
  double acc() const;
  double acc_norm() const { return pred_norm == gold ? 1.0 : 0.0; }
};

struct Metric {
  std::string name;              // "acc", "acc_norm", "perplexity"
  double value = 0;
  std::optional<double> stderr;  // absent ("N/A") with one document
};

struct TaskResult {
  std::string name, group, source, note;
  TaskKind kind = TaskKind::multiple_choice;
  int total_documents = 0;
  std::vector<DocumentScore> documents;
  std::vector<Metric> metrics;
  int truncated = 0;    // documents whose context lost its left part to the model's context
  double seconds = 0;   // for a group's subtasks: the whole group's time
  const Metric* metric(const std::string& name) const;
};

struct EvalOptions {
  ScoreOptions scoring;
  int bootstrap_iterations = 100000;  // lm-eval's default for the perplexity stderr
  bool progress = true;
};

// Scores every task; the subtasks of a group (MMLU) are scored in one pass.
std::vector<TaskResult> evaluate_tasks(const Model& model, const std::vector<Task>& tasks, const EvalOptions& options);

// One document's scores: pred, pred_norm (ll / characters of the choice), truncation.
DocumentScore score_document(const Task& task, const Document& doc, std::span<const RequestScore> scores);

// Per-document scores → metrics with lm-eval's standard errors.
std::vector<Metric> task_metrics(TaskKind kind, bool acc_norm, const std::vector<DocumentScore>& documents,
                                 int bootstrap_iterations);
// lm-eval's mean_stderr: sample standard deviation (n − 1) / sqrt(n); nullopt when n <= 1.
std::optional<double> mean_stderr(const std::vector<double>& values);

// Groups (MMLU): acc = the size-weighted mean of the subtasks', stderr = lm-eval's pooled_sample_stderr.
struct GroupResult {
  std::string name;
  int documents = 0, subtasks = 0, truncated = 0;
  double seconds = 0;
  std::vector<Metric> metrics;
};
std::vector<GroupResult> group_results(const std::vector<TaskResult>& results);
std::optional<double> pooled_sample_stderr(const std::vector<double>& stderrs, const std::vector<int>& sizes);

// candidate − baseline on the same documents, with the standard error of the per-document differences.
struct PairedMetric {
  std::string task, metric;
  double baseline = 0, candidate = 0, difference = 0;
  std::optional<double> stderr;
  int documents = 0;
};
// For each task (and group) both evaluated: acc, acc_norm and, for last-word tasks, perplexity (its stderr by
// the delta method from the per-document log-likelihood differences). Throws when the documents differ.
std::vector<PairedMetric> paired_metrics(const std::vector<TaskResult>& baseline, const std::vector<TaskResult>& candidate);

}  // namespace fbq
