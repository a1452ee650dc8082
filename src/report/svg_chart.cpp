#include "report/svg_chart.h"

#include <fmt/format.h>

#include <algorithm>
#include <cmath>
#include <nlohmann/json.hpp>
#include <numeric>

#include "util/error.h"

namespace fbq {

std::string xml_escape(const std::string& text) {
  std::string out;
  out.reserve(text.size());
  for (const char c : text) {
    switch (c) {
      case '&': out += "&amp;"; break;
      case '<': out += "&lt;"; break;
      case '>': out += "&gt;"; break;
      case '"': out += "&quot;"; break;
      default: out += c;
    }
  }
  return out;
}

namespace {

constexpr const char* kPalette[] = {"#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd",
                                    "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22", "#17becf"};
const char* color(std::size_t i) { return kPalette[i % std::size(kPalette)]; }

// Geometry of the plot area inside the SVG (the legend sits to the right of it).
struct Frame {
  double left = 72, top = 40, right, bottom;
  Frame(const ChartOptions& o) : right(o.width - 190.0), bottom(o.height - 50.0) {}
  double width() const { return right - left; }
  double height() const { return bottom - top; }
};

// A value axis: data range widened to nice tick values, mapped onto [from, to] pixels.
struct Axis {
  double lo, hi;
  bool log;
  std::vector<double> ticks;

  double position(double value, double from, double to) const {
    const double t = log ? (std::log10(value) - std::log10(lo)) / (std::log10(hi) - std::log10(lo))
                         : (value - lo) / (hi - lo);
    return from + t * (to - from);
  }
};

double nice_step(double span, int target_ticks) {
  const double raw = span / target_ticks, magnitude = std::pow(10.0, std::floor(std::log10(raw)));
  for (const double m : {1.0, 2.0, 2.5, 5.0, 10.0})
    if (raw <= m * magnitude) return m * magnitude;
  return 10 * magnitude;
}

Axis make_axis(double lo, double hi, bool log, bool from_zero) {
  if (log) {
    Axis axis{std::pow(10.0, std::floor(std::log10(lo) * 4) / 4), std::pow(10.0, std::ceil(std::log10(hi) * 4) / 4),
              true, {}};
    if (axis.hi <= axis.lo) axis.hi = axis.lo * 10;
    for (double decade = std::pow(10.0, std::floor(std::log10(axis.lo))); decade <= axis.hi; decade *= 10)
      for (const double m : {1.0, 2.0, 5.0})
        if (m * decade >= axis.lo * (1 - 1e-9) && m * decade <= axis.hi * (1 + 1e-9)) axis.ticks.push_back(m * decade);
    if (axis.ticks.size() < 2) axis.ticks = {axis.lo, axis.hi};
    return axis;
  }
  if (from_zero) lo = std::min(lo, 0.0);
  if (hi - lo < 1e-12 * std::max(1.0, std::abs(hi))) {
    lo -= 0.5;
    hi += 0.5;
  }
  const double step = nice_step(hi - lo, 5);
  Axis axis{std::floor(lo / step) * step, std::ceil(hi / step) * step, false, {}};
  for (double t = axis.lo; t <= axis.hi + step * 1e-6; t += step) axis.ticks.push_back(std::abs(t) < step * 1e-9 ? 0 : t);
  return axis;
}

std::string tick_label(double value) { return fmt::format("{:.4g}", value); }

void check_values(const std::vector<double>& values, bool log, const std::string& series) {
  for (const double v : values) {
    if (!std::isfinite(v)) fail("chart: series '{}' has a non-finite value", series);
    if (log && v <= 0) fail("chart: series '{}' has a value <= 0 on a logarithmic axis", series);
  }
}

std::string open_svg(const ChartOptions& o) {
  return fmt::format(
      "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{0}\" height=\"{1}\" viewBox=\"0 0 {0} {1}\" "
      "font-family=\"sans-serif\" font-size=\"12\">\n<rect width=\"{0}\" height=\"{1}\" fill=\"#ffffff\"/>\n"
      "<text x=\"{2}\" y=\"22\" text-anchor=\"middle\" font-size=\"15\" font-weight=\"bold\">{3}</text>\n",
      o.width, o.height, o.width / 2, xml_escape(o.title));
}

// The y axis with grid lines and labels, the x label, the y label, and the optional reference line.
std::string y_axis(const Axis& y, const Frame& f, const ChartOptions& o) {
  std::string out;
  for (const double t : y.ticks) {
    const double py = y.position(t, f.bottom, f.top);
    out += fmt::format("<line x1=\"{:.1f}\" y1=\"{:.1f}\" x2=\"{:.1f}\" y2=\"{:.1f}\" stroke=\"#e0e0e0\"/>\n", f.left, py,
                       f.right, py);
    out += fmt::format("<text x=\"{:.1f}\" y=\"{:.1f}\" text-anchor=\"end\">{}</text>\n", f.left - 6, py + 4,
                       tick_label(t));
  }
  out += fmt::format("<rect x=\"{:.1f}\" y=\"{:.1f}\" width=\"{:.1f}\" height=\"{:.1f}\" fill=\"none\" stroke=\"#444\"/>\n",
                     f.left, f.top, f.width(), f.height());
  out += fmt::format("<text x=\"{:.1f}\" y=\"{:.1f}\" text-anchor=\"middle\">{}</text>\n", f.left + f.width() / 2,
                     f.bottom + 38, xml_escape(o.x_label));
  out += fmt::format("<text transform=\"translate(16 {:.1f}) rotate(-90)\" text-anchor=\"middle\">{}</text>\n",
                     f.top + f.height() / 2, xml_escape(o.y_label + (o.log_y ? " (log scale)" : "")));
  if (o.reference_y) {
    const double py = y.position(*o.reference_y, f.bottom, f.top);
    out += fmt::format("<line x1=\"{:.1f}\" y1=\"{:.1f}\" x2=\"{:.1f}\" y2=\"{:.1f}\" stroke=\"#000\" "
                       "stroke-dasharray=\"5 4\"><title>{}: {}</title></line>\n",
                       f.left, py, f.right, py, xml_escape(o.reference_label), tick_label(*o.reference_y));
  }
  return out;
}

std::string legend(const std::vector<std::string>& names, const Frame& f, const ChartOptions& o) {
  std::string out;
  auto entries = names;
  if (o.reference_y) entries.push_back(o.reference_label);
  for (std::size_t i = 0; i < entries.size(); ++i) {
    const double y = f.top + 8 + 18.0 * i;
    const bool reference = i == names.size();
    out += reference ? fmt::format("<line x1=\"{:.1f}\" y1=\"{:.1f}\" x2=\"{:.1f}\" y2=\"{:.1f}\" stroke=\"#000\" "
                                   "stroke-dasharray=\"5 4\"/>\n", f.right + 14, y, f.right + 26, y)
                     : fmt::format("<rect x=\"{:.1f}\" y=\"{:.1f}\" width=\"12\" height=\"12\" fill=\"{}\"/>\n",
                                   f.right + 14, y - 6, color(i));
    out += fmt::format("<text x=\"{:.1f}\" y=\"{:.1f}\">{}</text>\n", f.right + 32, y + 4, xml_escape(entries[i]));
  }
  return out;
}

std::pair<double, double> value_range(const std::vector<ChartSeries>& series, const ChartOptions& o) {
  double lo = INFINITY, hi = -INFINITY;
  for (const auto& s : series)
    for (const double v : s.y) lo = std::min(lo, v), hi = std::max(hi, v);
  if (o.reference_y) lo = std::min(lo, *o.reference_y), hi = std::max(hi, *o.reference_y);
  if (!(lo <= hi)) fail("chart '{}': no values", o.title);
  return {lo, hi};
}

std::vector<std::string> names_of(const std::vector<ChartSeries>& series) {
  std::vector<std::string> names;
  for (const auto& s : series) names.push_back(s.name);
  return names;
}

}  // namespace

std::string svg_line_chart(const std::vector<ChartSeries>& series, const ChartOptions& o) {
  double x_lo = INFINITY, x_hi = -INFINITY;
  for (const auto& s : series) {
    if (s.x.size() != s.y.size()) fail("chart '{}': series '{}' has {} x and {} y values", o.title, s.name, s.x.size(), s.y.size());
    check_values(s.x, false, s.name);
    check_values(s.y, o.log_y, s.name);
    for (const double v : s.x) x_lo = std::min(x_lo, v), x_hi = std::max(x_hi, v);
  }
  const auto [y_lo, y_hi] = value_range(series, o);
  const Frame f(o);
  const Axis x = make_axis(x_lo, x_hi, false, false), y = make_axis(y_lo, y_hi, o.log_y, false);
  std::string out = open_svg(o) + y_axis(y, f, o);
  for (const double t : x.ticks)
    out += fmt::format("<text x=\"{:.1f}\" y=\"{:.1f}\" text-anchor=\"middle\">{}</text>\n",
                       x.position(t, f.left, f.right), f.bottom + 16, tick_label(t));
  for (std::size_t i = 0; i < series.size(); ++i) {
    const auto& s = series[i];
    std::vector<std::size_t> order(s.x.size());
    std::iota(order.begin(), order.end(), 0);
    std::sort(order.begin(), order.end(), [&](std::size_t a, std::size_t b) { return s.x[a] < s.x[b]; });
    std::string points;
    for (const auto k : order)
      points += fmt::format("{:.1f},{:.1f} ", x.position(s.x[k], f.left, f.right), y.position(s.y[k], f.bottom, f.top));
    out += fmt::format("<polyline fill=\"none\" stroke=\"{}\" stroke-width=\"1.8\" points=\"{}\"/>\n", color(i), points);
    for (const auto k : order) {
      const bool marked = s.marker_x && *s.marker_x == s.x[k];
      out += fmt::format("<circle cx=\"{:.1f}\" cy=\"{:.1f}\" r=\"{}\" fill=\"{}\" stroke=\"{}\"><title>{}: {} → {}</title>"
                         "</circle>\n",
                         x.position(s.x[k], f.left, f.right), y.position(s.y[k], f.bottom, f.top), marked ? 5 : 2.5,
                         marked ? "#ffffff" : color(i), color(i), xml_escape(s.name), tick_label(s.x[k]),
                         tick_label(s.y[k]));
    }
  }
  return out + legend(names_of(series), f, o) + "</svg>\n";
}

std::string svg_bar_chart(const std::vector<std::string>& categories, const std::vector<ChartSeries>& series,
                          const ChartOptions& o) {
  if (categories.empty() || series.empty()) fail("chart '{}': no bars", o.title);
  for (const auto& s : series) {
    if (s.y.size() != categories.size())
      fail("chart '{}': series '{}' has {} values for {} categories", o.title, s.name, s.y.size(), categories.size());
    check_values(s.y, o.log_y, s.name);
  }
  const auto [y_lo, y_hi] = value_range(series, o);
  const Frame f(o);
  const Axis y = make_axis(y_lo, y_hi, o.log_y, /*from_zero=*/true);
  std::string out = open_svg(o) + y_axis(y, f, o);
  const double group = f.width() / categories.size(), bar = group * 0.8 / series.size();
  for (std::size_t c = 0; c < categories.size(); ++c) {
    out += fmt::format("<text x=\"{:.1f}\" y=\"{:.1f}\" text-anchor=\"middle\">{}</text>\n", f.left + group * (c + 0.5),
                       f.bottom + 16, xml_escape(categories[c]));
    for (std::size_t i = 0; i < series.size(); ++i) {
      const double top = y.position(series[i].y[c], f.bottom, f.top), base = o.log_y ? f.bottom : y.position(0, f.bottom, f.top);
      out += fmt::format("<rect x=\"{:.1f}\" y=\"{:.1f}\" width=\"{:.1f}\" height=\"{:.1f}\" fill=\"{}\"><title>{} {}: {}"
                         "</title></rect>\n",
                         f.left + group * c + group * 0.1 + bar * i, std::min(top, base), bar, std::abs(base - top),
                         color(i), xml_escape(categories[c]), xml_escape(series[i].name), tick_label(series[i].y[c]));
    }
  }
  return out + legend(names_of(series), f, o) + "</svg>\n";
}

std::string svg_chart_from_spec(const std::string& json_text) {
  try {
    const auto spec = nlohmann::json::parse(json_text);
    ChartOptions options{.title = spec.value("title", ""), .x_label = spec.value("x_label", ""),
                         .y_label = spec.value("y_label", ""), .log_y = spec.value("log_y", false)};
    if (spec.contains("reference_y")) {
      options.reference_y = spec["reference_y"].get<double>();
      options.reference_label = spec.value("reference_label", "reference");
    }
    std::vector<ChartSeries> series;
    for (const auto& s : spec.at("series"))
      series.push_back({s.at("name").get<std::string>(), s.value("x", std::vector<double>()),
                        s.at("y").get<std::vector<double>>(), {}});
    const auto kind = spec.value("kind", "line");
    if (kind == "bar") return svg_bar_chart(spec.at("categories").get<std::vector<std::string>>(), series, options);
    if (kind != "line") fail("chart spec: kind must be line or bar (got '{}')", kind);
    return svg_line_chart(series, options);
  } catch (const nlohmann::json::exception& e) {
    fail("chart spec: {}", e.what());
  }
}

}  // namespace fbq
