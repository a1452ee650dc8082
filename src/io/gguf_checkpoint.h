#pragma once
// LLaMA models in GGUF files (llama.cpp's `llama` architecture), exposed under Hugging Face tensor names
// and shapes so one model builder serves every format. Every tensor is dequantized to float32 at load;
// q/k rows stay in GGUF's interleaved RoPE order (the builder permutes them, as for llama2.c).
#include <filesystem>

#include "io/safetensors.h"
#include "model/config.h"

namespace fbq {

struct GgufCheckpoint {
  ModelConfig config;
  TensorStore tensors;
};

GgufCheckpoint read_gguf_checkpoint(const std::filesystem::path& path);  // throws fbq::Error

}  // namespace fbq
