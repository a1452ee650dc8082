#pragma once
// The layer-wise quantization pipeline (DESIGN §1 "Pipeline"): stream the checkpoint one decoder layer at a
// time, collect H for each distinct linear input from the calibration activations, quantize the layer's
// linears with the chosen method, feed the next layer with the *quantized* layer's outputs, and write the
// packed model directory (docs/FORMAT.md) atomically.
#include <cstdint>
#include <filesystem>
#include <optional>
#include <string>
#include <vector>

#include "quant/block/block_reconstruct.h"
#include "quant/method.h"

namespace fbq {

struct QuantizeOptions {
  std::filesystem::path model;
  std::filesystem::path output;
  std::optional<std::filesystem::path> tokenizer;
  std::filesystem::path calibration_text;
  std::string method = "rtn";
  MethodOptions method_options;
  int nsamples = 128;
  int validation_samples = 0;  // extra held-out windows whose H methods may select iterates on
  int seqlen = 256;
  // Aim every linear at the float model's output rather than at the float weights applied to the quantized
  // model's drifted input (quant/float_target.h); implies report_float_error.
  bool float_target = false;
  // Run the float model's activations beside the quantized ones and report each linear's output error
  // against the float model (LinearReport::error_float).
  bool report_float_error = false;
  // "layer": the layer-wise pipeline only; "block": then train each decoder block's quantized linears through
  // the whole block against the float model's output (quant/block/block_reconstruct.h).
  std::string reconstruct = "layer";
  // The block training's input: the float model's stream x̄ instead of the quantized model's own x.
  bool block_float_input = false;
  BlockTrainingOptions block;
  bool reconstructs_blocks() const { return reconstruct == "block"; }
  bool tracks_float_model() const { return float_target || report_float_error || reconstructs_blocks(); }
  // Quantize a layer's projections in order (q/k/v, o, gate/up, down), each group's input statistics taken
  // with the groups before it already quantized, as GPTQ's "true sequential" does; otherwise all four inputs
  // come from one pass of the float layer.
  bool true_sequential = false;
  // --head-bits: after the decoder layers, the output head (lm_head; a tied model's embedding, copied) is
  // quantized by RTN on the linears' grid (zero points, scale bits) at these bits and group size; 0 keeps
  // it as stored.
  int head_bits = 0;
  int head_group_size = 128;
  bool quantizes_head() const { return head_bits != 0; }
  QuantSpec head_spec() const {
    auto spec = method_options.spec;
    spec.bits = head_bits;
    spec.group_size = head_group_size;
    return spec;
  }
  std::uint64_t seed = 0;
  bool overwrite = false;
  // Continue a stopped run from the checkpoint in its temporary directory (partial_output()), which must have
  // been made with the same options and model; without one, start from the first layer.
  bool resume = false;
  bool progress = true;
};

struct LinearReport {
  std::string name;
  int out_features = 0, in_features = 0;
  double error = 0;      // tr(E·H·Eᵀ) / tr(W·H·Wᵀ) of the method (W̃ in place of W with --float-target)
  double error_rtn = 0;  // the same for plain RTN at the same bits/group (the "before")
  std::optional<double> error_validation;  // the method's error on the held-out H (--val-samples)
  // --float-target: ‖W_F·X − W·X̄‖² / ‖W·X̄‖², the output error against the float model (training, held-out)
  std::optional<double> error_float, error_float_validation;
  double seconds = 0;  // the method's time (with --float-target, W̃ included)
  double bits_per_weight = 0;
  std::string note;
  std::vector<std::pair<std::string, double>> metrics;
  std::vector<std::pair<std::string, std::vector<double>>> curves;  // QuantizedLayer::curves
};

// How far the quantized model's hidden state (the residual stream) is from the float model's after a layer,
// ‖h − h̄‖² / ‖h̄‖² summed over the calibration tokens (tracked with --float-target / --report-float-error):
// the end-to-end counterpart of the per-linear errors.
struct StreamDrift {
  double train = 0;
  std::optional<double> validation;
};

// One decoder block's training (--reconstruct block): relative block losses and time.
struct BlockReport {
  int layer = 0;
  BlockTrainingStats stats;
};

struct QuantizeSummary {
  std::vector<LinearReport> linears;
  std::vector<BlockReport> blocks;
  std::vector<StreamDrift> stream_drift;  // one per decoder layer, when the float model is tracked
  double seconds = 0;
  double bits_per_weight = 0;  // over all quantized linears
  long peak_rss_kib = 0;
};

// Where a run writing `output` builds it (and keeps its checkpoint) until it is complete: a hidden sibling
// `.NAME.partial`, the same for every run, so that --resume finds it.
std::filesystem::path partial_output(const std::filesystem::path& output);

// Checks every option against the model before any work (bits/group/rank vs. every linear's shape, the
// output location is writable and free). Throws fbq::Error with one readable line.
void validate_quantize_options(const QuantizeOptions& options);

QuantizeSummary quantize_model(const QuantizeOptions& options);

}  // namespace fbq
