// GPTQ export and import (docs/FORMAT.md "GPTQ export and import"): the layout codec, `fbq export --to gptq`
// checked by an independent reader (tests/oracle/gptq_reader.py: its own safetensors parser, AutoGPTQ's
// unpack and pack()), the PEFT adapter, export → import byte for byte and in perplexity, a desc_act
// checkpoint with a shuffled g_idx, and every refusal as one error line.
#include <fmt/core.h>

#include <nlohmann/json.hpp>
#include <numeric>
#include <random>

#include "eval/perplexity.h"
#include "export/gptq_export.h"
#include "io/dtype.h"
#include "io/safetensors.h"
#include "io/safetensors_writer.h"
#include "io/text_files.h"
#include "model/model.h"
#include "pack/gptq_layout.h"
#include "pack/packed_linear.h"
#include "quant/quantize_model.h"
#include "test_support.h"
#include "util/error.h"

namespace fbq {
namespace {

namespace fs = std::filesystem;
using json = nlohmann::json;

constexpr const char* kProjections[] = {"self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj", "self_attn.o_proj",
                                        "mlp.gate_proj",    "mlp.up_proj",      "mlp.down_proj"};

std::vector<float> random_values(std::size_t count, std::uint64_t seed, float spread = 1.0f) {
  std::mt19937 rng(static_cast<unsigned>(seed));
  std::normal_distribution<float> normal(0.0f, spread);
  std::vector<float> values(count);
  for (auto& v : values) v = normal(rng);
  return values;
}

std::vector<int> random_permutation(int n, std::uint64_t seed) {
  std::vector<int> order(n);
  std::iota(order.begin(), order.end(), 0);
  std::shuffle(order.begin(), order.end(), std::mt19937(static_cast<unsigned>(seed)));
  return order;
}

PackedWeights random_packed(int rows, int cols, int bits, int group, std::uint64_t seed) {
  const auto weights = random_values(static_cast<std::size_t>(rows) * cols, seed);
  return pack(quantize_rtn(weights.data(), rows, cols, {bits, group}));
}

// Projection `index` (kProjections order) of decoder layer `layer`, which must be packed.
const PackedLinear& projection(const Model& model, int layer, int index) {
  const auto& l = model.layers[layer];
  const Linear* linears[] = {l.q_proj.get(),    l.k_proj.get(),  l.v_proj.get(),   l.o_proj.get(),
                             l.gate_proj.get(), l.up_proj.get(), l.down_proj.get()};
  return dynamic_cast<const PackedLinear&>(*linears[index]);
}

std::vector<int> inverse(const std::vector<int>& order) {
  std::vector<int> inv(order.size());
  for (std::size_t j = 0; j < order.size(); ++j) inv[order[j]] = static_cast<int>(j);
  return inv;
}

// ---- the codec ----

TEST(GptqLayout, IdentityOrderRoundTripsByteForByte) {
  for (const int bits : {2, 3, 4, 8})
    for (const auto format : {GptqZeroFormat::v1, GptqZeroFormat::v2}) {
      auto w = random_packed(64, 256, bits, 32, bits);
      if (format == GptqZeroFormat::v1 && count_zero_points(w, 0) > 0) continue;
      const auto t = to_gptq(w, {}, format);
      EXPECT_EQ(t.qweight.size(), static_cast<std::size_t>(256 * bits / 32 * 64));
      for (int k = 0; k < 256; ++k) ASSERT_EQ(t.g_idx[k], k / 32);
      const auto back = from_gptq(t, format, "layer");
      EXPECT_TRUE(back.input_order.empty());
      EXPECT_EQ(back.weights.codes, w.codes) << bits << " bits";
      EXPECT_EQ(back.weights.zeros, w.zeros) << bits << " bits";
      EXPECT_EQ(back.weights.scales, w.scales) << bits << " bits";
    }
}

// A shuffled g_idx (desc_act) comes back as contiguous groups plus an input order that maps every input
// column to the same code, scale and zero point it had.
TEST(GptqLayout, ShuffledOrderKeepsEveryColumnsCodeAndGroup) {
  for (const int bits : {2, 3, 4, 8}) {
    const int rows = 32, cols = 128, group = 32;
    const auto w = random_packed(rows, cols, bits, group, 10 + bits);
    const auto order = random_permutation(cols, bits);
    const auto t = to_gptq(w, order, GptqZeroFormat::v2);
    const auto back = from_gptq(t, GptqZeroFormat::v2, "layer");
    ASSERT_EQ(back.input_order.size(), static_cast<std::size_t>(cols));
    const auto original = unpack(w), decoded = unpack(back.weights);
    const auto inv = inverse(order), inv_back = inverse(back.input_order);
    for (int r = 0; r < rows; ++r)
      for (int k = 0; k < cols; ++k) {
        const int before = inv[k], after = inv_back[k];
        ASSERT_EQ(original.codes[r * cols + before], decoded.codes[r * cols + after]) << bits << " bits, column " << k;
        ASSERT_EQ(original.group(r, before).zero, decoded.group(r, after).zero);
        ASSERT_EQ(original.group(r, before).scale, decoded.group(r, after).scale);
      }
  }
}

// GPTQ "sym" (z = 2^(b−1)) in v1 is the well-known words: 0x55555555 (2-bit), 0x77777777 (4-bit), 0x7F7F7F7F
// (8-bit); 3-bit's z − 1 = 3 repeats across each run of three words.
TEST(GptqLayout, SymmetricZerosAreTheKnownV1Words) {
  const std::map<int, std::vector<std::uint32_t>> words = {
      {2, {0x55555555u}}, {3, {0xDB6DB6DBu, 0xB6DB6DB6u, 0x6DB6DB6Du}}, {4, {0x77777777u}}, {8, {0x7F7F7F7Fu}}};
  for (const auto& [bits, expected] : words) {
    auto w = random_packed(64, 128, bits, 32, bits);
    for (std::int64_t i = 0; i < static_cast<std::int64_t>(w.rows) * w.groups_per_row(); ++i)
      write_bits(w.zeros.data(), i, bits, 1u << (bits - 1));
    const auto t = to_gptq(w, {}, GptqZeroFormat::v1);
    for (std::size_t i = 0; i < t.qzeros.size(); ++i)
      ASSERT_EQ(t.qzeros[i], expected[i % expected.size()]) << bits << " bits, word " << i;
    EXPECT_EQ(from_gptq(t, GptqZeroFormat::v1, "layer").weights.zeros, w.zeros);
  }
}

TEST(GptqLayout, V1RefusesZeroPointZero) {
  auto w = random_packed(32, 128, 4, 32, 3);
  write_bits(w.zeros.data(), 5, 4, 0);
  EXPECT_EQ(count_zero_points(w, 0) >= 1, true);
  EXPECT_THROW(to_gptq(w, {}, GptqZeroFormat::v1), Error);
  const auto t = to_gptq(w, {}, GptqZeroFormat::v2);
  EXPECT_EQ(from_gptq(t, GptqZeroFormat::v2, "layer").weights.zeros, w.zeros);
}

TEST(GptqLayout, InconsistentTensorsAreOneClearError) {
  const auto good = to_gptq(random_packed(32, 128, 4, 32, 4), {}, GptqZeroFormat::v2);
  const auto expect_error = [&](const GptqTensors& t, GptqZeroFormat format, const std::string& needle) {
    try {
      from_gptq(t, format, "model.layers.0.mlp.up_proj");
      ADD_FAILURE() << "accepted: " << needle;
    } catch (const Error& e) {
      EXPECT_NE(std::string(e.what()).find(needle), std::string::npos) << e.what();
    }
  };
  auto t = good;
  t.bits = 5;
  expect_error(t, GptqZeroFormat::v2, "bits 5");
  t = good;
  t.qweight.pop_back();
  expect_error(t, GptqZeroFormat::v2, "up_proj.qweight");
  t = good;
  t.scales.resize(3);
  expect_error(t, GptqZeroFormat::v2, "up_proj.scales");
  t = good;
  t.g_idx[7] = 4;
  expect_error(t, GptqZeroFormat::v2, "up_proj.g_idx[7] = 4");
  t = good;
  t.g_idx[7] = 1;  // group 0 loses a column, group 1 gains one
  expect_error(t, GptqZeroFormat::v2, "up_proj.g_idx: group 0 has 31");
  t = good;
  t.qzeros[0] |= 0xF;  // field 0 = 15: z = 16 in v1
  expect_error(t, GptqZeroFormat::v1, "up_proj.qzeros");
  EXPECT_THROW(to_gptq(random_packed(20, 128, 3, 32, 5), {}, GptqZeroFormat::v2), Error);  // N·b not whole words
}

// ---- the exporter on real quantized models ----

struct Recipe {
  const char* method;
  int bits;
  int rank;
  double branch_bits;
  bool act_order;
  ZeroPoints zero_points = ZeroPoints::any;
};

// Each method at one width (all widths covered), quantized once per test binary with 4 short windows.
const std::map<std::string, Recipe>& recipes() {
  static const std::map<std::string, Recipe> all = {
      {"rtn-w4", {"rtn", 4, 0, 0, false}},        {"rtn-w3", {"rtn", 3, 0, 0, false}},
      {"rtn-w2", {"rtn", 2, 0, 0, false}},        {"gptq-act-w3", {"gptq", 3, 0, 0, true}},
      {"lqer-w4", {"lqer", 4, 0, 0.3, false}},    {"fbquant-w2", {"fbquant", 2, 4, 0, false}},
      {"awq-w4", {"awq", 4, 0, 0, false}},
      // The grids made for GPTQ: z ≥ 1 everywhere (v1 at 2 bits, where z = 0 is common otherwise), and Marlin's.
      {"fbquant-w2-gptq-zeros", {"fbquant", 2, 4, 0, false, ZeroPoints::nonzero}},
      {"gptq-w4-sym", {"gptq", 4, 0, 0, false, ZeroPoints::symmetric}}};
  return all;
}

class GptqExport : public ::testing::Test {
 protected:
  void SetUp() override {
    FBQ_REQUIRE_FILE(test::bundled_model() / "model.safetensors");
    FBQ_REQUIRE_FILE(test::shared_dir() / "data" / "train.txt");
  }

  static const test::TempDir& scratch() {
    static test::TempDir dir;
    return dir;
  }

  static fs::path packed(const std::string& key) {
    const auto out = scratch().path() / key;
    if (fs::exists(out)) return out;
    const auto& r = recipes().at(key);
    QuantizeOptions o;
    o.model = test::bundled_model();
    o.output = out;
    o.calibration_text = test::shared_dir() / "data" / "train.txt";
    o.method = r.method;
    o.method_options.spec = {r.bits, 128, r.zero_points};
    o.method_options.rank = r.rank;
    o.method_options.branch_bits = r.branch_bits;
    o.method_options.act_order = r.act_order;
    if (std::string(r.method) == "fbquant") o.method_options.params = {{"steps", "3"}, {"inner", "rtn"}};
    o.nsamples = 4;
    o.seqlen = 64;
    o.seed = 3;
    o.progress = false;
    quantize_model(o);
    return out;
  }

  static fs::path exported(const std::string& key, GptqZeroFormat format) {
    const auto out = scratch().path() / (key + "-" + checkpoint_format_name(format));
    if (!fs::exists(out)) export_gptq({packed(key), out, format});
    return out;
  }

  static Model load(const fs::path& dir) { return load_model(dir); }
};

bool numpy_available() {
  static const bool available = std::system("/usr/bin/python3 -c 'import numpy' >/dev/null 2>&1") == 0;
  return available;
}

// Runs the independent reader on `dir` into `out`; the summary it writes, or null when it failed.
json run_reader(const fs::path& dir, const fs::path& out) {
  fs::create_directories(out);
  const auto script = test::source_dir() / "tests" / "oracle" / "gptq_reader.py";
  const auto command = fmt::format("/usr/bin/python3 '{}' '{}' '{}' 2>'{}'", script.string(), dir.string(),
                                   out.string(), (out / "stderr.txt").string());
  const int status = std::system(command.c_str());
  EXPECT_EQ(status, 0) << dir << ": " << test::read_file(out / "stderr.txt");
  return status == 0 ? json::parse(test::read_file(out / "summary.json")) : json();
}

std::vector<std::uint16_t> as_half_bits(const std::vector<float>& values) {
  std::vector<std::uint16_t> bits(values.size());
  std::transform(values.begin(), values.end(), bits.begin(), float_to_half);
  return bits;
}

// The reader's codes, zero points and scales of every linear equal the packed model's own, bit for bit; its
// adapter tensors equal the packed model's f16 branch, zero-padded to the common rank.
void expect_reader_matches(const Model& source, const fs::path& reader_out, int adapter_rank) {
  for (int l = 0; l < source.config.n_layers; ++l)
    for (int p = 0; p < 7; ++p) {
      const auto name = fmt::format("model.layers.{}.{}", l, kProjections[p]);
      const auto& layer = projection(source, l, p);
      const auto own = unpack(layer.packed());
      const auto codes = test::read_npy<std::uint8_t>(reader_out / (name + ".codes.npy"), "|u1");
      ASSERT_EQ(codes.values, own.codes) << name;
      const auto zeros = test::read_npy<std::uint8_t>(reader_out / (name + ".zeros.npy"), "|u1");
      ASSERT_EQ(zeros.values.size(), own.params.size()) << name;
      for (std::size_t i = 0; i < own.params.size(); ++i) ASSERT_EQ(zeros.values[i], own.params[i].zero) << name;
      EXPECT_EQ(test::read_npy<std::uint16_t>(reader_out / (name + ".scales.npy"), "<u2").values, layer.packed().scales)
          << name;
      if (adapter_rank == 0) continue;
      const std::size_t m = layer.out_features(), n = layer.in_features(), r = layer.rank(), R = adapter_rank;
      const auto a = test::read_npy<std::uint16_t>(reader_out / (name + ".lora_A.npy"), "<u2");
      const auto b = test::read_npy<std::uint16_t>(reader_out / (name + ".lora_B.npy"), "<u2");
      ASSERT_EQ(a.shape, (std::vector<std::int64_t>{adapter_rank, static_cast<std::int64_t>(n)})) << name;
      ASSERT_EQ(b.shape, (std::vector<std::int64_t>{static_cast<std::int64_t>(m), adapter_rank})) << name;
      std::vector<std::uint16_t> padded_a(R * n, 0), padded_b(m * R, 0);
      const auto own_a = as_half_bits(layer.lora_a()), own_b = as_half_bits(layer.lora_b());
      std::copy(own_a.begin(), own_a.end(), padded_a.begin());
      for (std::size_t i = 0; i < m; ++i) std::copy_n(&own_b[i * r], r, &padded_b[i * R]);
      EXPECT_EQ(a.values, padded_a) << name;
      EXPECT_EQ(b.values, padded_b) << name;
    }
}

int max_rank(const Model& model) {
  int rank = 0;
  for (int l = 0; l < model.config.n_layers; ++l)
    for (int p = 0; p < 7; ++p) rank = std::max(rank, projection(model, l, p).rank());
  return rank;
}

TEST_F(GptqExport, IndependentReaderAgreesForEveryMethodAndWidth) {
  if (!numpy_available()) GTEST_SKIP() << "numpy oracle not available (Debian python3-numpy)";
  const std::pair<const char*, GptqZeroFormat> cases[] = {
      {"rtn-w4", GptqZeroFormat::v1},      {"rtn-w4", GptqZeroFormat::v2}, {"rtn-w3", GptqZeroFormat::v1},
      {"rtn-w2", GptqZeroFormat::v1},      {"gptq-act-w3", GptqZeroFormat::v2}, {"lqer-w4", GptqZeroFormat::v2},
      {"fbquant-w2", GptqZeroFormat::v2},  {"fbquant-w2-gptq-zeros", GptqZeroFormat::v1},
      {"gptq-w4-sym", GptqZeroFormat::v1}};
  for (const auto& [key, format] : cases) {
    SCOPED_TRACE(fmt::format("{} {}", key, checkpoint_format_name(format)));
    const auto dir = exported(key, format);
    const auto source = load(packed(key));
    const int rank = max_rank(source);
    const auto summary = run_reader(dir, scratch().path() / fmt::format("reader-{}-{}", key, checkpoint_format_name(format)));
    ASSERT_FALSE(summary.is_null());
    EXPECT_EQ(summary["linears"], 42);
    EXPECT_EQ(summary.value("adapter_rank", 0), rank);
    expect_reader_matches(source, scratch().path() / fmt::format("reader-{}-{}", key, checkpoint_format_name(format)), rank);
    const auto quant = read_json_file(dir / "config.json")["quantization_config"];
    EXPECT_EQ(quant["bits"], recipes().at(key).bits);
    EXPECT_EQ(quant["desc_act"], recipes().at(key).act_order);
    EXPECT_EQ(quant["sym"], recipes().at(key).zero_points == ZeroPoints::symmetric);
  }
}

TEST_F(GptqExport, AdapterPadsEveryModuleToOneRankWithScalingOne) {
  const auto dir = exported("lqer-w4", GptqZeroFormat::v2);
  const auto source = load(packed("lqer-w4"));
  const int rank = max_rank(source);
  const auto config = read_json_file(dir / "branch" / "adapter_config.json");
  EXPECT_EQ(config["r"], rank);
  EXPECT_EQ(config["lora_alpha"], rank);
  EXPECT_EQ(config["use_rslora"], false);
  EXPECT_EQ(config["rank_pattern"], json::object());
  EXPECT_EQ(config["target_modules"],
            (json{"q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"}));
  int smaller = 0;  // branch_bits gives the layer shapes different ranks: some modules are padded
  for (int p = 0; p < 7; ++p) smaller += projection(source, 0, p).rank() < rank;
  EXPECT_GT(smaller, 0);
  const SafetensorsFile adapter(dir / "branch" / "adapter_model.safetensors");
  EXPECT_EQ(adapter.tensors().size(), 2u * 42);
  for (const auto& tensor : adapter.tensors()) {
    EXPECT_EQ(tensor.dtype, DType::F16) << tensor.name;
    EXPECT_TRUE(tensor.name.starts_with("base_model.model.model.layers.")) << tensor.name;
  }
  EXPECT_FALSE(fs::exists(exported("rtn-w4", GptqZeroFormat::v1) / "branch"));
}

// Export → import: the same PackedWeights and branch, byte for byte, and the same perplexity (to 1e-5: 260 of
// the model's 3.15M BF16 embedding/norm values are not f16 values, so the float tensors differ slightly).
TEST_F(GptqExport, ImportGivesBackThePackedModel) {
  FBQ_REQUIRE_FILE(test::shared_dir() / "data" / "moby-test.txt");
  const std::pair<const char*, GptqZeroFormat> cases[] = {{"fbquant-w2", GptqZeroFormat::v2},
                                                           {"rtn-w3", GptqZeroFormat::v1}};
  for (const auto& [key, format] : cases) {
    SCOPED_TRACE(key);
    const auto source = load(packed(key));
    const auto imported = load(exported(key, format));
    EXPECT_EQ(imported.format, checkpoint_format_name(format));
    for (int l = 0; l < source.config.n_layers; ++l)
      for (int p = 0; p < 7; ++p) {
        const auto &a = projection(source, l, p), &b = projection(imported, l, p);
        ASSERT_EQ(a.packed().codes, b.packed().codes) << l << "/" << p;
        ASSERT_EQ(a.packed().zeros, b.packed().zeros) << l << "/" << p;
        ASSERT_EQ(a.packed().scales, b.packed().scales) << l << "/" << p;
        EXPECT_TRUE(b.input_order().empty());
        ASSERT_EQ(a.rank(), b.rank()) << l << "/" << p;
        EXPECT_EQ(a.lora_a(), b.lora_a());
        EXPECT_EQ(a.lora_b(), b.lora_b());
      }
    const auto tokens =
        source.tokenizer->encode(read_paragraph_text(test::shared_dir() / "data" / "moby-test.txt"), true);
    const PerplexityOptions options{.ctx = 256, .max_windows = 2, .progress = false};
    const double before = evaluate_perplexity(source, tokens, options).ppl;
    const double after = evaluate_perplexity(imported, tokens, options).ppl;
    EXPECT_NEAR(after / before, 1.0, 1e-5) << before << " vs " << after;
  }
}

// A tensor as raw bytes, to build modified checkpoints.
struct TensorBytes {
  DType dtype;
  std::vector<std::int64_t> shape;
  std::string bytes;
};

TensorBytes tensor_bytes(const fs::path& file, const std::string& name) {
  const SafetensorsFile st(file);
  for (const auto& t : st.tensors())
    if (t.name == name) return {t.dtype, t.shape, std::string(reinterpret_cast<const char*>(t.data.data()), t.data.size())};
  throw std::runtime_error("no tensor " + name);
}

// Rewrites a safetensors file with `tensors` in place of its own of the same name (added when it has none).
void rewrite_tensors(const fs::path& file, const std::map<std::string, TensorBytes>& tensors) {
  const auto temp = fs::path(file.string() + ".new");
  {
    const SafetensorsFile st(file);
    SafetensorsWriter writer(temp);
    for (const auto& t : st.tensors())
      if (!tensors.contains(t.name)) writer.add(t.name, t.dtype, t.shape, t.data.data(), t.data.size());
    for (const auto& [name, t] : tensors) writer.add(name, t.dtype, t.shape, t.bytes.data(), t.bytes.size());
    writer.finish();
    fs::remove(writer.data_path());
  }
  fs::rename(temp, file);
}

fs::path copy_of(const fs::path& dir, const fs::path& to) {
  fs::copy(dir, to, fs::copy_options::recursive);
  return to;
}

template <typename T>
TensorBytes tensor_of(DType dtype, std::vector<std::int64_t> shape, const std::vector<T>& values) {
  return {dtype, std::move(shape), std::string(reinterpret_cast<const char*>(values.data()), values.size() * sizeof(T))};
}

// Where every float tensor is an f16 value (here: the rtn-w4 model with its BF16 tensors rounded to F16), the
// export is exact end to end: the imported model's perplexity equals the packed model's to the bit.
TEST_F(GptqExport, F16ExactModelKeepsPerplexityToTheBit) {
  FBQ_REQUIRE_FILE(test::shared_dir() / "data" / "moby-test.txt");
  const auto dir = copy_of(packed("rtn-w4"), scratch().path() / "rtn-w4-f16");
  std::map<std::string, TensorBytes> halves;
  {
    const SafetensorsFile file(dir / "model.safetensors");
    for (const auto& t : file.tensors()) {
      if (t.dtype != DType::BF16) continue;
      std::vector<std::uint16_t> values(t.data.size() / 2);
      std::memcpy(values.data(), t.data.data(), t.data.size());
      for (auto& v : values) v = float_to_half(bf16_to_float(v));
      halves[t.name] = tensor_of(DType::F16, t.shape, values);
    }
  }
  ASSERT_FALSE(halves.empty());
  rewrite_tensors(dir / "model.safetensors", halves);
  const auto out = scratch().path() / "rtn-w4-f16-gptq";
  const auto summary = export_gptq({dir, out, GptqZeroFormat::v1});
  EXPECT_EQ(summary.float_values_changed, 0);
  EXPECT_EQ(summary.source_float_dtypes, std::vector<std::string>{"F16"});
  const auto source = load(dir), imported = load(out);
  const auto tokens =
      source.tokenizer->encode(read_paragraph_text(test::shared_dir() / "data" / "moby-test.txt"), true);
  const PerplexityOptions options{.ctx = 256, .max_windows = 2, .progress = false};
  EXPECT_EQ(evaluate_perplexity(source, tokens, options).ppl, evaluate_perplexity(imported, tokens, options).ppl);
}

// `sym` is written only when every group's zero point is 2^(b−1) (vLLM's Marlin would ignore qzeros).
TEST_F(GptqExport, SymOnlyWhenEveryGroupIsSymmetric) {
  const auto dir = copy_of(packed("rtn-w4"), scratch().path() / "rtn-w4-sym");
  std::map<std::string, TensorBytes> symmetric;
  {
    const SafetensorsFile file(dir / "model.safetensors");
    for (const auto& t : file.tensors())
      if (t.name.ends_with(".qzeros"))
        symmetric[t.name] = tensor_of(DType::I32, t.shape, std::vector<std::uint32_t>(t.data.size() / 4, 0x88888888u));
  }
  rewrite_tensors(dir / "model.safetensors", symmetric);
  const auto out = scratch().path() / "rtn-w4-sym-gptq";
  const auto summary = export_gptq({dir, out, GptqZeroFormat::v1});
  EXPECT_TRUE(summary.sym);
  EXPECT_EQ(read_json_file(out / "config.json")["quantization_config"]["sym"], true);
  for (const auto& note : summary.warnings) EXPECT_EQ(note.find("exllama"), std::string::npos) << note;
  if (numpy_available()) EXPECT_EQ(run_reader(out, scratch().path() / "reader-sym")["symmetric"], true);
  EXPECT_EQ(read_json_file(exported("rtn-w4", GptqZeroFormat::v1) / "config.json")["quantization_config"]["sym"], false);
}

// A BF16 Qwen2 with q/k/v biases (tests/oracle/arch_oracle.py): the biases are exported as F16 under their HF
// names and imported as those f16 values.
TEST_F(GptqExport, BiasesAreExportedAsF16) {
  const auto* oracle = test::oracle_output("arch_oracle.py");
  if (!oracle) GTEST_SKIP() << "PyTorch oracle not available (Debian python3-torch: scripts/setup.sh)";
  const auto tokenizer = test::shared_dir() / "models" / "stories260K" / "tok512.model";
  FBQ_REQUIRE_FILE(tokenizer);
  QuantizeOptions o;
  o.model = oracle->path() / "qwen2";
  o.tokenizer = tokenizer;
  o.output = scratch().path() / "qwen2-w4";
  o.calibration_text = test::shared_dir() / "data" / "train.txt";
  o.method = "rtn";
  o.method_options.spec = {4, 32};  // hidden size 64
  o.nsamples = 2;
  o.seqlen = 32;
  o.progress = false;
  quantize_model(o);
  const auto out = scratch().path() / "qwen2-w4-gptq";
  export_gptq({o.output, out, GptqZeroFormat::v2});
  const auto source = load(o.output), imported = load(out);
  ASSERT_TRUE(imported.config.qkv_bias);
  const SafetensorsFile file(out / "model.safetensors");
  for (int l = 0; l < source.config.n_layers; ++l)
    for (const char* kind : {"q", "k", "v"}) {
      const auto name = fmt::format("model.layers.{}.self_attn.{}_proj.bias", l, kind);
      EXPECT_TRUE(std::ranges::any_of(file.tensors(), [&](const TensorView& t) {
        return t.name == name && t.dtype == DType::F16;
      })) << name;
    }
  for (int l = 0; l < source.config.n_layers; ++l) {
    ASSERT_EQ(imported.layers[l].k_bias.size(), source.layers[l].k_bias.size());
    for (std::size_t i = 0; i < source.layers[l].k_bias.size(); ++i)
      ASSERT_EQ(imported.layers[l].k_bias[i], half_to_float(float_to_half(source.layers[l].k_bias[i])));
  }
}

// A desc_act checkpoint: layer 0's q_proj re-packed with a shuffled g_idx (its input columns permuted, the
// adapter's A columns with them) gives, on the permuted input, the unpermuted layer's output.
TEST_F(GptqExport, ShuffledGidxCheckpointGivesTheSameLayerOutput) {
  const auto original_dir = exported("fbquant-w2", GptqZeroFormat::v2);
  const auto original = load(original_dir);
  const auto& layer = projection(original, 0, 0);
  const int n = layer.in_features(), m = layer.out_features();
  const auto order = random_permutation(n, 11);  // packed column j ↔ input column order[j]
  const auto t = to_gptq(layer.packed(), order, GptqZeroFormat::v2);

  const auto shuffled_dir = copy_of(original_dir, scratch().path() / "shuffled");
  const std::string name = "model.layers.0.self_attn.q_proj";
  rewrite_tensors(shuffled_dir / "model.safetensors",
                  {{name + ".qweight", tensor_of(DType::I32, {t.qweight_rows(), m}, t.qweight)},
                   {name + ".g_idx", tensor_of(DType::I32, {n}, t.g_idx)}});
  const auto adapter = shuffled_dir / "branch" / "adapter_model.safetensors";
  const auto a_key = "base_model.model." + name + ".lora_A.weight";
  const auto a = tensor_bytes(adapter, a_key);
  std::vector<std::uint16_t> a_values(a.bytes.size() / 2), shuffled_a(a_values.size());
  std::memcpy(a_values.data(), a.bytes.data(), a.bytes.size());
  const auto rank = static_cast<std::size_t>(a.shape[0]);
  for (std::size_t k = 0; k < rank; ++k)
    for (int j = 0; j < n; ++j) shuffled_a[k * n + order[j]] = a_values[k * n + j];
  rewrite_tensors(adapter, {{a_key, tensor_of(DType::F16, a.shape, shuffled_a)}});

  const auto shuffled = load(shuffled_dir);
  const auto& permuted = projection(shuffled, 0, 0);
  EXPECT_FALSE(permuted.input_order().empty());
  EXPECT_NE(permuted.describe().find("input order"), std::string::npos);
  for (const int tokens : {1, 9}) {  // the decode kernels and the prefill GEMM
    const auto x = random_values(static_cast<std::size_t>(tokens) * n, tokens);
    std::vector<float> x_shuffled(x.size()), expected(static_cast<std::size_t>(tokens) * m), got(expected.size());
    for (int tok = 0; tok < tokens; ++tok)
      for (int j = 0; j < n; ++j) x_shuffled[tok * n + order[j]] = x[tok * n + j];
    layer.forward(x.data(), tokens, expected.data());
    permuted.forward(x_shuffled.data(), tokens, got.data());
    for (std::size_t i = 0; i < got.size(); ++i)
      ASSERT_NEAR(got[i], expected[i], 1e-4f * (1.0f + std::fabs(expected[i]))) << tokens << " tokens, output " << i;
  }
  std::vector<float> reference(m), single(m);
  const auto x = random_values(n, 5);
  std::vector<float> x_shuffled(n);
  for (int j = 0; j < n; ++j) x_shuffled[order[j]] = x[j];
  layer.forward_reference(x.data(), reference.data());
  permuted.forward_reference(x_shuffled.data(), single.data());
  for (int i = 0; i < m; ++i) ASSERT_NEAR(single[i], reference[i], 1e-4f * (1.0f + std::fabs(reference[i])));
}

// ---- refusals: one "fbq: error:" line, exit 1, nothing left behind ----

std::string export_args(const fs::path& model, const fs::path& out, const std::string& extra = "") {
  return fmt::format("export '{}' --to gptq -o '{}' {}", model.string(), out.string(), extra);
}

void expect_nothing_written(const fs::path& out) {
  EXPECT_FALSE(fs::exists(out)) << out;
  EXPECT_FALSE(fs::exists(partial_output(out))) << partial_output(out);
}

TEST_F(GptqExport, RefusalsAreOneErrorLine) {
  test::TempDir tmp;
  const auto out = tmp.path() / "out";
  const auto message = [&](const fs::path& model, const std::string& extra = "") {
    const auto text = test::expect_cli_fails(export_args(model, out, extra), tmp.path());
    expect_nothing_written(out);
    return text;
  };
  EXPECT_NE(message(test::bundled_model()).find("is a float model"), std::string::npos);
  EXPECT_NE(message(packed("awq-w4")).find("input_scale"), std::string::npos);
  EXPECT_NE(message(tmp.path() / "missing").find("no such file"), std::string::npos);
  EXPECT_NE(message(exported("rtn-w4", GptqZeroFormat::v1)).find("already a GPTQ checkpoint"), std::string::npos);
  EXPECT_NE(message(packed("rtn-w4"), "--checkpoint-format gptq_v3").find("gptq_v3"), std::string::npos);
  const auto no_parent = test::expect_cli_fails(export_args(packed("rtn-w4"), tmp.path() / "none" / "out"), tmp.path());
  EXPECT_NE(no_parent.find("does not exist"), std::string::npos);
  fs::create_directories(tmp.path() / "taken");
  const auto taken = test::expect_cli_fails(export_args(packed("rtn-w4"), tmp.path() / "taken"), tmp.path());
  EXPECT_NE(taken.find("already exists"), std::string::npos);

  // One zero point of 0 in a packed model: v1 refuses it naming the layer and the count; v2 writes it.
  const auto with_zero = copy_of(packed("rtn-w4"), tmp.path() / "with-zero");
  const std::string name = "model.layers.2.self_attn.o_proj";
  auto zeros = tensor_bytes(with_zero / "model.safetensors", name + ".qzeros");
  zeros.bytes[0] = static_cast<char>(zeros.bytes[0] & 0xF0);  // field 0 (4 bits) = 0
  rewrite_tensors(with_zero / "model.safetensors", {{name + ".qzeros", zeros}});
  const auto refusal = message(with_zero);
  EXPECT_NE(refusal.find(name + ": 1 of"), std::string::npos) << refusal;
  EXPECT_NE(refusal.find("--zero-points gptq"), std::string::npos) << refusal;
  EXPECT_NE(refusal.find("--checkpoint-format gptq_v2"), std::string::npos) << refusal;
  export_gptq({with_zero, out, GptqZeroFormat::v2});
  if (numpy_available()) {  // z = 0 is a plain v2 field
    ASSERT_FALSE(run_reader(out, tmp.path() / "reader").is_null());
    expect_reader_matches(load(with_zero), tmp.path() / "reader", 0);
  }
  EXPECT_EQ(projection(load(out), 2, 3).packed().zeros, projection(load(with_zero), 2, 3).packed().zeros);
}

// Broken GPTQ checkpoints: `fbq inspect` fails with one line naming the tensor, never a crash.
TEST_F(GptqExport, BadCheckpointsAreOneErrorLineNamingTheTensor) {
  const auto good = exported("rtn-w4", GptqZeroFormat::v1);
  const std::string name = "model.layers.1.mlp.up_proj";
  const auto qweight = tensor_bytes(good / "model.safetensors", name + ".qweight");
  const auto g_idx = tensor_bytes(good / "model.safetensors", name + ".g_idx");
  std::vector<std::int32_t> groups(g_idx.bytes.size() / 4);
  std::memcpy(groups.data(), g_idx.bytes.data(), g_idx.bytes.size());
  auto out_of_range = groups, uneven = groups;
  out_of_range[5] = 99;
  uneven[5] = 2;
  auto bad_zero = tensor_bytes(good / "model.safetensors", name + ".qzeros");
  bad_zero.bytes[0] = static_cast<char>(bad_zero.bytes[0] | 0x0F);  // v1 field 15: z = 16
  const std::pair<std::string, std::map<std::string, TensorBytes>> cases[] = {
      {name + ".qweight", {{name + ".qweight", {DType::I32, {qweight.shape[0] - 1, qweight.shape[1]},
                                                qweight.bytes.substr(0, qweight.bytes.size() - qweight.shape[1] * 4)}}}},
      {name + ".scales", {{name + ".scales", {DType::F16, {3, 7}, std::string(42, '\0')}}}},
      {name + ".g_idx[5] = 99", {{name + ".g_idx", tensor_of(DType::I32, g_idx.shape, out_of_range)}}},
      {name + ".g_idx: group 0", {{name + ".g_idx", tensor_of(DType::I32, g_idx.shape, uneven)}}},
      {name + ".qzeros", {{name + ".qzeros", bad_zero}}}};
  test::TempDir tmp;
  int index = 0;
  for (const auto& [needle, replacements] : cases) {
    const auto dir = copy_of(good, tmp.path() / fmt::format("bad{}", index++));
    rewrite_tensors(dir / "model.safetensors", replacements);
    const auto text = test::expect_cli_fails("inspect '" + dir.string() + "'", tmp.path());
    EXPECT_NE(text.find(needle), std::string::npos) << text;
  }
  const auto bad_bits = copy_of(good, tmp.path() / "bits");
  auto config = read_json_file(bad_bits / "config.json");
  config["quantization_config"]["bits"] = 5;
  write_file_atomically(bad_bits / "config.json", config.dump());
  EXPECT_NE(test::expect_cli_fails("inspect '" + bad_bits.string() + "'", tmp.path()).find("GPTQ bits 5"),
            std::string::npos);

  const auto patterned = copy_of(exported("fbquant-w2", GptqZeroFormat::v2), tmp.path() / "patterned");
  auto adapter = read_json_file(patterned / "branch" / "adapter_config.json");
  adapter["rank_pattern"] = {{"q_proj", 2}};
  write_file_atomically(patterned / "branch" / "adapter_config.json", adapter.dump());
  EXPECT_NE(test::expect_cli_fails("inspect '" + patterned.string() + "'", tmp.path()).find("rank_pattern"),
            std::string::npos);

  const auto embedding_lora = copy_of(exported("fbquant-w2", GptqZeroFormat::v2), tmp.path() / "embedding-lora");
  const auto adapter_file = embedding_lora / "branch" / "adapter_model.safetensors";
  rewrite_tensors(adapter_file, {{"base_model.model.model.embed_tokens.lora_A.weight",
                                  tensor_bytes(adapter_file, "base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight")}});
  EXPECT_NE(test::expect_cli_fails("inspect '" + embedding_lora.string() + "'", tmp.path()).find("embed_tokens"),
            std::string::npos);
}

}  // namespace
}  // namespace fbq
