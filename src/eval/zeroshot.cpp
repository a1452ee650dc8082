#include "eval/zeroshot.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <map>
#include <numeric>

#include "util/error.h"
#include "util/progress.h"
#include "util/python_random.h"
#include "util/utf8.h"

namespace fbq {
namespace {

int first_argmax(const std::vector<double>& values) {  // np.argmax: the first maximum
  return static_cast<int>(std::max_element(values.begin(), values.end()) - values.begin());
}

std::vector<double> column(const std::vector<DocumentScore>& documents, double (DocumentScore::*metric)() const) {
  std::vector<double> values;
  for (const auto& doc : documents) values.push_back((doc.*metric)());
  return values;
}

double mean(const std::vector<double>& values) {
  double sum = 0.0;
  for (const double v : values) sum += v;
  return sum / static_cast<double>(values.size());
}

Metric mean_metric(const std::string& name, const std::vector<double>& values) {
  return {name, mean(values), mean_stderr(values)};
}

// The tasks scored in one pass: a standalone task, or all subtasks of a group (one progress line).
std::vector<std::vector<std::size_t>> scoring_units(const std::vector<Task>& tasks) {
  std::vector<std::vector<std::size_t>> units;
  std::map<std::string, std::size_t> group_unit;
  for (std::size_t t = 0; t < tasks.size(); ++t) {
    if (tasks[t].group.empty()) {
      units.push_back({t});
    } else if (auto found = group_unit.find(tasks[t].group); found != group_unit.end()) {
      units[found->second].push_back(t);
    } else {
      group_unit[tasks[t].group] = units.size();
      units.push_back({t});
    }
  }
  return units;
}

std::vector<TaskResult> evaluate_unit(const Model& model, const std::vector<Task>& tasks,
                                      const std::vector<std::size_t>& unit, const EvalOptions& options) {
  const auto start = std::chrono::steady_clock::now();
  std::vector<Request> requests;
  std::vector<std::size_t> documents_before;  // requests scored before each document (for progress in documents)
  for (const auto t : unit)
    for (const auto& doc : tasks[t].documents) {
      documents_before.push_back(requests.size());
      requests.insert(requests.end(), doc.requests.begin(), doc.requests.end());
    }
  const auto& first = tasks[unit.front()];
  const std::string label = first.group.empty() ? first.name : fmt::format("{} ({} subtasks)", first.group, unit.size());
  Progress progress(label, static_cast<long>(documents_before.size()), options.progress);
  auto scoring = options.scoring;
  scoring.on_progress = [&](std::size_t scored) {
    const auto done = std::upper_bound(documents_before.begin(), documents_before.end(), scored - 1) - documents_before.begin();
    progress.update(done, fmt::format("{:.1f} docs/s", done / std::max(1e-9, seconds_since(start))));
  };
  const auto scores = score_requests(model, requests, scoring);
  const double seconds = seconds_since(start);
  progress.finish(fmt::format("{:.1f} docs/s", documents_before.size() / std::max(1e-9, seconds)));

  std::vector<TaskResult> results;
  std::size_t at = 0;
  for (const auto t : unit) {
    const auto& task = tasks[t];
    TaskResult result{.name = task.name, .group = task.group, .source = task.source, .note = task.note,
                      .kind = task.kind, .total_documents = task.total_documents, .seconds = seconds};
    for (const auto& doc : task.documents) {
      result.documents.push_back(score_document(task, doc, std::span(scores).subspan(at, doc.requests.size())));
      result.truncated += result.documents.back().truncated;
      at += doc.requests.size();
    }
    result.metrics = task_metrics(task.kind, task.reports_acc_norm, result.documents, options.bootstrap_iterations);
    results.push_back(std::move(result));
  }
  return results;
}

}  // namespace

DocumentScore score_document(const Task& task, const Document& doc, std::span<const RequestScore> scores) {
  DocumentScore out{.id = doc.id, .gold = doc.gold, .requests = doc.requests};
  std::vector<double> normalized;
  for (std::size_t i = 0; i < scores.size(); ++i) {
    out.loglikelihoods.push_back(scores[i].loglikelihood);
    out.greedy.push_back(scores[i].greedy);
    out.truncated = out.truncated || scores[i].truncated;
    if (task.reports_acc_norm) normalized.push_back(scores[i].loglikelihood / static_cast<double>(utf8_length(doc.choices[i])));
  }
  out.pred = first_argmax(out.loglikelihoods);
  if (task.reports_acc_norm) out.pred_norm = first_argmax(normalized);
  out.greedy_accuracy = task.kind == TaskKind::last_word;
  return out;
}

double DocumentScore::acc() const {
  if (greedy_accuracy) return greedy[0] ? 1.0 : 0.0;
  return pred == gold ? 1.0 : 0.0;
}

const Metric* TaskResult::metric(const std::string& name) const {
  for (const auto& m : metrics)
    if (m.name == name) return &m;
  return nullptr;
}

std::optional<double> mean_stderr(const std::vector<double>& values) {
  const std::size_t n = values.size();
  if (n <= 1) return std::nullopt;
  const double mu = mean(values);
  double squares = 0.0;
  for (const double v : values) squares += (v - mu) * (v - mu);
  return std::sqrt(squares / static_cast<double>(n - 1)) / std::sqrt(static_cast<double>(n));
}

std::vector<Metric> task_metrics(TaskKind kind, bool acc_norm, const std::vector<DocumentScore>& documents,
                                 int bootstrap_iterations) {
  if (documents.empty()) return {};
  std::vector<Metric> metrics;
  if (kind == TaskKind::last_word) {
    std::vector<double> loglikelihoods;
    for (const auto& doc : documents) loglikelihoods.push_back(doc.loglikelihoods[0]);
    Metric perplexity{"perplexity", std::exp(-mean(loglikelihoods))};
    if (documents.size() > 1 && bootstrap_iterations >= 2)
      perplexity.stderr = bootstrap_perplexity_stderr(loglikelihoods, bootstrap_iterations);
    metrics.push_back(perplexity);
  }
  metrics.push_back(mean_metric("acc", column(documents, &DocumentScore::acc)));
  if (acc_norm) metrics.push_back(mean_metric("acc_norm", column(documents, &DocumentScore::acc_norm)));
  return metrics;
}

std::vector<TaskResult> evaluate_tasks(const Model& model, const std::vector<Task>& tasks, const EvalOptions& options) {
  std::vector<TaskResult> results;
  for (const auto& unit : scoring_units(tasks))
    for (auto& result : evaluate_unit(model, tasks, unit, options)) results.push_back(std::move(result));
  return results;
}

std::optional<double> pooled_sample_stderr(const std::vector<double>& stderrs, const std::vector<int>& sizes) {
  double pooled = 0.0;
  long total = 0;
  for (std::size_t i = 0; i < sizes.size(); ++i) {
    pooled += (sizes[i] - 1) * stderrs[i] * stderrs[i] * sizes[i];
    total += sizes[i];
  }
  const long dof = total - static_cast<long>(sizes.size());
  if (dof <= 0) return std::nullopt;
  return std::sqrt(pooled / static_cast<double>(dof) / static_cast<double>(total));
}

std::vector<GroupResult> group_results(const std::vector<TaskResult>& results) {
  std::vector<GroupResult> groups;
  for (const auto& result : results) {
    if (result.group.empty()) continue;
    auto found = std::find_if(groups.begin(), groups.end(), [&](const GroupResult& g) { return g.name == result.group; });
    if (found == groups.end()) found = groups.insert(groups.end(), GroupResult{.name = result.group});
    found->subtasks++;
    found->documents += static_cast<int>(result.documents.size());
    found->truncated += result.truncated;
    found->seconds = result.seconds;  // the group was scored in one pass
  }
  for (auto& group : groups) {
    double weighted = 0.0;
    std::vector<double> stderrs;
    std::vector<int> sizes;
    for (const auto& result : results) {
      if (result.group != group.name || result.documents.empty()) continue;
      const auto* acc = result.metric("acc");
      weighted += acc->value * static_cast<double>(result.documents.size());
      stderrs.push_back(acc->stderr.value_or(0.0));
      sizes.push_back(static_cast<int>(result.documents.size()));
    }
    group.metrics.push_back({"acc", weighted / group.documents, pooled_sample_stderr(stderrs, sizes)});
  }
  return groups;
}

namespace {

// Per-document values of one metric, for the paired difference; the documents of a group are pooled.
struct PairedColumn {
  std::vector<double> baseline, candidate;
};

void append_pair(PairedColumn& column, const TaskResult& baseline, const TaskResult& candidate, const std::string& metric) {
  if (baseline.documents.size() != candidate.documents.size())
    fail("paired comparison of {}: {} documents against {}", baseline.name, baseline.documents.size(),
         candidate.documents.size());
  for (std::size_t d = 0; d < baseline.documents.size(); ++d) {
    const auto& b = baseline.documents[d];
    const auto& c = candidate.documents[d];
    if (b.id != c.id || b.requests.size() != c.requests.size())
      fail("paired comparison of {}: document {} differs between the two runs", baseline.name, b.id);
    if (metric == "acc") {
      column.baseline.push_back(b.acc());
      column.candidate.push_back(c.acc());
    } else if (metric == "acc_norm") {
      column.baseline.push_back(b.acc_norm());
      column.candidate.push_back(c.acc_norm());
    } else {
      column.baseline.push_back(b.loglikelihoods[0]);
      column.candidate.push_back(c.loglikelihoods[0]);
    }
  }
}

PairedMetric paired(const std::string& task, const std::string& metric, const PairedColumn& column) {
  PairedMetric out{.task = task, .metric = metric, .documents = static_cast<int>(column.baseline.size())};
  std::vector<double> differences(column.baseline.size());
  for (std::size_t i = 0; i < differences.size(); ++i) differences[i] = column.candidate[i] - column.baseline[i];
  const auto difference_stderr = mean_stderr(differences);
  if (metric == "perplexity") {  // exp(−mean ll): the delta method on the per-document ll differences
    out.baseline = std::exp(-mean(column.baseline));
    out.candidate = std::exp(-mean(column.candidate));
    if (difference_stderr) out.stderr = out.candidate * *difference_stderr;
  } else {
    out.baseline = mean(column.baseline);
    out.candidate = mean(column.candidate);
    out.stderr = difference_stderr;
  }
  out.difference = out.candidate - out.baseline;
  return out;
}

}  // namespace

std::vector<PairedMetric> paired_metrics(const std::vector<TaskResult>& baseline, const std::vector<TaskResult>& candidate) {
  if (baseline.size() != candidate.size()) fail("paired comparison: {} tasks against {}", baseline.size(), candidate.size());
  std::vector<PairedMetric> out;
  std::map<std::string, std::map<std::string, PairedColumn>> groups;
  std::vector<std::string> group_order;
  for (std::size_t t = 0; t < baseline.size(); ++t) {
    const auto& b = baseline[t];
    if (b.name != candidate[t].name) fail("paired comparison: task {} against {}", b.name, candidate[t].name);
    if (b.documents.empty()) continue;
    std::vector<std::string> metrics;
    for (const auto& m : b.metrics) metrics.push_back(m.name);
    for (const auto& metric : metrics) {
      PairedColumn column;
      append_pair(column, b, candidate[t], metric);
      out.push_back(paired(b.name, metric, column));
      if (!b.group.empty() && metric == "acc") {
        if (!groups.count(b.group)) group_order.push_back(b.group);
        append_pair(groups[b.group]["acc"], b, candidate[t], metric);
      }
    }
  }
  for (const auto& group : group_order) out.push_back(paired(group, "acc", groups[group]["acc"]));
  return out;
}

}  // namespace fbq
