#include "tokenizer/tokenizer.h"

#include <algorithm>
#include <cctype>
#include <charconv>
#include <fstream>

#include "io/gguf.h"
#include "io/gguf_writer.h"
#include "tokenizer/bpe.h"
#include "util/error.h"

namespace fbq {

std::string Tokenizer::decode(const std::vector<int>& ids) const {
  std::string text;
  int previous = -1;  // no token before the first: its leading space is kept unless a BOS precedes it
  for (int id : ids) {
    if (id != bos_id() && id != eos_id()) text += decode_piece(previous, id);
    previous = id;
  }
  return text;
}

std::vector<int> tokenize_with_controls(std::string_view text, const EncodeOptions& options, int bos_id,
                                        const std::vector<std::pair<std::string, int>>& controls,
                                        const std::function<void(std::string_view, std::vector<int>&)>& encode_text) {
  std::vector<int> ids;
  if (options.add_bos && bos_id >= 0) ids.push_back(bos_id);
  std::size_t fragment_start = 0;
  for (std::size_t at = 0; options.parse_special && at < text.size(); ++at) {
    const std::pair<std::string, int>* best = nullptr;
    for (const auto& control : controls)
      if (text.compare(at, control.first.size(), control.first) == 0 && (!best || control.first.size() > best->first.size()))
        best = &control;
    if (!best) continue;
    encode_text(text.substr(fragment_start, at - fragment_start), ids);
    ids.push_back(best->second);
    fragment_start = at + best->first.size();
    at = fragment_start - 1;
  }
  encode_text(text.substr(fragment_start), ids);
  return ids;
}

std::string word_boundaries_to_spaces(std::string_view piece) {
  constexpr std::string_view kWordBoundary = "\xE2\x96\x81";
  std::string text;
  for (std::size_t at = 0; at < piece.size();) {
    if (piece.substr(at).starts_with(kWordBoundary)) {
      text += ' ';
      at += kWordBoundary.size();
    } else {
      text += piece[at++];
    }
  }
  return text;
}

std::optional<unsigned char> parse_byte_piece(std::string_view piece) {
  if (piece.size() != 6 || !piece.starts_with("<0x") || piece.back() != '>') return std::nullopt;
  unsigned byte = 0;
  const char* digits_end = piece.data() + 5;
  const auto [stop, error] = std::from_chars(piece.data() + 3, digits_end, byte, 16);
  if (error != std::errc() || stop != digits_end) return std::nullopt;
  return static_cast<unsigned char>(byte);
}

namespace {

// A tiktoken file is text, "base64 rank" per line; a SentencePiece model is a binary protobuf.
bool looks_like_tiktoken(const std::filesystem::path& path) {
  std::ifstream in(path, std::ios::binary);
  std::string line;
  if (!std::getline(in, line) || line.size() > 1024) return false;
  const auto space = line.find(' ');
  if (space == std::string::npos || space == 0 || space + 1 == line.size()) return false;
  const auto is_base64 = [](char c) { return std::isalnum(static_cast<unsigned char>(c)) || c == '+' || c == '/' || c == '='; };
  return std::all_of(line.begin(), line.begin() + space, is_base64) &&
         std::all_of(line.begin() + space + 1, line.end(), [](char c) { return c >= '0' && c <= '9'; });
}

}  // namespace

std::unique_ptr<Tokenizer> load_tokenizer(const std::filesystem::path& path, int vocab_size, std::string_view pre) {
  std::error_code error;
  if (!std::filesystem::is_regular_file(path, error)) fail("{}: tokenizer file not found (or not a regular file)", path.string());
  if (is_gguf_file(path)) return load_gguf_tokenizer(GgufFile(path));
  const std::string name = path.filename().string();
  if (name.ends_with("vocab.json")) return load_vocab_merges(path, pre);
  if (path.extension() == ".json") return load_hf_tokenizer_json(path);
  if (path.extension() == ".model") return looks_like_tiktoken(path) ? load_tiktoken(path) : load_sentencepiece_tokenizer(path);
  return load_llama2c_tokenizer(path, vocab_size);
}

void copy_tokenizer_files(const std::filesystem::path& tokenizer_file, const std::filesystem::path& dir) {
  namespace fs = std::filesystem;
  const auto copy_as = [&](const fs::path& from, const char* name) {
    if (fs::exists(from)) fs::copy_file(from, dir / name, fs::copy_options::overwrite_existing);
  };
  const std::string name = tokenizer_file.filename().string();
  const auto sibling = [&](std::string_view own_suffix, const char* other) {
    return tokenizer_file.parent_path() / (name.substr(0, name.size() - own_suffix.size()) + other);
  };
  if (is_gguf_file(tokenizer_file)) {
    const GgufFile source(tokenizer_file);
    GgufWriter vocabulary;
    for (const auto& [key, value] : source.metadata())
      if (key.starts_with("tokenizer.")) vocabulary.set(key, value);
    vocabulary.write(dir / "tokenizer.gguf");
  } else if (name.ends_with("vocab.json")) {
    copy_as(tokenizer_file, "vocab.json");
    copy_as(sibling("vocab.json", "merges.txt"), "merges.txt");
    copy_as(sibling("vocab.json", "added_tokens.json"), "added_tokens.json");
    copy_as(sibling("vocab.json", "tokenizer_config.json"), "tokenizer_config.json");
  } else if (tokenizer_file.extension() == ".json") {
    copy_as(tokenizer_file, "tokenizer.json");
    if (name.ends_with("tokenizer.json")) copy_as(sibling("tokenizer.json", "tokenizer_config.json"), "tokenizer_config.json");
  } else {
    copy_as(tokenizer_file, tokenizer_file.extension() == ".model" ? "tokenizer.model" : "tokenizer.bin");
  }
}

}  // namespace fbq
