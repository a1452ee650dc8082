#include "model/synthetic_model.h"

#include <fmt/core.h>

#include <cmath>
#include <fstream>
#include <numbers>

#include "io/safetensors_writer.h"
#include "util/error.h"
#include "util/progress.h"

namespace fbq {
namespace {

namespace fs = std::filesystem;

struct Dims {
  int dim, hidden, layers, heads, kv_heads, vocab, max_positions;
  float theta;
};

ModelConfig config_of(const char* type, Dims d, bool tied) {
  ModelConfig c;
  c.model_type = type;
  c.dim = d.dim;
  c.hidden_dim = d.hidden;
  c.n_layers = d.layers;
  c.n_heads = d.heads;
  c.n_kv_heads = d.kv_heads;
  c.head_dim = d.dim / d.heads;
  c.vocab_size = d.vocab;
  c.max_seq_len = d.max_positions;
  c.rope_theta = d.theta;
  c.tie_embeddings = tied;
  return c;
}

ModelConfig with_llama3(ModelConfig c, float factor) {
  c.rope_scaling = {RopeScaling::Type::llama3, factor, 1.0f, 4.0f, 8192};
  c.bos_id = 128000;
  c.eos_id = 128001;
  return c;
}

ModelConfig with_ids(ModelConfig c, int bos, int eos, float eps) {
  c.bos_id = bos;
  c.eos_id = eos;
  c.rms_eps = eps;
  return c;
}

ModelConfig qwen2(Dims d, bool tied) {
  auto c = with_ids(config_of("qwen2", d, tied), 151643, 151643, 1e-6f);
  c.qkv_bias = true;
  return c;
}

ModelConfig mistral(Dims d) {
  auto c = config_of("mistral", d, false);
  c.sliding_window = 4096;
  return c;
}

std::vector<SyntheticShape> make_shapes() {
  const std::vector<std::pair<std::string, std::string>> llama2_tok = {{"llama2-tokenizer.model", "tokenizer.model"}},
      llama3_tok = {{"llama3-tokenizer.model", "tokenizer.model"}},
      mistral_tok = {{"mistral-v1-tokenizer.model", "tokenizer.model"}},
      qwen2_tok = {{"qwen2-vocab.json", "vocab.json"}, {"qwen2-merges.txt", "merges.txt"},
                   {"qwen2-tokenizer_config.json", "tokenizer_config.json"}},
      smollm2_tok = {{"smollm2-tokenizer.json", "tokenizer.json"}};
  // Published config.json values: hidden, intermediate, layers, heads, KV heads, vocab, max positions, θ.
  return {
      {"tinyllama-1.1b", config_of("llama", {2048, 5632, 22, 32, 4, 32000, 2048, 1e4f}, false), llama2_tok},
      {"llama2-7b", config_of("llama", {4096, 11008, 32, 32, 32, 32000, 4096, 1e4f}, false), llama2_tok},
      {"llama2-13b", config_of("llama", {5120, 13824, 40, 40, 40, 32000, 4096, 1e4f}, false), llama2_tok},
      {"llama3-8b", with_ids(config_of("llama", {4096, 14336, 32, 32, 8, 128256, 8192, 5e5f}, false), 128000, 128001, 1e-5f),
       llama3_tok},
      {"llama3.1-8b", with_llama3(config_of("llama", {4096, 14336, 32, 32, 8, 128256, 131072, 5e5f}, false), 8), llama3_tok},
      {"llama3.2-1b", with_llama3(config_of("llama", {2048, 8192, 16, 32, 8, 128256, 131072, 5e5f}, true), 32), llama3_tok},
      {"llama3.2-3b", with_llama3(config_of("llama", {3072, 8192, 28, 24, 8, 128256, 131072, 5e5f}, true), 32), llama3_tok},
      {"mistral-7b", mistral({4096, 14336, 32, 32, 8, 32000, 32768, 1e4f}), mistral_tok},
      {"qwen2.5-0.5b", qwen2({896, 4864, 24, 14, 2, 151936, 32768, 1e6f}, true), qwen2_tok},
      {"qwen2.5-1.5b", qwen2({1536, 8960, 28, 12, 2, 151936, 32768, 1e6f}, true), qwen2_tok},
      {"qwen2.5-7b", qwen2({3584, 18944, 28, 28, 4, 152064, 32768, 1e6f}, false), qwen2_tok},
      {"smollm2-135m", with_ids(config_of("llama", {576, 1536, 30, 9, 3, 49152, 8192, 1e5f}, true), 0, 0, 1e-5f), smollm2_tok},
      {"smollm2-1.7b", with_ids(config_of("llama", {2048, 8192, 24, 32, 32, 49152, 8192, 1.3e5f}, true), 0, 0, 1e-5f),
       smollm2_tok},
  };
}

// One tensor to write: name, shape, and the spread of its N(0, σ) values (σ = 0: all ones, a norm weight).
struct TensorPlan {
  std::string name;
  std::vector<std::int64_t> shape;
  float stddev;
  std::int64_t count() const { return shape.size() == 1 ? shape[0] : shape[0] * shape[1]; }
};

std::vector<TensorPlan> tensor_plan(const ModelConfig& c) {
  constexpr float kSpread = 0.02f;  // the usual initializer_range; trained 7B weights have a similar scale
  std::vector<TensorPlan> plan = {{"model.embed_tokens.weight", {c.vocab_size, c.dim}, kSpread}};
  for (int l = 0; l < c.n_layers; ++l) {
    const auto p = fmt::format("model.layers.{}.", l);
    plan.push_back({p + "input_layernorm.weight", {c.dim}, 0});
    for (const auto& [proj, rows] : {std::pair{"q", c.q_dim()}, {"k", c.kv_dim()}, {"v", c.kv_dim()}}) {
      plan.push_back({fmt::format("{}self_attn.{}_proj.weight", p, proj), {rows, c.dim}, kSpread});
      if (c.qkv_bias) plan.push_back({fmt::format("{}self_attn.{}_proj.bias", p, proj), {rows}, kSpread});
    }
    plan.push_back({p + "self_attn.o_proj.weight", {c.dim, c.q_dim()}, kSpread});
    plan.push_back({p + "post_attention_layernorm.weight", {c.dim}, 0});
    plan.push_back({p + "mlp.gate_proj.weight", {c.hidden_dim, c.dim}, kSpread});
    plan.push_back({p + "mlp.up_proj.weight", {c.hidden_dim, c.dim}, kSpread});
    plan.push_back({p + "mlp.down_proj.weight", {c.dim, c.hidden_dim}, kSpread});
  }
  plan.push_back({"model.norm.weight", {c.dim}, 0});
  if (!c.tie_embeddings) plan.push_back({"lm_head.weight", {c.vocab_size, c.dim}, kSpread});
  return plan;
}

std::uint64_t splitmix64(std::uint64_t& state) {
  std::uint64_t z = (state += 0x9E3779B97F4A7C15ull);
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}

// N(0, σ) values, Box–Muller over splitmix64. Each chunk of 64 Ki values has its own stream (seed, tensor,
// chunk), so the threads that fill them in parallel cannot change the result.
void fill_normal(std::vector<float>& values, float stddev, std::uint64_t seed, std::uint64_t tensor) {
  constexpr std::int64_t kChunk = 1 << 16;
  const auto n = static_cast<std::int64_t>(values.size());
#pragma omp parallel for schedule(static)
  for (std::int64_t begin = 0; begin < n; begin += kChunk) {
    std::uint64_t state = seed * 0x100000001B3ull ^ (tensor << 32) ^ static_cast<std::uint64_t>(begin / kChunk);
    splitmix64(state);
    for (std::int64_t i = begin; i < std::min(n, begin + kChunk); i += 2) {
      const double u1 = (static_cast<double>(splitmix64(state) >> 11) + 1.0) * 0x1.0p-53;  // (0, 1]
      const double u2 = static_cast<double>(splitmix64(state) >> 11) * 0x1.0p-53;
      const double radius = stddev * std::sqrt(-2.0 * std::log(u1)), angle = 2.0 * std::numbers::pi * u2;
      values[i] = static_cast<float>(radius * std::cos(angle));
      if (i + 1 < n) values[i + 1] = static_cast<float>(radius * std::sin(angle));
    }
  }
}

void write_weights(const ModelConfig& c, const SynthOptions& options, const fs::path& file) {
  const auto plan = tensor_plan(c);
  std::int64_t total = 0, done = 0;
  for (const auto& t : plan) total += t.count();
  Progress progress(fmt::format("synth {} ({:.2f} B parameters)", options.shape, total / 1e9), total, options.progress);
  SafetensorsWriter writer(file);
  std::vector<float> values;
  for (std::size_t i = 0; i < plan.size(); ++i) {
    values.assign(plan[i].count(), 1.0f);
    if (plan[i].stddev > 0) fill_normal(values, plan[i].stddev, options.seed, i);
    writer.add_floats(plan[i].name, options.dtype, plan[i].shape, values);
    progress.update(done += plan[i].count(), plan[i].name);
  }
  writer.finish({{"format", "pt"}});
  fs::remove(writer.data_path());
  progress.finish();
}

// The copy is the user's file, writable like the rest of the directory (../shared's files are read-only).
void copy_writable(const fs::path& from, const fs::path& to) {
  fs::copy_file(from, to);
  fs::permissions(to, fs::perms::owner_write, fs::perm_options::add);
}

std::string tokenizer_name(const fs::path& file) {
  if (file.extension() == ".json") return "tokenizer.json";
  if (file.extension() == ".model") return "tokenizer.model";
  fail("synth: --tokenizer {}: expected a tokenizer.model (SentencePiece, tiktoken) or tokenizer.json", file.string());
}

void copy_tokenizer(const SyntheticShape& shape, const SynthOptions& options, const fs::path& dir) {
  if (options.without_tokenizer) return;
  if (options.tokenizer) {
    if (!fs::is_regular_file(*options.tokenizer)) fail("synth: tokenizer {}: no such file", options.tokenizer->string());
    copy_writable(*options.tokenizer, dir / tokenizer_name(*options.tokenizer));
    return;
  }
  for (const auto& [source, name] : shape.tokenizer_files) {
    const auto path = options.tokenizer_dir / source;
    if (!fs::is_regular_file(path))
      fail("synth: the {} tokenizer ({}) is not there; pass --tokenizer FILE or --no-tokenizer", shape.name, path.string());
    copy_writable(path, dir / name);
  }
}

}  // namespace

const std::vector<SyntheticShape>& synthetic_shapes() {
  static const auto shapes = make_shapes();
  return shapes;
}

const SyntheticShape& synthetic_shape(const std::string& name) {
  std::string names;
  for (const auto& shape : synthetic_shapes()) {
    if (shape.name == name) return shape;
    names += (names.empty() ? "" : ", ") + shape.name;
  }
  fail("synth: unknown shape '{}' (known: {})", name, names);
}

void write_synthetic_model(const SynthOptions& options) {
  const auto& shape = synthetic_shape(options.shape);
  if (options.dtype != DType::BF16 && options.dtype != DType::F16 && options.dtype != DType::F32)
    fail("synth: dtype must be bf16, f16 or f32");
  if (fs::exists(options.output)) fail("synth: {} exists; choose a new directory", options.output.string());
  const auto temp = options.output.parent_path() / fmt::format(".{}.partial", options.output.filename().string());
  fs::remove_all(temp);
  fs::create_directories(temp);
  copy_tokenizer(shape, options, temp);  // before the long part: a missing tokenizer fails at once
  auto model_config = shape.config;
  if (options.layers < 0 || options.layers > model_config.n_layers)
    fail("synth: --layers must be 1..{} for {} (got {})", model_config.n_layers, shape.name, options.layers);
  if (options.layers > 0) model_config.n_layers = options.layers;
  auto config = to_hf_config(model_config);
  config["torch_dtype"] = options.dtype == DType::BF16 ? "bfloat16" : options.dtype == DType::F16 ? "float16" : "float32";
  std::ofstream(temp / "config.json") << config.dump(2) << "\n";
  write_weights(model_config, options, temp / "model.safetensors");
  fs::rename(temp, options.output);
}

}  // namespace fbq
