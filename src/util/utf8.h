#pragma once
// UTF-8 helpers: counting characters as Python's len(str) does (code points), validity, and a stream
// that never cuts a character in two (byte-level BPE tokens can end mid-character).
#include <cstddef>
#include <string>
#include <string_view>
#include <utility>

namespace fbq {

// Code points in `text` (continuation bytes 10xxxxxx are not counted).
inline std::size_t utf8_length(std::string_view text) {
  std::size_t count = 0;
  for (const char ch : text) count += (static_cast<unsigned char>(ch) & 0xC0) != 0x80;
  return count;
}

// Bytes in the sequence a lead byte starts (0 for a continuation byte or an invalid lead).
inline std::size_t utf8_sequence_bytes(unsigned char lead) {
  if (lead < 0x80) return 1;
  if (lead < 0xC2) return 0;
  if (lead < 0xE0) return 2;
  if (lead < 0xF0) return 3;
  if (lead < 0xF5) return 4;
  return 0;
}

// The offset of the first byte that breaks structural validity (a lead byte not followed by its
// continuation bytes, or a stray continuation byte), or npos for valid UTF-8.
inline std::size_t first_invalid_utf8(std::string_view text) {
  for (std::size_t at = 0; at < text.size();) {
    const std::size_t n = utf8_sequence_bytes(static_cast<unsigned char>(text[at]));
    if (n == 0 || at + n > text.size()) return at;
    for (std::size_t k = 1; k < n; ++k)
      if ((static_cast<unsigned char>(text[at + k]) & 0xC0) != 0x80) return at;
    at += n;
  }
  return std::string_view::npos;
}

inline bool is_valid_utf8(std::string_view text) { return first_invalid_utf8(text) == std::string_view::npos; }

// Holds back the bytes of a character that is not complete yet; bytes that can never become a character
// (invalid lead, broken sequence) pass through, so the concatenated output equals the concatenated input.
class Utf8Stream {
 public:
  std::string push(std::string_view bytes) {
    pending_ += bytes;
    std::size_t complete = 0;
    while (complete < pending_.size()) {
      const std::size_t n = utf8_sequence_bytes(static_cast<unsigned char>(pending_[complete]));
      if (n == 0) { ++complete; continue; }
      std::size_t have = 1;
      while (have < n && complete + have < pending_.size() &&
             (static_cast<unsigned char>(pending_[complete + have]) & 0xC0) == 0x80)
        ++have;
      if (have < n && complete + have == pending_.size()) break;  // may still be completed
      complete += have;
    }
    std::string out = pending_.substr(0, complete);
    pending_.erase(0, complete);
    return out;
  }
  std::string flush() { return std::exchange(pending_, {}); }

 private:
  std::string pending_;
};

}  // namespace fbq
