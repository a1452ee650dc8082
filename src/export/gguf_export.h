#pragma once
// A packed fbquant model as a llama.cpp GGUF (architecture `llama`) whose weight blocks dequantize to exactly
// our s·(q − z), and its low-rank branch as a GGUF LoRA adapter applied at scale 1 (docs/FORMAT.md "GGUF
// export"; the formats are in ../shared/docs/EXPORT_FORMATS.md §5).
//
// Each quantized linear gets the cheapest block type that holds every weight of it exactly, decided from
// the data (not from flags): Q4_0 when every q − z ∈ [−8, 7] (int2, int3, symmetric int4), Q4_1 when the
// codes are 4-bit and every group's −s·z is a float16 (scales of ≤ 7 significant bits: --scale-bits 7),
// Q5_0 when every q − z ∈ [−16, 15] (int4), Q8_0 when every q − z ∈ [−128, 127] (symmetric int8).
// Anything else — groups not a multiple of 32, AWQ input scales, biases — is refused with the reason.
#include <cstdint>
#include <filesystem>
#include <map>
#include <optional>
#include <string>

namespace fbq {

struct GgufExportOptions {
  std::filesystem::path model;   // a packed model directory (fbq quantize output)
  std::filesystem::path output;  // the .gguf to write
  // Where the branch goes when the model has one; default: OUTPUT with ".lora.gguf" for ".gguf".
  std::optional<std::filesystem::path> branch_output;
  bool overwrite = false;
};

struct GgufExportSummary {
  std::map<std::string, int> linear_types;  // ggml type name → quantized linears written as it
  std::int64_t quantized_weights = 0;
  std::uint64_t quantized_bytes = 0;        // their blocks as llama.cpp stores them
  double source_bits_per_weight = 0;        // the same linears in fbquant's packed form (branch excluded)
  std::uint64_t file_bytes = 0;
  std::filesystem::path branch_output;      // empty without a branch
  std::uint64_t branch_bytes = 0;
  int branch_tensors = 0, max_rank = 0;

  double bits_per_weight() const { return 8.0 * static_cast<double>(quantized_bytes) / static_cast<double>(quantized_weights); }
};

// Throws fbq::Error (one line) on a model it cannot write exactly; nothing is left behind on failure.
GgufExportSummary export_gguf(const GgufExportOptions& options);

}  // namespace fbq
