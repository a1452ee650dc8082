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
#include "model/stored_matrix.h"
#include "tokenizer/tokenizer.h"

namespace fbq {

struct DecoderLayer {
  std::vector<float> attn_norm, ffn_norm;
  std::unique_ptr<Linear> q_proj, k_proj, v_proj, o_proj;
  std::unique_ptr<Linear> gate_proj, up_proj, down_proj;
  // Added after the projection (config qkv_bias / o_bias); empty when the model has none. Never quantized.
  std::vector<float> q_bias, k_bias, v_bias, o_bias;
};

// How a reader hands out float linears: as f32 copies (what the quantization methods work on, one layer at a
// time) or as the file stores them (bf16/f16 stay 16-bit and memory-mapped: what inference runs on).
enum class FloatWeights { f32, as_stored };

// What the checkpoint file holds, for `fbq inspect`.
struct SourceTensor {
  std::string name;
  std::string dtype;
  std::vector<std::int64_t> shape;
  std::size_t bytes;
};

struct Model {
  ModelConfig config;
  std::string format;  // "huggingface", "fbquant-packed", "gptq", "gptq_v2", "llama2.c" or "gguf"
  std::filesystem::path source;
  StoredMatrix embedding;  // vocab × dim, as stored
  std::vector<DecoderLayer> layers;
  std::vector<float> final_norm;
  std::unique_ptr<Linear> lm_head;
  std::unique_ptr<Tokenizer> tokenizer;  // null when no tokenizer was found
  std::vector<SourceTensor> source_tensors;

  std::size_t weight_bytes() const;  // bytes the runtime holds for embedding, norms and linears
};

// Reads a checkpoint piece by piece, so the quantization pipeline can hold one decoder layer at a time.
// Linears stored packed (`<name>.qweight`, see docs/FORMAT.md; also GPTQ checkpoints, with the PEFT adapter in
// `DIR/branch/` as their branch) load as PackedLinear, others as DenseLinear.
class CheckpointReader {
 public:
  explicit CheckpointReader(const std::filesystem::path& path);  // HF directory, llama2.c .bin or .gguf
  ~CheckpointReader();
  CheckpointReader(CheckpointReader&&) noexcept;

  const ModelConfig& config() const { return config_; }
  const std::string& format() const { return format_; }
  // The tokenizer found beside the checkpoint (tokenizer.model / tokenizer.bin), if any; a GGUF's own path.
  std::optional<std::filesystem::path> default_tokenizer() const;

  std::shared_ptr<const std::vector<float>> embedding() const;  // an f32 copy
  StoredMatrix embedding_as_stored() const;
  DecoderLayer layer(int index, FloatWeights weights = FloatWeights::f32) const;
  std::vector<float> final_norm() const;
  // Null when the embeddings are tied (the model reuses the embedding table).
  std::unique_ptr<Linear> lm_head(FloatWeights weights = FloatWeights::f32) const;
  std::vector<SourceTensor> source_tensors() const;
  // The file dtype of a float tensor (F32/F16/BF16), so a rewrite can keep it lossless.
  DType dtype_of(const std::string& name) const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
  ModelConfig config_;
  std::string format_;
};

// The tokenizer file that belongs to MODEL: the .gguf itself; in a directory the first of tokenizer.model,
// tokenizer.json, vocab.json, tokenizer.gguf, tokenizer.bin; beside a llama2.c .bin, tokenizer.bin.
// nullopt when there is none.
std::optional<std::filesystem::path> tokenizer_beside(const std::filesystem::path& model);

struct LoadOptions {
  std::optional<std::filesystem::path> tokenizer;  // overrides the tokenizer found beside the model
  bool require_tokenizer = true;
};

// MODEL is a Hugging Face directory (config.json + safetensors + tokenizer.model) or a llama2.c `.bin`
// (tokenizer: --tokenizer, else `tokenizer.bin` beside it) or a llama GGUF file (tokenizer: --tokenizer, else
// the GGUF itself). Throws fbq::Error with one readable line.
Model load_model(const std::filesystem::path& path, const LoadOptions& options = {});

}  // namespace fbq
