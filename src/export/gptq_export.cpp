#include "export/gptq_export.h"

#include <fmt/core.h>
#include <fmt/ranges.h>
#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <nlohmann/json.hpp>
#include <optional>
#include <set>

#include "io/dtype.h"
#include "io/safetensors_writer.h"
#include "io/text_files.h"
#include "model/model.h"
#include "pack/packed_linear.h"
#include "quant/checkpoint.h"
#include "quant/quantize_model.h"
#include "tokenizer/tokenizer.h"
#include "util/error.h"

namespace fbq {
namespace {

using json = nlohmann::json;
namespace fs = std::filesystem;

// The projections of a decoder layer in Hugging Face order, with the PEFT target name of each.
struct Projection {
  const char* path;  // under model.layers.{i}.
  const char* target;
  std::unique_ptr<Linear> DecoderLayer::*slot;
};
constexpr Projection kProjections[] = {
    {"self_attn.q_proj", "q_proj", &DecoderLayer::q_proj}, {"self_attn.k_proj", "k_proj", &DecoderLayer::k_proj},
    {"self_attn.v_proj", "v_proj", &DecoderLayer::v_proj}, {"self_attn.o_proj", "o_proj", &DecoderLayer::o_proj},
    {"mlp.gate_proj", "gate_proj", &DecoderLayer::gate_proj}, {"mlp.up_proj", "up_proj", &DecoderLayer::up_proj},
    {"mlp.down_proj", "down_proj", &DecoderLayer::down_proj}};

// vLLM's allowed --max-lora-rank values (EXPORT_FORMATS §3, newest LoRAConfig).
constexpr int kVllmLoraRanks[] = {8, 16, 32, 64, 128, 256, 320, 512};

void check_output_location(const fs::path& output) {
  if (fs::exists(output)) fail("{} already exists; refusing to replace it", output.string());
  const auto parent = output.parent_path().empty() ? fs::path(".") : output.parent_path();
  if (!fs::is_directory(parent)) fail("output directory {} does not exist", parent.string());
  if (::access(parent.c_str(), W_OK) != 0) fail("output directory {} is not writable", parent.string());
  if (has_checkpoint(partial_output(output)))
    fail("{} holds the checkpoint of a stopped fbq quantize run; refusing to replace it",
         partial_output(output).string());
}

// Refusals the tensor list alone decides, before any work.
void check_source(const fs::path& model, const CheckpointReader& reader) {
  if (reader.format() == "huggingface")
    fail("{} is a float model: quantize it with fbq quantize first, then export the packed directory", model.string());
  if (reader.format().starts_with("gptq")) fail("{} is already a GPTQ checkpoint ({})", model.string(), reader.format());
  if (reader.format() != "fbquant-packed")
    fail("{} is a {} checkpoint, not a packed model directory", model.string(), reader.format());
  const auto& c = reader.config();
  if (c.quant_head_bits > 0 && (c.quant_head_bits != c.quant_bits || c.quant_head_group_size != c.quant_group_size))
    fail("{}: the head is int{} g{} and the linears int{} g{}, but a GPTQ checkpoint has one bits and group_size for "
         "every quantized linear, lm_head included (quantize with --head-bits {} --head-group-size {} to export it)",
         model.string(), c.quant_head_bits, c.quant_head_group_size, c.quant_bits, c.quant_group_size, c.quant_bits,
         c.quant_group_size);
  for (const auto& tensor : reader.source_tensors())
    if (tensor.name.ends_with(".input_scale"))
      fail("{}: '{}' is AWQ's per-input-channel divisor; GPTQ computes s·(q − z)·x, and dividing column k by its own "
           "input_scale moves the weights off every group's grid, so it cannot be folded into GPTQ tensors exactly "
           "(export a model quantized with another method)", model.string(), tensor.name);
}

// The branch rank every adapter module is padded to, and the target modules that carry a branch.
std::pair<int, std::vector<std::string>> branch_layout(const CheckpointReader& reader) {
  int rank = 0;
  std::set<std::string> targets;
  for (const auto& tensor : reader.source_tensors())
    if (tensor.name.ends_with(".lora_A.weight") && !tensor.shape.empty()) {
      rank = std::max(rank, static_cast<int>(tensor.shape[0]));
      for (const auto& p : kProjections)
        if (tensor.name.find(std::string(".") + p.target + ".") != std::string::npos) targets.insert(p.target);
    }
  std::vector<std::string> ordered;
  for (const auto& p : kProjections)
    if (targets.contains(p.target)) ordered.push_back(p.target);
  return {rank, ordered};
}

// Float tensors as F16, counting the values the rounding changes and refusing those it cannot hold.
class HalfTensors {
 public:
  HalfTensors(SafetensorsWriter& writer, const CheckpointReader& reader, GptqExportSummary& summary)
      : writer_(writer), reader_(reader), summary_(summary) {}

  void add(const std::string& name, const std::vector<std::int64_t>& shape, const std::vector<float>& values) {
    std::vector<std::uint16_t> halves(values.size());
    for (std::size_t i = 0; i < values.size(); ++i) {
      halves[i] = float_to_half(values[i]);
      const float back = half_to_float(halves[i]);
      if (!std::isfinite(back))
        fail("{}: value {} at index {} is beyond float16's range (GPTQ checkpoints hold float16 tensors)", name,
             values[i], i);
      summary_.float_values_changed += back != values[i];
    }
    summary_.float_values += static_cast<std::int64_t>(values.size());
    const std::string dtype(dtype_name(reader_.dtype_of(name)));
    if (std::ranges::find(summary_.source_float_dtypes, dtype) == summary_.source_float_dtypes.end())
      summary_.source_float_dtypes.push_back(dtype);
    writer_.add(name, DType::F16, shape, halves.data(), halves.size() * 2);
  }

 private:
  SafetensorsWriter& writer_;
  const CheckpointReader& reader_;
  GptqExportSummary& summary_;
};

const PackedLinear& packed_linear(const Linear& linear, const std::string& name) {
  const auto* packed = dynamic_cast<const PackedLinear*>(&linear);
  if (!packed) fail("{} is not packed ({}); GPTQ export needs every projection quantized", name, linear.describe());
  return *packed;
}

// The data-level exactness check of v1 (EXPORT_FORMATS §0.1): z − 1 must be a field value.
void check_v1_zero_points(const PackedLinear& linear, const std::string& name) {
  const auto& w = linear.packed();
  if (const auto zeros = count_zero_points(w, 0); zeros > 0)
    fail("{}: {} of {} zero points are 0, which GPTQ v1 (stores z − 1) cannot hold; requantize with --zero-points "
         "gptq (or --sym), or pass --checkpoint-format gptq_v2", name, zeros,
         static_cast<std::int64_t>(w.rows) * w.groups_per_row());
}

void add_gptq_tensors(SafetensorsWriter& writer, const std::string& name, const GptqTensors& t) {
  const std::int64_t n = t.out_features, groups = t.groups();
  writer.add(name + ".qweight", DType::I32, {t.qweight_rows(), n}, t.qweight.data(), t.qweight.size() * 4);
  writer.add(name + ".qzeros", DType::I32, {groups, t.qzeros_cols()}, t.qzeros.data(), t.qzeros.size() * 4);
  writer.add(name + ".scales", DType::F16, {groups, n}, t.scales.data(), t.scales.size() * 2);
  writer.add(name + ".g_idx", DType::I32, {t.in_features}, t.g_idx.data(), t.g_idx.size() * 4);
}

// The linear's branch zero-padded to `rank` (zeros where it has none), A's columns in input order.
void add_padded_branch(SafetensorsWriter& adapter, const std::string& name, const PackedLinear& linear, int rank) {
  const std::size_t m = linear.out_features(), n = linear.in_features(), own = linear.rank();
  std::vector<float> a(rank * n, 0.0f), b(m * rank, 0.0f);
  const auto own_a = linear.lora_a(), own_b = linear.lora_b();
  const auto& order = linear.input_order();
  for (std::size_t k = 0; k < own; ++k)
    for (std::size_t j = 0; j < n; ++j) a[k * n + (order.empty() ? j : order[j])] = own_a[k * n + j];
  for (std::size_t i = 0; i < m; ++i) std::copy_n(&own_b[i * own], own, &b[i * rank]);
  const auto key = "base_model.model." + name;
  adapter.add_floats(key + ".lora_A.weight", DType::F16, {rank, static_cast<std::int64_t>(n)}, a);
  adapter.add_floats(key + ".lora_B.weight", DType::F16, {static_cast<std::int64_t>(m), rank}, b);
}

// What quant_report.json says about GPTQ's settings (absent for a model that was not made by fbq quantize).
struct QuantSettings {
  bool act_order = false;
  double damp = 0.01;
  bool true_sequential = true;
};

QuantSettings recorded_settings(const fs::path& model) {
  QuantSettings settings;
  if (!fs::is_regular_file(model / "quant_report.json")) return settings;
  const auto report = read_json_file(model / "quant_report.json");
  const auto options = report.value("options", json::object());
  const auto method = report.value("method", std::string());
  // GPTQ is the method, or FBQuant's inner quantizer (its default); only there does --act-order apply.
  const bool gptq = method == "gptq" ||
                    (method == "fbquant" && options.value("params", json::object()).value("inner", "gptq") == "gptq");
  settings.act_order = gptq && options.value("act_order", false);
  if (const double damp = options.value("damp", 0.0); gptq && damp > 0 && damp < 1) settings.damp = damp;
  settings.true_sequential = options.value("true_sequential", settings.true_sequential);
  return settings;
}

// EXPORT_FORMATS §2: written both into config.json and as quantize_config.json.
json gptq_quantization_config(const GptqExportSummary& s, const QuantSettings& settings) {
  return {{"quant_method", "gptq"},
          {"bits", s.bits},
          {"group_size", s.group_size > 0 ? s.group_size : -1},
          {"desc_act", s.desc_act},
          {"sym", s.sym},
          {"checkpoint_format", checkpoint_format_name(s.format)},
          {"lm_head", s.lm_head},
          {"damp_percent", settings.damp},
          {"true_sequential", settings.true_sequential},
          // Our act-order keeps groups of consecutive columns, so g_idx stays k // g.
          {"static_groups", s.desc_act},
          {"pack_dtype", "int32"},
          // GPTQModel refuses asymmetric v1 files without a gptqmodel ≥ 0.9.0 marker, which guards against the
          // z = 0 corruption that the export has already ruled out in the data.
          {"meta", {{"quantizer", {"fbquant:0.1.0", "gptqmodel:0.9.0"}}}}};
}

json adapter_config(int rank, const std::vector<std::string>& targets, const fs::path& base) {
  return {{"peft_type", "LORA"},        {"task_type", "CAUSAL_LM"},
          {"base_model_name_or_path", base.string()},
          {"r", rank},                  {"lora_alpha", rank},
          {"target_modules", targets},  {"lora_dropout", 0.0},
          {"bias", "none"},             {"fan_in_fan_out", false},
          {"use_rslora", false},        {"use_dora", false},
          {"modules_to_save", nullptr}, {"rank_pattern", json::object()},
          {"alpha_pattern", json::object()}, {"inference_mode", true},
          {"init_lora_weights", true}};
}

void note_engine_limits(GptqExportSummary& s, int min_features) {
  if (s.group_size % 32 != 0)  // 0 (per-channel) is fine
    s.warnings.push_back(fmt::format(
        "group size {} is not a multiple of 32: vLLM's GPTQ kernels need group boundaries on multiples of 32 (Marlin: "
        "32, 64, 128); transformers/GPTQModel still load it", s.group_size));
  if (min_features % 32 != 0)
    s.warnings.push_back(fmt::format("a linear has {} features, not a multiple of 32, which AutoGPTQ's kernels refuse",
                                     min_features));
  if (!(s.sym && (s.bits == 4 || s.bits == 8)))
    s.warnings.push_back(fmt::format(
        "{}-bit {}: vLLM runs it only on its exllama `gptq` path (PR #2330, 2024, until its removal in PR #38288, "
        "2026); newest vLLM serves only 4/8-bit sym GPTQ (Marlin)", s.bits, s.sym ? "sym" : "asymmetric"));
  if (s.format == GptqZeroFormat::v2)
    s.warnings.push_back("gptq_v2 zeros: GPTQModel (and transformers through it), or vLLM from PR #26092 (Oct 2025)");
  if (s.branch_rank > kVllmLoraRanks[std::size(kVllmLoraRanks) - 1])
    s.warnings.push_back(fmt::format("branch rank {} is above vLLM's largest --max-lora-rank (512)", s.branch_rank));
}

void add_serving_lines(GptqExportSummary& s, const fs::path& output) {
  const auto dir = output.string(), branch = (output / "branch").string();
  std::string vllm = fmt::format("vllm serve {} --quantization gptq --dtype float16", dir);
  if (s.branch_rank > 0) {
    const auto* lora_rank = std::ranges::find_if(kVllmLoraRanks, [&](int r) { return r >= s.branch_rank; });
    vllm += fmt::format(" --enable-lora --lora-modules branch={} --max-lora-rank {}", branch,
                        lora_rank == std::end(kVllmLoraRanks) ? s.branch_rank : *lora_rank);
  }
  s.serving.push_back(vllm);
  s.serving.push_back(fmt::format("model = AutoModelForCausalLM.from_pretrained(\"{}\")", dir));
  if (s.branch_rank > 0) s.serving.push_back(fmt::format("model = PeftModel.from_pretrained(model, \"{}\")", branch));
}

struct WriteTally {
  double stored_bits = 0, weights = 0;
  std::int64_t groups = 0, symmetric_groups = 0;
  int min_features = 1 << 30;
};

void write_linear(SafetensorsWriter& writer, SafetensorsWriter* adapter, const GptqExportSummary& s,
                  const std::string& name, const PackedLinear& linear, WriteTally& tally) {
  const auto& w = linear.packed();
  const int group = s.group_size > 0 ? s.group_size : w.cols;  // 0: per-channel (a GPTQ source's −1)
  if (w.spec.bits != s.bits || w.spec.group_size != group)
    fail("{} is int{} g{}, the model's config says int{} g{}", name, w.spec.bits, w.spec.group_size, s.bits, group);
  if (!linear.input_scale().empty()) fail("{} has an AWQ input scale, which GPTQ cannot hold", name);
  if (s.format == GptqZeroFormat::v1) check_v1_zero_points(linear, name);
  GptqTensors t;
  try {
    t = to_gptq(w, linear.input_order(), s.format);
  } catch (const Error& e) {
    fail("{}: {}", name, e.what());
  }
  add_gptq_tensors(writer, name, t);
  if (adapter) add_padded_branch(*adapter, name, linear, s.branch_rank);
  tally.stored_bits += 32.0 * (t.qweight.size() + t.qzeros.size() + t.g_idx.size()) + 16.0 * t.scales.size();
  tally.weights += static_cast<double>(w.rows) * w.cols;
  tally.groups += static_cast<std::int64_t>(w.rows) * w.groups_per_row();
  tally.symmetric_groups += count_zero_points(w, 1 << (w.spec.bits - 1));
  tally.min_features = std::min({tally.min_features, w.rows, w.cols});
}

void finish_writer(SafetensorsWriter& writer) {
  writer.finish({{"format", "pt"}});
  fs::remove(writer.data_path());
}

// One decoder layer: norms and biases as F16, each projection as GPTQ tensors (and its adapter entry).
void write_layer(const CheckpointReader& reader, int index, GptqExportSummary& s, SafetensorsWriter& writer,
                 SafetensorsWriter* adapter, HalfTensors& halves, WriteTally& tally) {
  const auto prefix = fmt::format("model.layers.{}.", index);
  const std::int64_t dim = reader.config().dim;
  const auto layer = reader.layer(index);
  halves.add(prefix + "input_layernorm.weight", {dim}, layer.attn_norm);
  halves.add(prefix + "post_attention_layernorm.weight", {dim}, layer.ffn_norm);
  for (const auto& p : kProjections) {
    const auto name = prefix + p.path;
    const auto& linear = packed_linear(*(layer.*p.slot), name);
    s.desc_act = s.desc_act || !linear.input_order().empty();
    const bool targeted = std::ranges::find(s.branch_modules, p.target) != s.branch_modules.end();
    write_linear(writer, targeted ? adapter : nullptr, s, name, linear, tally);
  }
  const std::pair<const char*, const std::vector<float>*> biases[] = {{"self_attn.q_proj.bias", &layer.q_bias},
                                                                       {"self_attn.k_proj.bias", &layer.k_bias},
                                                                       {"self_attn.v_proj.bias", &layer.v_bias},
                                                                       {"self_attn.o_proj.bias", &layer.o_bias}};
  for (const auto& [bias, values] : biases)
    if (!values->empty()) halves.add(prefix + bias, {static_cast<std::int64_t>(values->size())}, *values);
}

// model.safetensors and the adapter's tensors; fills the summary's data-derived fields (sym, bits/weight, ...).
WriteTally write_tensors(const CheckpointReader& reader, GptqExportSummary& s, const fs::path& temp) {
  const auto& c = reader.config();
  SafetensorsWriter writer(temp / "model.safetensors");
  std::optional<SafetensorsWriter> adapter;
  if (s.branch_rank > 0) {
    fs::create_directories(temp / "branch");
    adapter.emplace(temp / "branch" / "adapter_model.safetensors");
  }
  HalfTensors halves(writer, reader, s);
  halves.add("model.embed_tokens.weight", {c.vocab_size, c.dim}, *reader.embedding());
  WriteTally tally;
  for (int l = 0; l < c.n_layers; ++l) write_layer(reader, l, s, writer, adapter ? &*adapter : nullptr, halves, tally);
  halves.add("model.norm.weight", {c.dim}, reader.final_norm());
  if (const auto head = reader.lm_head()) {
    if (s.lm_head) {
      write_linear(writer, nullptr, s, "lm_head", packed_linear(*head, "lm_head"), tally);
    } else {
      const auto* dense = dynamic_cast<const DenseLinear*>(head.get());
      if (!dense) fail("lm_head is {}; GPTQ export keeps lm_head in float16 (lm_head: false)", head->describe());
      halves.add("lm_head.weight", {c.vocab_size, c.dim}, dense->weights());
    }
  }
  finish_writer(writer);
  if (adapter) finish_writer(*adapter);
  s.linears = c.n_layers * static_cast<int>(std::size(kProjections)) + s.lm_head;
  s.bits_per_weight = tally.stored_bits / tally.weights;
  s.sym = tally.symmetric_groups == tally.groups;
  return tally;
}

void write_metadata(const GptqExportOptions& options, const CheckpointReader& reader, const GptqExportSummary& s,
                    const QuantSettings& settings, const fs::path& temp) {
  const auto quantization = gptq_quantization_config(s, settings);
  auto config = read_json_file(options.model / "config.json");
  config["quantization_config"] = quantization;
  config["torch_dtype"] = "float16";
  write_file_atomically(temp / "config.json", config.dump(2) + "\n");
  write_file_atomically(temp / "quantize_config.json", quantization.dump(2) + "\n");
  if (const auto tokenizer = reader.default_tokenizer()) copy_tokenizer_files(*tokenizer, temp);
  if (s.branch_rank > 0)
    write_file_atomically(temp / "branch" / "adapter_config.json",
                          adapter_config(s.branch_rank, s.branch_modules, fs::absolute(options.output)).dump(2) + "\n");
}

GptqExportSummary write_checkpoint(const GptqExportOptions& options, const CheckpointReader& reader, const fs::path& temp) {
  GptqExportSummary s;
  s.format = options.format;
  s.bits = reader.config().quant_bits;
  s.group_size = reader.config().quant_group_size;
  s.lm_head = reader.config().quant_head_bits > 0;
  std::tie(s.branch_rank, s.branch_modules) = branch_layout(reader);
  const auto settings = recorded_settings(options.model);
  s.desc_act = settings.act_order;
  const auto tally = write_tensors(reader, s, temp);
  write_metadata(options, reader, s, settings, temp);
  note_engine_limits(s, tally.min_features);
  return s;
}

}  // namespace

GptqExportSummary export_gptq(const GptqExportOptions& requested) {
  auto options = requested;
  if (!options.output.has_filename()) options.output = options.output.parent_path();  // "DIR/" names DIR
  if (!fs::exists(options.model)) fail("{}: no such file or directory", options.model.string());
  if (!fs::is_directory(options.model)) fail("{} is not a packed model directory", options.model.string());
  check_output_location(options.output);
  const CheckpointReader reader(options.model);
  check_source(options.model, reader);
  const auto temp = partial_output(options.output);
  fs::remove_all(temp);
  fs::create_directories(temp);
  try {
    auto summary = write_checkpoint(options, reader, temp);
    fs::rename(temp, options.output);
    summary.model_bytes = fs::file_size(options.output / "model.safetensors");
    if (summary.branch_rank > 0) summary.adapter_bytes = fs::file_size(options.output / "branch" / "adapter_model.safetensors");
    add_serving_lines(summary, options.output);
    return summary;
  } catch (...) {
    std::error_code ignored;
    fs::remove_all(temp, ignored);  // nothing partial is left under any name
    throw;
  }
}

}  // namespace fbq
