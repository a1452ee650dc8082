#pragma once
// Text <-> token ids. Two back ends: SentencePiece `.model` files (via libsentencepiece) and
// llama2.c `tokenizer.bin` files (score-ordered BPE merges with byte fallback).
#include <filesystem>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace fbq {

struct EncodeOptions {
  bool add_bos = false;        // BOS first (when the tokenizer has one)
  bool parse_special = false;  // control tokens spelled in the text (<|im_start|>) become single tokens
};

class Tokenizer {
 public:
  virtual ~Tokenizer() = default;

  // Token ids for `text`. SentencePiece-style vocabularies prepend the dummy-prefix space (as LLaMA does).
  // Added tokens that are not control tokens (user-defined ones) are always matched as single tokens.
  virtual std::vector<int> tokenize(std::string_view text, const EncodeOptions& options) const = 0;
  std::vector<int> encode(std::string_view text, bool add_bos) const { return tokenize(text, {.add_bos = add_bos}); }

  // The bytes that `token` adds when it follows `previous` in a stream: byte-fallback tokens become raw
  // bytes, and the dummy-prefix space of the first piece after BOS is dropped (llama2.c semantics). A
  // byte-level token may end inside a UTF-8 character: stream through Utf8Stream (util/utf8.h).
  virtual std::string decode_piece(int previous, int token) const = 0;

  // Whole-sequence decode (concatenated decode_piece, BOS/EOS dropped).
  std::string decode(const std::vector<int>& ids) const;

  virtual int vocab_size() const = 0;
  virtual int bos_id() const = 0;
  virtual int eos_id() const = 0;
};

// Picks the back end from the file's name and content: a `.gguf` (its tokenizer metadata), a Hugging Face
// `tokenizer.json`, a `vocab.json` (+ merges.txt beside it; `pre` names its pre-tokenizer), a
// `tokenizer.model` that is SentencePiece or tiktoken (told apart by content), else a llama2.c
// tokenizer.bin, whose token count is not recorded: `vocab_size` must match it exactly.
// Throws fbq::Error with a one-line message on a missing or malformed file.
std::unique_ptr<Tokenizer> load_tokenizer(const std::filesystem::path& path, int vocab_size = 0,
                                          std::string_view pre = "gpt2");

// Puts the files of `tokenizer_file` (any form load_tokenizer reads) into `dir` under the names a model
// directory uses (tokenizer.model, tokenizer.json + tokenizer_config.json, vocab.json + merges.txt,
// tokenizer.bin); a GGUF's vocabulary is written as a vocab-only tokenizer.gguf (its tokenizer.* keys).
void copy_tokenizer_files(const std::filesystem::path& tokenizer_file, const std::filesystem::path& dir);

std::unique_ptr<Tokenizer> load_sentencepiece_tokenizer(const std::filesystem::path& path);
std::unique_ptr<Tokenizer> load_llama2c_tokenizer(const std::filesystem::path& path, int vocab_size);

// For back ends without added-token tables: with parse_special, the spellings of `controls` (piece, id)
// found in the text become those ids (longest first at a position) and the text between them is encoded
// by `encode_text`; without, the whole text is.
std::vector<int> tokenize_with_controls(std::string_view text, const EncodeOptions& options, int bos_id,
                                        const std::vector<std::pair<std::string, int>>& controls,
                                        const std::function<void(std::string_view, std::vector<int>&)>& encode_text);

// A SentencePiece-style piece's text: every U+2581 (the stand-in for ' ') becomes a space.
std::string word_boundaries_to_spaces(std::string_view piece);

// The byte of a byte-fallback piece spelled "<0xAB>" (both back ends use that spelling), else nullopt.
std::optional<unsigned char> parse_byte_piece(std::string_view piece);

}  // namespace fbq
