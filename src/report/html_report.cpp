#include "report/html_report.h"

#include <fmt/format.h>

#include <fstream>
#include <map>
#include <nlohmann/json.hpp>
#include <optional>
#include <regex>

#include "eval/verdict.h"
#include "report/svg_chart.h"
#include "util/error.h"

namespace fbq {
namespace {

using nlohmann::json;

json read_json(const std::filesystem::path& path) {
  std::ifstream file(path);
  if (!file) fail("{}: cannot read", path.string());
  try {
    return json::parse(file);
  } catch (const json::exception& e) {
    fail("{}: not valid JSON ({})", path.string(), e.what());
  }
}

// One quantized linear of the report, placed by decoder layer and kind (q, k, v, o, gate, up, down).
struct LinearRow {
  int layer = 0;
  std::string kind;
  const json* entry = nullptr;
};

std::vector<LinearRow> linear_rows(const json& layers, const std::filesystem::path& path) {
  static const std::regex name_pattern(R"(layers\.(\d{1,6})\..*?(\w+?)(_proj)?$)");  // ≤ 6 digits: std::stoi fits
  std::vector<LinearRow> rows;
  for (const auto& entry : layers) {
    const auto name = entry.value("name", std::string());
    std::smatch match;
    if (!std::regex_search(name, match, name_pattern) || !entry.contains("h_error") || !entry.contains("bits_per_weight"))
      fail("{}: layer entry '{}' lacks a layer index, h_error or bits_per_weight", path.string(), name);
    rows.push_back({std::stoi(match[1]), match[2], &entry});
  }
  if (rows.empty()) fail("{}: no quantized layers", path.string());
  return rows;
}

struct Grid {  // the rows arranged as layers × kinds, kinds in the order they first appear
  int layers = 0;
  std::vector<std::string> kinds;
  std::vector<std::string> layer_names() const {
    std::vector<std::string> names;
    for (int l = 0; l < layers; ++l) names.push_back(std::to_string(l));
    return names;
  }
};

Grid grid_of(const std::vector<LinearRow>& rows) {
  Grid grid;
  for (const auto& r : rows) {
    grid.layers = std::max(grid.layers, r.layer + 1);
    if (std::find(grid.kinds.begin(), grid.kinds.end(), r.kind) == grid.kinds.end()) grid.kinds.push_back(r.kind);
  }
  return grid;
}

// One bar series per kind over the layers, of `value(entry)` (a missing linear reads as the smallest value).
std::vector<ChartSeries> per_kind(const std::vector<LinearRow>& rows, const Grid& grid,
                                  const std::function<double(const json&)>& value) {
  std::vector<ChartSeries> series;
  for (const auto& kind : grid.kinds) {
    ChartSeries s{kind, {}, std::vector<double>(grid.layers, 0.0), {}};
    for (const auto& r : rows)
      if (r.kind == kind) s.y[r.layer] = value(*r.entry);
    series.push_back(std::move(s));
  }
  return series;
}

std::string summary_table(const json& report, const std::optional<json>& verdict, const std::filesystem::path& dir) {
  const auto mib = [](double bytes) { return fmt::format("{:.2f} MiB", bytes / 1048576.0); };
  std::vector<std::pair<std::string, std::string>> rows;
  rows.emplace_back("bits per weight", fmt::format("{:.3f} (quantized linears; scales, zero points and branch included)",
                                                   report.value("bits_per_weight", 0.0)));
  if (verdict) {
    const auto& v = *verdict;
    const double source = v["source_bytes"].get<double>(), output = v["output_bytes"].get<double>();
    rows.emplace_back("size on disk", fmt::format("{} → {} ({:.2f}× smaller)", mib(source), mib(output), source / output));
    rows.emplace_back("cost", fmt::format("{:.1f} s, peak memory {:.1f} MiB", v["seconds"].get<double>(),
                                          v["peak_rss_mib"].get<double>()));
    if (v.contains("eval")) {
      const auto& e = v["eval"];
      rows.emplace_back("perplexity", fmt::format("{:.2f} → {:.2f} on {}", e["original_ppl"].get<double>(),
                                                  e["result_ppl"].get<double>(), e["text"].get<std::string>()));
      rows.emplace_back("paired difference",
                        fmt::format("{:+.2f} ± {:.2f} PPL over {} windows of {} tokens",
                                    e["ppl_difference"].get<double>(), e["ppl_difference_stderr"].get<double>(),
                                    e["windows"].get<int>(), e["ctx"].get<int>()));
    } else {
      rows.emplace_back("perplexity", "not measured (quantized with --no-eval)");
    }
  } else {
    rows.emplace_back("size on disk", mib(static_cast<double>(bytes_on_disk(dir))));
    rows.emplace_back("verdict", "no verdict.json (written by fbq quantize since the verdict was added)");
  }
  std::string html = "<table class=\"summary\">\n";
  for (const auto& [key, value] : rows)
    html += fmt::format("<tr><th>{}</th><td>{}</td></tr>\n", xml_escape(key), xml_escape(value));
  return html + "</table>\n";
}

std::string loss_curves(const std::vector<LinearRow>& rows, const Grid& grid, const std::string& method) {
  std::string html;
  for (int layer = 0; layer < grid.layers; ++layer) {
    std::vector<ChartSeries> series;
    for (const auto& r : rows) {
      if (r.layer != layer || !r.entry->contains("curves")) continue;
      const auto& curves = (*r.entry)["curves"];
      ChartSeries s{r.kind, curves.at("step").get<std::vector<double>>(),
                    curves.at(curves.contains("val_loss") ? "val_loss" : "loss").get<std::vector<double>>(), {}};
      if (r.entry->contains("best_step")) s.marker_x = (*r.entry)["best_step"].get<double>();
      series.push_back(std::move(s));
    }
    if (series.empty()) continue;
    const bool held_out = rows.front().entry->contains("curves") && (*rows.front().entry)["curves"].contains("val_loss");
    html += svg_line_chart(series, {.title = fmt::format("layer {}: FBQuant loss by step (ring: kept step)", layer),
                                    .x_label = "Adam step",
                                    .y_label = held_out ? "held-out loss / tr(WHWᵀ)" : "loss / tr(WHWᵀ)",
                                    .log_y = true, .height = 300});
  }
  if (html.empty())
    return fmt::format("<p>Method <code>{}</code> does not iterate: no loss curves.</p>\n", xml_escape(method));
  return html;
}

std::string drift_chart(const json& report) {
  if (!report.contains("stream_drift")) return {};
  ChartSeries train{"training windows", {}, {}, {}}, validation{"held-out windows", {}, {}, {}};
  int layer = 0;
  for (const auto& d : report["stream_drift"]) {
    train.x.push_back(layer);
    train.y.push_back(d.at("train").get<double>());
    if (d.contains("validation")) validation.x.push_back(layer), validation.y.push_back(d["validation"].get<double>());
    ++layer;
  }
  std::vector<ChartSeries> series{train};
  if (!validation.y.empty()) series.push_back(validation);
  return "<h2>Drift from the float model</h2>\n" +
         svg_line_chart(series, {.title = "residual stream after each layer: ‖h − h̄‖² / ‖h̄‖²", .x_label = "decoder layer",
                                 .y_label = "relative drift", .log_y = true});
}

std::string linear_table(const std::vector<LinearRow>& rows) {
  std::string html = "<table class=\"linears\">\n<tr><th>linear</th><th>shape</th><th>H-error</th><th>RTN H-error</th>"
                     "<th>bits/weight</th><th>note</th></tr>\n";
  for (const auto& r : rows) {
    const auto& e = *r.entry;
    const auto shape = e.value("shape", std::vector<int>{0, 0});
    html += fmt::format("<tr><td>{}</td><td>{}×{}</td><td>{:.6f}</td><td>{:.6f}</td><td>{:.3f}</td><td>{}</td></tr>\n",
                        xml_escape(e["name"].get<std::string>()), shape.at(0), shape.at(1), e["h_error"].get<double>(),
                        e.value("h_error_rtn", 0.0), e["bits_per_weight"].get<double>(),
                        xml_escape(e.value("note", std::string())));
  }
  return html + "</table>\n";
}

constexpr const char* kStyle =
    "body{font-family:sans-serif;max-width:1000px;margin:24px auto;color:#222}"
    "table{border-collapse:collapse;margin:12px 0}th,td{border:1px solid #ccc;padding:4px 8px;text-align:left}"
    "table.summary th{background:#f4f4f4}table.linears{font-size:12px}svg{display:block;margin:12px 0}"
    "p.sub{color:#555}";

}  // namespace

std::string quantization_report_html(const std::filesystem::path& dir) {
  const auto report_path = dir / "quant_report.json";
  if (!std::filesystem::is_regular_file(report_path))
    fail("{}: not a quantized model (no quant_report.json); fbq report describes what fbq quantize wrote",
         dir.string());
  const auto report = read_json(report_path);
  std::optional<json> verdict;
  if (std::filesystem::is_regular_file(dir / "verdict.json")) verdict = read_json(dir / "verdict.json");
  if (!report.contains("layers") || !report["layers"].is_array()) fail("{}: no \"layers\" array", report_path.string());
  const auto rows = linear_rows(report["layers"], report_path);  // rows point into `report`
  const auto grid = grid_of(rows);
  const auto method = report.value("method", std::string("?"));
  const auto& options = report.value("options", json::object());
  const auto& calibration = report.value("calibration", json::object());

  std::string html = fmt::format("<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n"
                                 "<title>fbquant report: {0}</title>\n<style>{1}</style>\n</head>\n<body>\n"
                                 "<h1>fbquant report: {0}</h1>\n",
                                 xml_escape(dir.filename().string()), kStyle);
  html += fmt::format("<p class=\"sub\">{} from <code>{}</code>: {}-bit, group {}{}{}; calibration {} × {} tokens of "
                      "<code>{}</code> (+{} held out), seed {}.</p>\n",
                      xml_escape(method), xml_escape(report.value("source_model", std::string("?"))),
                      options.value("bits", 0), options.value("group_size", 0),
                      verdict && verdict->contains("preset") ? ", preset " + (*verdict)["preset"].get<std::string>() : "",
                      options.value("branch_bits", 0.0) > 0 ? fmt::format(", {}-bit branch", options["branch_bits"].get<double>())
                                                            : "",
                      calibration.value("nsamples", 0), calibration.value("seqlen", 0),
                      xml_escape(calibration.value("text", std::string("?"))), calibration.value("validation_samples", 0),
                      calibration.value("seed", 0));
  html += "<h2>Verdict</h2>\n" + summary_table(report, verdict, dir);
  html += "<h2>Error per layer, by linear kind</h2>\n";
  html += svg_bar_chart(grid.layer_names(), per_kind(rows, grid, [](const json& e) { return e["h_error"].get<double>(); }),
                        {.title = "tr(E·H·Eᵀ) / tr(W·H·Wᵀ) per linear", .x_label = "decoder layer",
                         .y_label = "H-error", .log_y = true});
  html += svg_bar_chart(grid.layer_names(),
                        per_kind(rows, grid, [](const json& e) {
                          return e["h_error"].get<double>() / std::max(e.value("h_error_rtn", 0.0), 1e-30);
                        }),
                        {.title = "error relative to plain RTN at the same bits (below 1: better)",
                         .x_label = "decoder layer", .y_label = "H-error / RTN H-error", .reference_y = 1.0,
                         .reference_label = "RTN"});
  html += "<h2>Bits per weight per layer</h2>\n";
  html += svg_bar_chart(grid.layer_names(),
                        per_kind(rows, grid, [](const json& e) { return e["bits_per_weight"].get<double>(); }),
                        {.title = "bits per weight (codes + f16 scales + zero points + branch)",
                         .x_label = "decoder layer", .y_label = "bits/weight"});
  html += "<h2>Loss curves</h2>\n" + loss_curves(rows, grid, method);
  html += drift_chart(report);
  html += "<h2>Every quantized linear</h2>\n" + linear_table(rows);
  return html + "</body>\n</html>\n";
}

}  // namespace fbq
