// Inputs that would otherwise come out as garbage without a word: calibration and evaluation texts that are
// empty, too short or not UTF-8, and models whose weights or activations hold Inf/NaN. Each must stop
// `fbq` with one clear error line naming the file or the layer, exit 1, and leave no output behind.
#include <gtest/gtest.h>

#include <fmt/format.h>
#include <fstream>
#include <nlohmann/json.hpp>

#include "test_support.h"

namespace fbq {
namespace {

std::string quote(const std::filesystem::path& path) { return fmt::format("'{}'", path.string()); }

// `fbq quantize` of the bundled model with small settings; expects failure and no output directory.
std::string expect_quantize_fails(const std::filesystem::path& model, const std::string& arguments,
                                  const test::TempDir& tmp) {
  const auto out = tmp.path() / "out";
  const auto message = test::expect_cli_fails("quantize " + quote(model) + " -o " + quote(out) +
                                                  " --method rtn --nsamples 4 --seqlen 64 --no-eval --quiet " + arguments,
                                              tmp.path());
  EXPECT_FALSE(std::filesystem::exists(out)) << "no partial output in place of the destination";
  return message;
}

TEST(HostileText, CalibrationTextEmptyShortOrNotUtf8) {
  FBQ_REQUIRE_FILE(test::bundled_model() / "model.safetensors");
  const test::TempDir tmp;
  const auto text = tmp.path() / "calib.txt";
  const auto fails_with = [&](const std::string& bytes) {
    test::write_file(text, bytes);
    return expect_quantize_fails(test::bundled_model(), "--calib " + quote(text), tmp);
  };
  EXPECT_NE(fails_with("").find("empty"), std::string::npos);
  EXPECT_NE(fails_with("\n \n\t\n").find("no text"), std::string::npos);
  EXPECT_NE(fails_with("One short paragraph.\n").find("yields only 0 windows of 64 tokens"), std::string::npos);
  const auto latin1 = fails_with("A caf\xE9 on the quay.\n\nSecond paragraph.\n");
  EXPECT_NE(latin1.find("calib.txt:1: not UTF-8 text (byte 0xE9 at column 6)"), std::string::npos) << latin1;
  const auto utf16 = fails_with(std::string("\xFF\xFE" "A\0b\0", 6));
  EXPECT_NE(utf16.find("not UTF-8"), std::string::npos) << utf16;
}

TEST(HostileText, EvaluationTextNotUtf8) {
  FBQ_REQUIRE_FILE(test::bundled_model() / "model.safetensors");
  const test::TempDir tmp;
  const auto text = tmp.path() / "eval.txt";
  test::write_file(text, "First paragraph.\n\nSecond \x80 paragraph.\n");
  const auto message = test::expect_cli_fails("perplexity " + quote(test::bundled_model()) + " --text " + quote(text),
                                              tmp.path());
  EXPECT_NE(message.find("eval.txt:3: not UTF-8 text"), std::string::npos) << message;
}

constexpr std::uint16_t kBf16Inf = 0x7F80, kBf16Max = 0x7F7F;  // +Inf, 3.39e38

// A copy of the bundled model with the first COUNT bf16 values of TENSOR replaced by VALUE.
std::filesystem::path model_with(const test::TempDir& tmp, const std::string& tensor, int count, std::uint16_t value) {
  const auto dir = tmp.path() / "poisoned";
  std::filesystem::copy(test::bundled_model(), dir);
  std::fstream stream(dir / "model.safetensors", std::ios::in | std::ios::out | std::ios::binary);
  std::uint64_t header_bytes = 0;
  stream.read(reinterpret_cast<char*>(&header_bytes), 8);
  std::string header(header_bytes, '\0');
  stream.read(header.data(), static_cast<std::streamsize>(header_bytes));
  const auto entry = nlohmann::json::parse(header).at(tensor);
  EXPECT_EQ(entry["dtype"], "BF16");
  stream.seekp(static_cast<std::streamoff>(8 + header_bytes + entry["data_offsets"][0].get<std::uint64_t>()));
  const std::vector<std::uint16_t> values(count, value);  // little-endian, as the file
  stream.write(reinterpret_cast<const char*>(values.data()), 2 * count);
  return dir;
}

// Found by fuzz_llama2c: a vocab size of INT32_MIN (negated as the untied-classifier marker) was undefined
// behaviour (UBSan); now one error line.
TEST(HostileModel, Llama2cVocabSizeOfInt32MinIsRefused) {
  const auto file = test::source_dir() / "tests" / "corpus" / "regressions" / "llama2c-vocab-int-min.bin";
  const test::TempDir tmp;
  const auto message = test::expect_cli_fails("inspect " + quote(file), tmp.path());
  EXPECT_NE(message.find("vocab size -2147483648 out of range"), std::string::npos) << message;
}

TEST(HostileModel, NonFiniteWeightsAreRefusedWithTheTensorName) {
  FBQ_REQUIRE_FILE(test::bundled_model() / "model.safetensors");
  const test::TempDir tmp;
  const auto model = model_with(tmp, "model.layers.2.self_attn.o_proj.weight", 1, kBf16Inf);
  const auto message = expect_quantize_fails(model, "", tmp);
  EXPECT_NE(message.find("'model.layers.2.self_attn.o_proj.weight' has 1 non-finite values"), std::string::npos) << message;
}

TEST(HostileModel, ActivationsThatOverflowNameTheLinearWhereTheyAppear) {
  FBQ_REQUIRE_FILE(test::bundled_model() / "model.safetensors");
  const test::TempDir tmp;
  // Finite weights (the loader refuses Inf) that overflow float32 once multiplied: a norm weight of 3.4e38.
  const auto model = model_with(tmp, "model.layers.3.input_layernorm.weight", 384, kBf16Max);
  const auto message = expect_quantize_fails(model, "", tmp);
  EXPECT_NE(message.find("model.layers.3."), std::string::npos) << message;
  EXPECT_NE(message.find(": non-finite activations in its calibration input (Inf/NaN)"), std::string::npos) << message;
}

}  // namespace
}  // namespace fbq
