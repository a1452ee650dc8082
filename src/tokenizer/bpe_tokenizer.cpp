// The BPE engine behind every BPE vocabulary (see bpe.h). Encoding: split out added tokens, normalize,
// pre-tokenize with PCRE2 (Unicode properties, lookaheads), then merge each chunk's symbols by priority
// with a heap over a linked list of symbols (O(n log n), so a 100 kB chunk without pre-tokenizer is fine).
#include <utf8proc.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <charconv>
#include <queue>
#include <unordered_map>

#include "tokenizer/bpe.h"
#include "tokenizer/regex.h"
#include "util/error.h"
#include "util/utf8.h"

namespace fbq {
namespace {

constexpr std::string_view kSpaceMark = "\xE2\x96\x81";  // U+2581, SentencePiece's stand-in for ' '

// Bytes of the UTF-8 character at the start of `text`; 1 for an invalid or truncated sequence, so that
// each stray byte is a symbol of its own.
std::size_t character_bytes(std::string_view text) {
  const std::size_t n = utf8_sequence_bytes(static_cast<unsigned char>(text[0]));
  if (n == 0 || n > text.size()) return 1;
  for (std::size_t k = 1; k < n; ++k)
    if ((static_cast<unsigned char>(text[k]) & 0xC0) != 0x80) return 1;
  return n;
}

std::string replace_spaces(std::string_view text) {
  std::string out;
  out.reserve(text.size() + text.size() / 4);
  for (char c : text) {
    if (c == ' ') out += kSpaceMark;
    else out += c;
  }
  return out;
}

bool is_space(char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v'; }

struct Symbol {
  int prev, next;
  std::uint32_t begin, length;
  int id;  // -1: no token (yet) for this span
};

struct Candidate {
  double rank;
  int left;
  std::uint32_t length;  // of the merged span: a candidate is stale when its symbols changed since
  int id;
  bool operator<(const Candidate& other) const {  // priority_queue pops the "largest": lowest rank, leftmost
    return rank > other.rank || (rank == other.rank && left > other.left);
  }
};

std::atomic<std::uint64_t> next_instance{1};

class BpeTokenizer final : public Tokenizer {
 public:
  BpeTokenizer(BpeVocabulary vocabulary, std::string source)
      : v_(std::move(vocabulary)), source_(std::move(source)), instance_(next_instance++) {
    build_token_index();
    if (v_.merge_rule == BpeVocabulary::MergeRule::merge_list) build_merge_index();
    if (v_.merge_rule == BpeVocabulary::MergeRule::token_score && v_.scores.size() != v_.tokens.size())
      fail("{}: {} scores for {} tokens", source_, v_.scores.size(), v_.tokens.size());
    for (const auto& pattern : v_.pre_regexes) regexes_.emplace_back(pattern, source_);
    split_before_spaces_ = v_.alphabet == BpeVocabulary::Alphabet::pieces && regexes_.empty() && spaces_only_lead();
    // Longest first, so that at one position "<|im_start|>" wins over a shorter token it starts with.
    std::stable_sort(v_.added.begin(), v_.added.end(),
                     [](const AddedToken& a, const AddedToken& b) { return a.content.size() > b.content.size(); });
    for (const auto& token : v_.added) {
      if (token.id < 0 || token.id >= vocab_size())
        fail("{}: added token '{}' has id {}, outside the vocabulary (size {})", source_, token.content, token.id,
             vocab_size());
      if (token.content.empty()) fail("{}: added token {} has empty content", source_, token.id);
      added_by_id_[token.id] = &token;
      const auto first = static_cast<unsigned char>(token.content[0]);
      added_by_first_byte_[1][first].push_back(&token);
      if (!token.special) added_by_first_byte_[0][first].push_back(&token);
    }
    for (int id : {v_.bos_id, v_.eos_id, v_.unk_id})
      if (id >= vocab_size()) fail("{}: special token id {} is outside the vocabulary (size {})", source_, id, vocab_size());
  }

  std::vector<int> tokenize(std::string_view text, const EncodeOptions& options) const override {
    std::vector<int> ids;
    if (options.add_bos && v_.bos_id >= 0) ids.push_back(v_.bos_id);
    std::size_t at = 0;
    while (at < text.size()) {
      const auto match = next_added_token(text, at, options.parse_special);
      encode_fragment(text.substr(at, match.begin - at), at == 0, ids);
      if (match.token == nullptr) break;
      ids.push_back(match.token->id);
      at = match.end;
    }
    return ids;
  }

  std::string decode_piece(int previous, int token) const override {
    if (token < 0 || token >= vocab_size())
      fail("{}: token id {} is outside the vocabulary (size {})", source_, token, vocab_size());
    if (const auto it = added_by_id_.find(token); it != added_by_id_.end())
      return it->second->special && (token == v_.bos_id || token == v_.eos_id || token == v_.unk_id)
                 ? std::string()
                 : it->second->content;
    if (token == v_.unk_id) return {};
    const std::string& piece = v_.tokens[static_cast<std::size_t>(token)];
    if (v_.alphabet == BpeVocabulary::Alphabet::bytes) return piece;
    if (const auto byte = parse_byte_piece(piece); byte && is_byte_token(token)) return std::string(1, char(*byte));
    std::string_view rest = piece;
    // The space prefix is not part of the text: dropped at the start (Hugging Face's Strip decoder) and
    // after BOS.
    if (v_.add_space_prefix && (previous < 0 || previous == v_.bos_id) && rest.starts_with(kSpaceMark))
      rest.remove_prefix(kSpaceMark.size());
    return word_boundaries_to_spaces(rest);
  }

  int vocab_size() const override { return static_cast<int>(v_.tokens.size()); }
  int bos_id() const override { return v_.bos_id; }
  int eos_id() const override { return v_.eos_id; }

 private:
  struct AddedMatch {
    std::size_t begin, end;
    const AddedToken* token;  // null: no further added token in the text
  };

  void build_token_index() {
    token_index_.reserve(v_.tokens.size());
    // Added tokens are matched literally before BPE, byte tokens only by fallback: neither is made by merges.
    std::vector<bool> text_token(v_.tokens.size(), true);
    for (const auto& token : v_.added)
      if (token.id >= 0 && token.id < vocab_size()) text_token[token.id] = false;
    for (std::size_t id = 0; id < v_.tokens.size(); ++id)
      if (!v_.tokens[id].empty() && text_token[id]) token_index_[v_.tokens[id]] = static_cast<int>(id);
    if (v_.alphabet == BpeVocabulary::Alphabet::pieces && v_.byte_fallback && v_.byte_tokens.empty()) {
      v_.byte_tokens.assign(256, -1);
      for (std::size_t id = 0; id < v_.tokens.size(); ++id)
        if (const auto byte = parse_byte_piece(v_.tokens[id]); byte && v_.byte_tokens[*byte] < 0)
          v_.byte_tokens[*byte] = static_cast<int>(id);
    }
    for (const int id : v_.byte_tokens)
      if (id >= 0) token_index_.erase(v_.tokens[id]);
  }

  bool is_byte_token(int id) const {
    return !v_.byte_tokens.empty() &&
           std::find(v_.byte_tokens.begin(), v_.byte_tokens.end(), id) != v_.byte_tokens.end();
  }

  void build_merge_index() {
    merge_index_.reserve(v_.merges.size());
    for (std::size_t rank = 0; rank < v_.merges.size(); ++rank) {
      const auto& [left, right] = v_.merges[rank];
      const int left_id = token_of(left), right_id = token_of(right);
      if (left_id < 0 || right_id < 0)
        fail("{}: merge {} ('{}' '{}') names '{}', which is not in the vocabulary", source_, rank + 1, left, right,
             left_id < 0 ? left : right);
      const int result = token_of(left + right);
      if (result < 0)
        fail("{}: merge {} ('{}' '{}') makes '{}{}', which is not in the vocabulary", source_, rank + 1, left, right,
             left, right);
      merge_index_.emplace(pair_key(left_id, right_id), std::pair<int, int>{static_cast<int>(rank), result});
    }
  }

  static std::uint64_t pair_key(int left, int right) {
    return (static_cast<std::uint64_t>(static_cast<std::uint32_t>(left)) << 32) | static_cast<std::uint32_t>(right);
  }

  // The leftmost added token at or after `from` (longest first at the same position), with lstrip/rstrip
  // whitespace included in [begin, end). Only tokens whose first byte matches are tried at a position.
  AddedMatch next_added_token(std::string_view text, std::size_t from, bool parse_special) const {
    const auto& by_first_byte = added_by_first_byte_[parse_special];
    for (std::size_t at = from; at < text.size(); ++at)
      for (const AddedToken* token : by_first_byte[static_cast<unsigned char>(text[at])]) {
        if (text.compare(at, token->content.size(), token->content) != 0) continue;
        std::size_t begin = at, end = at + token->content.size();
        if (token->lstrip)
          while (begin > from && is_space(text[begin - 1])) --begin;
        if (token->rstrip)
          while (end < text.size() && is_space(text[end])) ++end;
        return {begin, end, token};
      }
    return {text.size(), text.size(), nullptr};
  }

  void encode_fragment(std::string_view fragment, bool at_text_start, std::vector<int>& ids) const {
    if (fragment.empty()) return;
    std::string text = v_.nfc ? nfc_normalize(fragment) : std::string(fragment);
    if (v_.alphabet == BpeVocabulary::Alphabet::pieces) {
      text = replace_spaces(text);
      if (v_.add_space_prefix && at_text_start) text.insert(0, kSpaceMark);
    }
    if (split_before_spaces_) return encode_words(text, ids);
    if (regexes_.empty()) return encode_chunk(text, ids);
    std::vector<std::string_view> chunks{text}, next;
    for (const auto& regex : regexes_) {
      next.clear();
      for (const auto chunk : chunks) regex.split(chunk, next);
      chunks.swap(next);
    }
    for (const auto chunk : chunks) encode_chunk(chunk, ids);
  }

  // Pieces text split before every U+2581 that follows another character: exact when no token has a U+2581
  // after a non-U+2581 character (split_before_spaces_), since merges only ever make tokens.
  void encode_words(std::string_view text, std::vector<int>& ids) const {
    std::size_t start = 0;
    for (std::size_t at = text.find(kSpaceMark, 1); at != std::string_view::npos; at = text.find(kSpaceMark, at + 1)) {
      if (at >= kSpaceMark.size() && text.substr(at - kSpaceMark.size(), kSpaceMark.size()) == kSpaceMark) continue;
      encode_chunk(text.substr(start, at - start), ids);
      start = at;
    }
    encode_chunk(text.substr(start), ids);
  }

  // Whether every token keeps its U+2581s in a leading run ("▁▁the", never "a▁b"): SentencePiece's
  // split_by_whitespace vocabularies do.
  bool spaces_only_lead() const {
    for (const std::string_view token : v_.tokens) {
      std::size_t lead = 0;
      while (token.substr(lead).starts_with(kSpaceMark)) lead += kSpaceMark.size();
      if (token.find(kSpaceMark, lead) != std::string_view::npos) return false;
    }
    return true;
  }

  // Cached per thread (tokenization runs in parallel in the evaluator): chunks repeat a lot in text.
  void encode_chunk(std::string_view chunk, std::vector<int>& ids) const {
    constexpr std::size_t kMaxCachedChunk = 64, kMaxCacheEntries = 1 << 16;
    if (chunk.size() > kMaxCachedChunk) return merge_chunk(chunk, ids);
    thread_local std::uint64_t cache_owner = 0;
    thread_local std::unordered_map<std::string, std::vector<int>> cache;
    if (cache_owner != instance_ || cache.size() > kMaxCacheEntries) {
      cache.clear();
      cache_owner = instance_;
    }
    auto [it, inserted] = cache.try_emplace(std::string(chunk));
    if (inserted) merge_chunk(chunk, it->second);
    ids.insert(ids.end(), it->second.begin(), it->second.end());
  }

  int token_of(std::string_view text) const {
    const auto it = token_index_.find(text);
    return it == token_index_.end() ? -1 : it->second;
  }

  bool find_merge(std::string_view chunk, const Symbol& left, const Symbol& right, Candidate& out) const {
    if (v_.merge_rule == BpeVocabulary::MergeRule::merge_list) {
      if (left.id < 0 || right.id < 0) return false;
      const auto it = merge_index_.find(pair_key(left.id, right.id));
      if (it == merge_index_.end()) return false;
      out = {static_cast<double>(it->second.first), 0, left.length + right.length, it->second.second};
      return true;
    }
    const int id = token_of(chunk.substr(left.begin, left.length + right.length));
    if (id < 0) return false;
    const double rank = v_.merge_rule == BpeVocabulary::MergeRule::token_rank ? id : -double(v_.scores[id]);
    out = {rank, 0, left.length + right.length, id};
    return true;
  }

  std::vector<Symbol> initial_symbols(std::string_view chunk) const {
    std::vector<Symbol> symbols;
    symbols.reserve(chunk.size());
    const bool by_byte = v_.alphabet == BpeVocabulary::Alphabet::bytes;
    for (std::size_t at = 0; at < chunk.size();) {
      const std::size_t length = by_byte ? 1 : character_bytes(chunk.substr(at));
      const int index = static_cast<int>(symbols.size());
      symbols.push_back({index - 1, index + 1, static_cast<std::uint32_t>(at), static_cast<std::uint32_t>(length),
                         token_of(chunk.substr(at, length))});
      at += length;
    }
    if (!symbols.empty()) symbols.back().next = -1;
    return symbols;
  }

  void merge_chunk(std::string_view chunk, std::vector<int>& ids) const {
    if (v_.ignore_merges)
      if (const int whole = token_of(chunk); whole >= 0) return ids.push_back(whole);
    auto symbols = initial_symbols(chunk);
    std::priority_queue<Candidate> queue;
    const auto consider = [&](int left) {
      if (left < 0 || symbols[left].next < 0) return;
      Candidate candidate;
      if (!find_merge(chunk, symbols[left], symbols[symbols[left].next], candidate)) return;
      candidate.left = left;
      queue.push(candidate);
    };
    for (int i = 0; i + 1 < static_cast<int>(symbols.size()); ++i) consider(i);
    while (!queue.empty()) {
      const Candidate top = queue.top();
      queue.pop();
      Symbol& left = symbols[top.left];
      if (left.length == 0 || left.next < 0 || left.length + symbols[left.next].length != top.length) continue;
      Symbol& right = symbols[left.next];
      left.length += right.length;
      left.id = top.id;
      left.next = right.next;
      if (right.next >= 0) symbols[right.next].prev = top.left;
      right.length = 0;
      consider(left.prev);
      consider(top.left);
    }
    for (int i = symbols.empty() ? -1 : 0; i >= 0; i = symbols[i].next) emit_symbol(chunk, symbols[i], ids);
  }

  void emit_symbol(std::string_view chunk, const Symbol& symbol, std::vector<int>& ids) const {
    if (symbol.id >= 0) return ids.push_back(symbol.id);
    if (v_.alphabet == BpeVocabulary::Alphabet::pieces && v_.byte_fallback) {
      for (std::size_t k = 0; k < symbol.length; ++k) {
        const int byte_id = v_.byte_tokens[static_cast<unsigned char>(chunk[symbol.begin + k])];
        if (byte_id >= 0) ids.push_back(byte_id);
        else if (v_.unk_id >= 0) ids.push_back(v_.unk_id);
      }
      return;
    }
    if (v_.unk_id >= 0) ids.push_back(v_.unk_id);  // no unk: the span is dropped, as Hugging Face does
  }

  BpeVocabulary v_;
  std::string source_;
  std::uint64_t instance_;
  std::unordered_map<std::string_view, int> token_index_;
  std::unordered_map<std::uint64_t, std::pair<int, int>> merge_index_;  // (left, right) -> (rank, result)
  std::vector<Regex> regexes_;
  bool split_before_spaces_ = false;
  std::unordered_map<int, const AddedToken*> added_by_id_;
  // [parse_special][first byte]: the added tokens that may match there, longest first.
  std::array<std::array<std::vector<const AddedToken*>, 256>, 2> added_by_first_byte_;
};

}  // namespace

std::unique_ptr<Tokenizer> make_bpe_tokenizer(BpeVocabulary vocabulary, std::string source) {
  return std::make_unique<BpeTokenizer>(std::move(vocabulary), std::move(source));
}

std::string nfc_normalize(std::string_view text) {
  std::string out;
  std::size_t at = 0;
  while (at < text.size()) {
    std::size_t end = at;
    while (end < text.size()) {
      utf8proc_int32_t code_point;
      const auto n = utf8proc_iterate(reinterpret_cast<const utf8proc_uint8_t*>(text.data() + end),
                                      static_cast<utf8proc_ssize_t>(text.size() - end), &code_point);
      if (n <= 0) break;
      end += static_cast<std::size_t>(n);
    }
    if (end > at) {
      utf8proc_uint8_t* normalized = nullptr;
      const auto n = utf8proc_map(reinterpret_cast<const utf8proc_uint8_t*>(text.data() + at),
                                  static_cast<utf8proc_ssize_t>(end - at), &normalized,
                                  static_cast<utf8proc_option_t>(UTF8PROC_STABLE | UTF8PROC_COMPOSE));
      if (n >= 0) out.append(reinterpret_cast<const char*>(normalized), static_cast<std::size_t>(n));
      else out.append(text.substr(at, end - at));
      std::free(normalized);
    }
    if (end < text.size()) out += text[end++];
    at = end;
  }
  return out;
}

std::string byte_to_alphabet(unsigned char byte) {
  // GPT-2's bytes_to_unicode: printable Latin-1 bytes stand for themselves, the rest map to U+0100 upwards.
  const auto printable = [](unsigned b) { return (b >= 0x21 && b <= 0x7E) || (b >= 0xA1 && b <= 0xAC) || b >= 0xAE; };
  unsigned code_point = byte;
  if (!printable(byte)) {
    unsigned shifted = 0;
    for (unsigned b = 0; b < byte; ++b) shifted += !printable(b);
    code_point = 0x100 + shifted;
  }
  utf8proc_uint8_t out[4];
  const auto n = utf8proc_encode_char(static_cast<utf8proc_int32_t>(code_point), out);
  return std::string(reinterpret_cast<const char*>(out), static_cast<std::size_t>(n));
}

std::string alphabet_to_bytes(std::string_view token) {
  static const auto inverse = [] {
    std::unordered_map<std::string, unsigned char> map;
    for (unsigned b = 0; b < 256; ++b) map.emplace(byte_to_alphabet(static_cast<unsigned char>(b)), b);
    return map;
  }();
  std::string bytes;
  for (std::size_t at = 0; at < token.size();) {
    const std::size_t length = character_bytes(token.substr(at));
    const auto it = inverse.find(std::string(token.substr(at, length)));
    if (it != inverse.end()) bytes += static_cast<char>(it->second);
    else bytes.append(token.substr(at, length));
    at += length;
  }
  return bytes;
}

}  // namespace fbq
