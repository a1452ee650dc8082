#include "model/model.h"

#include "io/dtype.h"
#include "io/gguf.h"
#include "io/gguf_checkpoint.h"
#include "io/llama2c.h"
#include "io/safetensors.h"
#include "pack/bf16_linear.h"
#include "pack/packed_linear.h"
#include "util/error.h"

#include <fmt/ranges.h>

#include <cstring>

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

}  // namespace

struct CheckpointReader::Impl {
  TensorStore store{{}};
  bool interleaved_rope = false;
  std::filesystem::path path;

  std::unique_ptr<Linear> linear(const ModelConfig& c, const std::string& name, std::int64_t out, std::int64_t in,
                                 int rope_heads = 0) const {
    if (store.find(name + ".qweight")) return packed(c, name, out, in);
    auto weights = store.load_f32(name + ".weight", {out, in});
    if (interleaved_rope && rope_heads > 0) interleaved_to_rotate_half(weights, rope_heads, c.head_dim, c.dim);
    return std::make_unique<DenseLinear>(static_cast<int>(out), static_cast<int>(in),
                                         std::make_shared<std::vector<float>>(std::move(weights)));
  }

  std::unique_ptr<Linear> packed(const ModelConfig& c, const std::string& name, std::int64_t out, std::int64_t in) const {
    if (c.quant_bits == 0) fail("{}: '{}' is packed but config.json has no quantization_config", path.string(), name);
    PackedWeights weights;
    weights.rows = static_cast<int>(out);
    weights.cols = static_cast<int>(in);
    weights.spec = {c.quant_bits, c.quant_group_size};
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
};

CheckpointReader::CheckpointReader(const std::filesystem::path& path) : impl_(std::make_unique<Impl>()) {
  if (!std::filesystem::exists(path)) fail("{}: no such file or directory", path.string());
  impl_->path = path;
  if (std::filesystem::is_directory(path)) {
    config_ = parse_hf_config(path / "config.json");
    impl_->store = TensorStore::open_directory(path);
    format_ = config_.quant_bits ? "fbquant-packed" : "huggingface";
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

DecoderLayer CheckpointReader::layer(int index) const {
  const auto& c = config_;
  const auto prefix = fmt::format("model.layers.{}.", index);
  const std::int64_t dim = c.dim, hidden = c.hidden_dim;
  DecoderLayer layer;
  layer.attn_norm = impl_->store.load_f32(prefix + "input_layernorm.weight", {dim});
  layer.ffn_norm = impl_->store.load_f32(prefix + "post_attention_layernorm.weight", {dim});
  layer.q_proj = impl_->linear(c, prefix + "self_attn.q_proj", c.q_dim(), dim, c.n_heads);
  layer.k_proj = impl_->linear(c, prefix + "self_attn.k_proj", c.kv_dim(), dim, c.n_kv_heads);
  layer.v_proj = impl_->linear(c, prefix + "self_attn.v_proj", c.kv_dim(), dim);
  layer.o_proj = impl_->linear(c, prefix + "self_attn.o_proj", dim, c.q_dim());
  layer.gate_proj = impl_->linear(c, prefix + "mlp.gate_proj", hidden, dim);
  layer.up_proj = impl_->linear(c, prefix + "mlp.up_proj", hidden, dim);
  layer.down_proj = impl_->linear(c, prefix + "mlp.down_proj", dim, hidden);
  return layer;
}

std::vector<float> CheckpointReader::final_norm() const { return impl_->store.load_f32("model.norm.weight", {config_.dim}); }

std::unique_ptr<Linear> CheckpointReader::lm_head() const {
  if (config_.tie_embeddings) return nullptr;
  const auto* head = impl_->store.find("lm_head.weight");
  if (!head) fail("{}: tensor 'lm_head.weight' is missing", impl_->path.string());
  if (config_.quant_bits > 0 && head->dtype == DType::BF16) {  // packed model: decode reads all of it, keep bf16
    auto weights = load_raw<std::uint16_t>(impl_->store, "lm_head.weight", DType::BF16, {config_.vocab_size, config_.dim});
    std::vector<float> row(config_.dim);
    for (std::int64_t r = 0; r < config_.vocab_size; ++r) {  // the loader's finiteness check, a row at a time
      for (int j = 0; j < config_.dim; ++j) row[j] = bf16_to_float(weights[r * config_.dim + j]);
      check_finite("lm_head.weight", row);
    }
    return std::make_unique<Bf16Linear>(config_.vocab_size, config_.dim, std::move(weights));
  }
  return impl_->linear(config_, "lm_head", config_.vocab_size, config_.dim);
}

std::vector<SourceTensor> CheckpointReader::source_tensors() const {
  std::vector<SourceTensor> tensors;
  for (const auto* view : impl_->store.all())
    tensors.push_back({view->name, std::string(dtype_name(view->dtype)), view->shape, view->data.size()});
  return tensors;
}

DType CheckpointReader::dtype_of(const std::string& name) const { return impl_->store.get(name).dtype; }

std::size_t Model::weight_bytes() const {
  std::size_t bytes = embedding->size() * sizeof(float) + final_norm.size() * sizeof(float);
  for (const auto& layer : layers) {
    bytes += (layer.attn_norm.size() + layer.ffn_norm.size()) * sizeof(float);
    for (const Linear* linear : {layer.q_proj.get(), layer.k_proj.get(), layer.v_proj.get(), layer.o_proj.get(),
                                 layer.gate_proj.get(), layer.up_proj.get(), layer.down_proj.get()})
      bytes += linear->weight_bytes();
  }
  if (!config.tie_embeddings) bytes += lm_head->weight_bytes();
  return bytes;
}

Model load_model(const std::filesystem::path& path, const LoadOptions& options) {
  const CheckpointReader reader(path);
  Model model;
  model.config = reader.config();
  model.format = reader.format();
  model.source = path;
  model.embedding = reader.embedding();
  for (int l = 0; l < model.config.n_layers; ++l) model.layers.push_back(reader.layer(l));
  model.final_norm = reader.final_norm();
  model.lm_head = reader.lm_head();
  if (!model.lm_head) model.lm_head = std::make_unique<DenseLinear>(model.config.vocab_size, model.config.dim, model.embedding);
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
