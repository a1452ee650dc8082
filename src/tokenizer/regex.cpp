#include "tokenizer/regex.h"

#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>

#include <memory>

#include "util/error.h"

namespace fbq {
namespace {

// One match block and JIT stack per thread, shared by all patterns (an ovector of one pair is enough).
struct MatchScratch {
  pcre2_match_data* data = pcre2_match_data_create(1, nullptr);
  pcre2_jit_stack* stack = pcre2_jit_stack_create(32 * 1024, 8 * 1024 * 1024, nullptr);
  pcre2_match_context* context = pcre2_match_context_create(nullptr);
  MatchScratch() { pcre2_jit_stack_assign(context, nullptr, stack); }
  ~MatchScratch() {
    pcre2_match_context_free(context);
    pcre2_jit_stack_free(stack);
    pcre2_match_data_free(data);
  }
};

MatchScratch& scratch() {
  thread_local MatchScratch instance;
  return instance;
}

std::size_t next_character(std::string_view text, std::size_t at) {
  ++at;
  while (at < text.size() && (static_cast<unsigned char>(text[at]) & 0xC0) == 0x80) ++at;
  return at;
}

}  // namespace

Regex::Regex(const std::string& pattern, const std::string& source) : pattern_(pattern) {
  int error = 0;
  PCRE2_SIZE offset = 0;
  const auto options = PCRE2_UTF | PCRE2_UCP | PCRE2_MATCH_INVALID_UTF | PCRE2_DOLLAR_ENDONLY;
  code_ = pcre2_compile(reinterpret_cast<PCRE2_SPTR>(pattern.data()), pattern.size(), options, &error, &offset, nullptr);
  if (!code_) {
    PCRE2_UCHAR message[256];
    pcre2_get_error_message(error, message, sizeof message);
    fail("{}: bad pre-tokenizer regex at offset {} ({}): {}", source, offset, reinterpret_cast<const char*>(message),
         pattern);
  }
  pcre2_jit_compile(code_, PCRE2_JIT_COMPLETE);  // without JIT support the interpreter still works
}

Regex::~Regex() { pcre2_code_free(code_); }
Regex::Regex(Regex&& other) noexcept : code_(other.code_), pattern_(std::move(other.pattern_)) { other.code_ = nullptr; }

void Regex::split(std::string_view text, std::vector<std::string_view>& out) const {
  auto& s = scratch();
  const auto* subject = reinterpret_cast<PCRE2_SPTR>(text.data());
  std::size_t gap_start = 0, at = 0;
  while (at <= text.size()) {
    const int rc = pcre2_match(code_, subject, text.size(), at, 0, s.data, s.context);
    if (rc == PCRE2_ERROR_NOMATCH) break;
    if (rc < 0) {
      PCRE2_UCHAR message[256];
      pcre2_get_error_message(rc, message, sizeof message);
      fail("pre-tokenizer regex failed ({}): {}", reinterpret_cast<const char*>(message), pattern_);
    }
    const PCRE2_SIZE* span = pcre2_get_ovector_pointer(s.data);
    const std::size_t begin = span[0], end = span[1];
    if (end == begin) {  // an empty match splits nothing; step over one character
      at = next_character(text, begin);
      continue;
    }
    if (begin > gap_start) out.push_back(text.substr(gap_start, begin - gap_start));
    out.push_back(text.substr(begin, end - begin));
    gap_start = at = end;
  }
  if (gap_start < text.size()) out.push_back(text.substr(gap_start));
}

}  // namespace fbq
