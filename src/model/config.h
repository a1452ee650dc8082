#pragma once
// Hyper-parameters of a LLaMA-family decoder, from config.json or a llama2.c header.
#include <filesystem>
#include <string>
#include <vector>

#include <nlohmann/json_fwd.hpp>

namespace fbq {

// config.json "rope_scaling": how RoPE frequencies are stretched for long contexts.
struct RopeScaling {
  enum class Type { none, linear, llama3 };
  Type type = Type::none;
  float factor = 1.0f;
  // llama3 only: wavelengths below original/high_freq_factor keep their frequency, those above
  // original/low_freq_factor are divided by `factor`, and the band between is interpolated.
  float low_freq_factor = 1.0f, high_freq_factor = 4.0f;
  int original_max_positions = 0;
};

struct ModelConfig {
  std::string model_type = "llama";  // llama, mistral or qwen2 (config.json's own name, written back as read)
  int dim = 0;          // hidden_size
  int hidden_dim = 0;   // intermediate_size (SwiGLU)
  int n_layers = 0;
  int n_heads = 0;
  int n_kv_heads = 0;
  int head_dim = 0;     // usually dim / n_heads
  int vocab_size = 0;
  int max_seq_len = 0;  // max_position_embeddings
  float rms_eps = 1e-5f;
  float rope_theta = 10000.0f;
  RopeScaling rope_scaling;
  // Additive biases: Qwen2 has them on q/k/v; Llama's attention_bias puts them on q/k/v/o.
  bool qkv_bias = false, o_bias = false;
  int sliding_window = 0;  // Mistral: a token attends to the last `sliding_window` positions; 0 = unlimited
  bool tie_embeddings = false;
  int bos_id = 1;
  int eos_id = 2;
  // From config.json "quantization_config" of a packed model; 0 = not quantized.
  int quant_bits = 0;
  int quant_group_size = 0;  // 0 with GPTQ's group_size −1: one group per row (per-channel)
  // quantization_config "head": the packed lm_head's own bits and group size; 0 = the head is not packed.
  int quant_head_bits = 0;
  int quant_head_group_size = 0;
  // How the packed linears are laid out: kPackedFormat, or a GPTQ checkpoint_format ("gptq", "gptq_v2").
  std::string quant_format;

  int q_dim() const { return n_heads * head_dim; }
  int kv_dim() const { return n_kv_heads * head_dim; }
  // The longest sequence this runtime runs exactly: max_position_embeddings, and no longer than the sliding
  // window (attention beyond it is not implemented).
  int max_exact_positions() const;
  // RoPE's inverse frequency of each pair i < head_dim/2 (float32, as PyTorch computes it), after rope_scaling.
  std::vector<float> rope_inverse_frequencies() const;
  // Throws fbq::Error naming `source` when a field is missing, non-positive or inconsistent.
  void validate(const std::string& source) const;
};

// The packed-weights layout this version reads and writes (docs/FORMAT.md).
inline constexpr const char* kPackedFormat = "fbquant-rowpacked-v1";

// Parses a Hugging Face LLaMA-family config.json (llama, mistral, qwen2).
ModelConfig parse_hf_config(const std::filesystem::path& path);
// The config.json of `c` as Hugging Face writes it (without quantization_config).
nlohmann::json to_hf_config(const ModelConfig& c);

}  // namespace fbq
