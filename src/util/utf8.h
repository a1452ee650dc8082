#pragma once
// UTF-8 helpers for scoring rules that count characters as Python's len(str) does (code points).
#include <cstddef>
#include <string_view>

namespace fbq {

// Code points in `text` (continuation bytes 10xxxxxx are not counted).
inline std::size_t utf8_length(std::string_view text) {
  std::size_t count = 0;
  for (const char ch : text) count += (static_cast<unsigned char>(ch) & 0xC0) != 0x80;
  return count;
}

}  // namespace fbq
