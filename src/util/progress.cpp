#include "util/progress.h"

#include <fmt/core.h>
#include <unistd.h>

#include <cstdio>

namespace fbq {

double seconds_since(std::chrono::steady_clock::time_point start) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
}

Progress::Progress(std::string label, long total, bool enabled)
    : label_(std::move(label)),
      total_(total),
      enabled_(enabled),
      terminal_(::isatty(STDERR_FILENO) != 0),
      start_(std::chrono::steady_clock::now()),
      last_draw_(start_) {}

void Progress::update(long done, const std::string& detail) {
  if (!enabled_) return;
  const auto now = std::chrono::steady_clock::now();
  const double since_draw = std::chrono::duration<double>(now - last_draw_).count();
  if (since_draw < (terminal_ ? 0.2 : 5.0)) return;
  last_draw_ = now;
  draw(done, detail, false);
}

void Progress::finish(const std::string& detail) {
  if (!enabled_ || finished_) return;
  finished_ = true;
  draw(total_, detail, true);
}

void Progress::draw(long done, const std::string& detail, bool final) {
  const double elapsed = seconds_since(start_);
  const double fraction = total_ > 0 ? static_cast<double>(done) / static_cast<double>(total_) : 1.0;
  std::string line = fmt::format("{}: {}/{} ({:.0f}%) {:.1f}s", label_, done, total_, 100.0 * fraction, elapsed);
  if (!final && fraction > 0.0 && fraction < 1.0) line += fmt::format(", ~{:.0f}s left", elapsed * (1.0 / fraction - 1.0));
  if (!detail.empty()) line += "  " + detail;
  if (terminal_) {
    fmt::print(stderr, "\r\033[K{}{}", line, final ? "\n" : "");
  } else {
    fmt::print(stderr, "{}\n", line);
  }
  std::fflush(stderr);
}

}  // namespace fbq
