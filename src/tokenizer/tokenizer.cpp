#include "tokenizer/tokenizer.h"

#include <charconv>

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

std::optional<unsigned char> parse_byte_piece(std::string_view piece) {
  if (piece.size() != 6 || !piece.starts_with("<0x") || piece.back() != '>') return std::nullopt;
  unsigned byte = 0;
  const char* digits_end = piece.data() + 5;
  const auto [stop, error] = std::from_chars(piece.data() + 3, digits_end, byte, 16);
  if (error != std::errc() || stop != digits_end) return std::nullopt;
  return static_cast<unsigned char>(byte);
}

std::unique_ptr<Tokenizer> load_tokenizer(const std::filesystem::path& path, int vocab_size) {
  if (path.extension() == ".model") return load_sentencepiece_tokenizer(path);
  return load_llama2c_tokenizer(path, vocab_size);
}

}  // namespace fbq
