// BPE tokenizers against llama.cpp's test vectors, from every source of each vocabulary that ../shared
// holds (the vocab-only GGUF and the family's own files). The vectors are Hugging Face
// `encode(text, add_special_tokens=False)`, which we reproduce with add_bos = false, parse_special = false
// (user-defined added tokens, such as mpt's runs of spaces, are still matched, as llama.cpp does).
#include <gtest/gtest.h>

#include <random>

#include "test_support.h"
#include "tokenizer/bpe.h"
#include "tokenizer/tokenizer.h"
#include "tokenizer_vectors.h"
#include "util/error.h"
#include "util/utf8.h"

namespace fbq {
namespace {

namespace fs = std::filesystem;
using test::escaped;
using test::joined;

fs::path tokenizers_dir() { return test::shared_dir() / "tokenizers"; }

struct VectorSource {
  const char* family;   // ggml-vocab-<family>.gguf.{inp,out}
  const char* file;     // the tokenizer file, in ../shared/tokenizers
  const char* pre = "gpt2";  // --pre, for a vocab.json
};

void PrintTo(const VectorSource& source, std::ostream* out) { *out << source.family << " / " << source.file; }

const VectorSource kSources[] = {
    {"gpt-2", "ggml-vocab-gpt-2.gguf"},
    {"gpt-2", "gpt2-vocab.json", "gpt2"},
    {"llama-spm", "ggml-vocab-llama-spm.gguf"},
    {"llama-spm", "llama2-tokenizer.json"},
    {"llama-bpe", "llama3-tokenizer.model"},
    {"qwen2", "qwen2-vocab.json", "qwen2"},
    {"deepseek-coder", "ggml-vocab-deepseek-coder.gguf"},
    {"deepseek-llm", "ggml-vocab-deepseek-llm.gguf"},
    {"falcon", "ggml-vocab-falcon.gguf"},
    {"falcon", "falcon-tokenizer.json"},
    {"mpt", "ggml-vocab-mpt.gguf"},
    {"phi-3", "ggml-vocab-phi-3.gguf"},
    {"phi-3", "phi3-mini-tokenizer.json"},
    {"refact", "ggml-vocab-refact.gguf"},
    {"starcoder", "ggml-vocab-starcoder.gguf"},
};

class LlamaCppVectors : public ::testing::TestWithParam<VectorSource> {};

TEST_P(LlamaCppVectors, EveryInputGivesTheExpectedIds) {
  const auto& source = GetParam();
  const fs::path file = tokenizers_dir() / source.file;
  const fs::path vectors = tokenizers_dir() / (std::string("ggml-vocab-") + source.family + ".gguf");
  FBQ_REQUIRE_FILE(file);
  FBQ_REQUIRE_FILE(vectors.string() + ".inp");
  const auto [inputs, expected] = test::read_vocab_vectors(vectors);
  ASSERT_EQ(inputs.size(), 46u);

  const auto tokenizer = load_tokenizer(file, 0, source.pre);
  int matching = 0;
  for (std::size_t i = 0; i < inputs.size(); ++i) {
    const auto ids = tokenizer->tokenize(inputs[i], {});
    if (ids == expected[i]) {
      ++matching;
      continue;
    }
    ADD_FAILURE() << "case " << i << " input " << escaped(inputs[i]) << "\n  expected " << joined(expected[i])
                  << "\n  got      " << joined(ids);
  }
  RecordProperty("exact_matches", matching);
  EXPECT_EQ(matching, static_cast<int>(inputs.size()));
}

INSTANTIATE_TEST_SUITE_P(Sources, LlamaCppVectors, ::testing::ValuesIn(kSources),
                         [](const auto& info) {
                           std::string name = std::string(info.param.file);
                           for (char& c : name)
                             if (!std::isalnum(static_cast<unsigned char>(c))) c = '_';
                           return name;
                         });

// Random strings over the hard cases: ASCII words and punctuation, runs of spaces, tabs and newlines,
// digits, CJK, emoji (with ZWJ), combining marks, and invalid UTF-8 (stray continuation bytes, truncated
// sequences, 0xFF). Fixed seed.
std::vector<std::string> random_texts(int count, bool valid_utf8_only) {
  const std::vector<std::string> atoms = {
      "a", "Hello", " world", "  ", "\t", "\n", "\n\n", "'s", "'LL", "123", "4567", ",", "!?", "...", "—", "é",
      "e\xCC\x81", "\xCC\x88", "日本", "語", "한국어", "Ελλάδα", "Привет", "ខ្មែរ", "🦙", "👩\xE2\x80\x8D💻", "🇺🇸",
      "\xEF\xBC\x81", "\xC2\xA0", "\xE3\x80\x80", "<|endoftext|>", "[INST]"};
  const std::vector<std::string> invalid = {"\x80", "\xFF", "\xC3", "\xE6\x97", "\xF0\x9F\xA6", "\xBF\xBF"};
  std::mt19937 rng(12345);
  std::vector<std::string> texts;
  for (int i = 0; i < count; ++i) {
    std::string text;
    const int length = 1 + static_cast<int>(rng() % 24);
    for (int k = 0; k < length; ++k) {
      if (!valid_utf8_only && rng() % 10 == 0) text += invalid[rng() % invalid.size()];
      else text += atoms[rng() % atoms.size()];
    }
    texts.push_back(std::move(text));
  }
  return texts;
}

struct RoundTripSource {
  const char* file;
  const char* pre = "gpt2";
  bool invalid_bytes = true;  // every byte has a token (or a byte-fallback token)
};

void PrintTo(const RoundTripSource& source, std::ostream* out) { *out << source.file; }

class BpeRoundTrip : public ::testing::TestWithParam<RoundTripSource> {};

// decode(encode(s)) == s, with the vectors' inputs and random strings. SentencePiece-style vocabularies
// prepend a space that decoding drops after BOS, so they are encoded with BOS. Qwen2 NFC-normalizes, so
// its round trip gives NFC(s).
TEST_P(BpeRoundTrip, DecodeInvertsEncode) {
  const auto& source = GetParam();
  const fs::path file = tokenizers_dir() / source.file;
  FBQ_REQUIRE_FILE(file);
  const auto tokenizer = load_tokenizer(file, 0, source.pre);
  const bool nfc = std::string_view(source.pre) == "qwen2";
  auto texts = random_texts(300, !source.invalid_bytes);
  const fs::path vectors = tokenizers_dir() / "ggml-vocab-gpt-2.gguf";
  if (fs::exists(vectors.string() + ".inp"))
    for (auto& input : test::read_vocab_vectors(vectors).inputs) texts.push_back(input);
  for (const auto& text : texts) {
    const auto ids = tokenizer->tokenize(text, {.add_bos = true});
    EXPECT_EQ(tokenizer->decode(ids), nfc ? nfc_normalize(text) : text) << escaped(text) << " -> " << joined(ids);
  }
}

// Vocabularies marked `false` have no token for some bytes that never occur in valid UTF-8 (0xC0, 0xC1,
// 0xF5-0xFF; falcon also lacks some control bytes, refact/starcoder 0xF1, smollm2 21 bytes): Hugging Face
// drops such bytes too, so those round trips use valid UTF-8 only.
const RoundTripSource kRoundTrips[] = {
    {"ggml-vocab-gpt-2.gguf"},
    {"gpt2-vocab.json"},
    {"ggml-vocab-llama-spm.gguf"},
    {"llama2-tokenizer.json"},
    {"llama3-tokenizer.model"},
    {"qwen2-vocab.json", "qwen2"},
    {"ggml-vocab-deepseek-coder.gguf", "gpt2", false},
    {"ggml-vocab-deepseek-llm.gguf", "gpt2", false},
    {"ggml-vocab-falcon.gguf", "gpt2", false},
    {"falcon-tokenizer.json", "gpt2", false},
    {"ggml-vocab-mpt.gguf", "gpt2", false},
    {"ggml-vocab-phi-3.gguf"},
    {"ggml-vocab-refact.gguf", "gpt2", false},
    {"ggml-vocab-starcoder.gguf", "gpt2", false},
    {"ggml-vocab-gpt-neox.gguf", "gpt2", false},
    {"phi2-tokenizer.json"},
    {"phi3-mini-tokenizer.json"},
    {"mistral-v3-tokenizer.json"},
    {"smollm2-tokenizer.json", "gpt2", false},
};

INSTANTIATE_TEST_SUITE_P(Sources, BpeRoundTrip, ::testing::ValuesIn(kRoundTrips), [](const auto& info) {
  std::string name = info.param.file;
  for (char& c : name)
    if (!std::isalnum(static_cast<unsigned char>(c))) c = '_';
  return name;
});

// The Hugging Face form of Mistral v0.3's tokenizer gives the same ids as its SentencePiece .model.
TEST(BpeTokenizer, MistralJsonMatchesSentencePieceModel) {
  const fs::path json = tokenizers_dir() / "mistral-v3-tokenizer.json";
  const fs::path model = tokenizers_dir() / "mistral-v3-tokenizer.model";
  const fs::path vectors = tokenizers_dir() / "ggml-vocab-llama-spm.gguf";
  FBQ_REQUIRE_FILE(json);
  FBQ_REQUIRE_FILE(model);
  FBQ_REQUIRE_FILE(vectors.string() + ".inp");
  const auto from_json = load_tokenizer(json);
  const auto from_model = load_tokenizer(model);
  int matching = 0;
  const auto inputs = test::read_vocab_vectors(vectors).inputs;
  for (const auto& input : inputs) {
    const auto ids = from_json->tokenize(input, {});
    const auto reference = from_model->tokenize(input, {});
    matching += ids == reference;
    EXPECT_EQ(ids, reference) << escaped(input);
  }
  EXPECT_EQ(matching, static_cast<int>(inputs.size()));
}

// Beyond the 46 vectors: a whole book chapter's worth of text (moby-test.txt, 190 KB, one call) gives the
// same ids from libsentencepiece and from every other form of the same vocabulary (this also covers the
// split-before-U+2581 fast path, exact only when no token holds a U+2581 after another character).
TEST(BpeTokenizer, SentencePieceFormsAgreeOnWholeText) {
  const fs::path text_file = test::shared_dir() / "data" / "moby-test.txt";
  FBQ_REQUIRE_FILE(text_file);
  const auto text = test::read_file(text_file);
  for (const auto& [model, others] : std::vector<std::pair<std::string, std::vector<std::string>>>{
           {"llama2-tokenizer.model", {"llama2-tokenizer.json", "ggml-vocab-llama-spm.gguf", "phi3-mini-tokenizer.json"}},
           {"mistral-v3-tokenizer.model", {"mistral-v3-tokenizer.json"}}}) {
    FBQ_REQUIRE_FILE(tokenizers_dir() / model);
    const auto reference = load_tokenizer(tokenizers_dir() / model)->tokenize(text, {});
    for (const auto& other : others) {
      FBQ_REQUIRE_FILE(tokenizers_dir() / other);
      EXPECT_EQ(load_tokenizer(tokenizers_dir() / other)->tokenize(text, {}), reference) << other << " vs " << model;
    }
  }
}

TEST(BpeTokenizer, Llama3SpecialTokensAndReference) {
  const fs::path file = tokenizers_dir() / "llama3-tokenizer.model";
  FBQ_REQUIRE_FILE(file);
  const auto tokenizer = load_tokenizer(file);
  EXPECT_EQ(tokenizer->vocab_size(), 128256);
  EXPECT_EQ(tokenizer->bos_id(), 128000);
  // meta-llama/llama3 llama/test_tokenizer.py (BOS + text + EOS).
  auto ids = tokenizer->tokenize("This is a test sentence.", {.add_bos = true});
  ids.push_back(tokenizer->eos_id());
  EXPECT_EQ(ids, (std::vector<int>{128000, 2028, 374, 264, 1296, 11914, 13, 128001}));
  const std::string chat = "<|start_header_id|>user<|end_header_id|>";
  EXPECT_EQ(tokenizer->tokenize(chat, {.parse_special = true}), (std::vector<int>{128006, 882, 128007}));
  const auto as_text = tokenizer->tokenize(chat, {});
  EXPECT_GT(as_text.size(), 3u) << "without --parse-special a control token is plain text";
  EXPECT_EQ(tokenizer->decode(as_text), chat);
}

TEST(BpeTokenizer, QwenAddedTokensAndNoBos) {
  const fs::path file = tokenizers_dir() / "qwen2-vocab.json";
  FBQ_REQUIRE_FILE(file);
  const auto tokenizer = load_tokenizer(file, 0, "qwen2");
  EXPECT_EQ(tokenizer->bos_id(), -1) << "Qwen2 has no BOS";
  EXPECT_EQ(tokenizer->eos_id(), 151645) << "tokenizer_config.json: eos <|im_end|>";
  const auto ids = tokenizer->tokenize("<|im_start|>user\nhi<|im_end|>", {.add_bos = true, .parse_special = true});
  ASSERT_GE(ids.size(), 3u);
  EXPECT_EQ(ids.front(), 151644);
  EXPECT_EQ(ids.back(), 151645);
}

TEST(BpeTokenizer, SmolLm2PairMergesAndPhi2AddedSpaces) {
  const fs::path smollm = tokenizers_dir() / "smollm2-tokenizer.json";
  const fs::path phi2 = tokenizers_dir() / "phi2-tokenizer.json";
  FBQ_REQUIRE_FILE(smollm);
  FBQ_REQUIRE_FILE(phi2);
  const auto smol = load_tokenizer(smollm);
  EXPECT_EQ(smol->vocab_size(), 49152);
  EXPECT_EQ(smol->tokenize("<|im_start|>", {.parse_special = true}), std::vector<int>{1});
  EXPECT_EQ(smol->tokenize("2024", {}).size(), 4u) << "Digits(individual_digits): one token per digit";
  const auto phi = load_tokenizer(phi2);
  const std::string spaces(8, ' ');
  const auto ids = phi->tokenize("a" + spaces + "b", {});
  ASSERT_EQ(ids.size(), 3u) << joined(ids);
  EXPECT_EQ(phi->decode_piece(ids[0], ids[1]), spaces) << "phi-2's added whitespace tokens match as one token";
}

// A tokenizer.json normalizer is applied (Hugging Face behaviour wins over llama.cpp, which skips NFC):
// a decomposed "e" + U+0301 encodes as the composed "é".
TEST(BpeTokenizer, NfcNormalizerFromTokenizerJson) {
  const test::TempDir dir;
  const auto file = dir.path() / "tokenizer.json";
  test::write_file(file, R"({"normalizer": {"type": "NFC"},
    "pre_tokenizer": {"type": "ByteLevel", "add_prefix_space": false, "use_regex": true},
    "model": {"type": "BPE", "vocab": {"e": 0, "Ã": 1, "©": 2, "Ì": 3, "\u0081": 4, "Ã©": 5}, "merges": ["Ã ©"]}})");
  const auto tokenizer = load_tokenizer(file);
  EXPECT_EQ(tokenizer->tokenize("\xC3\xA9", {}), std::vector<int>{5});
  EXPECT_EQ(tokenizer->tokenize("e\xCC\x81", {}), std::vector<int>{5});
  EXPECT_EQ(nfc_normalize("e\xCC\x81\xFF"), "\xC3\xA9\xFF") << "invalid bytes pass through";
}

// A byte-level token can end inside a UTF-8 character; the stream holds such bytes back.
TEST(BpeTokenizer, StreamingNeverSplitsACharacter) {
  const fs::path file = tokenizers_dir() / "gpt2-vocab.json";
  FBQ_REQUIRE_FILE(file);
  const auto tokenizer = load_tokenizer(file);
  const std::string text = "日本語 🦙👩\xE2\x80\x8D💻 ខ្មែរ done";
  const auto ids = tokenizer->tokenize(text, {});
  Utf8Stream stream;
  std::string streamed;
  bool split_somewhere = false;
  for (std::size_t i = 0; i < ids.size(); ++i) {
    const auto piece = tokenizer->decode_piece(i ? ids[i - 1] : -1, ids[i]);
    split_somewhere |= !is_valid_utf8(piece);
    const auto chunk = stream.push(piece);
    EXPECT_TRUE(is_valid_utf8(chunk)) << "chunk " << i;
    streamed += chunk;
  }
  streamed += stream.flush();
  EXPECT_TRUE(split_somewhere) << "the text should have tokens ending mid-character";
  EXPECT_EQ(streamed, text);
}

// ---- bad input: one clear error line from the library, and from `fbq tokenize` ----------------------

struct BadTokenizerFile {
  const char* name;      // file name (the loader is chosen by it)
  const char* content;
  const char* message;   // part of the expected error
};

void PrintTo(const BadTokenizerFile& bad, std::ostream* out) { *out << bad.name << ": " << bad.message; }

const BadTokenizerFile kBadFiles[] = {
    {"tokenizer.json", "{\"model\": {\"type\": \"BPE\", \"vocab\": {", "not valid JSON"},
    {"tokenizer.json", "[1, 2]", "no \"model\" object"},
    {"tokenizer.json", R"({"model": {"type": "Unigram", "vocab": []}})", "model type 'Unigram' is not supported"},
    {"tokenizer.json", R"({"model": {"type": "BPE", "vocab": {"a": 0}}})", "no merges array"},
    {"tokenizer.json", R"({"model": {"type": "BPE", "vocab": {"a": 0, "b": 1, "ab": 2}, "merges": ["a c"]}})",
     "names 'c', which is not in the vocabulary"},
    {"tokenizer.json", R"({"model": {"type": "BPE", "vocab": {"a": 0, "b": 1}, "merges": ["a b"]}})",
     "makes 'ab', which is not in the vocabulary"},
    {"tokenizer.json", R"({"model": {"type": "BPE", "vocab": {"a": 0, "b": 1}, "merges": [7]}})",
     "neither \"left right\""},
    {"tokenizer.json", R"({"model": {"type": "BPE", "vocab": {"a": -3}, "merges": []}})", "not an id"},
    {"tokenizer.json", R"({"model": {"type": "BPE", "vocab": {"a": 0, "b": 0}, "merges": []}})",
     "id 0 is given to two tokens"},
    {"tokenizer.json",
     R"({"pre_tokenizer": {"type": "Split", "pattern": {"Regex": "(["}, "behavior": "Isolated"},
         "model": {"type": "BPE", "vocab": {"a": 0}, "merges": []}})",
     "bad pre-tokenizer regex"},
    {"tokenizer.json",
     R"({"pre_tokenizer": {"type": "WhitespaceSplit"}, "model": {"type": "BPE", "vocab": {"a": 0}, "merges": []}})",
     "pre_tokenizer {\"type\":\"WhitespaceSplit\"} is not supported"},
    {"tokenizer.json",
     R"({"model": {"type": "BPE", "vocab": {"a": 0}, "merges": []}, "added_tokens": [{"id": -1, "content": "<x>"}]})",
     "added token '<x>' has id -1"},
    {"tokenizer.model", "YQ== 0\nYg== x\n", ":2: not a tiktoken line"},
    {"tokenizer.model", "YQ== 0\nYQ== 0\n", ":2: rank 0 appears twice"},
    {"vocab.json", R"({"a": 0})", "no merges file beside it"},
};

class BadTokenizerFiles : public ::testing::TestWithParam<BadTokenizerFile> {};

TEST_P(BadTokenizerFiles, OneClearErrorLine) {
  const auto& bad = GetParam();
  const test::TempDir dir;
  const fs::path file = dir.path() / bad.name;
  test::write_file(file, bad.content);
  try {
    load_tokenizer(file);
    ADD_FAILURE() << "loaded a bad file";
  } catch (const Error& error) {
    EXPECT_NE(std::string(error.what()).find(bad.message), std::string::npos) << error.what();
    EXPECT_EQ(std::string(error.what()).find('\n'), std::string::npos) << error.what();
  }
  const auto message = test::expect_cli_fails("tokenize --tokenizer '" + file.string() + "' -p hi", dir.path());
  EXPECT_NE(message.find(bad.message), std::string::npos) << message;
}

INSTANTIATE_TEST_SUITE_P(Cases, BadTokenizerFiles, ::testing::ValuesIn(kBadFiles));

TEST(BpeTokenizer, MergesFileNamingAnUnknownToken) {
  const test::TempDir dir;
  test::write_file(dir.path() / "tiny-vocab.json", R"({"a": 0, "b": 1, "ab": 2})");
  test::write_file(dir.path() / "tiny-merges.txt", "#version: 0.2\na b\nab z\n");
  const auto message = test::expect_cli_fails("tokenize --tokenizer '" + (dir.path() / "tiny-vocab.json").string() + "' -p ab",
                                              dir.path());
  EXPECT_NE(message.find("merge 2 ('ab' 'z') names 'z'"), std::string::npos) << message;
  test::write_file(dir.path() / "tiny-merges.txt", "#version: 0.2\na b\n");
  const auto tokenizer = load_tokenizer(dir.path() / "tiny-vocab.json");
  EXPECT_EQ(tokenizer->tokenize("abba", {}), (std::vector<int>{2, 1, 0}));
  EXPECT_THROW(load_tokenizer(dir.path() / "tiny-vocab.json", 0, "no-such-pre"), Error);
}

// `fbq tokenize` prints what llama-tokenize prints: the ids, or one "id -> 'piece'" line per token.
TEST(BpeTokenizer, TokenizeCommand) {
  const fs::path file = tokenizers_dir() / "gpt2-vocab.json";
  FBQ_REQUIRE_FILE(file);
  const test::TempDir dir;
  const auto out = dir.path() / "out.txt";
  const auto run = [&](const std::string& arguments) {
    const auto command = std::string("'") + FBQ_CLI_PATH + "' tokenize --tokenizer '" + file.string() + "' " +
                         arguments + " >'" + out.string() + "' 2>/dev/null";
    EXPECT_EQ(std::system(command.c_str()), 0) << arguments;
    return test::read_file(out);
  };
  EXPECT_EQ(run("-p 'Hello world'"), "[15496, 995]\n");
  EXPECT_EQ(run("-p 'Hello world' --json"), "{\"ids\":[15496,995]}\n");
  EXPECT_EQ(run("-p 'Hello world' --pieces"), " 15496 -> 'Hello'\n   995 -> ' world'\n");
  test::write_file(dir.path() / "text.txt", "Hello world\n");
  EXPECT_EQ(run("--text '" + (dir.path() / "text.txt").string() + "'"), "[15496, 995, 198]\n") << "the file's exact bytes";
  test::expect_cli_fails("tokenize -p hi", dir.path());
  test::expect_cli_fails("tokenize --tokenizer '" + file.string() + "'", dir.path());
  test::expect_cli_fails("tokenize --tokenizer '" + (dir.path() / "missing.json").string() + "' -p hi", dir.path());
}

}  // namespace
}  // namespace fbq

namespace fbq {
namespace {

// The fuzzers' seed files (tests/corpus/) stay valid inputs, so the fuzzers start from working files.
TEST(TokenizerCorpus, SeedFilesLoad) {
  const auto corpus = test::source_dir() / "tests" / "corpus";
  int loaded = 0;
  for (const auto& entry : fs::directory_iterator(corpus / "tokenizer_json")) {
    const auto tokenizer = load_hf_tokenizer_json(entry.path());
    EXPECT_FALSE(tokenizer->tokenize("Hello ab x", {.add_bos = true}).empty()) << entry.path();
    ++loaded;
  }
  for (const auto& entry : fs::directory_iterator(corpus / "tiktoken")) {
    EXPECT_EQ(load_tiktoken(entry.path())->tokenize("Hello world", {}), (std::vector<int>{2, 3})) << entry.path();
    ++loaded;
  }
  EXPECT_GE(loaded, 4);
}

// Inputs the fuzzers found (tests/corpus/regressions/HARNESS-*): each is refused with fbq::Error.
TEST(TokenizerCorpus, FuzzFindingsAreRefusedCleanly) {
  const auto regressions = test::source_dir() / "tests" / "corpus" / "regressions";
  const test::TempDir dir;
  EXPECT_THROW(load_hf_tokenizer_json(regressions / "tokenizer_json-wrong-type.json"), Error);
  EXPECT_THROW(load_hf_tokenizer_json(regressions / "tokenizer_json-missing-key.json"), Error);  // was a heap overread
  const auto both = test::read_file(regressions / "vocab_merges-invalid-utf8.bin");  // vocab \0 merges
  test::write_file(dir.path() / "vocab.json", both.substr(0, both.find('\0')));
  test::write_file(dir.path() / "merges.txt", both.substr(both.find('\0') + 1));
  EXPECT_THROW(load_vocab_merges(dir.path() / "vocab.json", "gpt2"), Error);
}

}  // namespace
}  // namespace fbq
