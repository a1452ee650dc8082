#include "util/kill_point.h"

#include <csignal>
#include <cstdlib>
#include <string>

#include <fmt/format.h>

namespace fbq {

void kill_point(std::string_view name, int index) {
  static const char* const target = std::getenv("FBQ_TEST_KILL_AT");
  if (target && fmt::format("{}:{}", name, index) == target) std::raise(SIGKILL);
}

}  // namespace fbq
