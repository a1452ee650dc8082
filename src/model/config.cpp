#include "model/config.h"

#include <algorithm>
#include <charconv>
#include <cstdlib>
#include <cmath>
#include <fstream>
#include <map>
#include <numbers>
#include <type_traits>
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
  // nlohmann reads a bool as a number but throws on a number read as a bool: check each way (fuzz_model_dir).
  const bool fits = std::is_same_v<T, bool> ? it->is_boolean() : it->is_number() || it->is_boolean();
  if (!fits) fail("{}: '{}' has the wrong type", source, key);
  return it->get<T>();
}

// bos/eos ids: an integer, a list whose first entry is used (Llama-3 lists several eos ids), or null.
int token_id(const json& config, const char* key, int fallback, const std::string& source) {
  const auto it = config.find(key);
  if (it == config.end() || it->is_null()) return fallback;
  const json& value = it->is_array() && !it->empty() ? it->front() : *it;
  if (!value.is_number_integer()) fail("{}: '{}' must be an integer or a list of integers", source, key);
  return value.get<int>();
}

float required_float(const json& object, const char* key, const std::string& source) {
  const auto it = object.find(key);
  if (it == object.end() || !it->is_number()) fail("{}: rope_scaling needs a number '{}'", source, key);
  return it->get<float>();
}

RopeScaling parse_rope_scaling(const json& config, const std::string& source) {
  RopeScaling scaling;
  const auto it = config.find("rope_scaling");
  if (it == config.end() || it->is_null()) return scaling;
  if (!it->is_object()) fail("{}: rope_scaling must be an object or null", source);
  const json& s = *it;
  const auto type = s.value("rope_type", s.value("type", std::string("default")));
  if (type == "default") return scaling;
  if (type != "linear" && type != "llama3")
    fail("{}: rope_scaling type '{}' is not supported (linear and llama3 are)", source, type);
  scaling.factor = required_float(s, "factor", source);
  if (!(scaling.factor >= 1.0f)) fail("{}: rope_scaling factor must be at least 1", source);
  if (type == "linear") {
    scaling.type = RopeScaling::Type::linear;
    return scaling;
  }
  scaling.type = RopeScaling::Type::llama3;
  scaling.low_freq_factor = required_float(s, "low_freq_factor", source);
  scaling.high_freq_factor = required_float(s, "high_freq_factor", source);
  scaling.original_max_positions = static_cast<int>(required_float(s, "original_max_position_embeddings", source));
  if (!(scaling.low_freq_factor > 0.0f && scaling.high_freq_factor > scaling.low_freq_factor) ||
      scaling.original_max_positions <= 0)
    fail("{}: llama3 rope_scaling needs 0 < low_freq_factor < high_freq_factor and a positive "
         "original_max_position_embeddings", source);
  return scaling;
}

// What each model_type adds to the plain Llama decoder: biases and a sliding window.
void parse_architecture(const json& config, const std::string& source, ModelConfig& c) {
  if (const auto act = config.find("hidden_act"); act != config.end() && act->is_string() && *act != "silu")
    fail("{}: hidden_act '{}' is not supported (SwiGLU with silu is)", source, act->get<std::string>());
  if (optional_value<bool>(config, "mlp_bias", false, source)) fail("{}: mlp_bias is not supported", source);
  if (c.model_type == "qwen2") {
    c.qkv_bias = true;
    if (optional_value<bool>(config, "use_sliding_window", false, source))
      c.sliding_window = optional_value<int>(config, "sliding_window", 0, source);
    return;
  }
  c.qkv_bias = c.o_bias = optional_value<bool>(config, "attention_bias", false, source);
  // MistralConfig's default window is 4096; an explicit null (Mistral-7B-v0.2 and later) means none.
  if (c.model_type == "mistral")
    c.sliding_window = config.contains("sliding_window") ? optional_value<int>(config, "sliding_window", 0, source) : 4096;
}

}  // namespace

int ModelConfig::max_exact_positions() const {
  return sliding_window > 0 ? std::min(max_seq_len, sliding_window) : max_seq_len;
}

std::vector<float> ModelConfig::rope_inverse_frequencies() const {
  const int half = head_dim / 2;
  std::vector<float> inv_freq(half);
  for (int i = 0; i < half; ++i)
    inv_freq[i] = 1.0f / std::pow(rope_theta, static_cast<float>(2 * i) / static_cast<float>(head_dim));
  const auto& s = rope_scaling;
  if (s.type == RopeScaling::Type::linear)
    for (float& f : inv_freq) f /= s.factor;
  if (s.type == RopeScaling::Type::llama3) {
    const float original = static_cast<float>(s.original_max_positions);
    const float low_freq_wavelen = original / s.low_freq_factor, high_freq_wavelen = original / s.high_freq_factor;
    for (float& f : inv_freq) {
      const float wavelen = 2.0f * std::numbers::pi_v<float> / f;
      if (wavelen > low_freq_wavelen) {
        f /= s.factor;
      } else if (!(wavelen < high_freq_wavelen)) {
        const float smooth = (original / wavelen - s.low_freq_factor) / (s.high_freq_factor - s.low_freq_factor);
        f = (1.0f - smooth) * f / s.factor + smooth * f;
      }
    }
  }
  return inv_freq;
}

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
  if (sliding_window < 0) fail("{}: sliding_window must be positive or null", source);
}

namespace {

json read_json(const std::filesystem::path& path) {
  std::ifstream in(path);
  if (!in) fail("cannot open {}", path.string());
  json config = json::parse(in, nullptr, /*allow_exceptions=*/false);
  if (config.is_discarded() || !config.is_object()) fail("{}: malformed JSON", path.string());
  return config;
}

// A Hugging Face GPTQ quantization_config / quantize_config.json (AutoGPTQ, GPTQModel): bits, group_size
// (−1 = per-channel) and the zero-point convention. desc_act and sym need no setting: g_idx and qzeros say it.
void parse_gptq_config(const json& quant, const std::string& source, ModelConfig& c) {
  c.quant_bits = required_int(quant, "bits", source);
  if (c.quant_bits != 2 && c.quant_bits != 3 && c.quant_bits != 4 && c.quant_bits != 8)
    fail("{}: GPTQ bits {} is not 2, 3, 4 or 8", source, c.quant_bits);
  const int group_size = required_int(quant, "group_size", source);
  if (group_size != -1 && group_size <= 0) fail("{}: GPTQ group_size {} is not positive or -1", source, group_size);
  c.quant_group_size = group_size == -1 ? 0 : group_size;
  const auto format = quant.value("checkpoint_format", std::string("gptq"));
  if (format != "gptq" && format != "gptq_v2") fail("{}: GPTQ checkpoint_format '{}' is not gptq or gptq_v2", source, format);
  c.quant_format = format;
}

void parse_quantization_config(const json& quant, const std::string& source, ModelConfig& c) {
  if (!quant.is_object()) fail("{}: quantization_config must be an object", source);
  if (quant.value("quant_method", std::string()) == "gptq") return parse_gptq_config(quant, source, c);
  const auto format = quant.value("format", std::string());
  if (format != kPackedFormat)
    fail("{}: quantization_config format '{}' is not '{}' or GPTQ (other packed formats are not readable yet)", source,
         format, kPackedFormat);
  c.quant_bits = required_int(quant, "bits", source);
  c.quant_group_size = required_int(quant, "group_size", source);
  c.quant_format = kPackedFormat;
  if (const auto head = quant.find("head"); head != quant.end()) {
    if (!head->is_object()) fail("{}: quantization_config 'head' must be an object", source);
    // A tied model's head is its embedding table, which is never packed.
    if (c.tie_embeddings) fail("{}: a quantized head needs tie_word_embeddings false", source);
    c.quant_head_bits = required_int(*head, "bits", source);
    c.quant_head_group_size = required_int(*head, "group_size", source);
  }
}

}  // namespace

ModelConfig parse_hf_config(const std::filesystem::path& path) {
  const std::string source = path.string();
  const json config = read_json(path);

  ModelConfig c;
  if (const auto type = config.find("model_type"); type != config.end() && type->is_string()) {
    c.model_type = type->get<std::string>();
    if (c.model_type != "llama" && c.model_type != "mistral" && c.model_type != "qwen2")
      fail("{}: model_type '{}' is not a decoder this runtime supports (llama, mistral, qwen2)", source, c.model_type);
  }
  parse_architecture(config, source, c);
  c.rope_scaling = parse_rope_scaling(config, source);
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
  c.bos_id = token_id(config, "bos_token_id", 1, source);
  c.eos_id = token_id(config, "eos_token_id", 2, source);
  if (const auto quant = config.find("quantization_config"); quant != config.end())
    parse_quantization_config(*quant, source, c);
  else if (const auto gptq = path.parent_path() / "quantize_config.json"; std::filesystem::is_regular_file(gptq))
    parse_gptq_config(read_json(gptq), gptq.string(), c);  // older AutoGPTQ checkpoints keep it only there
  c.validate(source);
  return c;
}

// The double a float was written as in config.json (1e-6, not 9.99999997e-07): its shortest decimal form.
namespace {
double as_written(float value) {
  char text[32];
  const auto end = std::to_chars(text, text + sizeof text, value).ptr;
  return std::strtod(std::string(text, end).c_str(), nullptr);
}
}  // namespace

json to_hf_config(const ModelConfig& c) {
  static const std::map<std::string, const char*> kArchitectures = {
      {"llama", "LlamaForCausalLM"}, {"mistral", "MistralForCausalLM"}, {"qwen2", "Qwen2ForCausalLM"}};
  json config = {{"architectures", {kArchitectures.at(c.model_type)}},
                 {"model_type", c.model_type},
                 {"hidden_act", "silu"},
                 {"hidden_size", c.dim},
                 {"intermediate_size", c.hidden_dim},
                 {"num_attention_heads", c.n_heads},
                 {"num_key_value_heads", c.n_kv_heads},
                 {"head_dim", c.head_dim},
                 {"num_hidden_layers", c.n_layers},
                 {"vocab_size", c.vocab_size},
                 {"max_position_embeddings", c.max_seq_len},
                 {"rms_norm_eps", as_written(c.rms_eps)},
                 {"rope_theta", as_written(c.rope_theta)},
                 {"rope_scaling", nullptr},
                 {"tie_word_embeddings", c.tie_embeddings},
                 {"bos_token_id", c.bos_id},
                 {"eos_token_id", c.eos_id}};
  const auto& s = c.rope_scaling;
  if (s.type == RopeScaling::Type::linear) config["rope_scaling"] = {{"rope_type", "linear"}, {"factor", as_written(s.factor)}};
  if (s.type == RopeScaling::Type::llama3)
    config["rope_scaling"] = {{"rope_type", "llama3"},
                              {"factor", as_written(s.factor)},
                              {"low_freq_factor", as_written(s.low_freq_factor)},
                              {"high_freq_factor", as_written(s.high_freq_factor)},
                              {"original_max_position_embeddings", s.original_max_positions}};
  if (c.model_type == "qwen2") {
    config["use_sliding_window"] = c.sliding_window > 0;
    config["sliding_window"] = c.sliding_window > 0 ? json(c.sliding_window) : json(nullptr);
  } else {
    config["attention_bias"] = c.qkv_bias;
    config["mlp_bias"] = false;
  }
  if (c.model_type == "mistral") config["sliding_window"] = c.sliding_window > 0 ? json(c.sliding_window) : json(nullptr);
  return config;
}

}  // namespace fbq
