#include "model/config.h"

#include <fstream>
#include <nlohmann/json.hpp>

#include "util/error.h"

namespace fbq {
namespace {

using json = nlohmann::json;

int required_int(const json& config, const char* key, const std::string& source) {
  const auto it = config.find(key);
  if (it == config.end()) fail("{}: missing '{}'", source, key);
  if (!it->is_number_integer()) fail("{}: '{}' must be an integer", source, key);
  return it->get<int>();
}

template <typename T>
T optional_value(const json& config, const char* key, T fallback, const std::string& source) {
  const auto it = config.find(key);
  if (it == config.end() || it->is_null()) return fallback;
  if (!it->is_number() && !it->is_boolean()) fail("{}: '{}' has the wrong type", source, key);
  return it->get<T>();
}

}  // namespace

void ModelConfig::validate(const std::string& source) const {
  const auto positive = [&](int value, const char* name) {
    if (value <= 0) fail("{}: {} must be positive (got {})", source, name, value);
  };
  positive(dim, "hidden size");
  positive(hidden_dim, "intermediate size");
  positive(n_layers, "number of layers");
  positive(n_heads, "number of attention heads");
  positive(n_kv_heads, "number of key/value heads");
  positive(head_dim, "head dimension");
  positive(vocab_size, "vocabulary size");
  positive(max_seq_len, "maximum sequence length");
  if (n_heads % n_kv_heads != 0)
    fail("{}: {} attention heads are not a multiple of {} key/value heads", source, n_heads, n_kv_heads);
  if (head_dim % 2 != 0) fail("{}: head dimension {} must be even for RoPE", source, head_dim);
  if (!(rms_eps > 0.0f)) fail("{}: rms_norm_eps must be positive", source);
  if (!(rope_theta > 0.0f)) fail("{}: rope_theta must be positive", source);
}

ModelConfig parse_hf_config(const std::filesystem::path& path) {
  const std::string source = path.string();
  std::ifstream in(path);
  if (!in) fail("cannot open {}", source);
  const json config = json::parse(in, nullptr, /*allow_exceptions=*/false);
  if (config.is_discarded() || !config.is_object()) fail("{}: malformed JSON", source);

  if (const auto type = config.find("model_type"); type != config.end() && type->is_string()) {
    const auto name = type->get<std::string>();
    if (name != "llama" && name != "mistral")
      fail("{}: model_type '{}' is not a LLaMA-family decoder this runtime supports", source, name);
  }
  if (const auto scaling = config.find("rope_scaling"); scaling != config.end() && !scaling->is_null())
    fail("{}: rope_scaling is not supported yet", source);

  ModelConfig c;
  c.dim = required_int(config, "hidden_size", source);
  c.hidden_dim = required_int(config, "intermediate_size", source);
  c.n_layers = required_int(config, "num_hidden_layers", source);
  c.n_heads = required_int(config, "num_attention_heads", source);
  c.n_kv_heads = optional_value<int>(config, "num_key_value_heads", c.n_heads, source);
  c.head_dim = optional_value<int>(config, "head_dim", c.n_heads > 0 ? c.dim / c.n_heads : 0, source);
  c.vocab_size = required_int(config, "vocab_size", source);
  c.max_seq_len = optional_value<int>(config, "max_position_embeddings", 2048, source);
  c.rms_eps = optional_value<float>(config, "rms_norm_eps", 1e-6f, source);
  c.rope_theta = optional_value<float>(config, "rope_theta", 10000.0f, source);
  c.tie_embeddings = optional_value<bool>(config, "tie_word_embeddings", false, source);
  c.bos_id = optional_value<int>(config, "bos_token_id", 1, source);
  c.eos_id = optional_value<int>(config, "eos_token_id", 2, source);
  if (const auto quant = config.find("quantization_config"); quant != config.end()) {
    if (!quant->is_object()) fail("{}: quantization_config must be an object", source);
    const auto format = quant->value("format", std::string());
    if (format != kPackedFormat)
      fail("{}: quantization_config format '{}' is not '{}' (other packed formats are not readable yet)", source,
           format, kPackedFormat);
    c.quant_bits = required_int(*quant, "bits", source);
    c.quant_group_size = required_int(*quant, "group_size", source);
  }
  c.validate(source);
  return c;
}

}  // namespace fbq
