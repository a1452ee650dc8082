#include "quant/quantize_model.h"

#include <unistd.h>

#include <fmt/core.h>

#include <algorithm>
#include <array>
#include <cmath>
#include <nlohmann/json.hpp>

#include "calib/calibration.h"
#include "io/safetensors_writer.h"
#include "io/text_files.h"
#include "model/model.h"
#include "model/transformer.h"
#include "pack/packed_linear.h"
#include "quant/checkpoint.h"
#include "quant/float_target.h"
#include "util/error.h"
#include "util/memory_usage.h"
#include "util/kill_point.h"
#include "util/progress.h"

namespace fbq {
namespace {

using json = nlohmann::json;

// What the pipeline gathers about one distinct linear input while a layer runs on the calibration windows:
// H of the training and of the held-out windows and, when it tracks the float model, how the input drifts
// from the float model's (the float model's input of a window is held until the quantized model's input of
// the same window arrives).
struct InputCapture {
  explicit InputCapture(int n, bool drift) : train(n), validation(n) {
    if (drift) train_drift.emplace(n), validation_drift.emplace(n);
  }
  HessianAccumulator train, validation;
  std::optional<DriftAccumulator> train_drift, validation_drift;
  std::vector<float> float_input;
};

// Which model the calibration window now running through a capturing layer belongs to.
struct CaptureState {
  bool float_model = false;  // the float model's stream: record the input only
  bool validating = false;   // a held-out window
};

// Passes calls through to the wrapped layer, capturing its input on the way (see InputCapture).
class CapturingLinear final : public Linear {
 public:
  CapturingLinear(const Linear& inner, InputCapture& capture, const CaptureState& state)
      : Linear(inner.out_features(), inner.in_features()), inner_(inner), capture_(capture), state_(state) {}
  void forward(const float* x, int n_tokens, float* y) const override {
    const std::size_t size = static_cast<std::size_t>(n_tokens) * in_features();
    if (state_.float_model) {
      capture_.float_input.assign(x, x + size);
    } else {
      (state_.validating ? capture_.validation : capture_.train).add(x, n_tokens);
      auto& drift = state_.validating ? capture_.validation_drift : capture_.train_drift;
      if (drift) {
        if (capture_.float_input.size() != size) fail("internal: float-model input missing for a calibration window");
        drift->add(x, capture_.float_input.data(), n_tokens);
      }
    }
    inner_.forward(x, n_tokens, y);
  }
  std::size_t weight_bytes() const override { return inner_.weight_bytes(); }
  std::string describe() const override { return inner_.describe(); }

 private:
  const Linear& inner_;
  InputCapture& capture_;
  const CaptureState& state_;
};

enum Input { kAttentionInput, kAttentionOutput, kMlpInput, kMlpHidden, kInputCount };

struct Projection {
  const char* name;  // HF name under model.layers.N.
  std::unique_ptr<Linear> DecoderLayer::*member;
  Input input;    // which shared input statistics it uses (q/k/v share one, gate/up share one)
  bool captures;  // the first projection reading an input is the one wrapped to capture it
};

constexpr Projection kProjections[] = {
    {"self_attn.q_proj", &DecoderLayer::q_proj, kAttentionInput, true},
    {"self_attn.k_proj", &DecoderLayer::k_proj, kAttentionInput, false},
    {"self_attn.v_proj", &DecoderLayer::v_proj, kAttentionInput, false},
    {"self_attn.o_proj", &DecoderLayer::o_proj, kAttentionOutput, true},
    {"mlp.gate_proj", &DecoderLayer::gate_proj, kMlpInput, true},
    {"mlp.up_proj", &DecoderLayer::up_proj, kMlpInput, false},
    {"mlp.down_proj", &DecoderLayer::down_proj, kMlpHidden, true},
};

const Projection& capturing_projection(Input input) {
  return *std::ranges::find_if(kProjections, [&](const Projection& p) { return p.input == input && p.captures; });
}

// Inf/NaN poison every statistic after them and come out as NaN scales: stop where they first appear. (The
// loader refuses non-finite weights; finite ones can still overflow float32 once multiplied.)
void require_finite_input(const std::vector<double>& hessian, const std::string& linear) {
  if (!std::ranges::all_of(hessian, [](double v) { return std::isfinite(v); }))
    fail("{}: non-finite activations in its calibration input (Inf/NaN): the model's weights or an earlier layer's "
         "output overflow", linear);
}

void write_packed(SafetensorsWriter& writer, const std::string& name, const PackedLinear& linear) {
  const auto& p = linear.packed();
  const std::int64_t m = p.rows, n = p.cols;
  writer.add(name + ".qweight", DType::I32, {m, p.code_words_per_row()}, p.codes.data(), p.codes.size() * 4);
  writer.add(name + ".qzeros", DType::I32, {p.zero_words()}, p.zeros.data(), p.zeros.size() * 4);
  writer.add(name + ".scales", DType::F16, {m, p.groups_per_row()}, p.scales.data(), p.scales.size() * 2);
  if (!linear.input_scale().empty()) writer.add_floats(name + ".input_scale", DType::F16, {n}, linear.input_scale());
  if (linear.rank() > 0) {
    writer.add_floats(name + ".lora_A.weight", DType::F16, {linear.rank(), n}, linear.lora_a());
    writer.add_floats(name + ".lora_B.weight", DType::F16, {m, linear.rank()}, linear.lora_b());
  }
}

// The output head as stored, or with --head-bits RTN-quantized and packed like a decoder linear. A tied
// model's head is its embedding table, which keeps serving the lookup as stored.
void write_head(const QuantizeOptions& options, const CheckpointReader& reader, SafetensorsWriter& writer) {
  const auto& c = reader.config();
  const auto head = reader.lm_head();
  if (!options.quantizes_head()) {
    if (head)
      writer.add_floats("lm_head.weight", reader.dtype_of("lm_head.weight"), {c.vocab_size, c.dim},
                        dynamic_cast<const DenseLinear&>(*head).weights());
    return;
  }
  std::shared_ptr<const std::vector<float>> embedding;  // the tied head's weights
  if (!head) embedding = reader.embedding();
  const auto& weights = head ? dynamic_cast<const DenseLinear&>(*head).weights() : *embedding;
  QuantizedLayer quantized;
  quantized.weights = quantize_rtn(weights.data(), c.vocab_size, c.dim, options.head_spec());
  write_packed(writer, "lm_head", PackedLinear::from_layer(quantized));
}

// The report line of one quantized linear: its H-errors against `target` (W, or W̃ with --float-target),
// and against the float model when the pipeline tracks it.
LinearReport measure_linear(const std::string& name, const std::vector<float>& weights, const std::vector<float>& target,
                            const QuantizedLayer& quantized, const PackedLinear& packed, const QuantSpec& spec,
                            const LayerStats& input, const std::optional<InputDrift>& drift,
                            const std::optional<InputDrift>& validation_drift) {
  LinearReport report;
  const int m = packed.out_features(), n = packed.in_features();
  report.name = name;
  report.out_features = m;
  report.in_features = n;
  const auto effective = quantized.effective_weights();
  // tr(W·H·Wᵀ) once for both errors, and none for RTN's when the method's result is plain RTN: these GEMMs in
  // double are most of a fast method's time at 7B sizes.
  const double reference = h_weighted_norm(target.data(), m, n, input.hessian);
  const auto relative = [&](const std::vector<float>& reconstructed) {
    return reference > 0.0 ? h_error_norm(target, reconstructed, m, n, input.hessian) / reference : 0.0;
  };
  report.error = relative(effective);
  const auto rtn = quantize_rtn(target.data(), m, n, spec).dequantize();
  report.error_rtn = rtn == effective ? report.error : relative(rtn);
  if (!input.validation_hessian.empty())
    report.error_validation = relative_h_error(target, effective, m, n, input.validation_hessian);
  if (drift) report.error_float = float_output_error(weights, effective, m, n, input.hessian, *drift);
  if (validation_drift)
    report.error_float_validation = float_output_error(weights, effective, m, n, input.validation_hessian, *validation_drift);
  report.bits_per_weight = packed.bits_per_weight();
  report.note = quantized.note;
  report.metrics = quantized.metrics;
  report.curves = quantized.curves;
  return report;
}

// One linear quantized by `method` against its input statistics, packed, and its report line. With
// --float-target the method is handed W̃ (quant/float_target.h), so its H-errors are measured against W̃.
struct QuantizedLinear {
  QuantizedLayer layer;
  std::unique_ptr<PackedLinear> packed;
  LinearReport report;
};

QuantizedLinear quantize_linear(const QuantMethod& method, const QuantizeOptions& options, const std::string& name,
                                const DenseLinear& dense, const LayerStats& input, const std::optional<InputDrift>& drift,
                                const std::optional<InputDrift>& validation_drift) {
  const int m = dense.out_features(), n = dense.in_features();
  const auto start = std::chrono::steady_clock::now();
  const auto target =
      options.float_target ? float_target_weights(dense.weights(), m, n, input.hessian, *drift, options.method_options.damp)
                           : dense.weights();
  QuantizedLinear out{method.quantize(target, m, n, input, options.method_options), nullptr, {}};
  out.packed = std::make_unique<PackedLinear>(PackedLinear::from_layer(out.layer));
  const double seconds = seconds_since(start);
  out.report = measure_linear(name, dense.weights(), target, out.layer, *out.packed, options.method_options.spec, input,
                              drift, validation_drift);
  out.report.seconds = seconds;
  return out;
}

// The quantizer inside the block training's feedback loop: GPTQ for gptq and fbquant (unless inner=rtn).
bool block_uses_gptq(const QuantizeOptions& options) {
  return options.method == "gptq" ||
         (options.method == "fbquant" && options.method_options.param_text("inner", "gptq") == "gptq");
}

// StreamDrift of the two streams (windows of `window_size` values; the first `train_windows` are training).
StreamDrift stream_drift(const std::vector<float>& hidden, const std::vector<float>& float_hidden, std::size_t window_size,
                         int train_windows) {
  double error[2] = {0, 0}, energy[2] = {0, 0};
  for (std::size_t i = 0; i < hidden.size(); ++i) {
    const int part = i / window_size >= static_cast<std::size_t>(train_windows);
    const double d = static_cast<double>(hidden[i]) - float_hidden[i];
    error[part] += d * d;
    energy[part] += static_cast<double>(float_hidden[i]) * float_hidden[i];
  }
  StreamDrift drift{energy[0] > 0 ? error[0] / energy[0] : 0.0, std::nullopt};
  if (energy[1] > 0) drift.validation = error[1] / energy[1];
  return drift;
}

json blocks_json(const std::vector<BlockReport>& blocks) {
  json out = json::array();
  for (const auto& [layer, stats] : blocks)
    out.push_back({{"layer", layer},
                   {"loss_init", stats.train_loss_init},
                   {"loss_best", stats.train_loss_best},
                   {"val_loss_init", stats.val_loss_init},
                   {"val_loss_best", stats.val_loss_best},
                   {"best_step", stats.best_step},
                   {"seconds", stats.seconds},
                   {"curves", {{"step", stats.curve_steps}, {"val_loss", stats.curve_val_loss}}}});
  return out;
}

// Only an earlier output (or an empty directory) is replaced by --overwrite, never a directory of other files.
bool replaceable_output(const std::filesystem::path& output) {
  return std::filesystem::is_empty(output) ||
         (std::filesystem::is_regular_file(output / "config.json") &&
          std::filesystem::is_regular_file(output / "quant_report.json"));
}

void check_output_location(const QuantizeOptions& options) {
  namespace fs = std::filesystem;
  const auto& output = options.output;
  if (fs::exists(output) && !fs::is_directory(output))
    fail("{} exists and is not a directory; refusing to replace it", output.string());
  if (fs::exists(output) && !options.overwrite)
    fail("{} already exists (pass --overwrite to replace it)", output.string());
  if (fs::exists(output) && !replaceable_output(output))
    fail("{} is not an fbq quantize output; refusing to replace it with --overwrite", output.string());
  const auto parent = output.parent_path().empty() ? fs::path(".") : output.parent_path();
  if (!fs::is_directory(parent)) fail("output directory {} does not exist", parent.string());
  if (::access(parent.c_str(), W_OK) != 0) fail("output directory {} is not writable", parent.string());
  // The checkpoint does not hold the per-block reports yet: a resumed block run would lose those of earlier layers.
  if (options.resume && options.reconstructs_blocks())
    fail("--resume cannot continue a --reconstruct block run yet (its block reports are not checkpointed)");
  if (!options.resume && !options.overwrite && has_checkpoint(partial_output(output)))
    fail("{} holds the checkpoint of a stopped run: pass --resume to continue it, or --overwrite to start over",
         partial_output(output).string());
}

// --reconstruct block on one layer: its linears (the layer-wise results in `quantized`, in kProjections order)
// trained through the block on the calibration windows, the float layer giving each linear's W.
BlockResult reconstruct_layer(const QuantizeOptions& options, const ModelConfig& config, int layer_index,
                              const DecoderLayer& float_layer,
                              const BlockWindows& windows, const std::array<LayerStats, kInputCount>& stats,
                              std::array<QuantizedLayer, std::size(kProjections)>& quantized) {
  std::array<BlockLinearStart, kBlockLinearCount> starts;
  const auto& mo = options.method_options;
  for (std::size_t i = 0; i < std::size(kProjections); ++i) {
    const auto& dense = dynamic_cast<const DenseLinear&>(*(float_layer.*kProjections[i].member));
    auto& start = starts[i];
    start.weights = dense.weights();
    start.layer = std::move(quantized[i]);
    if (!options.block.lwc && block_uses_gptq(options))
      start.gptq = gptq_prepare(stats[kProjections[i].input].hessian, dense.in_features(),
                                {mo.damp, mo.block_size, mo.act_order});
    start.rank = options.block.lwc ? 0 : mo.branch_rank(dense.out_features(), dense.in_features());
  }
  auto block = options.block;
  block.seed = options.seed * 1000003 + layer_index;  // fixed by --seed, different in every block
  return reconstruct_block(BlockShape::of(config), std::move(starts), float_layer.attn_norm, float_layer.ffn_norm,
                           windows, block);
}

// A linear's report line after the block training: errors of the trained layer, the layer-wise line's time,
// note, metrics and curves kept (its H-error as h_error_layerwise), and the feedback bound of the result.
LinearReport remeasure_after_block(const LinearReport& layerwise, const std::vector<float>& weights,
                                   const QuantizedLayer& layer, const PackedLinear& packed, const QuantizeOptions& options,
                                   const LayerStats& input, const std::optional<InputDrift>& drift,
                                   const std::optional<InputDrift>& validation_drift) {
  auto report = measure_linear(layerwise.name, weights, weights, layer, packed, options.method_options.spec, input, drift,
                               validation_drift);
  report.seconds = layerwise.seconds;
  report.note = layerwise.note;
  report.metrics = layerwise.metrics;
  report.curves = layerwise.curves;
  report.metrics.emplace_back("h_error_layerwise", layerwise.error);
  report.metrics.emplace_back("block_max_error_over_half_step", max_error_over_half_step(weights, layer));
  return report;
}

// --head-bits / --head-group-size against the head's shape (dim input columns).
void validate_head(const QuantizeOptions& options, const ModelConfig& c) {
  if (!options.quantizes_head()) return;
  if (options.head_bits != 8 && options.head_bits != 4) fail("--head-bits must be 8 or 4 (got {})", options.head_bits);
  if (options.head_group_size <= 0 || c.dim % options.head_group_size != 0)
    fail("--head-group-size {} does not divide the head's input dimension {}", options.head_group_size, c.dim);
  options.head_spec().validate(c.dim);
}

// --reconstruct block trains the branch of fbquant, or one added beside rtn/gptq (--rank/--branch-bits), or
// with --lwc the clipping of rtn without a branch.
void validate_reconstruction(const QuantizeOptions& options, bool has_branch) {
  if (options.reconstruct != "layer" && options.reconstruct != "block")
    fail("--reconstruct must be layer or block (got '{}')", options.reconstruct);
  if (!options.reconstructs_blocks()) {
    if (options.block.lwc) fail("--lwc needs --reconstruct block");
    if (options.block_float_input) fail("--block-input float needs --reconstruct block");
    return;
  }
  options.block.validate();
  const auto& method = options.method;
  if (method != "fbquant" && method != "rtn" && method != "gptq")
    fail("--reconstruct block works with fbquant, rtn or gptq (got '{}')", method);
  if (options.float_target) fail("--reconstruct block already aims at the float model; drop --float-target");
  if (options.block.lwc && options.method_options.spec.zero_points != ZeroPoints::any)
    fail("--lwc learns the clipping of the full asymmetric grid: drop --zero-points/--sym");
  if (options.block.lwc && (method != "rtn" || has_branch))
    fail("--lwc trains the clipping of --method rtn without a branch (drop --rank/--branch-bits)");
  if (!options.block.lwc && !has_branch)
    fail("--reconstruct block trains a branch: give --rank R or --branch-bits X (or --lwc for clipping only)");
}

}  // namespace

std::filesystem::path partial_output(const std::filesystem::path& output) {
  const auto parent = output.parent_path().empty() ? std::filesystem::path(".") : output.parent_path();
  return parent / fmt::format(".{}.partial", output.filename().string());
}

void validate_quantize_options(const QuantizeOptions& options) {
  const auto method = make_method(options.method);
  const CheckpointReader reader(options.model);
  const auto& c = reader.config();
  if (c.quant_bits) fail("{} is already quantized", options.model.string());
  const auto& mo = options.method_options;
  check_method_params(*method, mo);
  if (mo.rank < 0) fail("--rank must be >= 0 (got {})", mo.rank);
  if (mo.branch_bits < 0) fail("--branch-bits must be >= 0 (got {})", mo.branch_bits);
  const bool has_branch = mo.rank > 0 || mo.branch_bits > 0;
  validate_reconstruction(options, has_branch);
  if (options.reconstructs_blocks() && (c.qkv_bias || c.o_bias || c.rope_scaling.type != RopeScaling::Type::none))
    fail("--reconstruct block does not support attention biases or rope_scaling yet ({} has {})", options.model.string(),
         c.qkv_bias || c.o_bias ? "biases" : "rope_scaling");
  const bool block_trains_branch = options.reconstructs_blocks() && !options.block.lwc;
  if (has_branch && !method->uses_rank() && !block_trains_branch)
    fail("method '{}' has no low-rank branch; drop --rank/--branch-bits", options.method);
  if (method->uses_rank() && !has_branch) fail("method '{}' needs --rank R or --branch-bits X", options.method);
  const std::pair<int, int> shapes[] = {{c.q_dim(), c.dim}, {c.kv_dim(), c.dim}, {c.dim, c.q_dim()},
                                        {c.hidden_dim, c.dim}, {c.dim, c.hidden_dim}};
  for (const auto& [m, n] : shapes) {
    mo.spec.validate(n);
    const int rank = mo.branch_rank(m, n);
    if (rank >= std::min(m, n))
      fail("rank {} is not below min(m, n) = {} of a {}x{} layer", rank, std::min(m, n), m, n);
  }
  validate_head(options, c);
  if (options.nsamples <= 0) fail("--nsamples must be positive");
  if (options.validation_samples < 0) fail("--val-samples must be >= 0");
  if (options.seqlen < 2 || options.seqlen > c.max_seq_len)
    fail("--seqlen {} must be in [2, {}] (the model's context)", options.seqlen, c.max_seq_len);
  if (!std::filesystem::is_regular_file(options.calibration_text))
    fail("calibration text {} not found", options.calibration_text.string());
  check_output_location(options);
}

namespace {

// A run without a checkpoint starts with the embedding written and the calibration windows embedded as the
// first layer's input.
void start_fresh(const QuantizeOptions& options, const CheckpointReader& reader,
                 const std::vector<std::vector<int>>& windows, SafetensorsWriter& writer, PipelineState& state) {
  const auto& c = reader.config();
  const auto embedding = reader.embedding();
  writer.add_floats("model.embed_tokens.weight", reader.dtype_of("model.embed_tokens.weight"), {c.vocab_size, c.dim},
                    *embedding);
  // Calibration activations, one row per token: the input of the layer being quantized.
  const std::size_t tokens_per_window = options.seqlen;
  auto& hidden = state.hidden;
  hidden.resize(windows.size() * tokens_per_window * c.dim);
  for (std::size_t w = 0; w < windows.size(); ++w)
    for (std::size_t t = 0; t < tokens_per_window; ++t)
      std::copy_n(embedding->data() + static_cast<std::size_t>(windows[w][t]) * c.dim, c.dim,
                  &hidden[(w * tokens_per_window + t) * c.dim]);
  // With --float-target or --report-float-error, the float model's activations run beside them (its own
  // stream, never quantized).
  if (options.tracks_float_model()) state.float_hidden = hidden;
}

QuantizeSummary quantize_into(const QuantizeOptions& options, const CheckpointReader& reader,
                              const std::filesystem::path& tokenizer_path, const std::vector<std::vector<int>>& windows,
                              const std::filesystem::path& temp, const nlohmann::json& identity,
                              SafetensorsWriter& writer, PipelineState& state) {
  const auto start = std::chrono::steady_clock::now();
  const auto method = make_method(options.method);
  const auto& c = reader.config();
  const std::size_t tokens_per_window = options.seqlen;
  auto& hidden = state.hidden;
  auto& float_hidden = state.float_hidden;
  if (hidden.size() != windows.size() * tokens_per_window * c.dim)
    fail("the checkpoint in {} holds streams of the wrong size", temp.string());

  Model shell;  // the session only needs the config: layers are passed in one at a time
  shell.config = c;
  InferenceSession session(shell, options.seqlen);
  std::vector<float> scratch(tokens_per_window * c.dim);
  CaptureState capture_state;
  const auto run_window = [&](const DecoderLayer& layer, int index, float* rows, bool in_place) {
    float* target = rows;
    if (!in_place) target = static_cast<float*>(std::memcpy(scratch.data(), rows, scratch.size() * sizeof(float)));
    session.reset();
    session.forward_layer(layer, index, target, options.seqlen, 0);
  };
  // Runs every window through `layer` (the quantized model's stream, advanced in place when `in_place`) and,
  // when given, first through `float_layer` (the float model's stream, advanced when `float_in_place`).
  // Capturing passes leave the quantized stream as it was; the float layer never changes, so its stream
  // advances during the layer's last capturing pass instead of being run once more.
  const auto run_windows = [&](const DecoderLayer& layer, const DecoderLayer* float_layer, int index, bool in_place,
                               bool float_in_place) {
    for (std::size_t w = 0; w < windows.size(); ++w) {
      const std::size_t offset = w * tokens_per_window * c.dim;
      capture_state.validating = static_cast<int>(w) >= options.nsamples;
      if (float_layer) {
        capture_state.float_model = true;
        run_window(*float_layer, index, &float_hidden[offset], float_in_place);
        capture_state.float_model = false;
      }
      run_window(layer, index, &hidden[offset], in_place);
    }
  };
  // The inputs each capturing pass collects, in order: all four from the float layer at once, or (true
  // sequential) one at a time, each pass running the layer with the projections before it already quantized.
  const std::vector<std::vector<Input>> stages =
      options.true_sequential
          ? std::vector<std::vector<Input>>{{kAttentionInput}, {kAttentionOutput}, {kMlpInput}, {kMlpHidden}}
          : std::vector<std::vector<Input>>{{kAttentionInput, kAttentionOutput, kMlpInput, kMlpHidden}};

  QuantizeSummary summary;
  Progress progress(fmt::format("quantize ({}, W{} g{})", options.method, options.method_options.spec.bits,
                                options.method_options.spec.group_size),
                    c.n_layers, options.progress);
  if (state.layers_done > 0) progress.update(state.layers_done, "resumed from the checkpoint");
  for (int l = state.layers_done; l < c.n_layers; ++l) {
    DecoderLayer layer = reader.layer(l);
    std::optional<DecoderLayer> float_layer;  // the float model's copy, when its stream is tracked
    if (options.tracks_float_model()) float_layer = reader.layer(l);
    const auto prefix = fmt::format("model.layers.{}.", l);
    // The block training's input when it is the float model's stream (the capture advances that stream).
    const std::vector<float> float_input =
        options.reconstructs_blocks() && options.block_float_input ? float_hidden : std::vector<float>();
    std::array<LayerStats, kInputCount> stats;
    std::array<std::optional<InputDrift>, kInputCount> drifts, validation_drifts;
    std::array<QuantizedLayer, std::size(kProjections)> quantized;

    // One capturing pass per stage, then the stage's projections are quantized and packed in place.
    const auto quantize_stage = [&](const std::vector<Input>& stage, bool last_stage) {
      // Capture: wrap the first projection reading each of the stage's inputs (in both models' layers).
      std::array<std::optional<InputCapture>, kInputCount> captures;
      std::vector<std::pair<std::unique_ptr<Linear>*, std::unique_ptr<Linear>>> originals;
      const auto wrap = [&](DecoderLayer& target, const Projection& projection) {
        auto& slot = target.*projection.member;
        originals.emplace_back(&slot, std::move(slot));
        slot = std::make_unique<CapturingLinear>(*originals.back().second, *captures[projection.input], capture_state);
      };
      for (const auto& projection : kProjections)
        if (projection.captures && std::ranges::count(stage, projection.input)) {
          captures[projection.input].emplace((layer.*projection.member)->in_features(), options.tracks_float_model());
          wrap(layer, projection);
          if (float_layer) wrap(*float_layer, projection);
        }
      run_windows(layer, float_layer ? &*float_layer : nullptr, l, /*in_place=*/false, /*float_in_place=*/last_stage);
      for (auto& [slot, original] : originals) *slot = std::move(original);
      for (const Input input : stage) {
        auto& capture = *captures[input];
        stats[input] = capture.train.finish();
        require_finite_input(stats[input].hessian, prefix + capturing_projection(input).name);
        if (options.validation_samples > 0) stats[input].validation_hessian = capture.validation.finish().hessian;
        if (capture.train_drift) drifts[input] = capture.train_drift->finish();
        if (options.validation_samples > 0 && capture.validation_drift)
          validation_drifts[input] = capture.validation_drift->finish();
      }

      // Quantize the stage's linears against their input statistics.
      for (std::size_t i = 0; i < std::size(kProjections); ++i) {
        const auto& projection = kProjections[i];
        if (!std::ranges::count(stage, projection.input)) continue;
        auto& slot = layer.*projection.member;
        const auto& dense = dynamic_cast<const DenseLinear&>(*slot);
        auto result = quantize_linear(*method, options, prefix + projection.name, dense, stats[projection.input],
                                      drifts[projection.input], validation_drifts[projection.input]);
        quantized[i] = std::move(result.layer);
        slot = std::move(result.packed);
        state.linears.push_back(std::move(result.report));
      }
    };
    for (std::size_t i = 0; i < stages.size(); ++i) quantize_stage(stages[i], i + 1 == stages.size());

    bool norms_trained = false;
    if (options.reconstructs_blocks()) {
      const BlockWindows block_windows{options.block_float_input ? float_input.data() : hidden.data(),
                                       float_hidden.data(), static_cast<int>(windows.size()), options.nsamples,
                                       options.seqlen};
      auto result = reconstruct_layer(options, c, l, *float_layer, block_windows, stats, quantized);
      for (std::size_t i = 0; i < std::size(kProjections); ++i) {
        const auto& projection = kProjections[i];
        auto& report = state.linears[state.linears.size() - std::size(kProjections) + i];
        const auto& weights = dynamic_cast<const DenseLinear&>(*((*float_layer).*projection.member)).weights();
        layer.*projection.member = std::make_unique<PackedLinear>(PackedLinear::from_layer(result.layers[i]));
        report = remeasure_after_block(report, weights, result.layers[i],
                                       dynamic_cast<const PackedLinear&>(*(layer.*projection.member)), options,
                                       stats[projection.input], drifts[projection.input],
                                       validation_drifts[projection.input]);
      }
      norms_trained = options.block.train_norms;
      if (norms_trained) layer.attn_norm = std::move(result.attn_norm), layer.ffn_norm = std::move(result.ffn_norm);
      summary.blocks.push_back({l, std::move(result.stats)});
    }
    for (std::size_t i = 0; i < std::size(kProjections); ++i) {
      const auto& report = state.linears[state.linears.size() - std::size(kProjections) + i];
      write_packed(writer, report.name, dynamic_cast<const PackedLinear&>(*(layer.*kProjections[i].member)));
    }
    // Trained norm weights are stored in f32: rounding them to the checkpoint's bf16 would undo the training.
    const auto norm_dtype = [&](const std::string& name) { return norms_trained ? DType::F32 : reader.dtype_of(name); };
    writer.add_floats(prefix + "input_layernorm.weight", norm_dtype(prefix + "input_layernorm.weight"), {c.dim},
                      layer.attn_norm);
    writer.add_floats(prefix + "post_attention_layernorm.weight", norm_dtype(prefix + "post_attention_layernorm.weight"),
                      {c.dim}, layer.ffn_norm);
    // Biases pass through every method unquantized, in the checkpoint's dtype.
    for (const auto& [bias, projection] : {std::pair{&layer.q_bias, "q_proj"}, {&layer.k_bias, "k_proj"},
                                           {&layer.v_bias, "v_proj"}, {&layer.o_bias, "o_proj"}})
      if (!bias->empty()) {
        const auto name = fmt::format("{}self_attn.{}.bias", prefix, projection);
        writer.add_floats(name, reader.dtype_of(name), {static_cast<std::int64_t>(bias->size())}, *bias);
      }

    // Pass 2: the next layer sees what the quantized layer produces.
    run_windows(layer, /*float_layer=*/nullptr, l, /*in_place=*/true, /*float_in_place=*/false);
    double layer_error = 0;
    for (std::size_t i = state.linears.size() - std::size(kProjections); i < state.linears.size(); ++i)
      layer_error += state.linears[i].error / std::size(kProjections);
    std::string drift_note;
    if (float_layer) {
      state.stream_drift.push_back(stream_drift(hidden, float_hidden, c.dim * tokens_per_window, options.nsamples));
      drift_note = fmt::format(", stream drift {:.5f}", state.stream_drift.back().train);
    }
    if (options.reconstructs_blocks()) {
      const auto& b = summary.blocks.back().stats;
      drift_note += fmt::format(", block loss {:.5f}→{:.5f} (held out) in {:.1f}s", b.val_loss_init, b.val_loss_best, b.seconds);
    }
    state.layers_done = l + 1;
    const auto checkpoint_start = std::chrono::steady_clock::now();
    const auto checkpoint_bytes = write_checkpoint(temp, identity, state, writer.state());
    progress.update(l + 1, fmt::format("layer {} mean H-error {:.5f}{}, checkpoint {:.1f} MB in {:.2f} s", l, layer_error,
                                       drift_note, checkpoint_bytes / 1e6, seconds_since(checkpoint_start)));
  }

  writer.add_floats("model.norm.weight", reader.dtype_of("model.norm.weight"), {c.dim}, reader.final_norm());
  write_head(options, reader, writer);
  writer.finish({{"format", "pt"}, {"quantized_by", "fbquant"}});

  summary.linears = std::move(state.linears);
  summary.stream_drift = std::move(state.stream_drift);
  double total_bits = 0, total_weights = 0;
  for (const auto& r : summary.linears) {
    total_bits += r.bits_per_weight * r.out_features * r.in_features;
    total_weights += static_cast<double>(r.out_features) * r.in_features;
  }
  summary.seconds = seconds_since(start);
  summary.bits_per_weight = total_bits / total_weights;
  summary.peak_rss_kib = peak_rss_kib();
  progress.finish(fmt::format("{:.2f} bits/weight", summary.bits_per_weight));

  const auto& mo = options.method_options;
  json quantization = {{"quant_method", "fbquant"}, {"format", kPackedFormat}, {"method", options.method},
                       {"bits", mo.spec.bits},      {"group_size", mo.spec.group_size}, {"rank", mo.rank},
                       {"branch_bits", mo.branch_bits},
                       {"zero_points", zero_points_name(mo.spec.zero_points)},
                       {"scale_bits", mo.spec.scale_bits}};
  auto written = c;
  if (options.quantizes_head()) {
    quantization["head"] = {{"bits", options.head_bits}, {"group_size", options.head_group_size}};
    written.tie_embeddings = false;  // the quantized head is a tensor of its own; the embedding stays as stored
  }
  json config = to_hf_config(written);
  config["quantization_config"] = quantization;
  write_file_atomically(temp / "config.json", config.dump(2) + "\n");
  copy_tokenizer_files(tokenizer_path, temp);

  json layers = json::array();
  for (const auto& r : summary.linears) {
    json entry = {{"name", r.name},         {"shape", {r.out_features, r.in_features}},
                  {"h_error", r.error},     {"h_error_rtn", r.error_rtn},
                  {"seconds", r.seconds},   {"bits_per_weight", r.bits_per_weight},
                  {"note", r.note}};
    if (r.error_validation) entry["h_error_val"] = *r.error_validation;
    if (r.error_float) entry["float_error"] = *r.error_float;
    if (r.error_float_validation) entry["float_error_val"] = *r.error_float_validation;
    for (const auto& [key, value] : r.metrics) entry[key] = value;
    for (const auto& [key, values] : r.curves) entry["curves"][key] = values;
    layers.push_back(std::move(entry));
  }
  json drift = json::array();
  for (const auto& d : summary.stream_drift)
    drift.push_back(d.validation ? json{{"train", d.train}, {"validation", *d.validation}} : json{{"train", d.train}});
  json report = recorded_settings(options);
  report["bits_per_weight"] = summary.bits_per_weight;
  report["layers"] = layers;
  if (!summary.stream_drift.empty()) report["stream_drift"] = drift;
  if (options.reconstructs_blocks()) report["blocks"] = blocks_json(summary.blocks);
  // Timings and memory vary run to run; they go to stdout/--json, not into the (reproducible) directory.
  write_file_atomically(temp / "quant_report.json", report.dump(2) + "\n");

  remove_checkpoint(temp, writer.data_path());
  kill_point("finish", c.n_layers);
  if (std::filesystem::exists(options.output)) std::filesystem::remove_all(options.output);
  std::filesystem::rename(temp, options.output);
  return summary;
}

}  // namespace

QuantizeSummary quantize_model(const QuantizeOptions& options) {
  validate_quantize_options(options);
  const CheckpointReader reader(options.model);
  const auto tokenizer_path = options.tokenizer ? options.tokenizer : reader.default_tokenizer();
  if (!tokenizer_path) fail("{}: no tokenizer found beside the model; pass --tokenizer FILE", options.model.string());
  const auto tokenizer = load_tokenizer(*tokenizer_path, reader.config().vocab_size);
  // Validation windows are the last ones drawn, so adding them leaves the training windows unchanged.
  const auto windows = sample_calibration_windows(*tokenizer, options.calibration_text,
                                                  options.nsamples + options.validation_samples, options.seqlen,
                                                  options.seed);
  const auto temp = partial_output(options.output);
  const auto identity = run_identity(options, windows);
  const auto safetensors = temp / "model.safetensors";
  // A checkpoint that does not match (or does not read) is refused here, before anything in `temp` changes.
  std::optional<Checkpoint> resumed;
  if (options.resume && has_checkpoint(temp)) resumed = read_checkpoint(temp, identity);
  std::optional<SafetensorsWriter> writer;
  PipelineState state;
  if (resumed) {
    writer.emplace(safetensors, resumed->writer_state);
    state = std::move(resumed->state);
  } else {
    std::filesystem::remove_all(temp);
    std::filesystem::create_directories(temp);
  }
  try {
    if (!resumed) {
      writer.emplace(safetensors);
      start_fresh(options, reader, windows, *writer, state);
    }
    return quantize_into(options, reader, *tokenizer_path, windows, temp, identity, *writer, state);
  } catch (const std::exception& e) {
    // No directory that looks complete is left behind, and a checkpoint is kept only to be resumed.
    std::error_code ignored;
    if (!has_checkpoint(temp)) {
      std::filesystem::remove_all(temp, ignored);
      throw;
    }
    fail("{} (the finished layers are kept in {}: rerun with --resume to continue)", e.what(), temp.string());
  }
}

}  // namespace fbq
