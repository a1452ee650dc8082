#pragma once
// One exception type for every user-facing failure: the CLI prints what() on one line and exits 1.
#include <fmt/format.h>

#include <stdexcept>
#include <string>

namespace fbq {

class Error : public std::runtime_error {
 public:
  explicit Error(const std::string& message) : std::runtime_error(message) {}
};

template <typename... Args>
[[noreturn]] void fail(fmt::format_string<Args...> format, Args&&... args) {
  throw Error(fmt::format(format, std::forward<Args>(args)...));
}

}  // namespace fbq
