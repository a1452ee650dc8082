#pragma once
// One BPE engine for every BPE vocabulary people ship: byte-level BPE (GPT-2, Llama-3, Qwen2, Falcon,
// DeepSeek, SmolLM: tokens are byte strings, text is split by pre-tokenizer regexes first) and
// SentencePiece-style BPE (LLaMA-2, Mistral, Phi-3 `tokenizer.json`, GGUF `llama` vocabularies: tokens are
// UTF-8 pieces with U+2581 for a space, unknown characters fall back to <0xXX> byte tokens).
// The loaders (bpe_loaders.cpp) turn each file form into a BpeVocabulary.
#include <filesystem>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "tokenizer/tokenizer.h"

namespace fbq {

class GgufFile;

struct AddedToken {
  int id = -1;
  std::string content;   // matched literally in the text, before normalization and pre-tokenization
  bool special = false;  // control tokens (<|begin_of_text|>): matched only with parse_special
  bool lstrip = false, rstrip = false;  // the match also swallows whitespace on that side
};

struct BpeVocabulary {
  // bytes: tokens hold raw bytes (the GPT-2 byte-to-unicode alphabet is undone at load time); a chunk starts
  // as one symbol per byte. pieces: tokens hold UTF-8 text with U+2581 for ' '; one symbol per character.
  enum class Alphabet { bytes, pieces };
  // merge_list: `merges` in priority order (HF, vocab+merges, GGUF gpt2). token_rank: two symbols merge when
  // their concatenation is a token, lower id first (tiktoken). token_score: the same with higher score
  // first (GGUF `llama`, SentencePiece's BPE).
  enum class MergeRule { merge_list, token_rank, token_score };

  Alphabet alphabet = Alphabet::bytes;
  MergeRule merge_rule = MergeRule::merge_list;
  std::vector<std::string> tokens;            // id -> token ("" for an unused id)
  // merge_list: (left, right) token strings in the tokens' own spelling, highest priority first.
  std::vector<std::pair<std::string, std::string>> merges;
  std::vector<float> scores;                  // token_score
  std::vector<std::string> pre_regexes;       // applied in order; matches and the gaps between them are chunks
  bool nfc = false;                           // NFC-normalize text fragments first (Qwen2)
  bool ignore_merges = false;                 // a chunk that is itself a token is emitted whole (Llama-3)
  bool byte_fallback = false;                 // pieces: characters without a token become <0xXX> tokens
  bool add_space_prefix = false;              // pieces: U+2581 before the first text fragment
  std::vector<AddedToken> added;
  int bos_id = -1, eos_id = -1, unk_id = -1;
  std::vector<int> byte_tokens;  // pieces: id of <0xXX> per byte (filled by the engine when empty)
};

// Throws fbq::Error (naming `source`) when the vocabulary is inconsistent: a merge naming an unknown id,
// a merge whose result is not a token, an added token outside the vocabulary, a bad regex.
std::unique_ptr<Tokenizer> make_bpe_tokenizer(BpeVocabulary vocabulary, std::string source);

// What a GGUF `tokenizer.ggml.pre` name (or `--pre` for a vocab.json + merges.txt pair) stands for: the
// regexes llama.cpp applies, plus the Hugging Face normalizer (Qwen2's NFC) and Llama-3's ignore_merges.
struct PreTokenizer {
  std::vector<std::string> regexes;
  bool nfc = false;
  bool ignore_merges = false;
};
PreTokenizer pretokenizer_preset(std::string_view name);  // unknown names: fbq::Error listing the known ones

// NFC over the valid UTF-8 runs of `text` (invalid bytes pass through unchanged).
std::string nfc_normalize(std::string_view text);

// GPT-2's byte-to-unicode alphabet: the UTF-8 spelling of `byte`, and the inverse over a whole token
// string (characters outside the alphabet are kept as they are).
std::string byte_to_alphabet(unsigned char byte);
std::string alphabet_to_bytes(std::string_view token);

// The name llama.cpp gives `v`'s pre-tokenizer (its `tokenizer.ggml.pre`), or nullopt when no preset has its
// regexes and normalizer (Hugging Face's spelling of the Llama-3 pattern is recognised too).
std::optional<std::string> pretokenizer_name(const BpeVocabulary& v);

// Loaders, one per file form (bpe_loaders.cpp). `pre` names the pre-tokenizer where the file has none.
BpeVocabulary read_hf_tokenizer_json(const std::filesystem::path& path);
BpeVocabulary read_vocab_merges(const std::filesystem::path& vocab_json, std::string_view pre);
std::unique_ptr<Tokenizer> load_hf_tokenizer_json(const std::filesystem::path& path);
std::unique_ptr<Tokenizer> load_vocab_merges(const std::filesystem::path& vocab_json, std::string_view pre);
std::unique_ptr<Tokenizer> load_tiktoken(const std::filesystem::path& path);
std::unique_ptr<Tokenizer> load_gguf_tokenizer(const GgufFile& file);

}  // namespace fbq
