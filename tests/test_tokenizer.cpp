// Tokenizer tests against real tokenizer files from ../shared (skipped, visibly, where it is absent).
//
// llama.cpp conformance vectors (tests/test-tokenizer-0, ggml-vocab-llama-spm.gguf.{inp,out}):
// - llama.cpp's generator writes every input followed by "\n__ggml_vocab_test__\n", so the inputs are
//   exactly the pieces between those whole separators, newlines included: the separator's newlines are
//   not part of any input, an input may be empty ("") or consist of newlines only ("\n\n"), and the file
//   ends with a separator (nothing after the last one is an input).
// - The .out file has one line per input: " id id ..." (each id preceded by a space), an empty line for "".
// - The ids are the Hugging Face LLaMA tokenizer's `encode(text, add_special_tokens=False)`, which
//   llama.cpp's test reproduces with add_special=false: no BOS, but SentencePiece's dummy prefix is still
//   applied, i.e. a space is prepended to every non-empty input before it is split. So "Hello" -> "▁Hello"
//   (15043), " Hello" -> "▁" "▁Hello" (29871 15043), "\n" -> "▁" "\n" (29871 13), and "" -> nothing.
//   That is libsentencepiece's plain Encode of the text, i.e. our encode(text, /*add_bos=*/false).
#include <gtest/gtest.h>

#include <iterator>
#include <sstream>
#include <string>
#include <vector>

#include "test_support.h"
#include "tokenizer_vectors.h"
#include "tokenizer/tokenizer.h"
#include "util/error.h"

namespace fbq {
namespace {

namespace fs = std::filesystem;
using test::read_file;
using test::write_file;
using test::escaped;
using test::joined;

fs::path shared_path(const std::string& relative) { return test::shared_dir() / relative; }

TEST(Tokenizer, SentencePieceMatchesLlamaCppVectors) {
  const fs::path model = shared_path("tokenizers/llama2-tokenizer.model");
  const fs::path vectors = shared_path("tokenizers/ggml-vocab-llama-spm.gguf");
  FBQ_REQUIRE_FILE(model);
  FBQ_REQUIRE_FILE(vectors.string() + ".inp");
  const auto [inputs, expected] = test::read_vocab_vectors(vectors);
  ASSERT_FALSE(inputs.empty());

  const auto tokenizer = load_tokenizer(model);
  int matching = 0;
  for (size_t i = 0; i < inputs.size(); ++i) {
    const std::vector<int> ids = tokenizer->encode(inputs[i], /*add_bos=*/false);
    if (ids == expected[i]) {
      ++matching;
      continue;
    }
    ADD_FAILURE() << "case " << i << " input " << escaped(inputs[i]) << "\n  expected " << joined(expected[i])
                  << "\n  got      " << joined(ids);
  }
  EXPECT_EQ(matching, int(inputs.size()));
}

TEST(Tokenizer, SentencePieceRoundTripsUnicode) {
  const fs::path model = shared_path("tokenizers/mistral-v1-tokenizer.model");
  FBQ_REQUIRE_FILE(model);
  const auto tokenizer = load_tokenizer(model);
  ASSERT_EQ(tokenizer->vocab_size(), 32000);

  for (const std::string text :
       {"Hello world", " leading space, and two  inside", "naïve café — Grüße, Ελληνικά", "日本語のテキスト",
        "emoji 🦙🚀 and a joined one 👩‍💻!", "tabs\tand\nnew\n\nlines"}) {
    const std::vector<int> ids = tokenizer->encode(text, /*add_bos=*/true);
    ASSERT_FALSE(ids.empty());
    EXPECT_EQ(ids.front(), tokenizer->bos_id()) << escaped(text);
    EXPECT_EQ(tokenizer->decode(ids), text) << joined(ids);
  }
  // Without BOS before it, the first piece keeps the dummy-prefix space: decode is a plain concatenation.
  EXPECT_EQ(tokenizer->decode(tokenizer->encode("Hello", /*add_bos=*/false)), " Hello");
}

struct TokenizerPair {
  const char* bin;
  const char* model;
  int vocab_size;
};

void PrintTo(const TokenizerPair& pair, std::ostream* out) { *out << pair.bin; }

class Llama2cVersusSentencePiece : public ::testing::TestWithParam<TokenizerPair> {};

// run.c's encoder is SentencePiece BPE re-implemented (highest-scoring merge first, byte fallback), so on
// text the SentencePiece normalizer leaves alone the two must agree. They differ, by design, where it does
// not: these .model files keep SentencePiece's default remove_extra_whitespaces, which drops leading and
// trailing spaces and collapses runs of spaces, while run.c tokenizes the text as given.
TEST_P(Llama2cVersusSentencePiece, SameIdsAndRoundTrip) {
  const fs::path bin = shared_path(GetParam().bin);
  const fs::path model = shared_path(GetParam().model);
  FBQ_REQUIRE_FILE(bin);
  FBQ_REQUIRE_FILE(model);
  const auto llama2c = load_tokenizer(bin, GetParam().vocab_size);
  const auto sentencepiece = load_tokenizer(model);
  ASSERT_EQ(llama2c->vocab_size(), sentencepiece->vocab_size());

  // "Sooo" and "Ooooh" have equal-score merges at several places: the leftmost must go first, as in run.c.
  for (const std::string text :
       {"Once upon a time, there was a little girl named Lily.", "She loved to play outside in the sunshine!",
        "\"Can I have it?\" asked Tom.", "The dog ran 123 miles and then slept.", "Sooo, he said \"Ooooh!\"",
        "Zebras quickly jumped over 7 lazy foxes."}) {
    const std::vector<int> ids = llama2c->encode(text, /*add_bos=*/true);
    EXPECT_EQ(ids, sentencepiece->encode(text, /*add_bos=*/true)) << escaped(text);
    EXPECT_EQ(llama2c->decode(ids), text) << joined(ids);
  }

  // UNK, BOS and EOS are markers with no text of their own.
  for (const auto* tokenizer : {llama2c.get(), sentencepiece.get()})
    for (int special : {0, tokenizer->bos_id(), tokenizer->eos_id()})
      EXPECT_EQ(tokenizer->decode_piece(5, special), "") << "token " << special;

  // Unknown codepoints: byte tokens in tok512 (which has <0x00>..<0xFF>), UNK in tok105 (which has not,
  // and lacks even "\n").
  const std::string unusual = "naïve café 🦙 Grüße\nnext line";
  EXPECT_EQ(llama2c->encode(unusual, true), sentencepiece->encode(unusual, true));

  // The whitespace difference described above.
  const std::string spaced = " two  spaces";
  EXPECT_NE(llama2c->encode(spaced, true), sentencepiece->encode(spaced, true));
  EXPECT_EQ(sentencepiece->decode(sentencepiece->encode(spaced, true)), "two spaces");
  EXPECT_EQ(llama2c->decode(llama2c->encode(spaced, true)), spaced);
}

// Long real text exercises many merge orders in the heap-based encoder against SentencePiece's.
TEST_P(Llama2cVersusSentencePiece, SameIdsOnNovelParagraphs) {
  const fs::path bin = shared_path(GetParam().bin);
  const fs::path model = shared_path(GetParam().model);
  const fs::path novel = shared_path("data/moby-test.txt");
  FBQ_REQUIRE_FILE(bin);
  FBQ_REQUIRE_FILE(model);
  FBQ_REQUIRE_FILE(novel);
  const auto llama2c = load_tokenizer(bin, GetParam().vocab_size);
  const auto sentencepiece = load_tokenizer(model);

  std::istringstream lines(read_file(novel));
  int compared = 0;
  for (std::string paragraph; compared < 200 && std::getline(lines, paragraph);) {
    // Keep to text the normalizer leaves alone (see above).
    if (paragraph.empty() || paragraph.front() == ' ' || paragraph.back() == ' ' ||
        paragraph.find("  ") != std::string::npos)
      continue;
    ++compared;
    EXPECT_EQ(llama2c->encode(paragraph, true), sentencepiece->encode(paragraph, true)) << escaped(paragraph);
  }
  EXPECT_EQ(compared, 200);
}

INSTANTIATE_TEST_SUITE_P(
    Tokenizer, Llama2cVersusSentencePiece,
    ::testing::Values(TokenizerPair{"models/stories260K/tok512.bin", "models/stories260K/tok512.model", 512},
                      TokenizerPair{"models/babyllama-128/tok105.bin", "models/babyllama-128/tok105.model", 105}),
    [](const auto& info) { return std::to_string(info.param.vocab_size); });

TEST(Tokenizer, Llama2cDropsDummyPrefixAfterBos) {
  const fs::path bin = shared_path("models/stories260K/tok512.bin");
  FBQ_REQUIRE_FILE(bin);
  const auto tokenizer = load_tokenizer(bin, 512);

  const std::vector<int> ids = tokenizer->encode("Once upon a time", /*add_bos=*/true);
  ASSERT_EQ(ids, (std::vector<int>{1, 403, 407, 261, 378}));  // as tok512.model encodes it
  EXPECT_EQ(tokenizer->decode_piece(ids[0], ids[1]), "Once");
  EXPECT_EQ(tokenizer->decode_piece(ids[2], ids[1]), " Once");  // elsewhere the space is text
  EXPECT_EQ(tokenizer->decode(ids), "Once upon a time");
}

// run.c pushes the dummy prefix as a token of its own, so a stray UTF-8 continuation byte opening the text is
// not grouped with it into one (unknown) codepoint.
TEST(Tokenizer, Llama2cDummyPrefixIsItsOwnSymbol) {
  const fs::path bin = shared_path("models/stories260K/tok512.bin");
  FBQ_REQUIRE_FILE(bin);
  const auto tokenizer = load_tokenizer(bin, 512);

  const std::vector<int> ids = tokenizer->encode("\x80z", /*add_bos=*/false);
  ASSERT_EQ(ids.size(), 3u) << joined(ids);
  EXPECT_EQ(tokenizer->decode_piece(-1, ids[0]), " ");
  EXPECT_GE(ids[0], 3 + 256) << "the prefix fell back to a byte token";
  EXPECT_EQ(ids[1], 3 + 0x80);  // byte fallback: byte + 3
  EXPECT_EQ(tokenizer->decode(ids), " \x80z");
}

// EXPECT_THROW of fbq::Error whose message names `path`.
#define EXPECT_ERROR_NAMING(statement, path)                                                             \
  EXPECT_THROW(                                                                                          \
      {                                                                                                  \
        try {                                                                                            \
          statement;                                                                                     \
        } catch (const Error& error) {                                                                   \
          EXPECT_NE(std::string(error.what()).find((path).string()), std::string::npos) << error.what(); \
          throw;                                                                                         \
        }                                                                                                \
      },                                                                                                 \
      Error)

class TokenizerErrors : public ::testing::Test {
 protected:
  test::TempDir directory_;
};

TEST_F(TokenizerErrors, MissingFile) {
  EXPECT_ERROR_NAMING(load_tokenizer(directory_.path() / "absent.model"), directory_.path() / "absent.model");
  EXPECT_ERROR_NAMING(load_tokenizer(directory_.path() / "absent.bin", 512), directory_.path() / "absent.bin");
}

TEST_F(TokenizerErrors, GarbageSentencePieceModel) {
  const fs::path garbage = directory_.path() / "garbage.model";
  write_file(garbage, "this is not a SentencePiece model, just some text\n");
  EXPECT_ERROR_NAMING(load_tokenizer(garbage), garbage);
}

// Found by fuzz_sentencepiece: a model with a zero-length piece made libsentencepiece throw from its trie
// builder, which terminated the process.
TEST_F(TokenizerErrors, SentencePieceModelWithAnEmptyPiece) {
  const fs::path model = test::source_dir() / "tests" / "corpus" / "regressions" / "sentencepiece-empty-piece.model";
  EXPECT_ERROR_NAMING(load_tokenizer(model), model);
}

TEST_F(TokenizerErrors, MalformedLlama2cFile) {
  const fs::path original = shared_path("models/stories260K/tok512.bin");
  FBQ_REQUIRE_FILE(original);
  const std::string bytes = read_file(original);
  const fs::path broken = directory_.path() / "broken.bin";

  // Cut inside the header, inside a record's score/length, inside a piece, and just before the end.
  for (size_t size : {size_t(2), size_t(4), size_t(10), size_t(15), bytes.size() - 1}) {
    write_file(broken, bytes.substr(0, size));
    EXPECT_ERROR_NAMING(load_tokenizer(broken, 512), broken) << "truncated to " << size << " bytes";
  }

  // max_token_length 4 while token 0 ("<unk>") is 5 bytes long.
  std::string short_max = bytes;
  short_max[0] = 4;
  write_file(broken, short_max);
  EXPECT_ERROR_NAMING(load_tokenizer(broken, 512), broken);

  write_file(broken, bytes);
  EXPECT_ERROR_NAMING(load_tokenizer(broken, 0), broken);
  EXPECT_ERROR_NAMING(load_tokenizer(broken, 511), broken);  // a token left over: wrong vocab size
  EXPECT_ERROR_NAMING(load_tokenizer(broken, 513), broken);
  EXPECT_NO_THROW(load_tokenizer(broken, 512));
}

}  // namespace
}  // namespace fbq
