#include "quant/presets.h"

#include <fmt/format.h>
#include <fmt/ranges.h>

#include "util/error.h"

namespace fbq {

// Why these (docs/RESULTS.md, FBQuant sections): GPTQ inside the feedback loop beats RTN inside at every
// width; a 0.25-bit branch is where FBQuant's gain per extra bit is largest; at W3/W2 the float target with
// true-sequential statistics is FBQuant's best setting (W2: −0.65 PPL against GPTQ at g128).
const std::vector<QuantPreset>& quant_presets() {
  static const std::vector<QuantPreset> presets = {
      {.name = "w4", .summary = "FBQuant (GPTQ inside), 4-bit g128 + 0.25-bit branch: the default", .method = "fbquant",
       .bits = 4, .group_size = 128, .branch_bits = 0.25, .nsamples = 32, .validation_samples = 8},
      {.name = "w4-gptq", .summary = "GPTQ 4-bit g128, no branch: the smallest 4-bit file", .method = "gptq",
       .bits = 4, .group_size = 128, .nsamples = 32},
      {.name = "w3-fbq", .summary = "FBQuant (GPTQ inside), 3-bit g128 + 0.25-bit branch, float target, true sequential",
       .method = "fbquant", .bits = 3, .group_size = 128, .branch_bits = 0.25, .true_sequential = true,
       .float_target = true, .nsamples = 32, .validation_samples = 8},
      {.name = "w2-fbq", .summary = "FBQuant (GPTQ inside), 2-bit g128 + 0.25-bit branch, float target, true sequential",
       .method = "fbquant", .bits = 2, .group_size = 128, .branch_bits = 0.25, .true_sequential = true,
       .float_target = true, .nsamples = 32, .validation_samples = 8},
  };
  return presets;
}

const QuantPreset& find_quant_preset(const std::string& name) {
  std::vector<std::string> names;
  for (const auto& preset : quant_presets()) {
    if (preset.name == name) return preset;
    names.push_back(preset.name);
  }
  fail("unknown --preset '{}' (known: {})", name, fmt::join(names, ", "));
}

}  // namespace fbq
