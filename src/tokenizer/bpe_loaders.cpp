// File forms of BPE vocabularies, each turned into a BpeVocabulary: Hugging Face tokenizer.json (+
// tokenizer_config.json), vocab.json + merges.txt, tiktoken tokenizer.model, GGUF tokenizer metadata.
#include <nlohmann/json.hpp>

#include <charconv>
#include <fstream>
#include <functional>
#include <sstream>
#include <unordered_set>

#include "io/gguf.h"
#include "io/text_files.h"
#include "tokenizer/bpe.h"
#include "tokenizer/tokenizer_config.h"
#include "util/error.h"

namespace fbq {
namespace {

using json = nlohmann::json;
namespace fs = std::filesystem;
using Alphabet = BpeVocabulary::Alphabet;

// A JSON value shortened for an error message (invalid UTF-8 replaced, never a second exception).
std::string excerpt(const json& value, std::size_t limit = 120) {
  return value.dump(-1, ' ', false, json::error_handler_t::replace).substr(0, limit);
}

// Turns nlohmann's exceptions for a value of the wrong type ("cannot use value() with null") into one
// error line naming the file.
template <typename Build>
auto with_json_errors(const std::string& where, Build build) {
  try {
    return build();
  } catch (const json::exception& error) {
    fail("{}: unexpected content ({})", where, error.what());
  }
}

// "a b" (tokenizers < 0.20, merges.txt) or ["a", "b"] (tokenizers >= 0.20). A few SentencePiece-converted
// vocabularies hold tokens with literal spaces ("   " = " " + "  "): there the split is the first one
// whose two sides and their concatenation are all tokens.
std::pair<std::string, std::string> parse_merge(const json& entry, const std::string& where,
                                                const std::function<bool(const std::string&)>& is_token = {}) {
  if (entry.is_array() && entry.size() == 2 && entry[0].is_string() && entry[1].is_string())
    return {entry[0].get<std::string>(), entry[1].get<std::string>()};
  if (entry.is_string()) {
    const auto text = entry.get<std::string>();
    std::optional<std::pair<std::string, std::string>> first;
    for (std::size_t space = text.find(' ', 1); space != std::string::npos && space + 1 < text.size();
         space = text.find(' ', space + 1)) {
      std::pair<std::string, std::string> split{text.substr(0, space), text.substr(space + 1)};
      if (!is_token || (is_token(split.first) && is_token(split.second) && is_token(split.first + split.second)))
        return split;
      if (!first) first = std::move(split);
    }
    if (first) return *first;  // none fits: the engine names the unknown token
  }
  fail("{}: merge {} is neither \"left right\" nor [\"left\", \"right\"]", where, excerpt(entry));
}

std::pair<std::string, std::string> merge_to_bytes(std::pair<std::string, std::string> merge) {
  return {alphabet_to_bytes(merge.first), alphabet_to_bytes(merge.second)};
}

// Token strings -> dense id table; ids may have holes (""), duplicates are an error.
std::vector<std::string> tokens_from_vocab(const json& vocab, const std::string& where, bool byte_level) {
  if (!vocab.is_object()) fail("{}: 'vocab' is not an object of token -> id", where);
  std::int64_t max_id = -1;
  for (const auto& [token, id] : vocab.items()) {
    if (!id.is_number_integer() || id.get<std::int64_t>() < 0 || id.get<std::int64_t>() > (1 << 24))
      fail("{}: token '{}' has id {}, not an id in [0, 2^24]", where, token, excerpt(id));
    max_id = std::max(max_id, id.get<std::int64_t>());
  }
  std::vector<std::string> tokens(static_cast<std::size_t>(max_id + 1));
  std::vector<bool> seen(tokens.size());
  for (const auto& [token, id] : vocab.items()) {
    const auto index = id.get<std::size_t>();
    if (seen[index]) fail("{}: id {} is given to two tokens", where, index);
    seen[index] = true;
    tokens[index] = byte_level ? alphabet_to_bytes(token) : token;
  }
  return tokens;
}

void place_added_tokens(BpeVocabulary& v) {
  for (const auto& token : v.added) {
    if (token.id < 0 || token.id > (1 << 24)) continue;  // the engine reports it
    if (static_cast<std::size_t>(token.id) >= v.tokens.size()) v.tokens.resize(token.id + 1);
    v.tokens[token.id] = token.content;
  }
}

int id_of(const BpeVocabulary& v, const std::string& content) {
  for (const auto& token : v.added)
    if (token.content == content) return token.id;
  for (std::size_t id = 0; id < v.tokens.size(); ++id)
    if (v.tokens[id] == content) return static_cast<int>(id);
  return -1;
}

// BOS/EOS from a tokenizer_config.json beside the vocabulary file (when there is one), and whether a BOS
// is added at all (the BOS an encode with add_bos puts first is bos_id; -1: none).
void apply_tokenizer_config(BpeVocabulary& v, const fs::path& config_path) {
  if (!fs::exists(config_path)) return;
  const json config = read_json_file(config_path);
  if (const auto bos = special_token_content(config, "bos_token")) v.bos_id = id_of(v, *bos);
  else if (config.contains("bos_token")) v.bos_id = -1;
  if (const auto eos = special_token_content(config, "eos_token")) v.eos_id = id_of(v, *eos);
  // add_bos_token: false (Qwen2, most byte-level models) means the model never saw a BOS: none is added.
  if (config.contains("add_bos_token") && config["add_bos_token"].is_boolean() && !config["add_bos_token"].get<bool>())
    v.bos_id = -1;
}

// The sibling of a vocabulary file: "tokenizer.json" -> "tokenizer_config.json",
// "qwen2-vocab.json" -> "qwen2-merges.txt".
fs::path sibling(const fs::path& path, std::string_view own_suffix, std::string_view other_suffix) {
  const std::string name = path.filename().string();
  if (!name.ends_with(own_suffix)) return path.parent_path() / std::string(other_suffix);
  return path.parent_path() / (name.substr(0, name.size() - own_suffix.size()) + std::string(other_suffix));
}

// ---- tokenizer.json ----------------------------------------------------------------------------------

struct JsonPipeline {
  Alphabet alphabet = Alphabet::pieces;
  std::vector<std::string> regexes;
  bool nfc = false, space_prefix = false;
};

std::string escape_regex(const std::string& literal) { return "\\Q" + literal + "\\E"; }

void read_normalizer(const json& normalizer, JsonPipeline& p, const std::string& where) {
  if (normalizer.is_null()) return;
  const auto type = normalizer.value("type", "");
  if (type == "Sequence") {
    for (const auto& part : normalizer.value("normalizers", json::array())) read_normalizer(part, p, where);
  } else if (type == "NFC") {
    p.nfc = true;
  } else if (type == "Prepend" && normalizer.value("prepend", "") == "\xE2\x96\x81") {
    p.space_prefix = true;
  } else if (type == "Replace" && normalizer.value("pattern", json::object()).value("String", "") == " " &&
             normalizer.value("content", "") == "\xE2\x96\x81") {
    // spaces become U+2581: what the pieces alphabet does anyway
  } else {
    fail("{}: normalizer {} is not supported", where, excerpt(normalizer));
  }
}

void read_pre_tokenizer(const json& pre, JsonPipeline& p, const std::string& where) {
  if (pre.is_null()) return;
  const auto type = pre.value("type", "");
  const auto unsupported = [&] { fail("{}: pre_tokenizer {} is not supported", where, excerpt(pre, 160)); };
  if (type == "Sequence") {
    for (const auto& part : pre.value("pretokenizers", json::array())) read_pre_tokenizer(part, p, where);
  } else if (type == "ByteLevel") {
    if (pre.value("add_prefix_space", false)) unsupported();
    p.alphabet = Alphabet::bytes;
    if (pre.value("use_regex", true)) p.regexes.push_back(pretokenizer_preset("gpt2").regexes.front());
  } else if (type == "Split") {
    if (pre.value("behavior", "") != "Isolated" || pre.value("invert", false)) unsupported();
    const json pattern = pre.value("pattern", json::object());
    if (pattern.contains("Regex")) p.regexes.push_back(pattern["Regex"].get<std::string>());
    else if (pattern.contains("String")) p.regexes.push_back(escape_regex(pattern["String"].get<std::string>()));
    else unsupported();
  } else if (type == "Digits") {
    // Hugging Face's Digits splits on ASCII digits only (char::is_ascii_digit), unlike llama.cpp's \p{N}.
    p.regexes.push_back(pre.value("individual_digits", false) ? "[0-9]" : "[0-9]+");
  } else if (type == "Punctuation") {
    // Hugging Face's is_punctuation: ASCII punctuation or a Unicode P* category.
    const std::string one = R"([\p{P}!-/:-@\[-`{-~])";
    const auto behavior = pre.value("behavior", "Isolated");
    if (behavior == "Contiguous") p.regexes.push_back(one + "+");
    else if (behavior == "Isolated") p.regexes.push_back(one);
    else unsupported();
  } else if (type == "Metaspace") {
    if (pre.value("split", true) || pre.value("replacement", "") != "\xE2\x96\x81") unsupported();
    p.space_prefix = pre.value("prepend_scheme", pre.value("add_prefix_space", true) ? "always" : "never") != "never";
  } else {
    unsupported();
  }
}

std::vector<AddedToken> read_added_tokens(const json& list, const std::string& where) {
  std::vector<AddedToken> added;
  for (const auto& entry : list) {
    if (!entry.is_object() || !entry.contains("id") || !entry["id"].is_number_integer() || !entry.contains("content") ||
        !entry["content"].is_string())
      fail("{}: added token {} needs an integer id and a string content", where, excerpt(entry).substr(0, 80));
    added.push_back({entry["id"].get<int>(), entry["content"].get<std::string>(), entry.value("special", false),
                     entry.value("lstrip", false), entry.value("rstrip", false)});
  }
  return added;
}

// Hugging Face's post-processor names the BOS it adds ({"SpecialToken": {"id": "<s>"}} first in "single").
std::optional<std::string> post_processor_bos(const json& post) {
  if (!post.is_object() || post.value("type", "") != "TemplateProcessing") return std::nullopt;
  const auto& single = post.value("single", json::array());
  if (single.empty() || !single[0].contains("SpecialToken")) return std::nullopt;
  return single[0]["SpecialToken"].value("id", "");
}

// ---- tiktoken ----------------------------------------------------------------------------------------

std::optional<std::string> decode_base64(std::string_view text) {
  static const auto table = [] {
    std::array<int, 256> t{};
    t.fill(-1);
    const std::string_view alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    for (std::size_t i = 0; i < alphabet.size(); ++i) t[static_cast<unsigned char>(alphabet[i])] = static_cast<int>(i);
    return t;
  }();
  while (!text.empty() && text.back() == '=') text.remove_suffix(1);
  std::string out;
  unsigned buffer = 0;
  int bits = 0;
  for (const char c : text) {
    const int value = table[static_cast<unsigned char>(c)];
    if (value < 0) return std::nullopt;
    buffer = (buffer << 6) | static_cast<unsigned>(value);
    bits += 6;
    if (bits >= 8) {
      bits -= 8;
      out += static_cast<char>((buffer >> bits) & 0xFF);
    }
  }
  return out;
}

// Llama 3's 256 special tokens (meta-llama/llama3 llama/tokenizer.py), ids 128000 + index.
std::vector<AddedToken> llama3_special_tokens(int base) {
  std::vector<std::string> names = {"<|begin_of_text|>", "<|end_of_text|>", "<|reserved_special_token_0|>",
                                    "<|reserved_special_token_1|>", "<|reserved_special_token_2|>",
                                    "<|reserved_special_token_3|>", "<|start_header_id|>", "<|end_header_id|>",
                                    "<|reserved_special_token_4|>", "<|eot_id|>"};
  for (int i = 5; names.size() < 256; ++i) names.push_back(fmt::format("<|reserved_special_token_{}|>", i));
  std::vector<AddedToken> added;
  for (std::size_t i = 0; i < names.size(); ++i) added.push_back({base + static_cast<int>(i), names[i], true});
  return added;
}

// ---- GGUF ----------------------------------------------------------------------------------------------

enum GgufTokenType { kNormal = 1, kUnknown = 2, kControl = 3, kUserDefined = 4, kUnused = 5, kByte = 6 };

std::vector<std::int64_t> gguf_token_types(const GgufFile& file, std::size_t count) {
  auto types = file.get_int_array("tokenizer.ggml.token_type").value_or(std::vector<std::int64_t>(count, kNormal));
  if (types.size() != count)
    fail("{}: tokenizer.ggml.token_type has {} entries for {} tokens", file.path().string(), types.size(), count);
  return types;
}

void read_gguf_specials(const GgufFile& file, BpeVocabulary& v) {
  const auto id = [&](const char* key) { return static_cast<int>(file.get_int(key).value_or(-1)); };
  v.bos_id = id("tokenizer.ggml.bos_token_id");
  v.eos_id = id("tokenizer.ggml.eos_token_id");
  v.unk_id = id("tokenizer.ggml.unknown_token_id");
  if (file.get_bool("tokenizer.ggml.add_bos_token") == false) v.bos_id = -1;
}

BpeVocabulary gguf_vocabulary(const GgufFile& file, bool byte_level) {
  const std::string where = file.path().string();
  const auto tokens = file.get_string_array("tokenizer.ggml.tokens");
  if (!tokens || tokens->empty()) fail("{}: no tokenizer.ggml.tokens array", where);
  const auto types = gguf_token_types(file, tokens->size());
  BpeVocabulary v;
  v.tokens.resize(tokens->size());
  for (std::size_t id = 0; id < tokens->size(); ++id) {
    const auto& text = (*tokens)[id];
    const int token_id = static_cast<int>(id);
    switch (types[id]) {
      case kControl: v.added.push_back({token_id, text, true}); break;
      case kUserDefined: v.added.push_back({token_id, text, false}); break;
      case kNormal: case kUnknown: case kUnused: case kByte: break;
      default: fail("{}: token {} has unknown token_type {}", where, id, types[id]);
    }
    const bool literal = types[id] == kControl || types[id] == kUserDefined;
    v.tokens[id] = byte_level && !literal ? alphabet_to_bytes(text) : text;
    if (types[id] == kByte && !byte_level) {
      if (v.byte_tokens.empty()) v.byte_tokens.assign(256, -1);
      if (const auto byte = parse_byte_piece(text)) v.byte_tokens[*byte] = token_id;
    }
  }
  read_gguf_specials(file, v);
  return v;
}

BpeVocabulary hf_tokenizer_json(const fs::path& path) {
  const std::string where = path.string();
  const json root = read_json_file(path);
  if (!root.is_object() || !root.contains("model") || !root["model"].is_object())
    fail("{}: not a Hugging Face tokenizer.json (no \"model\" object)", where);
  const json& model = root["model"];
  if (model.value("type", "") != "BPE")
    fail("{}: tokenizer model type '{}' is not supported (only BPE)", where, model.value("type", "?"));
  if (!model.contains("merges") || !model["merges"].is_array()) fail("{}: the BPE model has no merges array", where);

  JsonPipeline pipeline;
  read_normalizer(root.value("normalizer", json()), pipeline, where);
  read_pre_tokenizer(root.value("pre_tokenizer", json()), pipeline, where);
  const bool byte_level = pipeline.alphabet == Alphabet::bytes;

  BpeVocabulary v;
  v.alphabet = pipeline.alphabet;
  v.tokens = tokens_from_vocab(model.value("vocab", json()), where, byte_level);
  std::unordered_set<std::string> token_set(v.tokens.begin(), v.tokens.end());
  const auto is_token = [&](const std::string& token) { return token_set.contains(token); };
  for (const auto& entry : model["merges"]) {
    auto merge = parse_merge(entry, where, is_token);
    v.merges.push_back(byte_level ? merge_to_bytes(std::move(merge)) : std::move(merge));
  }
  v.pre_regexes = pipeline.regexes;
  v.nfc = pipeline.nfc;
  v.add_space_prefix = pipeline.space_prefix;
  v.ignore_merges = model.value("ignore_merges", false);
  v.byte_fallback = model.value("byte_fallback", false);
  v.added = read_added_tokens(root.value("added_tokens", json::array()), where);
  place_added_tokens(v);
  if (model.contains("unk_token") && model["unk_token"].is_string()) v.unk_id = id_of(v, model["unk_token"].get<std::string>());
  if (const auto bos = post_processor_bos(root.value("post_processor", json()))) v.bos_id = id_of(v, *bos);
  apply_tokenizer_config(v, sibling(path, "tokenizer.json", "tokenizer_config.json"));
  return v;
}

BpeVocabulary vocab_merges(const fs::path& vocab_json, std::string_view pre) {
  const std::string where = vocab_json.string();
  const fs::path merges_path = sibling(vocab_json, "vocab.json", "merges.txt");
  if (!fs::exists(merges_path))
    fail("{}: no merges file beside it (expected {})", where, merges_path.string());
  const auto preset = pretokenizer_preset(pre);
  BpeVocabulary v;
  v.tokens = tokens_from_vocab(read_json_file(vocab_json), where, /*byte_level=*/true);
  const auto lines = read_lines(merges_path);
  for (std::size_t i = 0; i < lines.size(); ++i) {
    std::string line = lines[i];
    if (!line.empty() && line.back() == '\r') line.pop_back();
    if (line.empty() || (i == 0 && line.starts_with("#version"))) continue;
    v.merges.push_back(merge_to_bytes(parse_merge(json(line), fmt::format("{}:{}", merges_path.string(), i + 1))));
  }
  v.pre_regexes = preset.regexes;
  v.nfc = preset.nfc;
  v.ignore_merges = preset.ignore_merges;
  const fs::path added_path = sibling(vocab_json, "vocab.json", "added_tokens.json");
  const json added = fs::exists(added_path) ? read_json_file(added_path) : json::object();
  for (const auto& [content, id] : added.items()) {
    if (!id.is_number_integer()) fail("{}: token '{}' has a non-integer id", added_path.string(), content);
    v.added.push_back({id.get<int>(), content, true});
  }
  place_added_tokens(v);
  apply_tokenizer_config(v, sibling(vocab_json, "vocab.json", "tokenizer_config.json"));
  return v;
}

}  // namespace

BpeVocabulary read_hf_tokenizer_json(const fs::path& path) {
  return with_json_errors(path.string(), [&] { return hf_tokenizer_json(path); });
}

BpeVocabulary read_vocab_merges(const fs::path& vocab_json, std::string_view pre) {
  return with_json_errors(vocab_json.string(), [&] { return vocab_merges(vocab_json, pre); });
}

std::unique_ptr<Tokenizer> load_hf_tokenizer_json(const fs::path& path) {
  return make_bpe_tokenizer(read_hf_tokenizer_json(path), path.string());
}

std::unique_ptr<Tokenizer> load_vocab_merges(const fs::path& vocab_json, std::string_view pre) {
  return make_bpe_tokenizer(read_vocab_merges(vocab_json, pre), vocab_json.string());
}

std::unique_ptr<Tokenizer> load_tiktoken(const fs::path& path) {
  const std::string where = path.string();
  const auto lines = read_lines(path);
  BpeVocabulary v;
  v.merge_rule = BpeVocabulary::MergeRule::token_rank;
  v.ignore_merges = true;  // tiktoken emits a piece that is itself a token whole
  for (std::size_t i = 0; i < lines.size(); ++i) {
    if (lines[i].empty()) continue;
    const auto space = lines[i].find(' ');
    const auto bytes = space == std::string::npos ? std::nullopt : decode_base64(std::string_view(lines[i]).substr(0, space));
    int rank = -1;
    const char* rank_end = lines[i].data() + lines[i].size();
    const auto parsed = space == std::string::npos ? std::from_chars_result{nullptr, std::errc::invalid_argument}
                                                   : std::from_chars(lines[i].data() + space + 1, rank_end, rank);
    if (!bytes || bytes->empty() || parsed.ec != std::errc() || parsed.ptr != rank_end || rank < 0 || rank > (1 << 24))
      fail("{}:{}: not a tiktoken line (base64 token, space, rank)", where, i + 1);
    if (static_cast<std::size_t>(rank) >= v.tokens.size()) v.tokens.resize(rank + 1);
    if (!v.tokens[rank].empty()) fail("{}:{}: rank {} appears twice", where, i + 1, rank);
    v.tokens[rank] = *bytes;
  }
  if (v.tokens.empty()) fail("{}: empty tiktoken file", where);
  // Llama 3's file: 128,000 ranks, its special tokens and its pattern (upstream's, with the (?i:) group).
  v.pre_regexes = {R"((?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+)"};
  v.added = llama3_special_tokens(static_cast<int>(v.tokens.size()));
  place_added_tokens(v);
  v.bos_id = v.added[0].id;
  v.eos_id = v.added[1].id;
  return make_bpe_tokenizer(std::move(v), where);
}

namespace {

std::unique_ptr<Tokenizer> gguf_tokenizer(const GgufFile& file) {
  const std::string where = file.path().string();
  const auto model = file.get_string("tokenizer.ggml.model");
  if (!model) fail("{}: no tokenizer.ggml.model (the GGUF carries no vocabulary)", where);
  if (*model == "gpt2") {
    BpeVocabulary v = gguf_vocabulary(file, /*byte_level=*/true);
    const auto merges = file.get_string_array("tokenizer.ggml.merges");
    if (!merges) fail("{}: a gpt2 vocabulary needs tokenizer.ggml.merges", where);
    for (std::size_t i = 0; i < merges->size(); ++i)
      v.merges.push_back(merge_to_bytes(parse_merge(json((*merges)[i]), fmt::format("{}: merge {}", where, i + 1))));
    const auto preset = pretokenizer_preset(file.get_string("tokenizer.ggml.pre").value_or("default"));
    v.pre_regexes = preset.regexes;
    v.nfc = preset.nfc;
    v.ignore_merges = preset.ignore_merges;
    return make_bpe_tokenizer(std::move(v), where);
  }
  if (*model == "llama") {
    BpeVocabulary v = gguf_vocabulary(file, /*byte_level=*/false);
    v.alphabet = Alphabet::pieces;
    v.merge_rule = BpeVocabulary::MergeRule::token_score;
    const auto scores = file.get_float_array("tokenizer.ggml.scores");
    if (!scores) fail("{}: a llama (SentencePiece) vocabulary needs tokenizer.ggml.scores", where);
    v.scores.assign(scores->begin(), scores->end());
    v.byte_fallback = true;
    v.add_space_prefix = file.get_bool("tokenizer.ggml.add_space_prefix").value_or(true);
    return make_bpe_tokenizer(std::move(v), where);
  }
  fail("{}: tokenizer model '{}' is not supported (gpt2 = byte-level BPE, llama = SentencePiece)", where, *model);
}

}  // namespace

std::unique_ptr<Tokenizer> load_gguf_tokenizer(const GgufFile& file) {
  return with_json_errors(file.path().string(), [&] { return gguf_tokenizer(file); });
}

}  // namespace fbq
