// GGUF files: block dequantization against the ggml block formulas (values chosen by hand), metadata
// round trips through GgufWriter, one test per kind of bad input, and stories260K.gguf against the same
// weights as a llama2.c checkpoint.
#include <cmath>
#include <cstring>

#include "io/dtype.h"
#include "io/gguf.h"
#include "io/gguf_blocks.h"
#include "io/gguf_writer.h"
#include "model/model.h"
#include "model/transformer.h"
#include "test_stories260k.h"
#include "test_support.h"
#include "util/error.h"

namespace fbq {
namespace {

template <typename Block>
std::vector<std::uint8_t> raw_bytes(const Block& block) {
  std::vector<std::uint8_t> bytes(sizeof block);
  std::memcpy(bytes.data(), &block, sizeof block);
  return bytes;
}

// A quantized tensor as the test builds it: the block bytes and the values the ggml formulas define.
struct QuantCase {
  std::string name;
  GgmlType type;
  std::vector<std::uint8_t> bytes;
  std::vector<float> expected;
};

// Codes cycle through [0, levels) with a stride coprime to it, so every code value appears.
int code(int i, int levels) { return (i * 7 + 3) % levels; }

QuantCase q8_0_case() {
  BlockQ8_0 b{};
  b.d = float_to_half(0.5f);
  std::vector<float> expected;
  for (int j = 0; j < 32; ++j) {
    b.qs[j] = static_cast<std::int8_t>(code(j, 256) - 128);
    expected.push_back(b.qs[j] * 0.5f);
  }
  return {"q8_0", GgmlType::Q8_0, raw_bytes(b), expected};
}

// Q4_0 / Q4_1 / Q5_0 / Q5_1: element j's low four bits in qs[j % 16] (low nibble for j < 16), its fifth bit
// (Q5) at bit j of qh. `value(q)` is the block formula.
template <typename Block>
QuantCase small_case(std::string name, GgmlType type, int bits, float d, float m, float (*value)(int, float, float)) {
  Block b{};
  b.d = float_to_half(d);
  if constexpr (requires { b.m; }) b.m = float_to_half(m);
  std::uint32_t qh = 0;
  std::vector<float> expected;
  for (int j = 0; j < 32; ++j) {
    const int q = code(j, 1 << bits);
    b.qs[j % 16] |= static_cast<std::uint8_t>((q & 0xF) << (j < 16 ? 0 : 4));
    qh |= static_cast<std::uint32_t>(q >> 4) << j;
    expected.push_back(value(q, d, m));
  }
  if constexpr (requires { b.qh; }) std::memcpy(b.qh, &qh, 4);
  return {std::move(name), type, raw_bytes(b), expected};
}

// Q4_K / Q5_K: 8 sub-blocks of 32 with six-bit scale sc[s] and min mn[s]; element 32s + l has its low nibble
// in qs[32 (s / 2) + l] (low nibble for even s) and (Q5_K) its fifth bit at bit s of qh[l].
template <typename Block>
QuantCase k_case(std::string name, GgmlType type, int bits) {
  const float d = 0.5f, dmin = 0.25f;
  const int sc[8] = {1, 63, 17, 32, 5, 48, 60, 33}, mn[8] = {0, 2, 63, 31, 16, 47, 1, 62};
  Block b{};
  b.d = float_to_half(d);
  b.dmin = float_to_half(dmin);
  for (int j = 0; j < 4; ++j) {  // the 12-byte packing that ggml's get_scale_min_k4 unpacks
    b.scales[j] = static_cast<std::uint8_t>(sc[j] | ((sc[j + 4] >> 4) << 6));
    b.scales[j + 4] = static_cast<std::uint8_t>(mn[j] | ((mn[j + 4] >> 4) << 6));
    b.scales[j + 8] = static_cast<std::uint8_t>((sc[j + 4] & 0xF) | ((mn[j + 4] & 0xF) << 4));
  }
  std::vector<float> expected;
  for (int s = 0; s < 8; ++s)
    for (int l = 0; l < 32; ++l) {
      const int q = code(32 * s + l, 1 << bits);
      b.qs[32 * (s / 2) + l] |= static_cast<std::uint8_t>((q & 0xF) << (s % 2 ? 4 : 0));
      if constexpr (requires { b.qh; }) b.qh[l] |= static_cast<std::uint8_t>((q >> 4) << s);
      expected.push_back(d * sc[s] * q - dmin * mn[s]);
    }
  return {std::move(name), type, raw_bytes(b), expected};
}

// Q6_K: element e = 128h + 32k + l has scale scales[e / 16]; its low nibble is in ql[64h + l + 32 (k % 2)]
// (high nibble for k >= 2), its top two bits at bits 2k, 2k+1 of qh[32h + l].
QuantCase q6_k_case() {
  const float d = 0.5f;
  BlockQ6_K b{};
  b.d = float_to_half(d);
  for (int i = 0; i < 16; ++i) b.scales[i] = static_cast<std::int8_t>(code(i, 256) - 128);
  std::vector<float> expected;
  for (int e = 0; e < 256; ++e) {
    const int h = e / 128, k = (e % 128) / 32, l = e % 32, q = code(e, 64);
    b.ql[64 * h + l + 32 * (k % 2)] |= static_cast<std::uint8_t>((q & 0xF) << (k >= 2 ? 4 : 0));
    b.qh[32 * h + l] |= static_cast<std::uint8_t>((q >> 4) << (2 * k));
    expected.push_back(d * b.scales[e / 16] * (q - 32));
  }
  return {"q6_k", GgmlType::Q6_K, raw_bytes(b), expected};
}

std::vector<QuantCase> quant_cases() {
  return {
      q8_0_case(),
      small_case<BlockQ4_0>("q4_0", GgmlType::Q4_0, 4, 0.5f, 0, [](int q, float d, float) { return (q - 8) * d; }),
      small_case<BlockQ4_1>("q4_1", GgmlType::Q4_1, 4, 0.5f, -1.25f, [](int q, float d, float m) { return q * d + m; }),
      small_case<BlockQ5_0>("q5_0", GgmlType::Q5_0, 5, 0.25f, 0, [](int q, float d, float) { return (q - 16) * d; }),
      small_case<BlockQ5_1>("q5_1", GgmlType::Q5_1, 5, 0.25f, 3.5f, [](int q, float d, float m) { return q * d + m; }),
      k_case<BlockQ4_K>("q4_k", GgmlType::Q4_K, 4),
      k_case<BlockQ5_K>("q5_k", GgmlType::Q5_K, 5),
      q6_k_case(),
  };
}

class Gguf : public ::testing::Test {
 protected:
  std::filesystem::path write(const std::string& bytes) {
    const auto path = tmp_.path() / fmt::format("file{}.gguf", files_++);
    test::write_file(path, bytes);
    return path;
  }

  // GgufFile refuses the bytes with a message containing `expected`; `fbq inspect` fails with one line.
  void expect_rejected(const std::string& bytes, const std::string& expected) {
    const auto path = write(bytes);
    try {
      GgufFile file(path);
      ADD_FAILURE() << "reading should fail with '" << expected << "'";
    } catch (const Error& e) {
      EXPECT_NE(std::string(e.what()).find(expected), std::string::npos) << e.what();
    }
    test::expect_inspect_fails(path, tmp_.path());
  }

  test::TempDir tmp_;
  int files_ = 0;
};

template <typename T>
void patch(std::string& bytes, std::size_t at, T value) {
  std::memcpy(bytes.data() + at, &value, sizeof value);
}

// Byte position of the offset field in the tensor info of `name` (written by GgufWriter, `n_dims` dims).
std::size_t offset_field(const std::string& bytes, const std::string& name, int n_dims) {
  return bytes.find(name) + name.size() + 4 + 8 * n_dims + 4;
}

std::vector<std::uint8_t> zeros(std::size_t n) { return std::vector<std::uint8_t>(n); }

// Two F32 tensors of 16 floats (64 bytes each): at data offsets 0 and 64.
std::string two_tensor_file() {
  GgufWriter writer;
  writer.set("general.architecture", gguf_string("llama"));
  writer.add_tensor("first", GgmlType::F32, {16}, zeros(64));
  writer.add_tensor("second", GgmlType::F32, {16}, zeros(64));
  return writer.bytes();
}

TEST_F(Gguf, QuantizedBlocksDequantizeToTheGgmlFormulas) {
  GgufWriter writer;
  const auto cases = quant_cases();
  for (const auto& c : cases)
    writer.add_tensor(c.name, c.type, {static_cast<std::int64_t>(c.expected.size())}, c.bytes);
  const GgufFile file(write(writer.bytes()));
  for (const auto& c : cases) {
    const auto* tensor = file.find_tensor(c.name);
    ASSERT_NE(tensor, nullptr) << c.name;
    EXPECT_EQ(tensor->type, c.type);
    EXPECT_EQ(dequantize_gguf_tensor(*tensor, file.path()), c.expected) << c.name;
  }
}

TEST_F(Gguf, FloatTensorsConvertExactly) {
  const std::vector<float> values = {1.0f, -2.5f, 0.0f, 61440.0f, 1.0f / 1024, -0.375f};
  std::vector<std::uint8_t> f32(values.size() * 4), f16, bf16;
  std::memcpy(f32.data(), values.data(), f32.size());
  for (const float v : values) {
    const std::uint16_t half = float_to_half(v);
    std::uint32_t word;
    std::memcpy(&word, &v, 4);
    const std::uint16_t brain = static_cast<std::uint16_t>(word >> 16);  // all values are exact in bf16
    f16.insert(f16.end(), {static_cast<std::uint8_t>(half), static_cast<std::uint8_t>(half >> 8)});
    bf16.insert(bf16.end(), {static_cast<std::uint8_t>(brain), static_cast<std::uint8_t>(brain >> 8)});
  }
  GgufWriter writer(/*alignment=*/64);
  writer.add_tensor("f32", GgmlType::F32, {3, 2}, f32);
  writer.add_tensor("f16", GgmlType::F16, {3, 2}, f16);
  writer.add_tensor("bf16", GgmlType::BF16, {3, 2}, bf16);
  const GgufFile file(write(writer.bytes()));
  EXPECT_EQ(file.alignment(), 64u);
  EXPECT_EQ(file.data_offset() % 64, 0u);
  for (const char* name : {"f32", "f16", "bf16"}) {
    const auto* tensor = file.find_tensor(name);
    ASSERT_NE(tensor, nullptr);
    EXPECT_EQ(tensor->dims, (std::vector<std::int64_t>{3, 2}));
    EXPECT_EQ(tensor->offset % 64, 0u);
    EXPECT_EQ(dequantize_gguf_tensor(*tensor, file.path()), values) << name;
  }
}

// Found by fuzz_gguf: a tensor with a zero dimension handed memcpy a null pointer.
TEST_F(Gguf, EmptyTensorDequantizesToNothing) {
  GgufWriter writer;
  writer.add_tensor("empty", GgmlType::F32, {0, 2}, {});
  const GgufFile file(write(writer.bytes()));
  EXPECT_EQ(file.tensors().at(0).numel(), 0);
  EXPECT_TRUE(dequantize_gguf_tensor(file.tensors().at(0), file.path()).empty());
}

TEST_F(Gguf, MetadataOfEveryTypeRoundTrips) {
  GgufWriter writer;
  writer.set("u8", gguf_int(GgufType::UINT8, 200));
  writer.set("i8", gguf_int(GgufType::INT8, -100));
  writer.set("u16", gguf_int(GgufType::UINT16, 60000));
  writer.set("i16", gguf_int(GgufType::INT16, -30000));
  writer.set("u32", gguf_int(GgufType::UINT32, 4000000000));
  writer.set("i32", gguf_int(GgufType::INT32, -2000000000));
  writer.set("u64", gguf_uint64(0x8000000000000005ull));
  writer.set("i64", gguf_int(GgufType::INT64, -(std::int64_t{1} << 62)));
  writer.set("f32", gguf_float(GgufType::FLOAT32, 1.5));
  writer.set("f64", gguf_float(GgufType::FLOAT64, 1e-300));
  writer.set("bool", gguf_bool(true));
  writer.set("string", gguf_string("h\xc3\xa9llo\n"));
  writer.set("strings", gguf_string_array({"a", "", "ccc"}));
  writer.set("u8s", gguf_int_array(GgufType::UINT8, {0, 255}));
  writer.set("i16s", gguf_int_array(GgufType::INT16, {-32768, 32767}));
  writer.set("i32s", gguf_int_array(GgufType::INT32, {2, 3, -6}));
  writer.set("u64s", gguf_int_array(GgufType::UINT64, {7}));
  writer.set("f32s", gguf_float_array(GgufType::FLOAT32, {0.5, -2}));
  writer.set("f64s", gguf_float_array(GgufType::FLOAT64, {1e100}));
  writer.set("bools", gguf_bool_array({true, false, true}));
  writer.set("empty", gguf_int_array(GgufType::INT32, {}));
  const GgufFile file(write(writer.bytes()));

  EXPECT_EQ(file.version(), 3u);
  EXPECT_EQ(file.alignment(), 32u);
  EXPECT_EQ(file.metadata().size(), 21u);
  EXPECT_EQ(file.get_int("u8"), 200);
  EXPECT_EQ(file.get_int("i8"), -100);
  EXPECT_EQ(file.get_int("u16"), 60000);
  EXPECT_EQ(file.get_int("i16"), -30000);
  EXPECT_EQ(file.get_int("u32"), 4000000000);
  EXPECT_EQ(file.get_int("i32"), -2000000000);
  EXPECT_EQ(file.find("u64")->unsigned_value, 0x8000000000000005ull);
  EXPECT_EQ(file.find("u64")->to_string(), "9223372036854775813");
  EXPECT_EQ(file.get_int("i64"), -(std::int64_t{1} << 62));
  EXPECT_EQ(file.get_float("f32"), 1.5);
  EXPECT_EQ(file.get_float("f64"), 1e-300);
  EXPECT_EQ(file.get_float("u8"), 200.0) << "an integer reads as a float";
  EXPECT_EQ(file.get_bool("bool"), true);
  EXPECT_EQ(file.get_string("string"), "h\xc3\xa9llo\n");
  EXPECT_EQ(file.get_string_array("strings"), (std::vector<std::string>{"a", "", "ccc"}));
  EXPECT_EQ(file.get_int_array("u8s"), (std::vector<std::int64_t>{0, 255}));
  EXPECT_EQ(file.get_int_array("i16s"), (std::vector<std::int64_t>{-32768, 32767}));
  EXPECT_EQ(file.get_int_array("i32s"), (std::vector<std::int64_t>{2, 3, -6}));
  EXPECT_EQ(file.get_int_array("u64s"), (std::vector<std::int64_t>{7}));
  EXPECT_EQ(file.get_float_array("f32s"), (std::vector<double>{0.5, -2}));
  EXPECT_EQ(file.get_float_array("f64s"), (std::vector<double>{1e100}));
  EXPECT_EQ(std::get<std::vector<bool>>(file.find("bools")->value), (std::vector<bool>{true, false, true}));
  EXPECT_EQ(file.get_int_array("empty"), std::vector<std::int64_t>{});
  EXPECT_EQ(file.find("i32s")->element_type, GgufType::INT32);
  EXPECT_EQ(file.find("i32s")->array_size(), 3u);
  EXPECT_EQ(file.find("i32s")->to_string(2), "[2, 3, ...] (3 elements)");
  EXPECT_EQ(file.find("string")->to_string(), "\"h\xc3\xa9llo\\n\"");

  EXPECT_EQ(file.get_string("absent"), std::nullopt);
  EXPECT_EQ(file.get_int_array("absent"), std::nullopt);
  EXPECT_THROW(file.get_int("u64"), Error) << "beyond int64";
  try {
    file.get_string("u32");
    ADD_FAILURE() << "a uint32 is not a string";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("metadata key 'u32' is uint32, not a string"), std::string::npos) << e.what();
  }
  EXPECT_THROW(file.get_float_array("strings"), Error);
}

TEST_F(Gguf, VersionTwoReads) {
  auto bytes = two_tensor_file();
  patch<std::uint32_t>(bytes, 4, 2);
  const GgufFile file(write(bytes));
  EXPECT_EQ(file.version(), 2u);
  EXPECT_EQ(file.tensors().size(), 2u);
  EXPECT_EQ(file.tensors()[1].offset, 64u);
}

TEST_F(Gguf, InspectListsMetadataAndTensors) {
  const auto path = write(two_tensor_file());
  const auto out = tmp_.path() / "out.txt";
  ASSERT_EQ(std::system(fmt::format("'{}' inspect '{}' >'{}'", FBQ_CLI_PATH, path.string(), out.string()).c_str()), 0);
  const auto text = test::read_file(out);
  for (const char* expected : {"GGUF v3, alignment 32", "1 metadata keys, 2 tensors", "general.architecture",
                               "\"llama\"", "second", "F32"})
    EXPECT_NE(text.find(expected), std::string::npos) << expected << " in\n" << text;
}

TEST_F(Gguf, RejectsBadMagic) {
  auto bytes = two_tensor_file();
  bytes[3] = 'X';
  expect_rejected(bytes, "not a GGUF file");
}

TEST_F(Gguf, RejectsUnsupportedVersions) {
  auto bytes = two_tensor_file();
  patch<std::uint32_t>(bytes, 4, 1);
  expect_rejected(bytes, "GGUF version 1 is not supported");
  patch<std::uint32_t>(bytes, 4, 4);
  expect_rejected(bytes, "unsupported GGUF version 4");
}

TEST_F(Gguf, RejectsTruncatedHeader) { expect_rejected(two_tensor_file().substr(0, 12), "truncated: the tensor count at byte 8 needs 8 bytes"); }

TEST_F(Gguf, RejectsStringLengthBeyondFile) {
  auto bytes = two_tensor_file();
  patch<std::uint64_t>(bytes, 24, std::uint64_t{1} << 60);  // the first key's length
  expect_rejected(bytes, "claims 1152921504606846976 bytes, beyond the end of the file");
}

TEST_F(Gguf, RejectsArrayLengthBeyondFile) {
  GgufWriter writer;
  writer.set("k", gguf_int_array(GgufType::INT32, {1, 2}));
  auto bytes = writer.bytes();
  patch<std::uint64_t>(bytes, 24 + 8 + 1 + 4 + 4, std::uint64_t{1} << 60);  // key, value type, element type
  expect_rejected(bytes, "array length 1152921504606846976 at byte 41 cannot fit");
}

TEST_F(Gguf, RejectsTensorCountOverflow) {
  auto bytes = two_tensor_file();
  patch<std::uint64_t>(bytes, 8, ~std::uint64_t{0});
  expect_rejected(bytes, "tensor count 18446744073709551615 at byte 8 cannot fit");
}

TEST_F(Gguf, RejectsDimensionOverflow) {
  GgufWriter writer;
  writer.add_tensor("huge", GgmlType::F32, {std::int64_t{1} << 32, std::int64_t{1} << 32}, zeros(64));
  expect_rejected(writer.bytes(), "tensor 'huge' has dimensions [4294967296, 4294967296] whose product overflows int64");
}

TEST_F(Gguf, RejectsTensorDataBeyondFile) {
  const auto bytes = two_tensor_file();
  expect_rejected(bytes.substr(0, bytes.size() - 1), "tensor 'second' needs 64 bytes at data offset 64, beyond the end");
}

TEST_F(Gguf, RejectsOverlappingTensors) {
  auto bytes = two_tensor_file();
  patch<std::uint64_t>(bytes, offset_field(bytes, "second", 1), 32);
  expect_rejected(bytes, "tensors 'first' and 'second' overlap");
}

TEST_F(Gguf, RejectsUnknownTensorType) {
  GgufWriter writer;
  writer.add_tensor("odd", static_cast<GgmlType>(99), {16}, zeros(64));
  expect_rejected(writer.bytes(), "tensor 'odd' has unknown ggml type 99");
}

TEST_F(Gguf, RejectsMisalignedOffset) {
  auto bytes = two_tensor_file();
  patch<std::uint64_t>(bytes, offset_field(bytes, "second", 1), 68);
  expect_rejected(bytes, "tensor 'second' has offset 68, not a multiple of the alignment 32");
}

TEST_F(Gguf, RejectsRowsThatAreNotWholeBlocks) {
  GgufWriter writer;
  writer.add_tensor("q", GgmlType::Q4_0, {16, 2}, zeros(18));
  expect_rejected(writer.bytes(), "rows of 16 elements, not a multiple of the Q4_0 block size 32");
}

TEST_F(Gguf, RejectsDuplicateNames) {
  GgufWriter keys;
  keys.set("k", gguf_bool(true));
  keys.set("k", gguf_bool(false));
  expect_rejected(keys.bytes(), "duplicate metadata key 'k'");
  GgufWriter tensors;
  tensors.add_tensor("t", GgmlType::F32, {16}, zeros(64));
  tensors.add_tensor("t", GgmlType::F32, {16}, zeros(64));
  expect_rejected(tensors.bytes(), "duplicate tensor name 't'");
}

TEST_F(Gguf, RejectsBadAlignment) {
  GgufWriter writer(/*alignment=*/48);
  expect_rejected(writer.bytes(), "general.alignment 48 is not a power of two");
}

TEST_F(Gguf, RejectsOtherArchitectures) {
  GgufWriter writer;
  writer.set("general.architecture", gguf_string("mamba"));
  const auto path = write(writer.bytes());
  try {
    LoadOptions options;
    options.require_tokenizer = false;
    load_model(path, options);
    ADD_FAILURE() << "a mamba GGUF should be refused";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("architecture 'mamba' is not supported"), std::string::npos) << e.what();
  }
}

// The fuzzer's seed corpus (written with GgufWriter) must stay valid, or the fuzzer starts from nothing.
TEST(GgufCorpus, SeedFilesParse) {
  int files = 0;
  for (const auto& entry : std::filesystem::directory_iterator(test::source_dir() / "tests" / "corpus" / "gguf")) {
    const GgufFile file(entry.path());
    for (const auto& tensor : file.tensors()) EXPECT_NO_THROW(dequantize_gguf_tensor(tensor, file.path()));
    ++files;
  }
  EXPECT_GE(files, 5);
}

class GgufStories260K : public ::testing::Test {
 protected:
  static std::filesystem::path dir() { return test::shared_dir() / "models" / "stories260K"; }
  // The .gguf brings its own vocabulary (tokenizer.ggml.model = llama); the .bin uses tok512.model.
  static Model load(const std::string& file) {
    LoadOptions options;
    if (!file.ends_with(".gguf")) options.tokenizer = dir() / "tok512.model";
    return load_model(dir() / file, options);
  }
};

TEST_F(GgufStories260K, LogitsEqualTheLlama2cCheckpoint) {
  FBQ_REQUIRE_FILE(dir() / "stories260K.gguf");
  FBQ_REQUIRE_FILE(dir() / "stories260K.bin");
  const auto gguf = load("stories260K.gguf");
  const auto bin = load("stories260K.bin");
  EXPECT_EQ(gguf.format, "gguf");
  EXPECT_EQ(gguf.config.dim, bin.config.dim);
  EXPECT_EQ(gguf.config.n_kv_heads, bin.config.n_kv_heads);
  EXPECT_EQ(gguf.config.vocab_size, bin.config.vocab_size);
  const std::vector<int> tokens = {1, 403, 407, 261, 378, 5, 100, 499, 2, 17, 300, 42};
  InferenceSession gguf_session(gguf), bin_session(bin);
  const auto from_gguf = gguf_session.forward(tokens, 0, true);
  const auto from_bin = bin_session.forward(tokens, 0, true);
  ASSERT_EQ(from_gguf.size(), from_bin.size());
  for (std::size_t i = 0; i < from_gguf.size(); ++i) ASSERT_NEAR(from_gguf[i], from_bin[i], 1e-5f) << "logit " << i;
}

TEST_F(GgufStories260K, GreedyMatchesLlama2c) {
  FBQ_REQUIRE_FILE(dir() / "stories260K.gguf");
  EXPECT_EQ(test::llama2c_greedy_256(load("stories260K.gguf")), test::read_file(dir() / "reference_greedy_256.txt"));
}

TEST_F(GgufStories260K, EmbeddedVocabularyTokenizesLikeTheSentencePieceModel) {
  FBQ_REQUIRE_FILE(dir() / "stories260K.gguf");
  FBQ_REQUIRE_FILE(dir() / "tok512.model");
  const auto embedded = load_tokenizer(dir() / "stories260K.gguf");
  const auto sentencepiece = load_tokenizer(dir() / "tok512.model");
  ASSERT_EQ(embedded->vocab_size(), sentencepiece->vocab_size());
  for (const std::string text : {"Once upon a time, there was a little girl named Lily.", "She said: \"Wow!\" 123",
                                 "Tom and Sue ran to the park\nand played."})
    EXPECT_EQ(embedded->encode(text, true), sentencepiece->encode(text, true)) << text;
}

// A GGUF is an FP source for quantize: the packed output carries the GGUF's vocabulary as a vocab-only
// tokenizer.gguf and runs with it.
TEST_F(GgufStories260K, QuantizesAndKeepsItsVocabulary) {
  const auto text = test::shared_dir() / "data" / "moby-test.txt";
  FBQ_REQUIRE_FILE(dir() / "stories260K.gguf");
  FBQ_REQUIRE_FILE(text);
  const test::TempDir scratch;
  const auto out = scratch.path() / "q8";
  const auto command = std::string("'") + FBQ_CLI_PATH + "' quantize '" + (dir() / "stories260K.gguf").string() +
                       "' -o '" + out.string() + "' --method rtn --bits 8 --group-size 4 --no-eval --calib '" + text.string() +
                       "' --nsamples 4 --seqlen 64 --quiet >/dev/null 2>&1";
  ASSERT_EQ(std::system(command.c_str()), 0) << command;
  ASSERT_TRUE(std::filesystem::exists(out / "tokenizer.gguf"));
  const auto packed = load_model(out);
  const auto source = load_tokenizer(dir() / "stories260K.gguf");
  const std::string sample = "Once upon a time, Lily saw a big dog.";
  EXPECT_EQ(packed.tokenizer->encode(sample, true), source->encode(sample, true));
  EXPECT_EQ(packed.tokenizer->vocab_size(), source->vocab_size());
}

}  // namespace
}  // namespace fbq
