#pragma once
// Named quantization recipes (`fbq quantize --preset NAME`): the settings the quality tables of
// docs/RESULTS.md recommend, so that a user gets the project's tuned method without knowing its options.
// `w4` is what `fbq quantize MODEL -o OUT` runs when no method is named. Measured bpw and quality of every
// preset on the bundled model: docs/RESULTS.md, section "presets" (scripts/presets.sh).
#include <string>
#include <vector>

#include "quant/quantize_model.h"

namespace fbq {

struct QuantPreset {
  std::string name, summary;
  std::string method;
  int bits = 4, group_size = 128;
  double branch_bits = 0;  // 0: no branch
  bool true_sequential = false, float_target = false;
  int nsamples = 0, validation_samples = 0;  // calibration windows (fit the bundled data/calib.txt)
};

const std::vector<QuantPreset>& quant_presets();
inline constexpr const char* kDefaultPreset = "w4";

// The preset of that name; an unknown name throws fbq::Error listing the known ones.
const QuantPreset& find_quant_preset(const std::string& name);

}  // namespace fbq
