#include "quant/checkpoint.h"

#include <fmt/format.h>
#include <fmt/ranges.h>

#include <omp.h>

#include <fstream>
#include <set>

#include "io/text_files.h"
#include "util/error.h"
#include "util/kill_point.h"

namespace fbq {
namespace {

using json = nlohmann::json;

constexpr int kCheckpointVersion = 1;
constexpr const char* kCheckpointFile = "checkpoint.json";

std::uint64_t fnv1a(const std::vector<std::vector<int>>& windows) {
  std::uint64_t hash = 1469598103934665603ull;
  for (const auto& window : windows)
    for (const int token : window)
      for (int byte = 0; byte < 4; ++byte)
        hash = (hash ^ ((static_cast<std::uint32_t>(token) >> (8 * byte)) & 0xffu)) * 1099511628211ull;
  return hash;
}

// Names, sizes and modification times of the model's files: a changed model is refused without reading it.
json model_files(const std::filesystem::path& model) {
  namespace fs = std::filesystem;
  std::vector<fs::path> files;
  if (fs::is_directory(model)) {
    for (const auto& entry : fs::directory_iterator(model))
      if (entry.is_regular_file()) files.push_back(entry.path());
  } else {
    files.push_back(model);
  }
  std::ranges::sort(files);
  json out = json::array();
  for (const auto& file : files)
    out.push_back({file.filename().string(), fs::file_size(file), fs::last_write_time(file).time_since_epoch().count()});
  return {{"path", fs::absolute(model).lexically_normal().string()}, {"files", out}};
}

template <typename T>
json optional_json(const std::optional<T>& value) {
  return value ? json(*value) : json(nullptr);
}

template <typename T>
std::optional<T> optional_from(const json& value) {
  if (value.is_null()) return std::nullopt;
  return value.get<T>();
}

json linear_json(const LinearReport& r) {
  return {{"name", r.name},
          {"shape", {r.out_features, r.in_features}},
          {"error", r.error},
          {"error_rtn", r.error_rtn},
          {"error_validation", optional_json(r.error_validation)},
          {"error_float", optional_json(r.error_float)},
          {"error_float_validation", optional_json(r.error_float_validation)},
          {"seconds", r.seconds},
          {"bits_per_weight", r.bits_per_weight},
          {"note", r.note},
          {"metrics", r.metrics},
          {"curves", r.curves}};
}

LinearReport linear_from(const json& j) {
  LinearReport r;
  r.name = j.at("name").get<std::string>();
  r.out_features = j.at("shape").at(0).get<int>();
  r.in_features = j.at("shape").at(1).get<int>();
  r.error = j.at("error").get<double>();
  r.error_rtn = j.at("error_rtn").get<double>();
  r.error_validation = optional_from<double>(j.at("error_validation"));
  r.error_float = optional_from<double>(j.at("error_float"));
  r.error_float_validation = optional_from<double>(j.at("error_float_validation"));
  r.seconds = j.at("seconds").get<double>();
  r.bits_per_weight = j.at("bits_per_weight").get<double>();
  r.note = j.at("note").get<std::string>();
  r.metrics = j.at("metrics").get<decltype(r.metrics)>();
  r.curves = j.at("curves").get<decltype(r.curves)>();
  return r;
}

std::string stream_file(const char* kind, int layers_done) { return fmt::format("{}-{}.f32", kind, layers_done); }

// Raw float32 values, written through a temporary file. The test kill point sits halfway through the bytes:
// a cut-off write must never be taken for a stream.
void write_stream(const std::filesystem::path& path, const std::vector<float>& values, int layers_done) {
  write_file_atomically(path, [&](std::ostream& out) {
    const auto* bytes = reinterpret_cast<const char*>(values.data());
    const std::streamsize size = static_cast<std::streamsize>(values.size() * sizeof(float)), half = size / 2;
    out.write(bytes, half);
    out.flush();
    kill_point("stream-write", layers_done);
    out.write(bytes + half, size - half);
  });
}

std::vector<float> read_stream(const std::filesystem::path& path, std::size_t count) {
  std::error_code error;
  if (std::filesystem::file_size(path, error) != count * sizeof(float) || error)
    fail("{} is missing or has the wrong size", path.string());
  std::vector<float> values(count);
  std::ifstream in(path, std::ios::binary);
  in.read(reinterpret_cast<char*>(values.data()), static_cast<std::streamsize>(count * sizeof(float)));
  if (!in) fail("cannot read {}", path.string());
  return values;
}

// The keys (one level down in objects) where two identities disagree, e.g. "settings.options, model".
std::string differences(const json& expected, const json& found) {
  std::vector<std::string> keys;
  for (const auto& [key, value] : expected.items()) {
    if (found.contains(key) && found[key] == value) continue;
    if (!value.is_object() || !found.contains(key) || !found[key].is_object()) {
      keys.push_back(key);
      continue;
    }
    for (const auto& [sub, sub_value] : value.items())
      if (!found[key].contains(sub) || found[key][sub] != sub_value) keys.push_back(key + "." + sub);
  }
  return keys.empty() ? "its format" : fmt::format("{}", fmt::join(keys, ", "));
}

// Removes what a cut-off write left in `dir`: everything but the files the checkpoint names.
void remove_unreferenced(const std::filesystem::path& dir, const std::set<std::string>& keep) {
  for (const auto& entry : std::filesystem::directory_iterator(dir))
    if (!keep.contains(entry.path().filename().string())) std::filesystem::remove_all(entry.path());
}

Checkpoint parse_checkpoint(const std::filesystem::path& dir, const json& j) {
  Checkpoint checkpoint{{}, j.at("writer")};
  auto& state = checkpoint.state;
  state.layers_done = j.at("layers_done").get<int>();
  for (const auto& linear : j.at("linears")) state.linears.push_back(linear_from(linear));
  for (const auto& drift : j.at("stream_drift"))
    state.stream_drift.push_back({drift.at("train").get<double>(), optional_from<double>(drift.at("validation"))});
  const auto count = j.at("stream_floats").get<std::size_t>();
  std::set<std::string> keep = {kCheckpointFile, j.at("data_file").get<std::string>()};
  const auto load = [&](const json& name, std::vector<float>& into) {
    if (name.is_null()) return;
    keep.insert(name.get<std::string>());
    into = read_stream(dir / name.get<std::string>(), count);
  };
  load(j.at("stream"), state.hidden);
  load(j.at("float_stream"), state.float_hidden);
  remove_unreferenced(dir, keep);
  return checkpoint;
}

}  // namespace

json recorded_settings(const QuantizeOptions& options) {
  const auto& mo = options.method_options;
  json settings = {{"method", options.method},
          {"options",
           {{"bits", mo.spec.bits}, {"group_size", mo.spec.group_size}, {"zero_points", zero_points_name(mo.spec.zero_points)},
            {"scale_bits", mo.spec.scale_bits}, {"rank", mo.rank}, {"damp", mo.damp},
            {"block_size", mo.block_size}, {"act_order", mo.act_order}, {"clip_search", mo.clip_search},
            {"scaled_svd", mo.scaled_svd}, {"branch_bits", mo.branch_bits}, {"params", mo.params},
            {"float_target", options.float_target}, {"report_float_error", options.report_float_error},
            {"true_sequential", options.true_sequential},
            {"seed", options.seed}}},
          {"calibration",
           {{"text", options.calibration_text.filename().string()}, {"nsamples", options.nsamples},
            {"validation_samples", options.validation_samples}, {"seqlen", options.seqlen}, {"seed", options.seed}}},
          {"source_model", options.model.filename().string()}};
  // Only when set, so that runs without a quantized head keep the identity they always had.
  if (options.quantizes_head())
    settings["options"]["head"] = {{"bits", options.head_bits}, {"group_size", options.head_group_size}};
  if (options.reconstructs_blocks()) {
    const auto& b = options.block;
    settings["options"]["reconstruct"] = {{"mode", "block"}, {"input", options.block_float_input ? "float" : "quantized"},
                                          {"steps", b.steps}, {"lr", b.lr}, {"batch", b.batch},
                                          {"eval_every", b.eval_every}, {"refresh_every", b.refresh_every},
                                          {"train_norms", b.train_norms}, {"lwc", b.lwc}};
  }
  return settings;
}

json run_identity(const QuantizeOptions& options, const std::vector<std::vector<int>>& windows) {
  return {{"checkpoint_version", kCheckpointVersion},
          {"settings", recorded_settings(options)},
          {"calibration_windows", fmt::format("{:016x}", fnv1a(windows))},
          {"model", model_files(options.model)},
          // OpenBLAS's summation order depends on the thread count, so a resume with another -t would not
          // give the bytes of either uninterrupted run.
          {"threads", omp_get_max_threads()},
          {"tokenizer", options.tokenizer ? std::filesystem::absolute(*options.tokenizer).string() : ""}};
}

bool has_checkpoint(const std::filesystem::path& dir) { return std::filesystem::is_regular_file(dir / kCheckpointFile); }

std::uintmax_t write_checkpoint(const std::filesystem::path& dir, const json& identity, const PipelineState& state,
                                const json& writer_state) {
  const int done = state.layers_done;
  json linears = json::array(), drift = json::array();
  for (const auto& r : state.linears) linears.push_back(linear_json(r));
  for (const auto& d : state.stream_drift) drift.push_back({{"train", d.train}, {"validation", optional_json(d.validation)}});
  json checkpoint = {{"identity", identity},          {"layers_done", done},
                     {"linears", linears},            {"stream_drift", drift},
                     {"writer", writer_state},        {"data_file", "model.safetensors.data"},
                     {"stream_floats", state.hidden.size()},
                     {"stream", stream_file("stream", done)}, {"float_stream", nullptr}};
  write_stream(dir / stream_file("stream", done), state.hidden, done);
  if (!state.float_hidden.empty()) {
    checkpoint["float_stream"] = stream_file("float-stream", done);
    write_stream(dir / stream_file("float-stream", done), state.float_hidden, done);
  }
  kill_point("commit", done);
  const auto text = checkpoint.dump() + "\n";
  write_file_atomically(dir / kCheckpointFile, text);
  // The previous checkpoint's streams are no longer referenced.
  std::error_code ignored;
  std::filesystem::remove(dir / stream_file("stream", done - 1), ignored);
  std::filesystem::remove(dir / stream_file("float-stream", done - 1), ignored);
  kill_point("layer", done);
  return text.size() + (state.hidden.size() + state.float_hidden.size()) * sizeof(float);
}

Checkpoint read_checkpoint(const std::filesystem::path& dir, const json& identity) {
  const auto unreadable = [&](const std::exception& e) {
    fail("the checkpoint in {} is unreadable ({}); run without --resume and with --overwrite to start over",
         dir.string(), e.what());
  };
  json j;
  try {
    j = json::parse(read_text_file(dir / kCheckpointFile));
  } catch (const std::exception& e) {
    unreadable(e);
  }
  if (!j.is_object() || !j.contains("identity") || j["identity"] != identity)
    fail("the checkpoint in {} was made by a different command or model (differs in {}); resume with the same "
         "options, or run without --resume and with --overwrite to start over",
         dir.string(), differences(identity, j.is_object() ? j.value("identity", json::object()) : json::object()));
  try {
    return parse_checkpoint(dir, j);
  } catch (const std::exception& e) {
    unreadable(e);
  }
  return {};  // not reached: unreadable() throws
}

void remove_checkpoint(const std::filesystem::path& dir, const std::filesystem::path& data_file) {
  for (const auto& entry : std::filesystem::directory_iterator(dir)) {
    const auto name = entry.path().filename().string();
    if (name.starts_with("checkpoint.json") || name.ends_with(".f32") || name.ends_with(".f32.tmp"))
      std::filesystem::remove(entry.path());
  }
  std::filesystem::remove(data_file);
}

}  // namespace fbq
