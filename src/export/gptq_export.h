#pragma once
// `fbq export --to gptq`: a packed model directory (docs/FORMAT.md) as a Hugging Face GPTQ checkpoint
// (shared EXPORT_FORMATS §1–2) that transformers, GPTQModel and vLLM load, plus its low-rank branch as a PEFT
// LoRA adapter in DIR/branch/ (§4). Exact by construction: the data is checked, not the settings it was made
// with, and anything the target cannot hold exactly is refused with one readable line (docs/FORMAT.md
// "GPTQ export and import").
#include <cstdint>
#include <filesystem>
#include <string>
#include <vector>

#include "pack/gptq_layout.h"

namespace fbq {

struct GptqExportOptions {
  std::filesystem::path model;   // a packed model directory (fbq quantize output)
  std::filesystem::path output;  // must not exist; written atomically
  GptqZeroFormat format = GptqZeroFormat::v1;
};

struct GptqExportSummary {
  int bits = 0, group_size = 0;
  GptqZeroFormat format = GptqZeroFormat::v1;
  bool sym = false, desc_act = false;
  int linears = 0;      // lm_head included when it is quantized
  bool lm_head = false;  // the head is a GPTQ linear (quantization_config lm_head: true)
  double bits_per_weight = 0;  // qweight + qzeros + f16 scales + g_idx, per weight of the quantized linears
  std::uintmax_t model_bytes = 0, adapter_bytes = 0;
  int branch_rank = 0;  // the adapter's common rank (every module zero-padded to it); 0 = no adapter
  std::vector<std::string> branch_modules;  // target_modules
  // Float tensors (embedding, norms, lm_head, biases) written as F16: values, and how many the rounding changed.
  std::int64_t float_values = 0, float_values_changed = 0;
  std::vector<std::string> source_float_dtypes;  // e.g. {"BF16", "F32"}
  std::vector<std::string> warnings;  // what some engines cannot run (the checkpoint is exact regardless)
  std::vector<std::string> serving;   // command / code lines that load the result
};

GptqExportSummary export_gptq(const GptqExportOptions& options);

}  // namespace fbq
