#pragma once
// What `fbq eval` prints and writes: the human table, lm-eval-shaped JSON, and per-document samples (JSONL).
#include <filesystem>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "eval/zeroshot.h"

namespace fbq {

struct EvalRunInfo {
  std::string model;
  bool bos = true;
  int limit = 0;
  int batch_tokens = 0;
  std::string data_dir;
};

// One row per metric (task, metric, value, ± stderr, n, seconds), groups after their subtasks (which are listed
// only when `show_subtasks`), then the averages over the top-level tasks and the truncation count.
std::string format_results_table(const std::vector<TaskResult>& results, bool show_subtasks);

// {"results": {task: {"acc,none": …, "acc_stderr,none": …, "alias": task}, …}, "groups": {…},
//  "n-samples": {task: {"original": N, "effective": n}}, "config": {…}}: the shape lm-eval writes.
nlohmann::json results_json(const std::vector<TaskResult>& results, const EvalRunInfo& info);

// The paired table (candidate − baseline ± stderr, in standard errors).
std::string format_paired_table(const std::vector<PairedMetric>& paired, const std::string& baseline,
                                const std::string& candidate);
nlohmann::json paired_json(const std::vector<PairedMetric>& paired);

// One JSON line per document: requests, log-likelihoods, greedy flags, gold, pred, pred_norm, acc, truncated
// (like lm-eval's --log_samples). Written atomically.
void write_samples(const std::filesystem::path& path, const std::vector<TaskResult>& results);

// Mean of the top-level tasks' (groups', not subtasks') acc, and of acc_norm where a task reports it, else acc.
struct Averages {
  double acc = 0, acc_norm_or_acc = 0;
  int tasks = 0;
};
Averages average_over_tasks(const std::vector<TaskResult>& results);

}  // namespace fbq
