#pragma once
// `fbq report DIR`: one self-contained HTML page (inline CSS and SVG, no script, no network) about a packed
// model directory written by `fbq quantize`: the verdict (sizes, bits/weight, cost, perplexity before and
// after), per-layer errors by linear kind, bits per weight per layer, FBQuant's loss curves with the kept
// step, the residual stream's drift from the float model when it was tracked, and the per-linear table.
#include <filesystem>
#include <string>

namespace fbq {

// Throws fbq::Error (one line) when `dir` is not a packed model directory (e.g. a float model).
std::string quantization_report_html(const std::filesystem::path& dir);

}  // namespace fbq
