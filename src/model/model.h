#pragma once
// A LLaMA-family decoder in memory: config, norms, embedding and one Linear per projection.
#include <filesystem>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "io/dtype.h"
#include "model/config.h"
#include "model/linear.h"
#include "tokenizer/tokenizer.h"

namespace fbq {

struct DecoderLayer {
  std::vector<float> attn_norm, ffn_norm;
  std::unique_ptr<Linear> q_proj, k_proj, v_proj, o_proj;
  std::unique_ptr<Linear> gate_proj, up_proj, down_proj;
};

// What the checkpoint file holds, for `fbq inspect`.
struct SourceTensor {
  std::string name;
  std::string dtype;
  std::vector<std::int64_t> shape;
  std::size_t bytes;
};

struct Model {
  ModelConfig config;
  std::string format;  // "huggingface" or "llama2.c"
  std::filesystem::path source;
  std::shared_ptr<const std::vector<float>> embedding;  // vocab × dim
  std::vector<DecoderLayer> layers;
  std::vector<float> final_norm;
  std::unique_ptr<Linear> lm_head;
  std::unique_ptr<Tokenizer> tokenizer;  // null when no tokenizer was found
  std::vector<SourceTensor> source_tensors;

  std::size_t weight_bytes() const;  // bytes the runtime holds for embedding, norms and linears
};

struct LoadOptions {
  std::optional<std::filesystem::path> tokenizer;  // overrides the tokenizer found beside the model
  bool require_tokenizer = true;
};

// MODEL is a Hugging Face directory (config.json + safetensors + tokenizer.model) or a llama2.c `.bin`
// (tokenizer: --tokenizer, else `tokenizer.bin` beside it). Throws fbq::Error with one readable line.
Model load_model(const std::filesystem::path& path, const LoadOptions& options = {});

}  // namespace fbq
