#pragma once
// A progress line on stderr for long work: redrawn in place on a terminal, a line every few seconds
// otherwise (CI logs), always a final line with the elapsed time. Silent when disabled.
#include <chrono>
#include <string>

namespace fbq {

class Progress {
 public:
  Progress(std::string label, long total, bool enabled = true);
  void update(long done, const std::string& detail = "");
  void finish(const std::string& detail = "");

 private:
  void draw(long done, const std::string& detail, bool final);

  std::string label_;
  long total_;
  bool enabled_;
  bool terminal_;
  bool finished_ = false;
  std::chrono::steady_clock::time_point start_, last_draw_;
};

double seconds_since(std::chrono::steady_clock::time_point start);

}  // namespace fbq
