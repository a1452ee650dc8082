#include "io/gguf_checkpoint.h"

#include <algorithm>
#include <climits>
#include <optional>
#include <regex>

#include "io/gguf.h"
#include "io/gguf_blocks.h"
#include "util/error.h"

namespace fbq {
namespace {

int int_in_range(const GgufFile& file, const std::string& key, std::int64_t value) {
  if (value < 0 || value > INT_MAX) fail("{}: metadata key '{}' = {} is out of range", file.path().string(), key, value);
  return static_cast<int>(value);
}

int required_int(const GgufFile& file, const std::string& key) {
  const auto value = file.get_int(key);
  if (!value) fail("{}: metadata key '{}' is missing", file.path().string(), key);
  return int_in_range(file, key, *value);
}

int optional_int(const GgufFile& file, const std::string& key, int fallback) {
  const auto value = file.get_int(key);
  return value ? int_in_range(file, key, *value) : fallback;
}

ModelConfig config_from_metadata(const GgufFile& file) {
  const auto path = file.path().string();
  const auto architecture = file.get_string("general.architecture");
  if (!architecture) fail("{}: metadata key 'general.architecture' is missing", path);
  if (*architecture != "llama") fail("{}: architecture '{}' is not supported (only 'llama')", path, *architecture);

  ModelConfig c;
  c.dim = required_int(file, "llama.embedding_length");
  c.hidden_dim = required_int(file, "llama.feed_forward_length");
  c.n_layers = required_int(file, "llama.block_count");
  c.n_heads = required_int(file, "llama.attention.head_count");
  c.n_kv_heads = optional_int(file, "llama.attention.head_count_kv", c.n_heads);
  c.max_seq_len = required_int(file, "llama.context_length");
  const auto eps = file.get_float("llama.attention.layer_norm_rms_epsilon");
  if (!eps) fail("{}: metadata key 'llama.attention.layer_norm_rms_epsilon' is missing", path);
  c.rms_eps = static_cast<float>(*eps);
  c.rope_theta = static_cast<float>(file.get_float("llama.rope.freq_base").value_or(10000.0));
  c.head_dim = c.n_heads > 0 ? c.dim / c.n_heads : 0;
  if (c.head_dim * c.n_heads != c.dim) fail("{}: dim {} is not divisible by {} heads", path, c.dim, c.n_heads);
  const int rope_dims = optional_int(file, "llama.rope.dimension_count", c.head_dim);
  if (rope_dims != c.head_dim)
    fail("{}: llama.rope.dimension_count {} differs from head_dim {} (partial RoPE is not supported)", path, rope_dims,
         c.head_dim);

  const auto* embedding = file.find_tensor("token_embd.weight");
  if (!embedding || embedding->dims.size() != 2) fail("{}: tensor 'token_embd.weight' (2-D) is missing", path);
  if (embedding->dims[1] > INT_MAX) fail("{}: token_embd.weight has {} rows, too many", path, embedding->dims[1]);
  c.vocab_size = static_cast<int>(embedding->dims[1]);
  if (optional_int(file, "llama.vocab_size", c.vocab_size) != c.vocab_size)
    fail("{}: llama.vocab_size differs from the {} rows of token_embd.weight", path, c.vocab_size);
  c.bos_id = optional_int(file, "tokenizer.ggml.bos_token_id", c.bos_id);
  c.eos_id = optional_int(file, "tokenizer.ggml.eos_token_id", c.eos_id);
  c.tie_embeddings = file.find_tensor("output.weight") == nullptr;
  c.validate(path);
  return c;
}

// llama.cpp's tensor names to Hugging Face's; nullopt for a name with no counterpart here.
std::optional<std::string> hf_tensor_name(const std::string& name) {
  static const std::map<std::string, std::string> kGlobal = {
      {"token_embd.weight", "model.embed_tokens.weight"},
      {"output_norm.weight", "model.norm.weight"},
      {"output.weight", "lm_head.weight"},
  };
  static const std::map<std::string, std::string> kPerLayer = {
      {"attn_norm", "input_layernorm"},      {"ffn_norm", "post_attention_layernorm"},
      {"attn_q", "self_attn.q_proj"},        {"attn_k", "self_attn.k_proj"},
      {"attn_v", "self_attn.v_proj"},        {"attn_output", "self_attn.o_proj"},
      {"ffn_gate", "mlp.gate_proj"},         {"ffn_up", "mlp.up_proj"},
      {"ffn_down", "mlp.down_proj"},
  };
  if (const auto it = kGlobal.find(name); it != kGlobal.end()) return it->second;
  static const std::regex kLayerTensor(R"(blk\.(\d+)\.(\w+)\.weight)");
  std::smatch match;
  if (!std::regex_match(name, match, kLayerTensor)) return std::nullopt;
  const auto it = kPerLayer.find(match[2].str());
  if (it == kPerLayer.end()) return std::nullopt;
  return fmt::format("model.layers.{}.{}.weight", match[1].str(), it->second);
}

}  // namespace

GgufCheckpoint read_gguf_checkpoint(const std::filesystem::path& path) {
  const GgufFile file(path);
  GgufCheckpoint checkpoint{config_from_metadata(file), TensorStore(path)};
  for (const auto& tensor : file.tensors()) {
    const auto name = hf_tensor_name(tensor.name);
    if (!name)
      fail("{}: tensor '{}' has no Hugging Face LLaMA counterpart (unsupported model variant?)", path.string(),
           tensor.name);
    auto values = std::make_shared<const std::vector<float>>(dequantize_gguf_tensor(tensor, path));
    // GGUF lists dims innermost first; PyTorch shapes are outermost first.
    std::vector<std::int64_t> shape(tensor.dims.rbegin(), tensor.dims.rend());
    const std::span<const std::uint8_t> bytes(reinterpret_cast<const std::uint8_t*>(values->data()),
                                              values->size() * sizeof(float));
    checkpoint.tensors.add(values, TensorView{*name, DType::F32, std::move(shape), bytes, path});
  }
  return checkpoint;
}

}  // namespace fbq
