#include "model/model.h"

#include "io/dtype.h"
#include "io/gguf.h"
#include "io/gguf_checkpoint.h"
#include "io/llama2c.h"
#include "io/safetensors.h"
#include "io/text_files.h"
#include "pack/gptq_layout.h"
#include "pack/half_linear.h"
#include "pack/packed_linear.h"
#include "util/error.h"

#include <fmt/ranges.h>

#include <cmath>
#include <cstring>
#include <regex>

namespace fbq {
namespace {

// llama2.c pairs RoPE dimensions (2i, 2i+1) within each head; HF pairs (i, i + head_dim/2). Reordering the
// rows of q_proj/k_proj converts one into the other (q·k is unchanged when both get the same permutation).
void interleaved_to_rotate_half(std::vector<float>& weights, int n_heads, int head_dim, int in_features) {
  const std::vector<float> original = weights;
  const int half = head_dim / 2;
  for (int h = 0; h < n_heads; ++h)
    for (int i = 0; i < half; ++i)
      for (int pair = 0; pair < 2; ++pair) {
        const float* from = &original[(static_cast<std::size_t>(h) * head_dim + 2 * i + pair) * in_features];
        float* to = &weights[(static_cast<std::size_t>(h) * head_dim + i + pair * half) * in_features];
        std::copy(from, from + in_features, to);
      }
}

template <typename T>
std::vector<T> load_raw(const TensorStore& store, const std::string& name, DType dtype,
                        const std::vector<std::int64_t>& shape) {
  const auto& view = store.get(name);
  if (view.dtype != dtype || view.shape != shape)
    fail("{}: tensor '{}' is {} {}, expected {} [{}]", store.source().string(), name, dtype_name(view.dtype),
         view.shape_string(), dtype_name(dtype), fmt::join(shape, ", "));
  std::vector<T> values(view.data.size() / sizeof(T));
  std::memcpy(values.data(), view.data.data(), view.data.size());
  return values;
}

std::vector<float> load_f16_as_float(const TensorStore& store, const std::string& name,
                                     const std::vector<std::int64_t>& shape) {
  const auto raw = load_raw<std::uint16_t>(store, name, DType::F16, shape);
  std::vector<float> values(raw.size());
  for (std::size_t i = 0; i < raw.size(); ++i) values[i] = half_to_float(raw[i]);
  check_finite(name, values);
  return values;
}

// A 16-bit float tensor left in the mapped file (copied only when its bytes are not 2-byte aligned), refused
// when it holds NaN/Inf.
StoredMatrix stored_half(const TensorStore& store, const std::string& name, std::int64_t rows, std::int64_t cols) {
  const auto& view = store.get(name, {rows, cols});
  StoredMatrix matrix(view.dtype, rows, cols, view.data.data(), store.owner(name));
  if (reinterpret_cast<std::uintptr_t>(view.data.data()) % 2 != 0) {
    auto copy = std::make_shared<std::vector<std::uint16_t>>(view.data.size() / 2);
    std::memcpy(copy->data(), view.data.data(), view.data.size());
    matrix = StoredMatrix(view.dtype, rows, cols, copy->data(), copy);
  }
  if (const auto bad = matrix.first_non_finite(); bad >= 0)
    fail("tensor '{}' has non-finite values (first at flat index {}); refusing to load it", name, bad);
  return matrix;
}

bool is_half(DType dtype) { return dtype == DType::BF16 || dtype == DType::F16; }

// A PEFT LoRA adapter (EXPORT_FORMATS §4) beside a GPTQ checkpoint, as `fbq export --to gptq` writes it.
struct LoraAdapter {
  TensorStore tensors{{}};
  float scaling = 1.0f;  // lora_alpha / r (/ √r with rsLoRA), folded into B
};

// The scaling adapter_config.json gives every module; refuses settings this runtime would not apply.
float lora_scaling(const nlohmann::json& config, const std::string& source) {
  if (!config.contains("r") || !config["r"].is_number() || config["r"].get<double>() <= 0)
    fail("{}: 'r' must be a positive number", source);
  // vLLM ignores the patterns (EXPORT_FORMATS §4), so a file relying on them means different things to engines.
  for (const char* pattern : {"rank_pattern", "alpha_pattern"})
    if (config.contains(pattern) && !config[pattern].is_null() && !config[pattern].empty())
      fail("{}: a non-empty {} is not supported (give every module the same r and lora_alpha)", source, pattern);
  if (config.value("use_dora", false)) fail("{}: DoRA adapters (use_dora) are not supported", source);
  const double r = config["r"].get<double>();
  const double alpha = config.value("lora_alpha", r);
  return static_cast<float>(alpha / (config.value("use_rslora", false) ? std::sqrt(r) : r));
}

std::optional<LoraAdapter> lora_adapter_beside(const std::filesystem::path& checkpoint) {
  const auto dir = checkpoint / "branch";
  if (!std::filesystem::is_regular_file(dir / "adapter_config.json")) return std::nullopt;
  const auto scaling = lora_scaling(read_json_file(dir / "adapter_config.json"), (dir / "adapter_config.json").string());
  LoraAdapter adapter{TensorStore::open_file(dir / "adapter_model.safetensors"), scaling};
  // A tensor no linear picks up would silently change the model's meaning.
  static const std::regex kApplied(
      R"(base_model\.model\.model\.layers\.\d+\.(self_attn\.[qkvo]|mlp\.(gate|up|down))_proj\.lora_[AB]\.weight)");
  for (const auto* tensor : adapter.tensors.all())
    if (!std::regex_match(tensor->name, kApplied))
      fail("{}: adapter tensor '{}' is not a lora_A/lora_B weight of a decoder projection (the only ones applied)",
           (dir / "adapter_model.safetensors").string(), tensor->name);
  return adapter;
}

// Drops trailing rank components whose A row and B column are both zero: the padding to one common rank
// that the exported adapter carries (so export → import gives back each linear's own branch).
int trim_zero_rank(int rank, std::vector<float>& a, std::vector<float>& b, std::int64_t out, std::int64_t in) {
  const auto component_is_zero = [&](int k) {
    for (std::int64_t j = 0; j < in; ++j)
      if (a[k * in + j] != 0.0f) return false;
    for (std::int64_t i = 0; i < out; ++i)
      if (b[i * rank + k] != 0.0f) return false;
    return true;
  };
  int kept = rank;
  while (kept > 0 && component_is_zero(kept - 1)) --kept;
  if (kept == rank) return rank;
  a.resize(static_cast<std::size_t>(kept) * in);
  std::vector<float> trimmed(static_cast<std::size_t>(out) * kept);
  for (std::int64_t i = 0; i < out; ++i)
    std::copy_n(&b[i * rank], kept, &trimmed[i * kept]);
  b = std::move(trimmed);
  return kept;
}

// A's columns in the packed column order: A'[:, j] = A[:, order[j]].
std::vector<float> reorder_columns(const std::vector<float>& a, int rank, const std::vector<int>& order) {
  const std::size_t in = order.size();
  std::vector<float> out(a.size());
  for (int k = 0; k < rank; ++k)
    for (std::size_t j = 0; j < in; ++j) out[k * in + j] = a[k * in + order[j]];
  return out;
}

}  // namespace

struct CheckpointReader::Impl {
  TensorStore store{{}};
  std::optional<LoraAdapter> adapter;
  bool interleaved_rope = false;
  std::filesystem::path path;

  std::unique_ptr<Linear> linear(const ModelConfig& c, const std::string& name, std::int64_t out, std::int64_t in,
                                 FloatWeights storage, int rope_heads = 0) const {
    if (store.find(name + ".qweight")) return packed(c, name, out, in);
    if (storage == FloatWeights::as_stored && !interleaved_rope && is_half(store.get(name + ".weight").dtype))
      return std::make_unique<HalfLinear>(stored_half(store, name + ".weight", out, in));
    auto weights = store.load_f32(name + ".weight", {out, in});
    if (interleaved_rope && rope_heads > 0) interleaved_to_rotate_half(weights, rope_heads, c.head_dim, c.dim);
    return std::make_unique<DenseLinear>(static_cast<int>(out), static_cast<int>(in),
                                         std::make_shared<std::vector<float>>(std::move(weights)));
  }

  // The grid of a packed linear: the lm_head has its own (quantization_config "head").
  QuantSpec packed_spec(const ModelConfig& c, const std::string& name) const {
    if (name != "lm_head") return {c.quant_bits, c.quant_group_size};
    if (c.quant_head_bits == 0)
      fail("{}: 'lm_head' is packed but quantization_config has no 'head' entry", path.string());
    return {c.quant_head_bits, c.quant_head_group_size};
  }

  std::unique_ptr<Linear> packed(const ModelConfig& c, const std::string& name, std::int64_t out, std::int64_t in) const {
    if (c.quant_bits == 0) fail("{}: '{}' is packed but config.json has no quantization_config", path.string(), name);
    if (c.quant_format != kPackedFormat) return gptq(c, name, out, in);
    PackedWeights weights;
    weights.rows = static_cast<int>(out);
    weights.cols = static_cast<int>(in);
    weights.spec = packed_spec(c, name);
    weights.spec.validate(weights.cols);
    weights.codes = load_raw<std::uint32_t>(store, name + ".qweight", DType::I32, {out, weights.code_words_per_row()});
    weights.zeros = load_raw<std::uint32_t>(store, name + ".qzeros", DType::I32, {weights.zero_words()});
    weights.scales = load_raw<std::uint16_t>(store, name + ".scales", DType::F16, {out, weights.groups_per_row()});
    std::vector<float> input_scale, lora_a, lora_b;
    if (store.find(name + ".input_scale")) input_scale = load_f16_as_float(store, name + ".input_scale", {in});
    int rank = 0;
    if (const auto* a = store.find(name + ".lora_A.weight")) {
      rank = a->shape.empty() ? 0 : static_cast<int>(a->shape[0]);
      lora_a = load_f16_as_float(store, name + ".lora_A.weight", {rank, in});
      lora_b = load_f16_as_float(store, name + ".lora_B.weight", {out, rank});
    }
    return std::make_unique<PackedLinear>(std::move(weights), std::move(input_scale), rank, std::move(lora_a),
                                          std::move(lora_b));
  }

  // A GPTQ linear (pack/gptq_layout.h) and its branch from the PEFT adapter, if the adapter has one.
  std::unique_ptr<Linear> gptq(const ModelConfig& c, const std::string& name, std::int64_t out, std::int64_t in) const {
    GptqTensors t;
    t.out_features = static_cast<int>(out);
    t.in_features = static_cast<int>(in);
    t.bits = c.quant_bits;
    t.group_size = c.quant_group_size > 0 ? c.quant_group_size : t.in_features;
    validate_gptq_dims(t.out_features, t.in_features, t.bits, t.group_size, name);
    t.qweight = load_raw<std::uint32_t>(store, name + ".qweight", DType::I32, {t.qweight_rows(), out});
    t.qzeros = load_raw<std::uint32_t>(store, name + ".qzeros", DType::I32, {t.groups(), t.qzeros_cols()});
    t.scales = load_raw<std::uint16_t>(store, name + ".scales", DType::F16, {t.groups(), out});
    if (store.find(name + ".g_idx")) {
      t.g_idx = load_raw<std::int32_t>(store, name + ".g_idx", DType::I32, {in});
    } else {
      t.g_idx.resize(t.in_features);
      for (int k = 0; k < t.in_features; ++k) t.g_idx[k] = k / t.group_size;
    }
    auto [weights, order] = from_gptq(t, parse_checkpoint_format(c.quant_format), name);
    int rank = 0;
    std::vector<float> lora_a, lora_b;
    const auto key = "base_model.model." + name;
    if (const auto* a = adapter ? adapter->tensors.find(key + ".lora_A.weight") : nullptr) {
      rank = a->shape.size() == 2 ? static_cast<int>(a->shape[0]) : 0;
      lora_a = adapter->tensors.load_f32(key + ".lora_A.weight", {rank, in});
      lora_b = adapter->tensors.load_f32(key + ".lora_B.weight", {out, rank});
      for (auto& value : lora_b) value *= adapter->scaling;
      rank = trim_zero_rank(rank, lora_a, lora_b, out, in);
      if (!order.empty()) lora_a = reorder_columns(lora_a, rank, order);
    }
    return std::make_unique<PackedLinear>(std::move(weights), std::vector<float>{}, rank, std::move(lora_a),
                                          std::move(lora_b), std::move(order));
  }
};

CheckpointReader::CheckpointReader(const std::filesystem::path& path) : impl_(std::make_unique<Impl>()) {
  if (!std::filesystem::exists(path)) fail("{}: no such file or directory", path.string());
  impl_->path = path;
  if (std::filesystem::is_directory(path)) {
    config_ = parse_hf_config(path / "config.json");
    impl_->store = TensorStore::open_directory(path);
    format_ = config_.quant_format.empty() ? "huggingface"
              : config_.quant_format == kPackedFormat ? "fbquant-packed" : config_.quant_format;
    if (format_.starts_with("gptq")) impl_->adapter = lora_adapter_beside(path);
  } else if (is_gguf_file(path)) {
    auto checkpoint = read_gguf_checkpoint(path);
    config_ = checkpoint.config;
    impl_->store = std::move(checkpoint.tensors);
    impl_->interleaved_rope = true;  // llama.cpp stores q/k rows in the interleaved RoPE order, like llama2.c
    format_ = "gguf";
  } else {
    auto checkpoint = read_llama2c_checkpoint(path);
    config_ = checkpoint.config;
    impl_->store = std::move(checkpoint.tensors);
    impl_->interleaved_rope = true;
    format_ = "llama2.c";
  }
}

CheckpointReader::~CheckpointReader() = default;
CheckpointReader::CheckpointReader(CheckpointReader&&) noexcept = default;

std::optional<std::filesystem::path> CheckpointReader::default_tokenizer() const { return tokenizer_beside(impl_->path); }

std::optional<std::filesystem::path> tokenizer_beside(const std::filesystem::path& model) {
  namespace fs = std::filesystem;
  if (is_gguf_file(model)) return model;  // the vocabulary is in the file's metadata
  const std::vector<fs::path> candidates = fs::is_directory(model)
      ? std::vector<fs::path>{model / "tokenizer.model", model / "tokenizer.json", model / "vocab.json",
                              model / "tokenizer.gguf", model / "tokenizer.bin"}
      : std::vector<fs::path>{model.parent_path() / "tokenizer.bin"};
  for (const auto& candidate : candidates)
    if (fs::exists(candidate)) return candidate;
  return std::nullopt;
}

std::shared_ptr<const std::vector<float>> CheckpointReader::embedding() const {
  return std::make_shared<std::vector<float>>(
      impl_->store.load_f32("model.embed_tokens.weight", {config_.vocab_size, config_.dim}));
}

StoredMatrix CheckpointReader::embedding_as_stored() const {
  const char* name = "model.embed_tokens.weight";
  if (is_half(impl_->store.get(name).dtype)) return stored_half(impl_->store, name, config_.vocab_size, config_.dim);
  return StoredMatrix::of_floats(config_.vocab_size, config_.dim, embedding());
}

DecoderLayer CheckpointReader::layer(int index, FloatWeights storage) const {
  const auto& c = config_;
  const auto prefix = fmt::format("model.layers.{}.", index);
  const std::int64_t dim = c.dim, hidden = c.hidden_dim;
  DecoderLayer layer;
  layer.attn_norm = impl_->store.load_f32(prefix + "input_layernorm.weight", {dim});
  layer.ffn_norm = impl_->store.load_f32(prefix + "post_attention_layernorm.weight", {dim});
  layer.q_proj = impl_->linear(c, prefix + "self_attn.q_proj", c.q_dim(), dim, storage, c.n_heads);
  layer.k_proj = impl_->linear(c, prefix + "self_attn.k_proj", c.kv_dim(), dim, storage, c.n_kv_heads);
  layer.v_proj = impl_->linear(c, prefix + "self_attn.v_proj", c.kv_dim(), dim, storage);
  layer.o_proj = impl_->linear(c, prefix + "self_attn.o_proj", dim, c.q_dim(), storage);
  layer.gate_proj = impl_->linear(c, prefix + "mlp.gate_proj", hidden, dim, storage);
  layer.up_proj = impl_->linear(c, prefix + "mlp.up_proj", hidden, dim, storage);
  layer.down_proj = impl_->linear(c, prefix + "mlp.down_proj", dim, hidden, storage);
  if (c.qkv_bias) {
    layer.q_bias = impl_->store.load_f32(prefix + "self_attn.q_proj.bias", {c.q_dim()});
    layer.k_bias = impl_->store.load_f32(prefix + "self_attn.k_proj.bias", {c.kv_dim()});
    layer.v_bias = impl_->store.load_f32(prefix + "self_attn.v_proj.bias", {c.kv_dim()});
  }
  if (c.o_bias) layer.o_bias = impl_->store.load_f32(prefix + "self_attn.o_proj.bias", {dim});
  return layer;
}

std::vector<float> CheckpointReader::final_norm() const { return impl_->store.load_f32("model.norm.weight", {config_.dim}); }

std::unique_ptr<Linear> CheckpointReader::lm_head(FloatWeights storage) const {
  if (config_.tie_embeddings) return nullptr;
  const bool packed = impl_->store.find("lm_head.qweight");
  if (config_.quant_head_bits > 0 && !packed)
    fail("{}: quantization_config has a 'head' entry but tensor 'lm_head.qweight' is missing", impl_->path.string());
  if (!packed && !impl_->store.find("lm_head.weight"))
    fail("{}: tensor 'lm_head.weight' is missing", impl_->path.string());
  return impl_->linear(config_, "lm_head", config_.vocab_size, config_.dim, storage);
}

std::vector<SourceTensor> CheckpointReader::source_tensors() const {
  std::vector<SourceTensor> tensors;
  for (const auto* view : impl_->store.all())
    tensors.push_back({view->name, std::string(dtype_name(view->dtype)), view->shape, view->data.size()});
  return tensors;
}

DType CheckpointReader::dtype_of(const std::string& name) const { return impl_->store.get(name).dtype; }

std::size_t Model::weight_bytes() const {
  std::size_t bytes = embedding.bytes() + final_norm.size() * sizeof(float);
  for (const auto& layer : layers) {
    bytes += (layer.attn_norm.size() + layer.ffn_norm.size()) * sizeof(float);
    for (const Linear* linear : {layer.q_proj.get(), layer.k_proj.get(), layer.v_proj.get(), layer.o_proj.get(),
                                 layer.gate_proj.get(), layer.up_proj.get(), layer.down_proj.get()})
      bytes += linear->weight_bytes();
  }
  if (!config.tie_embeddings) bytes += lm_head->weight_bytes();
  return bytes;
}

namespace {

// The lm_head that reuses the embedding table's storage.
std::unique_ptr<Linear> tied_head(const StoredMatrix& embedding) {
  if (is_half(embedding.dtype())) return std::make_unique<HalfLinear>(embedding);
  // An f32 table is an owned vector (embedding_as_stored): the head shares it, no second copy.
  return std::make_unique<DenseLinear>(static_cast<int>(embedding.rows()), static_cast<int>(embedding.cols()),
                                       embedding.float_vector());
}

}  // namespace

Model load_model(const std::filesystem::path& path, const LoadOptions& options) {
  const CheckpointReader reader(path);
  Model model;
  model.config = reader.config();
  model.format = reader.format();
  model.source = path;
  model.embedding = reader.embedding_as_stored();
  for (int l = 0; l < model.config.n_layers; ++l) model.layers.push_back(reader.layer(l, FloatWeights::as_stored));
  model.final_norm = reader.final_norm();
  model.lm_head = reader.lm_head(FloatWeights::as_stored);
  if (!model.lm_head) model.lm_head = tied_head(model.embedding);
  model.source_tensors = reader.source_tensors();

  const auto tokenizer_path = options.tokenizer ? options.tokenizer : reader.default_tokenizer();
  if (tokenizer_path) {
    model.tokenizer = load_tokenizer(*tokenizer_path, model.config.vocab_size);
    if (model.tokenizer->vocab_size() > model.config.vocab_size)
      fail("{}: tokenizer has {} tokens but the model only has {} embeddings", tokenizer_path->string(),
           model.tokenizer->vocab_size(), model.config.vocab_size);
  } else if (options.require_tokenizer) {
    fail("{}: no tokenizer found beside the model; pass --tokenizer FILE", path.string());
  }
  return model;
}

}  // namespace fbq
