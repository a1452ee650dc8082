#include "model/model.h"

#include "io/llama2c.h"
#include "io/safetensors.h"
#include "util/error.h"

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

Model build_model(const ModelConfig& c, const TensorStore& store, bool interleaved_rope) {
  Model model;
  model.config = c;
  const std::int64_t dim = c.dim, hidden = c.hidden_dim, vocab = c.vocab_size;
  const auto dense = [&](const std::string& name, std::int64_t out, std::int64_t in) {
    auto weights = std::make_shared<std::vector<float>>(store.load_f32(name, {out, in}));
    return std::make_unique<DenseLinear>(static_cast<int>(out), static_cast<int>(in), std::move(weights));
  };
  const auto rope_dense = [&](const std::string& name, int heads) {
    auto weights = store.load_f32(name, {static_cast<std::int64_t>(heads) * c.head_dim, dim});
    if (interleaved_rope) interleaved_to_rotate_half(weights, heads, c.head_dim, c.dim);
    return std::make_unique<DenseLinear>(heads * c.head_dim, c.dim,
                                         std::make_shared<std::vector<float>>(std::move(weights)));
  };

  model.embedding = std::make_shared<std::vector<float>>(store.load_f32("model.embed_tokens.weight", {vocab, dim}));
  for (int l = 0; l < c.n_layers; ++l) {
    const auto prefix = fmt::format("model.layers.{}.", l);
    DecoderLayer layer;
    layer.attn_norm = store.load_f32(prefix + "input_layernorm.weight", {dim});
    layer.ffn_norm = store.load_f32(prefix + "post_attention_layernorm.weight", {dim});
    layer.q_proj = rope_dense(prefix + "self_attn.q_proj.weight", c.n_heads);
    layer.k_proj = rope_dense(prefix + "self_attn.k_proj.weight", c.n_kv_heads);
    layer.v_proj = dense(prefix + "self_attn.v_proj.weight", c.kv_dim(), dim);
    layer.o_proj = dense(prefix + "self_attn.o_proj.weight", dim, c.q_dim());
    layer.gate_proj = dense(prefix + "mlp.gate_proj.weight", hidden, dim);
    layer.up_proj = dense(prefix + "mlp.up_proj.weight", hidden, dim);
    layer.down_proj = dense(prefix + "mlp.down_proj.weight", dim, hidden);
    model.layers.push_back(std::move(layer));
  }
  model.final_norm = store.load_f32("model.norm.weight", {dim});
  if (c.tie_embeddings || !store.find("lm_head.weight")) {
    if (!c.tie_embeddings) fail("{}: tensor 'lm_head.weight' is missing", store.source().string());
    model.lm_head = std::make_unique<DenseLinear>(c.vocab_size, c.dim, model.embedding);
  } else {
    model.lm_head = dense("lm_head.weight", vocab, dim);
  }

  for (const auto* view : store.all())
    model.source_tensors.push_back({view->name, std::string(dtype_name(view->dtype)), view->shape, view->data.size()});
  return model;
}

void attach_tokenizer(Model& model, const std::filesystem::path& path) {
  model.tokenizer = load_tokenizer(path, model.config.vocab_size);
  if (model.tokenizer->vocab_size() > model.config.vocab_size)
    fail("{}: tokenizer has {} tokens but the model only has {} embeddings", path.string(),
         model.tokenizer->vocab_size(), model.config.vocab_size);
}

}  // namespace

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
  if (!std::filesystem::exists(path)) fail("{}: no such file or directory", path.string());
  Model model;
  std::optional<std::filesystem::path> tokenizer_path = options.tokenizer;
  if (std::filesystem::is_directory(path)) {
    const auto config = parse_hf_config(path / "config.json");
    const auto store = TensorStore::open_directory(path);
    model = build_model(config, store, /*interleaved_rope=*/false);
    model.format = "huggingface";
    if (!tokenizer_path && std::filesystem::exists(path / "tokenizer.model")) tokenizer_path = path / "tokenizer.model";
  } else {
    const auto checkpoint = read_llama2c_checkpoint(path);
    model = build_model(checkpoint.config, checkpoint.tensors, /*interleaved_rope=*/true);
    model.format = "llama2.c";
    const auto sibling = path.parent_path() / "tokenizer.bin";
    if (!tokenizer_path && std::filesystem::exists(sibling)) tokenizer_path = sibling;
  }
  model.source = path;
  if (tokenizer_path) {
    attach_tokenizer(model, *tokenizer_path);
  } else if (options.require_tokenizer) {
    fail("{}: no tokenizer found beside the model; pass --tokenizer FILE", path.string());
  }
  return model;
}

}  // namespace fbq
