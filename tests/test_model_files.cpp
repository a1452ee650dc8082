// Model file loading: a tiny synthetic Hugging Face checkpoint written by the test, its dtype and sharded
// variants, and one test per kind of bad input — each must give fbq::Error from the library and exactly one
// "fbq: error:" line with exit status 1 from the CLI.
#include <fmt/core.h>
#include <sys/wait.h>

#include <algorithm>
#include <cmath>
#include <nlohmann/json.hpp>
#include <random>

#include "io/dtype.h"
#include "model/model.h"
#include "model/transformer.h"
#include "test_support.h"
#include "util/error.h"

namespace fbq {
namespace {

using json = nlohmann::json;

struct FakeTensor {
  std::string name;
  std::string dtype = "F32";
  std::vector<std::int64_t> shape;
  std::vector<float> values;
};

std::string encode_values(const FakeTensor& tensor) {
  std::string bytes;
  for (const float value : tensor.values) {
    if (tensor.dtype == "F32") {
      bytes.append(reinterpret_cast<const char*>(&value), 4);
    } else {
      std::uint16_t half;
      if (tensor.dtype == "F16") {
        half = float_to_half(value);
      } else {  // BF16, values are made exactly representable by the generator
        std::uint32_t word;
        std::memcpy(&word, &value, 4);
        half = static_cast<std::uint16_t>(word >> 16);
      }
      bytes.append(reinterpret_cast<const char*>(&half), 2);
    }
  }
  return bytes;
}

// Serialises tensors as safetensors; `edit_header` may corrupt the header before it is written.
std::string safetensors_bytes(const std::vector<FakeTensor>& tensors, const std::function<void(json&)>& edit_header = {}) {
  json header = json::object();
  std::string data;
  for (const auto& tensor : tensors) {
    const auto bytes = encode_values(tensor);
    header[tensor.name] = {{"dtype", tensor.dtype}, {"shape", tensor.shape}, {"data_offsets", {data.size(), data.size() + bytes.size()}}};
    data += bytes;
  }
  if (edit_header) edit_header(header);
  const auto text = header.dump();
  const std::uint64_t length = text.size();
  return std::string(reinterpret_cast<const char*>(&length), 8) + text + data;
}

json tiny_config() {
  return {{"model_type", "llama"},          {"hidden_size", 8},           {"intermediate_size", 16},
          {"num_hidden_layers", 1},         {"num_attention_heads", 2},   {"num_key_value_heads", 1},
          {"vocab_size", 32},               {"max_position_embeddings", 16}, {"rms_norm_eps", 1e-5},
          {"rope_theta", 10000.0},          {"tie_word_embeddings", false}};
}

std::vector<FakeTensor> tiny_tensors(const std::string& dtype = "F32") {
  std::mt19937 rng(7);
  std::normal_distribution<float> normal(0.0f, 0.5f);
  std::vector<FakeTensor> tensors;
  const auto add = [&](const std::string& name, std::vector<std::int64_t> shape) {
    std::int64_t count = 1;
    for (const auto d : shape) count *= d;
    FakeTensor tensor{name, dtype, shape, {}};
    for (std::int64_t i = 0; i < count; ++i)
      // Multiples of 1/64 below 4 are exact in F16 and BF16, so every dtype stores the same model.
      tensor.values.push_back(std::ldexp(std::round(std::ldexp(std::clamp(normal(rng), -3.9f, 3.9f), 6)), -6));
    tensors.push_back(std::move(tensor));
  };
  add("model.embed_tokens.weight", {32, 8});
  add("model.layers.0.input_layernorm.weight", {8});
  add("model.layers.0.post_attention_layernorm.weight", {8});
  add("model.layers.0.self_attn.q_proj.weight", {8, 8});
  add("model.layers.0.self_attn.k_proj.weight", {4, 8});
  add("model.layers.0.self_attn.v_proj.weight", {4, 8});
  add("model.layers.0.self_attn.o_proj.weight", {8, 8});
  add("model.layers.0.mlp.gate_proj.weight", {16, 8});
  add("model.layers.0.mlp.up_proj.weight", {16, 8});
  add("model.layers.0.mlp.down_proj.weight", {8, 16});
  add("model.norm.weight", {8});
  add("lm_head.weight", {32, 8});
  return tensors;
}

class ModelFiles : public ::testing::Test {
 protected:
  std::filesystem::path write_model(const std::string& safetensors, const json& config = tiny_config()) {
    const auto dir = tmp_.path() / fmt::format("model{}", models_++);
    std::filesystem::create_directories(dir);
    test::write_file(dir / "config.json", config.dump(2));
    test::write_file(dir / "model.safetensors", safetensors);
    return dir;
  }

  static Model load(const std::filesystem::path& path) {
    LoadOptions options;
    options.require_tokenizer = false;
    return load_model(path, options);
  }

  static std::vector<float> logits(const Model& model) {
    InferenceSession session(model);
    const std::vector<int> tokens = {1, 5, 9, 31, 0, 17};
    const auto out = session.forward(tokens, 0, true);
    return {out.begin(), out.end()};
  }

  // The library throws fbq::Error whose message contains `expected`; `fbq inspect` prints exactly one
  // error line and exits with status 1.
  void expect_rejected(const std::filesystem::path& model, const std::string& expected) {
    try {
      load(model);
      ADD_FAILURE() << "loading " << model << " should fail";
    } catch (const Error& e) {
      EXPECT_NE(std::string(e.what()).find(expected), std::string::npos) << e.what();
    }
    test::expect_inspect_fails(model, tmp_.path());
  }

  test::TempDir tmp_;
  int models_ = 0;
};

TEST_F(ModelFiles, TinyModelLoadsAndRuns) {
  const auto model = load(write_model(safetensors_bytes(tiny_tensors())));
  EXPECT_EQ(model.config.n_kv_heads, 1);
  EXPECT_EQ(model.source_tensors.size(), 12u);
  for (const float value : logits(model)) EXPECT_TRUE(std::isfinite(value));
}

TEST_F(ModelFiles, HalfPrecisionDtypesGiveTheSameModel) {
  const auto reference = logits(load(write_model(safetensors_bytes(tiny_tensors("F32")))));
  for (const char* dtype : {"F16", "BF16"}) {
    // The weights are exact copies of the F32 ones; half weights stay as stored and run through the half
    // kernels, whose summation order differs from the float path, so agreement is to rounding only.
    const auto converted = logits(load(write_model(safetensors_bytes(tiny_tensors(dtype)))));
    ASSERT_EQ(converted.size(), reference.size());
    for (size_t i = 0; i < reference.size(); ++i) ASSERT_NEAR(converted[i], reference[i], 1e-5f) << dtype << " logit " << i;
  }
}

TEST_F(ModelFiles, ShardedIndexGivesTheSameModel) {
  const auto tensors = tiny_tensors();
  const auto dir = tmp_.path() / "sharded";
  std::filesystem::create_directories(dir);
  test::write_file(dir / "config.json", tiny_config().dump());
  const std::vector<FakeTensor> first(tensors.begin(), tensors.begin() + 5), second(tensors.begin() + 5, tensors.end());
  test::write_file(dir / "model-00001-of-00002.safetensors", safetensors_bytes(first));
  test::write_file(dir / "model-00002-of-00002.safetensors", safetensors_bytes(second));
  json index = {{"metadata", json::object()}, {"weight_map", json::object()}};
  for (const auto& t : first) index["weight_map"][t.name] = "model-00001-of-00002.safetensors";
  for (const auto& t : second) index["weight_map"][t.name] = "model-00002-of-00002.safetensors";
  test::write_file(dir / "model.safetensors.index.json", index.dump());
  EXPECT_EQ(logits(load(dir)), logits(load(write_model(safetensors_bytes(tensors)))));

  index["weight_map"]["model.norm.weight"] = "model-00001-of-00002.safetensors";
  test::write_file(dir / "model.safetensors.index.json", index.dump());
  expect_rejected(dir, "model.norm.weight");
}

TEST_F(ModelFiles, NonexistentPath) { expect_rejected(tmp_.path() / "no-such-model", "no such file"); }

TEST_F(ModelFiles, TruncatedSafetensors) {
  const auto bytes = safetensors_bytes(tiny_tensors());
  expect_rejected(write_model(bytes.substr(0, bytes.size() - 100)), "past the end");
  expect_rejected(write_model(bytes.substr(0, 5)), "too short");
}

TEST_F(ModelFiles, HeaderLengthBeyondFile) {
  auto bytes = safetensors_bytes(tiny_tensors());
  const std::uint64_t huge = bytes.size() + 1;
  std::memcpy(bytes.data(), &huge, 8);
  expect_rejected(write_model(bytes), "header length");
}

TEST_F(ModelFiles, OffsetsBeyondFile) {
  expect_rejected(write_model(safetensors_bytes(tiny_tensors(), [](json& h) {
                    h["model.norm.weight"]["data_offsets"] = {1u << 20, (1u << 20) + 32};
                  })),
                  "past the end");
}

TEST_F(ModelFiles, OverlappingOffsets) {
  expect_rejected(write_model(safetensors_bytes(tiny_tensors(), [](json& h) {
                    h["model.norm.weight"]["data_offsets"] = h["model.layers.0.input_layernorm.weight"]["data_offsets"];
                  })),
                  "overlap");
}

TEST_F(ModelFiles, OffsetsDisagreeWithShape) {
  expect_rejected(write_model(safetensors_bytes(tiny_tensors(), [](json& h) { h["model.norm.weight"]["shape"] = {9}; })),
                  "expected");
}

TEST_F(ModelFiles, UnknownDtype) {
  expect_rejected(write_model(safetensors_bytes(tiny_tensors(), [](json& h) { h["lm_head.weight"]["dtype"] = "Q7"; })),
                  "unknown dtype");
}

TEST_F(ModelFiles, NonFloatDtypeForWeights) {
  expect_rejected(write_model(safetensors_bytes(tiny_tensors(), [](json& h) { h["lm_head.weight"]["dtype"] = "I32"; })),
                  "dtype I32");
}

TEST_F(ModelFiles, TensorMissing) {
  auto tensors = tiny_tensors();
  std::erase_if(tensors, [](const FakeTensor& t) { return t.name == "model.layers.0.self_attn.v_proj.weight"; });
  expect_rejected(write_model(safetensors_bytes(tensors)), "v_proj.weight' is missing");
}

TEST_F(ModelFiles, ShapeDisagreesWithConfig) {
  auto config = tiny_config();
  config["intermediate_size"] = 24;
  expect_rejected(write_model(safetensors_bytes(tiny_tensors()), config), "config.json implies");
}

TEST_F(ModelFiles, MalformedConfigJson) {
  const auto dir = write_model(safetensors_bytes(tiny_tensors()));
  test::write_file(dir / "config.json", "{\"hidden_size\": 8, ");
  expect_rejected(dir, "malformed JSON");
  test::write_file(dir / "config.json", R"({"hidden_size": 8})");
  expect_rejected(dir, "missing 'intermediate_size'");
  auto config = tiny_config();
  config["num_key_value_heads"] = 3;
  test::write_file(dir / "config.json", config.dump());
  expect_rejected(dir, "not a multiple");
}

// Architectures and options the runtime does not implement are refused by name, never run approximately.
TEST_F(ModelFiles, UnsupportedArchitecturesAreRefused) {
  const auto refused = [&](const char* key, const json& value, const std::string& expected) {
    auto config = tiny_config();
    config[key] = value;
    expect_rejected(write_model(safetensors_bytes(tiny_tensors()), config), expected);
  };
  refused("model_type", "gpt2", "model_type 'gpt2' is not a decoder");
  refused("rope_scaling", {{"rope_type", "yarn"}, {"factor", 4.0}}, "rope_scaling type 'yarn' is not supported");
  refused("rope_scaling", {{"rope_type", "linear"}, {"factor", 0.5}}, "factor must be at least 1");
  refused("rope_scaling", {{"rope_type", "llama3"}, {"factor", 8.0}}, "rope_scaling needs a number");
  refused("hidden_act", "gelu", "hidden_act 'gelu' is not supported");
  refused("mlp_bias", true, "mlp_bias is not supported");
  auto config = tiny_config();
  config["model_type"] = "mistral";
  config["sliding_window"] = -1;
  expect_rejected(write_model(safetensors_bytes(tiny_tensors()), config), "sliding_window must be positive");
  config = tiny_config();
  config["attention_bias"] = true;  // q/k/v/o biases announced, none stored
  expect_rejected(write_model(safetensors_bytes(tiny_tensors()), config), "q_proj.bias' is missing");
}

TEST_F(ModelFiles, MalformedHeaderJson) {
  auto bytes = safetensors_bytes(tiny_tensors());
  bytes[8] = '[';  // header no longer an object
  expect_rejected(write_model(bytes), "not a valid JSON object");
}

TEST_F(ModelFiles, NonFiniteWeightsAreRefused) {
  auto tensors = tiny_tensors();
  tensors[3].values[5] = std::nanf("");
  tensors[3].values[6] = INFINITY;
  expect_rejected(write_model(safetensors_bytes(tensors)), "2 non-finite values (first at flat index 5)");
}

TEST_F(ModelFiles, TruncatedLlama2cCheckpoint) {
  const auto source = test::shared_dir() / "models" / "stories260K" / "stories260K.bin";
  FBQ_REQUIRE_FILE(source);
  const auto bytes = test::read_file(source);
  const auto path = tmp_.path() / "truncated.bin";
  test::write_file(path, bytes.substr(0, bytes.size() / 2));
  expect_rejected(path, "truncated");
  test::write_file(path, bytes + "junk");
  expect_rejected(path, "trailing bytes");
  test::write_file(path, bytes.substr(0, 12));
  expect_rejected(path, "too short");
}

TEST(Cli, HelpAndUsageErrors) {
  const auto run = [](const std::string& args) {
    const int status = std::system(fmt::format("'{}' {} >/dev/null 2>&1", FBQ_CLI_PATH, args).c_str());
    return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  };
  EXPECT_EQ(run("--help"), 0);
  EXPECT_EQ(run("perplexity --help"), 0);
  EXPECT_NE(run(""), 0) << "a subcommand is required";
  EXPECT_NE(run("perplexity"), 0) << "MODEL and --text are required";
  EXPECT_NE(run("generate x -p hi -n -3"), 0);
}

}  // namespace
}  // namespace fbq

namespace fbq {
namespace {

// Found by fuzz_model_dir: a number where config.json wants a bool (here mlp_bias) threw nlohmann's own
// exception past every handler; it must be one fbq::Error like every other malformed field.
TEST(ModelConfig, ANumberWhereABoolBelongsIsOneError) {
  test::TempDir dir;
  auto config = nlohmann::json::parse(test::read_file(test::bundled_model() / "config.json"));
  for (const char* key : {"mlp_bias", "use_sliding_window"}) {
    auto broken = config;
    broken["model_type"] = std::string(key) == "mlp_bias" ? "llama" : "qwen2";
    broken[key] = 1;
    test::write_file(dir.path() / "config.json", broken.dump());
    EXPECT_THROW(parse_hf_config(dir.path() / "config.json"), Error) << key;
  }
}

}  // namespace
}  // namespace fbq
