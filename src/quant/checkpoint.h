#pragma once
// The per-layer checkpoint of `fbq quantize` (docs/FORMAT.md "Checkpoint"): after each finished decoder layer,
// everything the next layer needs is committed to the temporary output directory, so `--resume` continues a
// stopped run there and produces the same bytes as an uninterrupted one. Every file is written to a
// temporary name and renamed; checkpoint.json, renamed last, is the commit point, and names the stream files
// it belongs to, so a write cut off anywhere leaves either the previous checkpoint or the new one.
#include <filesystem>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "quant/quantize_model.h"

namespace fbq {

// Where the pipeline stands between two decoder layers.
struct PipelineState {
  int layers_done = 0;
  std::vector<LinearReport> linears;
  std::vector<StreamDrift> stream_drift;
  // The calibration activations entering layer `layers_done`: the quantized model's and, when it is
  // tracked, the float model's.
  std::vector<float> hidden, float_hidden;
};

// The options as quant_report.json records them: method, options, calibration, source model.
nlohmann::json recorded_settings(const QuantizeOptions& options);

// What a checkpoint must have been made by to be resumed: the options that shape the output, a hash of the
// calibration windows (text, tokenizer, seed, counts), the model files' names, sizes and times, and the
// thread count.
nlohmann::json run_identity(const QuantizeOptions& options, const std::vector<std::vector<int>>& windows);

bool has_checkpoint(const std::filesystem::path& dir);

// Commits `state` (and the writer's `writer_state`) as the checkpoint in `dir`; returns the bytes written.
std::uintmax_t write_checkpoint(const std::filesystem::path& dir, const nlohmann::json& identity, const PipelineState& state,
                                const nlohmann::json& writer_state);

struct Checkpoint {
  PipelineState state;
  nlohmann::json writer_state;
};

// The checkpoint in `dir`. Throws, naming what differs, when it was made by another command, and when it is
// unreadable; files in `dir` it does not refer to (cut-off writes) are removed.
Checkpoint read_checkpoint(const std::filesystem::path& dir, const nlohmann::json& identity);

// Removes the checkpoint files (and the writer's side file `data_file`) before the directory becomes the output.
void remove_checkpoint(const std::filesystem::path& dir, const std::filesystem::path& data_file);

}  // namespace fbq
