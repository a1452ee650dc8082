#pragma once
// Small self-contained SVG charts (no script, no external resources) for `fbq report` and the plots of
// docs/RESULTS.md (`fbq plot`): line charts of (x, y) series and grouped bar charts over categories.
#include <optional>
#include <string>
#include <vector>

namespace fbq {

struct ChartSeries {
  std::string name;
  std::vector<double> x, y;          // line charts: points (sorted by x when drawn); bar charts: y per category
  std::optional<double> marker_x;    // line charts: a ringed point on the series at this x (e.g. the kept step)
};

struct ChartOptions {
  std::string title, x_label, y_label;
  bool log_y = false;                   // logarithmic y axis (all values must be > 0)
  std::optional<double> reference_y;    // a dashed horizontal line (e.g. the float model's PPL)
  std::string reference_label;
  int width = 720, height = 340;
};

// Throws fbq::Error on empty input, mismatched lengths, non-finite values or non-positive values on a log axis.
std::string svg_line_chart(const std::vector<ChartSeries>& series, const ChartOptions& options);
std::string svg_bar_chart(const std::vector<std::string>& categories, const std::vector<ChartSeries>& series,
                          const ChartOptions& options);

// A chart described in JSON (what `fbq plot` reads): {"kind": "line"|"bar", "title", "x_label", "y_label",
// "log_y", "reference_y", "reference_label", "categories" (bar), "series": [{"name", "x" (line), "y"}]}.
std::string svg_chart_from_spec(const std::string& json_text);

// Text with &, <, >, " escaped for XML/HTML.
std::string xml_escape(const std::string& text);

}  // namespace fbq
