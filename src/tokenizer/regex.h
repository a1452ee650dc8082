#pragma once
// A PCRE2 pattern (UTF-8, Unicode properties for \p{L} and \s, JIT-compiled) for pre-tokenizer splits.
// Invalid UTF-8 in the subject never matches (it ends up in the gaps) instead of failing the match.
#include <string>
#include <string_view>
#include <vector>

struct pcre2_real_code_8;

namespace fbq {

class Regex {
 public:
  Regex(const std::string& pattern, const std::string& source);  // throws fbq::Error naming source + offset
  ~Regex();
  Regex(Regex&& other) noexcept;
  Regex(const Regex&) = delete;
  Regex& operator=(const Regex&) = delete;
  Regex& operator=(Regex&&) = delete;

  // Appends the matches of the pattern in `text` and the non-empty gaps between them, in order (views
  // into `text`): Hugging Face's Split(behavior = Isolated), llama.cpp's regex pre-tokenizer step.
  void split(std::string_view text, std::vector<std::string_view>& out) const;

 private:
  pcre2_real_code_8* code_ = nullptr;
  std::string pattern_;
};

}  // namespace fbq
