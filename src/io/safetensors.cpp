#include "io/safetensors.h"

#include <fmt/ranges.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <fstream>
#include <limits>
#include <nlohmann/json.hpp>

#include "util/error.h"

namespace fbq {
namespace {

using json = nlohmann::json;
constexpr std::uint64_t kMaxHeaderBytes = 100u << 20;  // same cap as the reference implementation

std::int64_t checked_numel(const std::vector<std::int64_t>& shape, const std::string& where) {
  std::int64_t count = 1;
  for (const auto dim : shape) {
    if (dim < 0) fail("{}: negative dimension in shape {}", where, fmt::join(shape, ","));
    if (dim != 0 && count > std::numeric_limits<std::int64_t>::max() / dim)
      fail("{}: shape {} overflows", where, fmt::join(shape, ","));
    count *= dim;
  }
  return count;
}

TensorView parse_entry(const std::string& name, const json& entry, std::span<const std::uint8_t> data,
                       const std::filesystem::path& path) {
  const std::string where = fmt::format("{}: tensor '{}'", path.string(), name);
  if (!entry.is_object()) fail("{} is not a JSON object", where);
  const auto dtype_it = entry.find("dtype");
  const auto shape_it = entry.find("shape");
  const auto offsets_it = entry.find("data_offsets");
  if (dtype_it == entry.end() || !dtype_it->is_string()) fail("{} has no dtype string", where);
  if (shape_it == entry.end() || !shape_it->is_array()) fail("{} has no shape array", where);
  if (offsets_it == entry.end() || !offsets_it->is_array() || offsets_it->size() != 2)
    fail("{} has no [begin, end] data_offsets", where);

  const auto dtype = dtype_from_name(dtype_it->get<std::string>());
  if (!dtype) fail("{} has unknown dtype '{}'", where, dtype_it->get<std::string>());

  TensorView view{name, *dtype, {}, {}, path};
  for (const auto& dim : *shape_it) {
    if (!dim.is_number_integer()) fail("{}: shape entries must be integers", where);
    view.shape.push_back(dim.get<std::int64_t>());
  }
  for (const auto& offset : *offsets_it)
    if (!offset.is_number_unsigned()) fail("{}: data_offsets must be non-negative integers", where);
  const auto begin = (*offsets_it)[0].get<std::uint64_t>();
  const auto end = (*offsets_it)[1].get<std::uint64_t>();
  if (begin > end) fail("{}: data_offsets [{}, {}] are reversed", where, begin, end);
  if (end > data.size())
    fail("{}: data_offsets [{}, {}] run past the end of the data section ({} bytes; file truncated?)", where,
         begin, end, data.size());
  const auto numel = checked_numel(view.shape, where);
  const auto expected = static_cast<std::uint64_t>(numel) * dtype_size(*dtype);
  if (end - begin != expected)
    fail("{}: {} bytes for shape {} of {} (expected {})", where, end - begin, view.shape_string(),
         dtype_name(*dtype), expected);
  view.data = data.subspan(begin, end - begin);
  return view;
}

}  // namespace

std::int64_t TensorView::numel() const {
  std::int64_t count = 1;
  for (const auto dim : shape) count *= dim;
  return count;
}

std::string TensorView::shape_string() const { return fmt::format("[{}]", fmt::join(shape, ", ")); }

SafetensorsFile::SafetensorsFile(const std::filesystem::path& path)
    : file_(std::make_unique<MappedFile>(path)) {
  const auto bytes = file_->bytes();
  if (bytes.size() < 8) fail("{}: too short to be a safetensors file ({} bytes)", path.string(), bytes.size());
  std::uint64_t header_size;
  std::memcpy(&header_size, bytes.data(), 8);
  if (header_size > kMaxHeaderBytes || header_size > bytes.size() - 8)
    fail("{}: header length {} exceeds the file ({} bytes; truncated or not safetensors)", path.string(),
         header_size, bytes.size());
  const auto header_text = bytes.subspan(8, header_size);
  const auto data = bytes.subspan(8 + header_size);

  json header = json::parse(header_text.begin(), header_text.end(), nullptr, /*allow_exceptions=*/false);
  if (header.is_discarded() || !header.is_object()) fail("{}: header is not a valid JSON object", path.string());

  for (const auto& [name, entry] : header.items()) {
    if (name == "__metadata__") {
      if (!entry.is_object()) fail("{}: __metadata__ is not an object", path.string());
      for (const auto& [key, value] : entry.items())
        metadata_[key] = value.is_string() ? value.get<std::string>() : value.dump();
      continue;
    }
    tensors_.push_back(parse_entry(name, entry, data, path));
  }

  // Overlapping tensors mean a corrupt or malicious file: two names would alias the same bytes.
  std::vector<const TensorView*> by_offset;
  for (const auto& view : tensors_) by_offset.push_back(&view);
  std::sort(by_offset.begin(), by_offset.end(),
            [](const TensorView* a, const TensorView* b) { return a->data.data() < b->data.data(); });
  for (std::size_t i = 1; i < by_offset.size(); ++i) {
    const auto* prev = by_offset[i - 1];
    if (by_offset[i]->data.data() < prev->data.data() + prev->data.size())
      fail("{}: tensors '{}' and '{}' overlap in the data section", path.string(), prev->name, by_offset[i]->name);
  }
}

void TensorStore::add(std::shared_ptr<const void> owner, TensorView view) {
  if (by_name_.contains(view.name)) fail("{}: tensor '{}' appears twice", source_.string(), view.name);
  owners_.emplace(view.name, std::move(owner));
  auto name = view.name;
  by_name_.emplace(std::move(name), std::move(view));
}

void TensorStore::add(std::shared_ptr<const SafetensorsFile> file, const TensorView& view) {
  add(std::shared_ptr<const void>(std::move(file)), view);
  file_mapped_.insert(view.name);
}

TensorStore TensorStore::open_file(const std::filesystem::path& file) {
  TensorStore store(file);
  auto parsed = std::make_shared<const SafetensorsFile>(file);
  for (const auto& view : parsed->tensors()) store.add(parsed, view);
  return store;
}

TensorStore TensorStore::open_directory(const std::filesystem::path& dir) {
  if (!std::filesystem::is_directory(dir)) fail("{} is not a directory", dir.string());
  const auto single = dir / "model.safetensors";
  const auto index_path = dir / "model.safetensors.index.json";
  if (std::filesystem::exists(single)) {
    auto store = open_file(single);
    store.source_ = dir;
    return store;
  }
  if (!std::filesystem::exists(index_path))
    fail("{}: neither model.safetensors nor model.safetensors.index.json found", dir.string());

  std::ifstream in(index_path);
  const json index = json::parse(in, nullptr, /*allow_exceptions=*/false);
  if (index.is_discarded() || !index.is_object() || !index.contains("weight_map") || !index["weight_map"].is_object())
    fail("{}: not a valid safetensors index (needs a weight_map object)", index_path.string());

  TensorStore store(dir);
  std::map<std::string, std::shared_ptr<const SafetensorsFile>> shards;
  for (const auto& [name, shard_value] : index["weight_map"].items()) {
    if (!shard_value.is_string()) fail("{}: weight_map['{}'] is not a file name", index_path.string(), name);
    const auto shard_name = shard_value.get<std::string>();
    if (shard_name.find('/') != std::string::npos || shard_name == "..")
      fail("{}: shard name '{}' must be a plain file name", index_path.string(), shard_name);
    auto& shard = shards[shard_name];
    if (!shard) shard = std::make_shared<const SafetensorsFile>(dir / shard_name);
    const auto& tensors = shard->tensors();
    // An init-capture: clang before 16 cannot capture a structured binding.
    const auto it =
        std::find_if(tensors.begin(), tensors.end(), [&wanted = name](const TensorView& v) { return v.name == wanted; });
    if (it == tensors.end())
      fail("{}: index says tensor '{}' is in {}, but it is not", index_path.string(), name, shard_name);
    store.add(shard, *it);
  }
  return store;
}

const TensorView* TensorStore::find(const std::string& name) const {
  const auto it = by_name_.find(name);
  return it == by_name_.end() ? nullptr : &it->second;
}

const TensorView& TensorStore::get(const std::string& name) const {
  const auto* view = find(name);
  if (!view) fail("{}: tensor '{}' is missing", source_.string(), name);
  return *view;
}

std::shared_ptr<const void> TensorStore::owner(const std::string& name) const {
  get(name);
  return owners_.at(name);
}

std::vector<const TensorView*> TensorStore::all() const {
  std::vector<const TensorView*> out;
  for (const auto& [name, view] : by_name_) out.push_back(&view);
  return out;
}

const TensorView& TensorStore::get(const std::string& name, const std::vector<std::int64_t>& expected_shape) const {
  const auto& view = get(name);
  if (view.shape != expected_shape)
    fail("{}: tensor '{}' has shape {}, but config.json implies [{}]", source_.string(), name, view.shape_string(),
         fmt::join(expected_shape, ", "));
  return view;
}

std::vector<float> TensorStore::load_f32(const std::string& name, const std::vector<std::int64_t>& expected_shape) const {
  const auto& view = get(name, expected_shape);
  if (!dtype_is_float(view.dtype))
    fail("{}: tensor '{}' has dtype {}; expected F32, F16 or BF16", source_.string(), name, dtype_name(view.dtype));
  std::vector<float> values(static_cast<std::size_t>(view.numel()));
  convert_to_f32(view.dtype, view.data.data(), values.size(), values.data());
  if (file_mapped_.contains(name)) release_pages(view.data);
  check_finite(name, values);
  return values;
}

void check_finite(const std::string& name, std::span<const float> values) {
  std::size_t bad = 0, first = 0;
  for (std::size_t i = 0; i < values.size(); ++i)
    if (!std::isfinite(values[i]) && bad++ == 0) first = i;
  if (bad) fail("tensor '{}' has {} non-finite values (first at flat index {}); refusing to load it", name, bad, first);
}

}  // namespace fbq
