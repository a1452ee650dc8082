#include "tokenizer/gguf_vocabulary.h"

#include <sentencepiece_processor.h>

#include "io/gguf_writer.h"
#include "tokenizer/bpe.h"
#include "util/error.h"

namespace fbq {
namespace {

// llama.cpp's token types (llama_token_type in llama-vocab.h).
enum TokenType : std::int64_t { kNormal = 1, kUnknown = 2, kControl = 3, kUserDefined = 4, kUnused = 5, kByte = 6 };

std::int64_t token_type(const sentencepiece::SentencePieceProcessor& sp, int id) {
  if (sp.IsUnknown(id)) return kUnknown;
  if (sp.IsControl(id)) return kControl;
  if (sp.IsByte(id)) return kByte;
  if (sp.IsUnused(id)) return kUnused;
  // libsentencepiece 0.1.97 has no IsUserDefined: user-defined pieces are written as normal ones.
  return kNormal;
}

GgufMetadata sentencepiece_vocabulary(const std::filesystem::path& path) {
  sentencepiece::SentencePieceProcessor sp;
  try {
    if (const auto status = sp.Load(path.string()); !status.ok())
      fail("{}: not a SentencePiece model ({})", path.string(), status.ToString());
  } catch (const Error&) {
    throw;
  } catch (const std::exception& e) {
    fail("{}: not a SentencePiece model ({})", path.string(), e.what());
  }
  std::vector<std::string> pieces;
  std::vector<double> scores;
  std::vector<std::int64_t> types;
  for (int id = 0; id < sp.GetPieceSize(); ++id) {
    pieces.push_back(sp.IdToPiece(id));
    scores.push_back(sp.GetScore(id));
    types.push_back(token_type(sp, id));
  }
  GgufMetadata keys = {{"tokenizer.ggml.model", gguf_string("llama")},
                       {"tokenizer.ggml.tokens", gguf_string_array(std::move(pieces))},
                       {"tokenizer.ggml.scores", gguf_float_array(GgufType::FLOAT32, std::move(scores))},
                       {"tokenizer.ggml.token_type", gguf_int_array(GgufType::INT32, std::move(types))}};
  const auto id_key = [&](const char* key, int id) {
    if (id >= 0) keys.emplace_back(key, gguf_int(GgufType::UINT32, id));
  };
  id_key("tokenizer.ggml.bos_token_id", sp.bos_id());
  id_key("tokenizer.ggml.eos_token_id", sp.eos_id());
  id_key("tokenizer.ggml.unknown_token_id", sp.unk_id());
  id_key("tokenizer.ggml.padding_token_id", sp.pad_id());
  keys.emplace_back("tokenizer.ggml.add_bos_token", gguf_bool(true));
  keys.emplace_back("tokenizer.ggml.add_eos_token", gguf_bool(false));
  return keys;
}

std::string in_byte_alphabet(const std::string& bytes) {
  std::string out;
  for (const unsigned char byte : bytes) out += byte_to_alphabet(byte);
  return out;
}

// A byte-level BPE vocabulary as llama.cpp's `gpt2` model: tokens and merges spelled in GPT-2's byte alphabet
// (as tokenizer.json spells them), added tokens as written, and the pre-tokenizer by its llama.cpp name.
GgufMetadata byte_level_vocabulary(const BpeVocabulary& v, const std::filesystem::path& path) {
  if (v.alphabet != BpeVocabulary::Alphabet::bytes || v.merge_rule != BpeVocabulary::MergeRule::merge_list)
    fail("{}: only byte-level BPE with a merge list is written into a GGUF (SentencePiece-style: use its .model)",
         path.string());
  const auto pre = pretokenizer_name(v);
  if (!pre) fail("{}: its pre-tokenizer matches none of llama.cpp's presets", path.string());
  std::vector<std::string> tokens(v.tokens.size());
  std::vector<std::int64_t> types(v.tokens.size(), kNormal);
  for (std::size_t id = 0; id < v.tokens.size(); ++id) tokens[id] = in_byte_alphabet(v.tokens[id]);
  for (const auto& added : v.added) {
    tokens[added.id] = added.content;
    types[added.id] = added.special ? kControl : kUserDefined;
  }
  for (std::size_t id = 0; id < tokens.size(); ++id)
    if (tokens[id].empty()) tokens[id] = fmt::format("[PAD{}]", id), types[id] = kUnused;
  std::vector<std::string> merges;
  for (const auto& [left, right] : v.merges) merges.push_back(in_byte_alphabet(left) + " " + in_byte_alphabet(right));
  GgufMetadata keys = {{"tokenizer.ggml.model", gguf_string("gpt2")},
                       {"tokenizer.ggml.pre", gguf_string(*pre)},
                       {"tokenizer.ggml.tokens", gguf_string_array(std::move(tokens))},
                       {"tokenizer.ggml.token_type", gguf_int_array(GgufType::INT32, std::move(types))},
                       {"tokenizer.ggml.merges", gguf_string_array(std::move(merges))}};
  if (v.bos_id >= 0) keys.emplace_back("tokenizer.ggml.bos_token_id", gguf_int(GgufType::UINT32, v.bos_id));
  if (v.eos_id >= 0) keys.emplace_back("tokenizer.ggml.eos_token_id", gguf_int(GgufType::UINT32, v.eos_id));
  keys.emplace_back("tokenizer.ggml.add_bos_token", gguf_bool(v.bos_id >= 0));
  return keys;
}

}  // namespace

GgufMetadata gguf_vocabulary(const std::filesystem::path& tokenizer_file) {
  if (is_gguf_file(tokenizer_file)) {
    const GgufFile source(tokenizer_file);
    GgufMetadata keys;
    for (const auto& [key, value] : source.metadata())
      if (key.starts_with("tokenizer.")) keys.emplace_back(key, value);
    if (keys.empty()) fail("{}: the GGUF carries no tokenizer.* vocabulary", tokenizer_file.string());
    return keys;
  }
  if (tokenizer_file.extension() == ".model") return sentencepiece_vocabulary(tokenizer_file);
  const auto name = tokenizer_file.filename().string();
  if (name.ends_with("vocab.json"))  // config.json has no pre-tokenizer name: GPT-2's, as load_tokenizer assumes
    return byte_level_vocabulary(read_vocab_merges(tokenizer_file, "gpt2"), tokenizer_file);
  if (tokenizer_file.extension() == ".json")
    return byte_level_vocabulary(read_hf_tokenizer_json(tokenizer_file), tokenizer_file);
  fail("{}: writing this tokenizer form into a GGUF is not implemented (SentencePiece .model, tokenizer.json, "
       "vocab.json + merges.txt and GGUF vocabularies are)", tokenizer_file.string());
}

}  // namespace fbq
