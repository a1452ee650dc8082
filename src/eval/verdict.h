#pragma once
// The verdict that ends every `fbq quantize`: size on disk before/after, bits per weight, time, peak memory
// and the original's and the result's perplexity on an evaluation text, paired over windows. Written into
// the output directory as verdict.json (docs/FORMAT.md), where `fbq report` finds it.
#include <filesystem>
#include <string>

#include <nlohmann/json.hpp>

#include "quant/quantize_model.h"

namespace fbq {

struct VerdictOptions {
  std::filesystem::path eval_text;
  int eval_ctx = 256;
  bool skip_eval = false;  // --no-eval: sizes and costs only
  std::string preset;      // the --preset the run used, if any
};

// Measures the verdict of a finished quantization (options.output holds the result), writes it to
// options.output/verdict.json and returns it.
nlohmann::json quantize_verdict(const QuantizeOptions& options, const QuantizeSummary& summary,
                                const VerdictOptions& verdict);

// The verdict as the few lines printed after a quantization.
std::string format_verdict(const nlohmann::json& verdict);

// Bytes of a file, or of every regular file under a directory.
std::uintmax_t bytes_on_disk(const std::filesystem::path& path);

}  // namespace fbq
