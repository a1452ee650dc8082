#include "eval/zeroshot_report.h"

#include <fmt/format.h>

#include <fstream>

#include "io/text_files.h"
#include "util/error.h"

namespace fbq {
namespace {

nlohmann::json stderr_json(const std::optional<double>& stderr) {
  return stderr ? nlohmann::json(*stderr) : nlohmann::json("N/A");
}

nlohmann::json metrics_json(const std::string& alias, const std::vector<Metric>& metrics) {
  nlohmann::json out;
  for (const auto& m : metrics) {
    out[m.name + ",none"] = m.value;
    out[m.name + "_stderr,none"] = stderr_json(m.stderr);
  }
  out["alias"] = alias;
  return out;
}

std::string metric_rows(const std::string& task, const std::vector<Metric>& metrics, int n, double seconds) {
  std::string out;
  for (std::size_t i = 0; i < metrics.size(); ++i) {
    const auto& m = metrics[i];
    const std::string stderr = m.stderr ? fmt::format("± {:.4f}", *m.stderr) : "± N/A";
    out += fmt::format("{:<34} {:<11} {:>9.4f} {:>10} {:>7}", i == 0 ? task : "", m.name, m.value, stderr,
                       i == 0 ? std::to_string(n) : "");
    out += i == 0 ? fmt::format(" {:>8.1f}\n", seconds) : "\n";
  }
  return out;
}

}  // namespace

Averages average_over_tasks(const std::vector<TaskResult>& results) {
  Averages averages;
  const auto add = [&](const std::vector<Metric>& metrics) {
    const Metric *acc = nullptr, *acc_norm = nullptr;
    for (const auto& m : metrics) {
      if (m.name == "acc") acc = &m;
      if (m.name == "acc_norm") acc_norm = &m;
    }
    if (!acc) return;
    averages.acc += acc->value;
    averages.acc_norm_or_acc += (acc_norm ? acc_norm : acc)->value;
    averages.tasks++;
  };
  for (const auto& r : results)
    if (r.group.empty() && !r.documents.empty()) add(r.metrics);
  for (const auto& g : group_results(results)) add(g.metrics);
  if (averages.tasks > 0) {
    averages.acc /= averages.tasks;
    averages.acc_norm_or_acc /= averages.tasks;
  }
  return averages;
}

std::string format_results_table(const std::vector<TaskResult>& results, bool show_subtasks) {
  std::string out = fmt::format("{:<34} {:<11} {:>9} {:>10} {:>7} {:>8}\n", "task", "metric", "value", "stderr", "n", "seconds");
  const auto groups = group_results(results);
  int truncated = 0;
  for (std::size_t i = 0; i < results.size(); ++i) {
    const auto& r = results[i];
    truncated += r.truncated;
    if (r.group.empty()) {
      out += metric_rows(r.name, r.metrics, static_cast<int>(r.documents.size()), r.seconds);
      continue;
    }
    if (show_subtasks) out += metric_rows("  " + r.name, r.metrics, static_cast<int>(r.documents.size()), r.seconds);
    const bool last_of_group = i + 1 == results.size() || results[i + 1].group != r.group;
    if (!last_of_group) continue;
    for (const auto& g : groups)
      if (g.name == r.group)
        out += metric_rows(fmt::format("{} ({} subtasks)", g.name, g.subtasks), g.metrics, g.documents, g.seconds);
  }
  const auto averages = average_over_tasks(results);
  if (averages.tasks > 1)
    out += fmt::format("average over {} tasks: acc {:.4f}, acc_norm (acc where a task has no acc_norm) {:.4f}\n",
                       averages.tasks, averages.acc, averages.acc_norm_or_acc);
  if (truncated > 0)
    out += fmt::format("{} documents were longer than the model's context and lost the left part of their context\n",
                       truncated);
  for (const auto& r : results)
    if (!r.note.empty()) out += fmt::format("note: {}: {}\n", r.name, r.note);
  return out;
}

nlohmann::json results_json(const std::vector<TaskResult>& results, const EvalRunInfo& info) {
  nlohmann::json out = {{"results", nlohmann::json::object()}, {"groups", nlohmann::json::object()},
                        {"n-samples", nlohmann::json::object()}};
  for (const auto& r : results) {
    out["results"][r.name] = metrics_json(r.name, r.metrics);
    out["results"][r.name]["truncated"] = r.truncated;
    out["results"][r.name]["seconds"] = r.seconds;
    out["n-samples"][r.name] = {{"original", r.total_documents}, {"effective", r.documents.size()}};
  }
  for (const auto& g : group_results(results)) {
    auto group = metrics_json(g.name, g.metrics);
    group["seconds"] = g.seconds;
    out["results"][g.name] = group;
    out["groups"][g.name] = group;
  }
  const auto averages = average_over_tasks(results);
  out["average"] = {{"acc", averages.acc}, {"acc_norm_or_acc", averages.acc_norm_or_acc}, {"tasks", averages.tasks}};
  out["config"] = {{"model", info.model},          {"bos", info.bos},
                   {"limit", info.limit > 0 ? nlohmann::json(info.limit) : nlohmann::json(nullptr)},
                   {"batch_tokens", info.batch_tokens}, {"data", info.data_dir}};
  return out;
}

std::string format_paired_table(const std::vector<PairedMetric>& paired, const std::string& baseline,
                                const std::string& candidate) {
  std::string out = fmt::format("paired: candidate {} − baseline {} on the same documents\n", candidate, baseline);
  out += fmt::format("{:<34} {:<11} {:>9} {:>9} {:>9} {:>9} {:>6} {:>7}\n", "task", "metric", "baseline", "candidate",
                     "Δ", "stderr", "Δ/se", "n");
  for (const auto& p : paired) {
    const double z = p.stderr && *p.stderr > 0 ? p.difference / *p.stderr : 0.0;
    out += fmt::format("{:<34} {:<11} {:>9.4f} {:>9.4f} {:>+9.4f} {:>9} {:>6.1f} {:>7}\n", p.task, p.metric, p.baseline,
                       p.candidate, p.difference, p.stderr ? fmt::format("{:.4f}", *p.stderr) : "N/A", z, p.documents);
  }
  return out;
}

nlohmann::json paired_json(const std::vector<PairedMetric>& paired) {
  nlohmann::json out = nlohmann::json::object();
  for (const auto& p : paired)
    out[p.task][p.metric] = {{"baseline", p.baseline}, {"candidate", p.candidate}, {"difference", p.difference},
                             {"stderr", stderr_json(p.stderr)}, {"documents", p.documents}};
  return out;
}

void write_samples(const std::filesystem::path& path, const std::vector<TaskResult>& results) {
  write_file_atomically(path, [&](std::ostream& out) {
    for (const auto& r : results)
      for (const auto& doc : r.documents) {
        nlohmann::json requests = nlohmann::json::array();
        for (const auto& request : doc.requests)
          requests.push_back({{"context", request.context}, {"continuation", request.continuation}});
        nlohmann::json line = {{"task", r.name},
                               {"doc_id", doc.id},
                               {"requests", requests},
                               {"loglikelihoods", doc.loglikelihoods},
                               {"greedy", doc.greedy},
                               {"gold", doc.gold},
                               {"pred", doc.pred},
                               {"pred_norm", doc.pred_norm >= 0 ? nlohmann::json(doc.pred_norm) : nlohmann::json(nullptr)},
                               {"acc", doc.acc()},
                               {"truncated", doc.truncated}};
        if (doc.pred_norm >= 0) line["acc_norm"] = doc.acc_norm();
        out << line.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace) << '\n';
      }
  });
}

}  // namespace fbq
