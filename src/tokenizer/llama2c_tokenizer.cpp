// llama2.c `tokenizer.bin` back end, with the encode/decode semantics of llama2.c's run.c.
//
// File layout (little-endian): int32 max_token_length, then per token: float32 score, int32 length,
// `length` bytes of piece text. SentencePiece's U+2581 is already replaced by ' ' in the pieces, and
// the vocabulary size is not recorded (the checkpoint's config carries it).
#include <bit>
#include <cstdint>
#include <cstring>
#include <fstream>
#include <iterator>
#include <queue>
#include <unordered_map>

#include "tokenizer/tokenizer.h"
#include "util/error.h"

namespace fbq {
namespace {

constexpr int kUnkId = 0;
constexpr int kBosId = 1;
constexpr int kEosId = 2;
constexpr int kFirstByteId = 3;  // byte-fallback vocabularies hold <0x00>..<0xFF> right after the specials
// run.c starts its best-merge search at this score, so pairs scoring at or below it never merge.
constexpr float kNoMergeScore = -1e10f;

// Lets the piece -> id map be queried with a string_view without building a std::string.
struct PieceHash {
  using is_transparent = void;
  size_t operator()(std::string_view piece) const { return std::hash<std::string_view>{}(piece); }
};

bool is_utf8_continuation(char byte) { return (static_cast<unsigned char>(byte) & 0xC0) == 0x80; }

class Llama2cTokenizer final : public Tokenizer {
 public:
  Llama2cTokenizer(std::string path, std::vector<std::string> pieces, std::vector<float> scores)
      : path_(std::move(path)), pieces_(std::move(pieces)), scores_(std::move(scores)) {
    for (int id = 0; id < int(pieces_.size()); ++id) ids_.emplace(pieces_[id], id);  // first spelling wins
    has_byte_pieces_ = int(pieces_.size()) >= kFirstByteId + 256;
    for (int byte = 0; has_byte_pieces_ && byte < 256; ++byte)
      has_byte_pieces_ = parse_byte_piece(pieces_[kFirstByteId + byte]) == static_cast<unsigned char>(byte);
  }

  std::vector<int> tokenize(std::string_view text, const EncodeOptions& options) const override {
    const std::vector<std::pair<std::string, int>> controls = {{pieces_[kBosId], kBosId}, {pieces_[kEosId], kEosId}};
    return tokenize_with_controls(text, options, kBosId, controls, [&](std::string_view fragment, std::vector<int>& ids) {
      if (fragment.empty()) return;  // run.c adds the dummy prefix only to non-empty text
      // The prefix is a symbol of its own (not glued to the text) so that a stray UTF-8 continuation byte
      // at the start of the text is not grouped with it.
      std::vector<int> symbols;
      split_codepoints(" ", symbols);
      split_codepoints(fragment, symbols);
      const std::vector<int> merged = merge(std::move(symbols));
      ids.insert(ids.end(), merged.begin(), merged.end());
    });
  }

  std::string decode_piece(int previous, int token) const override {
    if (token < 0 || token >= vocab_size())
      fail("{}: token id {} is outside the vocabulary (size {})", path_, token, vocab_size());
    // The file spells these "<unk>", "\n<s>\n", "\n</s>\n": markers, not text (as in the SentencePiece
    // back end; run.c would print them).
    if (token == kUnkId || token == kBosId || token == kEosId) return {};
    std::string_view piece = pieces_[token];
    if (previous == kBosId && piece.starts_with(' ')) piece.remove_prefix(1);  // the dummy prefix
    if (const auto byte = parse_byte_piece(piece)) return std::string(1, char(*byte));
    return std::string(piece);
  }

  int vocab_size() const override { return int(pieces_.size()); }
  int bos_id() const override { return kBosId; }
  int eos_id() const override { return kEosId; }

 private:
  int find(std::string_view piece) const {
    const auto it = ids_.find(piece);
    return it == ids_.end() ? -1 : it->second;
  }

  // Appends one token per UTF-8 codepoint (a lead byte plus up to three continuation bytes, as run.c
  // groups them); a codepoint without a piece becomes one byte token per byte.
  void split_codepoints(std::string_view text, std::vector<int>& ids) const {
    for (size_t start = 0; start < text.size();) {
      size_t length = 1;
      while (length < 4 && start + length < text.size() && is_utf8_continuation(text[start + length])) ++length;
      const std::string_view codepoint = text.substr(start, length);
      if (const int id = find(codepoint); id >= 0) {
        ids.push_back(id);
      } else if (has_byte_pieces_) {
        for (char byte : codepoint) ids.push_back(kFirstByteId + static_cast<unsigned char>(byte));
      } else if (ids.empty() || ids.back() != kUnkId) {
        // Without byte pieces run.c would emit ids that mean other pieces (or lie past the vocabulary).
        // SentencePiece emits one UNK for a run of unknown codepoints instead, and so do we; no
        // codepoint's own piece is "<unk>", so ids.back() == kUnkId only after an unknown one.
        ids.push_back(kUnkId);
      }
      start += length;
    }
  }

  // run.c repeatedly merges the adjacent pair whose concatenation is the highest-scoring piece (the
  // leftmost on ties) -- quadratic in the text length. This gives the same result in O(n log n): a
  // max-heap of candidate pairs over a linked list of symbols, dropping candidates that went stale.
  struct Candidate {
    float score;
    int left, right;        // symbol positions; a merged symbol keeps its left position
    int left_id, right_id;  // the ids the pair had when it was proposed
    int merged_id;
    bool operator<(const Candidate& other) const {  // priority order: higher score, then further left
      return score != other.score ? score < other.score : left > other.left;
    }
  };

  std::vector<int> merge(std::vector<int> ids) const {
    const int count = int(ids.size());
    std::vector<int> next(count), previous(count);
    std::vector<bool> alive(count, true);
    for (int i = 0; i < count; ++i) {
      next[i] = i + 1;
      previous[i] = i - 1;
    }
    std::priority_queue<Candidate> candidates;
    const auto propose = [&](int left, int right) {
      if (left < 0 || right >= count) return;
      const int merged = find(pieces_[ids[left]] + pieces_[ids[right]]);
      if (merged >= 0 && scores_[merged] > kNoMergeScore)
        candidates.push({scores_[merged], left, right, ids[left], ids[right], merged});
    };
    for (int i = 0; i + 1 < count; ++i) propose(i, i + 1);

    while (!candidates.empty()) {
      const Candidate best = candidates.top();
      candidates.pop();
      const bool stale = !alive[best.left] || next[best.left] != best.right || ids[best.left] != best.left_id ||
                         ids[best.right] != best.right_id;
      if (stale) continue;
      ids[best.left] = best.merged_id;
      alive[best.right] = false;
      next[best.left] = next[best.right];
      if (next[best.left] < count) previous[next[best.left]] = best.left;
      propose(previous[best.left], best.left);
      propose(best.left, next[best.left]);
    }

    std::vector<int> merged;
    for (int i = 0; i < count; i = next[i]) merged.push_back(ids[i]);
    return merged;
  }

  std::string path_;
  std::vector<std::string> pieces_;
  std::vector<float> scores_;
  std::unordered_map<std::string, int, PieceHash, std::equal_to<>> ids_;
  bool has_byte_pieces_ = false;
};

// Bounds-checked little-endian reads over the whole file.
class FileReader {
 public:
  FileReader(std::string bytes, std::string path) : bytes_(std::move(bytes)), path_(std::move(path)) {}

  size_t remaining() const { return bytes_.size() - offset_; }

  template <typename T>
  T read(std::string_view what) {
    if (remaining() < sizeof(T)) fail("{}: truncated llama2.c tokenizer: file ends inside {}", path_, what);
    T value;
    std::memcpy(&value, bytes_.data() + offset_, sizeof(T));
    offset_ += sizeof(T);
    return value;
  }

  std::string read_bytes(size_t count, std::string_view what) {
    if (remaining() < count) fail("{}: truncated llama2.c tokenizer: file ends inside {}", path_, what);
    std::string value = bytes_.substr(offset_, count);
    offset_ += count;
    return value;
  }

 private:
  std::string bytes_;
  std::string path_;
  size_t offset_ = 0;
};

static_assert(sizeof(float) == 4 && std::endian::native == std::endian::little,
              "tokenizer.bin is read as native little-endian float32/int32");

}  // namespace

std::unique_ptr<Tokenizer> load_llama2c_tokenizer(const std::filesystem::path& path, int vocab_size) {
  const std::string name = path.string();
  std::error_code error;
  if (!std::filesystem::is_regular_file(path, error))
    fail("{}: tokenizer file not found (or not a regular file)", name);
  // The ids 0..2 are UNK/BOS/EOS by llama2.c convention, so a usable vocabulary has at least those.
  if (vocab_size < 3)
    fail("{}: vocab size {} is too small (llama2.c tokenizers need <unk>, <s>, </s>)", name, vocab_size);
  std::ifstream file(path, std::ios::binary);
  if (!file) fail("{}: cannot open tokenizer file", name);
  FileReader reader(std::string(std::istreambuf_iterator<char>(file), {}), name);

  const auto max_token_length = reader.read<int32_t>("the header");
  if (max_token_length <= 0) fail("{}: max_token_length {} in the header is not positive", name, max_token_length);
  std::vector<std::string> pieces(vocab_size);
  std::vector<float> scores(vocab_size);
  for (int id = 0; id < vocab_size; ++id) {
    const std::string what = fmt::format("token {} of {}", id, vocab_size);
    scores[id] = reader.read<float>(what);
    const auto length = reader.read<int32_t>(what);
    if (length <= 0 || length > max_token_length)
      fail("{}: token {} has length {}, outside 1..max_token_length ({})", name, id, length, max_token_length);
    pieces[id] = reader.read_bytes(size_t(length), what);
  }
  // Leftover bytes mean the file holds more tokens than the model's vocabulary: a mismatched pair.
  if (reader.remaining() > 0)
    fail("{}: {} bytes follow the {} tokens; does this tokenizer belong to a model with a different vocab size?", name,
         reader.remaining(), vocab_size);
  return std::make_unique<Llama2cTokenizer>(name, std::move(pieces), std::move(scores));
}

}  // namespace fbq
