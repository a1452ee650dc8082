#pragma once
// llama2.c checkpoints (karpathy/llama2.c `run.c` format, version 0): a 7×int32 header followed by float32
// tensors in a fixed order. Exposed under Hugging Face tensor names so one model builder serves both
// formats; q/k rows stay in llama2.c's interleaved RoPE order (the builder permutes them).
#include <filesystem>

#include "io/safetensors.h"
#include "model/config.h"

namespace fbq {

struct Llama2cCheckpoint {
  ModelConfig config;
  TensorStore tensors;
};

Llama2cCheckpoint read_llama2c_checkpoint(const std::filesystem::path& path);  // throws fbq::Error

}  // namespace fbq
