#pragma once
// Text <-> token ids. Two back ends: SentencePiece `.model` files (via libsentencepiece) and
// llama2.c `tokenizer.bin` files (score-ordered BPE merges with byte fallback).
#include <filesystem>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace fbq {

class Tokenizer {
 public:
  virtual ~Tokenizer() = default;

  // Token ids for `text`. Both back ends prepend SentencePiece's dummy-prefix space (as LLaMA does),
  // and put BOS first when `add_bos`.
  virtual std::vector<int> encode(std::string_view text, bool add_bos) const = 0;

  // The text that `token` adds when it follows `previous` in a stream: byte-fallback tokens become raw
  // bytes, and the dummy-prefix space of the first piece after BOS is dropped (llama2.c semantics).
  virtual std::string decode_piece(int previous, int token) const = 0;

  // Whole-sequence decode (concatenated decode_piece, BOS/EOS dropped).
  std::string decode(const std::vector<int>& ids) const;

  virtual int vocab_size() const = 0;
  virtual int bos_id() const = 0;
  virtual int eos_id() const = 0;
};

// Picks the back end from the file: `.model` => SentencePiece, anything else => llama2.c tokenizer.bin.
// `vocab_size` is needed by llama2.c files (they do not record it) and must match the file's token count
// exactly; pass 0 for SentencePiece.
// Throws fbq::Error with a one-line message on a missing or malformed file.
std::unique_ptr<Tokenizer> load_tokenizer(const std::filesystem::path& path, int vocab_size = 0);

std::unique_ptr<Tokenizer> load_sentencepiece_tokenizer(const std::filesystem::path& path);
std::unique_ptr<Tokenizer> load_llama2c_tokenizer(const std::filesystem::path& path, int vocab_size);

// The byte of a byte-fallback piece spelled "<0xAB>" (both back ends use that spelling), else nullopt.
std::optional<unsigned char> parse_byte_piece(std::string_view piece);

}  // namespace fbq
