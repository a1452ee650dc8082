#pragma once
// `fbq synth`: a complete Hugging Face model directory with the exact published shapes of a known model and
// random weights (N(0, 0.02) linears, embeddings and biases, unit norms), so speed and memory can be measured
// at real shapes without downloading anything. Deterministic for a seed, whatever the thread count.
#include <cstdint>
#include <filesystem>
#include <optional>
#include <string>
#include <vector>

#include "io/dtype.h"
#include "model/config.h"

namespace fbq {

struct SyntheticShape {
  std::string name;
  ModelConfig config;
  // The model's tokenizer in ../shared/tokenizers: (file there, name in the model directory) pairs.
  std::vector<std::pair<std::string, std::string>> tokenizer_files;
};

const std::vector<SyntheticShape>& synthetic_shapes();
const SyntheticShape& synthetic_shape(const std::string& name);  // throws fbq::Error listing the shapes

struct SynthOptions {
  std::string shape;
  std::filesystem::path output;
  DType dtype = DType::BF16;
  std::uint64_t seed = 0;
  // Decoder layers to write (0: the published count). Fewer give a truncated model of the same layer shape,
  // for per-layer time and memory when the whole one would take too long.
  int layers = 0;
  std::optional<std::filesystem::path> tokenizer;  // a tokenizer.model / tokenizer.json to copy in
  std::filesystem::path tokenizer_dir = "../shared/tokenizers";  // where the shape's own tokenizer is looked for
  bool without_tokenizer = false;
  bool progress = true;
};

// Writes the directory atomically (a temporary sibling renamed at the end); refuses an existing output.
void write_synthetic_model(const SynthOptions& options);

}  // namespace fbq
