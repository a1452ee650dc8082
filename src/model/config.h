#pragma once
// Hyper-parameters of a LLaMA-family decoder, from config.json or a llama2.c header.
#include <filesystem>
#include <string>

namespace fbq {

struct ModelConfig {
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
  bool tie_embeddings = false;
  int bos_id = 1;
  int eos_id = 2;
  // From config.json "quantization_config" of a packed fbquant model; 0 = not quantized.
  int quant_bits = 0;
  int quant_group_size = 0;

  int q_dim() const { return n_heads * head_dim; }
  int kv_dim() const { return n_kv_heads * head_dim; }
  // Throws fbq::Error naming `source` when a field is missing, non-positive or inconsistent.
  void validate(const std::string& source) const;
};

// The packed-weights layout this version reads and writes (docs/FORMAT.md).
inline constexpr const char* kPackedFormat = "fbquant-rowpacked-v1";

// Parses a Hugging Face LLaMA-family config.json.
ModelConfig parse_hf_config(const std::filesystem::path& path);

}  // namespace fbq
