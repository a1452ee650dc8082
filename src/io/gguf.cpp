#include "io/gguf.h"

#include <fmt/format.h>
#include <fmt/ranges.h>

#include <algorithm>
#include <array>
#include <cstring>
#include <fstream>
#include <limits>
#include <set>
#include <type_traits>

#include "io/gguf_blocks.h"
#include "util/error.h"

namespace fbq {
namespace {

constexpr std::uint64_t kDefaultAlignment = 32;
constexpr std::uint32_t kMaxDims = 4;  // GGML_MAX_DIMS
// The smallest encodings of a metadata entry (empty key, type, 1-byte value) and a tensor info (empty
// name, n_dims, one dim, type, offset): a count that cannot fit in the bytes left is refused before
// anything is allocated for it.
constexpr std::uint64_t kMinKvBytes = 8 + 4 + 1;
constexpr std::uint64_t kMinTensorInfoBytes = 8 + 4 + 8 + 4 + 8;

bool is_integer(GgufType type) {
  switch (type) {
    case GgufType::UINT8: case GgufType::INT8: case GgufType::UINT16: case GgufType::INT16:
    case GgufType::UINT32: case GgufType::INT32: case GgufType::UINT64: case GgufType::INT64: return true;
    default: return false;
  }
}
bool is_float(GgufType type) { return type == GgufType::FLOAT32 || type == GgufType::FLOAT64; }

std::string_view type_name(GgufType type) {
  static constexpr std::string_view kNames[] = {"uint8", "int8",   "uint16", "int16", "uint32", "int32", "float32",
                                                "bool",  "string", "array",  "uint64", "int64", "float64"};
  return kNames[static_cast<std::size_t>(type)];
}

std::string value_type_name(const GgufValue& value) {
  return value.is_array() ? fmt::format("array[{}]", type_name(value.element_type)) : std::string(type_name(value.type));
}

// Bounds-checked little-endian reads from the mapped file; every read past the end is an error.
class Reader {
 public:
  Reader(std::span<const std::uint8_t> bytes, const std::string& path) : bytes_(bytes), path_(path) {}

  template <typename T>
  T read(std::string_view what) {
    if (sizeof(T) > remaining())
      fail("{}: truncated: the {} at byte {} needs {} bytes, but the file ends at byte {}", path_, what, pos_,
           sizeof(T), bytes_.size());
    T value;
    std::memcpy(&value, bytes_.data() + pos_, sizeof value);
    pos_ += sizeof value;
    return value;
  }

  std::string read_string(std::string_view what) {
    const auto at = pos_;
    const auto length = read<std::uint64_t>(what);
    if (length > remaining())
      fail("{}: the {} at byte {} claims {} bytes, beyond the end of the file ({} bytes)", path_, what, at, length,
           bytes_.size());
    std::string text(reinterpret_cast<const char*>(bytes_.data() + pos_), length);
    pos_ += length;
    return text;
  }

  GgufType read_type(std::string_view what) {
    const auto at = pos_;
    const auto raw = read<std::uint32_t>(what);
    if (raw > static_cast<std::uint32_t>(GgufType::FLOAT64))
      fail("{}: unknown metadata value type {} at byte {}", path_, raw, at);
    return static_cast<GgufType>(raw);
  }

  // Refuses a count of `count` items of at least `min_bytes` each that the rest of the file cannot hold.
  std::uint64_t read_count(std::string_view what, std::uint64_t min_bytes) {
    const auto at = pos_;
    const auto count = read<std::uint64_t>(what);
    if (count > remaining() / min_bytes)
      fail("{}: {} {} at byte {} cannot fit in the {} bytes left in the file", path_, what, count, at, remaining());
    return count;
  }

  std::uint64_t position() const { return pos_; }
  std::uint64_t remaining() const { return bytes_.size() - pos_; }
  const std::string& path() const { return path_; }

 private:
  std::span<const std::uint8_t> bytes_;
  std::string path_;
  std::uint64_t pos_ = 0;
};

std::int64_t read_integer(Reader& in, GgufType type) {
  switch (type) {
    case GgufType::UINT8: return in.read<std::uint8_t>("uint8 value");
    case GgufType::INT8: return in.read<std::int8_t>("int8 value");
    case GgufType::UINT16: return in.read<std::uint16_t>("uint16 value");
    case GgufType::INT16: return in.read<std::int16_t>("int16 value");
    case GgufType::UINT32: return in.read<std::uint32_t>("uint32 value");
    case GgufType::INT32: return in.read<std::int32_t>("int32 value");
    case GgufType::UINT64: return static_cast<std::int64_t>(in.read<std::uint64_t>("uint64 value"));  // bit pattern
    default: return in.read<std::int64_t>("int64 value");
  }
}

double read_float(Reader& in, GgufType type) {
  return type == GgufType::FLOAT32 ? in.read<float>("float32 value") : in.read<double>("float64 value");
}

bool read_bool(Reader& in) { return in.read<std::uint8_t>("bool value") != 0; }

std::uint64_t min_encoded_bytes(GgufType type) {
  switch (type) {
    case GgufType::STRING: case GgufType::UINT64: case GgufType::INT64: case GgufType::FLOAT64: return 8;
    case GgufType::UINT32: case GgufType::INT32: case GgufType::FLOAT32: return 4;
    case GgufType::UINT16: case GgufType::INT16: return 2;
    default: return 1;
  }
}

template <typename T, typename ReadOne>
std::vector<T> read_elements(std::uint64_t count, ReadOne read_one) {
  std::vector<T> elements;
  elements.reserve(count);
  for (std::uint64_t i = 0; i < count; ++i) elements.push_back(read_one());
  return elements;
}

GgufValue read_array(Reader& in, const std::string& key) {
  GgufValue value;
  value.type = GgufType::ARRAY;
  value.element_type = in.read_type("array element type");
  const auto element = value.element_type;
  if (element == GgufType::ARRAY)
    fail("{}: metadata key '{}' is an array of arrays (nested arrays are not supported)", in.path(), key);
  const auto count = in.read_count("array length", min_encoded_bytes(element));
  if (element == GgufType::STRING)
    value.value = read_elements<std::string>(count, [&] { return in.read_string("array string"); });
  else if (element == GgufType::BOOL)
    value.value = read_elements<bool>(count, [&] { return read_bool(in); });
  else if (is_integer(element))
    value.value = read_elements<std::int64_t>(count, [&] { return read_integer(in, element); });
  else
    value.value = read_elements<double>(count, [&] { return read_float(in, element); });
  return value;
}

GgufValue read_value(Reader& in, GgufType type, const std::string& key) {
  if (type == GgufType::ARRAY) return read_array(in, key);
  GgufValue value;
  value.type = type;
  if (type == GgufType::STRING) {
    value.value = in.read_string("string value");
  } else if (type == GgufType::BOOL) {
    value.value = read_bool(in);
  } else if (is_integer(type)) {
    const auto integer = read_integer(in, type);
    value.value = integer;
    if (type == GgufType::UINT64) value.unsigned_value = static_cast<std::uint64_t>(integer);
  } else {
    value.value = read_float(in, type);
  }
  return value;
}

std::uint32_t read_version(Reader& in) {
  const auto magic = in.read<std::array<char, 4>>("magic");
  if (std::string_view(magic.data(), 4) != "GGUF")
    fail("{}: not a GGUF file (it starts with {:?}, not \"GGUF\")", in.path(), std::string(magic.data(), 4));
  const auto version = in.read<std::uint32_t>("version");
  if (version == 1)
    fail("{}: GGUF version 1 is not supported (it predates 64-bit counts; convert the model again with a current "
         "llama.cpp)", in.path());
  if (version != 2 && version != 3) fail("{}: unsupported GGUF version {} (fbquant reads versions 2 and 3)", in.path(), version);
  return version;
}

std::map<std::string, GgufValue> read_metadata(Reader& in, std::uint64_t count) {
  std::map<std::string, GgufValue> metadata;
  for (std::uint64_t i = 0; i < count; ++i) {
    auto key = in.read_string("metadata key");
    const auto type = in.read_type("metadata value type");
    auto value = read_value(in, type, key);
    if (metadata.contains(key)) fail("{}: duplicate metadata key '{}'", in.path(), key);
    metadata.emplace(std::move(key), std::move(value));
  }
  return metadata;
}

std::uint64_t alignment_of(const std::map<std::string, GgufValue>& metadata, const std::string& path) {
  const auto it = metadata.find("general.alignment");
  if (it == metadata.end()) return kDefaultAlignment;
  if (it->second.type != GgufType::UINT32)
    fail("{}: general.alignment must be a uint32, not {}", path, value_type_name(it->second));
  const auto alignment = static_cast<std::uint64_t>(std::get<std::int64_t>(it->second.value));
  if (alignment == 0 || (alignment & (alignment - 1)) != 0)
    fail("{}: general.alignment {} is not a power of two", path, alignment);
  return alignment;
}

struct TensorInfo {
  GgufTensor tensor;
  std::uint64_t bytes = 0;
};

TensorInfo read_tensor_info(Reader& in) {
  TensorInfo info;
  auto& t = info.tensor;
  t.name = in.read_string("tensor name");
  const auto n_dims = in.read<std::uint32_t>("tensor dimension count");
  if (n_dims == 0 || n_dims > kMaxDims)
    fail("{}: tensor '{}' has {} dimensions (1 to {} allowed)", in.path(), t.name, n_dims, kMaxDims);
  std::vector<std::uint64_t> dims;
  for (std::uint32_t i = 0; i < n_dims; ++i) dims.push_back(in.read<std::uint64_t>("tensor dimension"));
  std::int64_t numel = 1;
  for (const auto dim : dims) {
    if (dim > static_cast<std::uint64_t>(std::numeric_limits<std::int64_t>::max()) ||
        __builtin_mul_overflow(numel, static_cast<std::int64_t>(dim), &numel))
      fail("{}: tensor '{}' has dimensions [{}] whose product overflows int64", in.path(), t.name, fmt::join(dims, ", "));
    t.dims.push_back(static_cast<std::int64_t>(dim));
  }
  const auto raw_type = in.read<std::uint32_t>("tensor type");
  const auto* traits = ggml_type_traits(raw_type);
  if (!traits) fail("{}: tensor '{}' has unknown ggml type {}", in.path(), t.name, raw_type);
  t.type = traits->type;
  if (t.dims[0] % traits->block_elements != 0)
    fail("{}: tensor '{}' has rows of {} elements, not a multiple of the {} block size {}", in.path(), t.name, t.dims[0],
         traits->name, traits->block_elements);
  if (__builtin_mul_overflow(static_cast<std::uint64_t>(numel / traits->block_elements), traits->block_bytes, &info.bytes))
    fail("{}: tensor '{}' ({} elements of {}) needs more bytes than 64 bits can count", in.path(), t.name, numel,
         traits->name);
  t.offset = in.read<std::uint64_t>("tensor offset");
  return info;
}

// Points every tensor at its bytes in the data section, after checking they lie inside the file, on the
// alignment and apart from each other (overlapping tensors would alias the same bytes).
void place_tensors(std::vector<TensorInfo>& infos, std::span<const std::uint8_t> file, std::uint64_t data_offset,
                   std::uint64_t alignment, const std::string& path) {
  const std::uint64_t data_size = file.size() > data_offset ? file.size() - data_offset : 0;
  for (auto& [tensor, bytes] : infos) {
    if (tensor.offset % alignment != 0)
      fail("{}: tensor '{}' has offset {}, not a multiple of the alignment {}", path, tensor.name, tensor.offset,
           alignment);
    if (tensor.offset > data_size || bytes > data_size - tensor.offset)
      fail("{}: tensor '{}' needs {} bytes at data offset {}, beyond the end of the file ({} data bytes; truncated?)",
           path, tensor.name, bytes, tensor.offset, data_size);
    tensor.data = file.subspan(data_offset + tensor.offset, bytes);
  }
  std::vector<const TensorInfo*> by_offset;
  for (const auto& info : infos) by_offset.push_back(&info);
  std::sort(by_offset.begin(), by_offset.end(),
            [](const TensorInfo* a, const TensorInfo* b) { return a->tensor.offset < b->tensor.offset; });
  for (std::size_t i = 1; i < by_offset.size(); ++i) {
    const auto& previous = *by_offset[i - 1];
    if (by_offset[i]->tensor.offset < previous.tensor.offset + previous.bytes)
      fail("{}: tensors '{}' and '{}' overlap in the data section", path, previous.tensor.name,
           by_offset[i]->tensor.name);
  }
}

std::string format_element(const std::string& text, GgufType) { return fmt::format("{:?}", text); }
std::string format_element(std::int64_t value, GgufType type) {
  return type == GgufType::UINT64 ? fmt::format("{}", static_cast<std::uint64_t>(value)) : fmt::format("{}", value);
}
std::string format_element(double value, GgufType type) {
  return type == GgufType::FLOAT32 ? fmt::format("{}", static_cast<float>(value)) : fmt::format("{}", value);
}
std::string format_element(bool value, GgufType) { return value ? "true" : "false"; }

template <typename T>
struct IsVector : std::false_type {};
template <typename T>
struct IsVector<std::vector<T>> : std::true_type {};

}  // namespace

std::size_t GgufValue::array_size() const {
  return std::visit(
      [](const auto& held) -> std::size_t {
        if constexpr (IsVector<std::decay_t<decltype(held)>>::value) return held.size();
        return 0;
      },
      value);
}

std::string GgufValue::to_string(std::size_t max_elements) const {
  return std::visit(
      [&](const auto& held) {
        if constexpr (IsVector<std::decay_t<decltype(held)>>::value) {
          std::vector<std::string> shown;
          for (std::size_t i = 0; i < std::min(max_elements, held.size()); ++i)
            shown.push_back(format_element(static_cast<typename std::decay_t<decltype(held)>::value_type>(held[i]),
                                           element_type));
          if (held.size() > max_elements) shown.push_back("...");
          return fmt::format("[{}] ({} elements)", fmt::join(shown, ", "), held.size());
        } else {
          return format_element(held, type);
        }
      },
      value);
}

std::string_view ggml_type_name(GgmlType type) {
  if (const auto* traits = ggml_type_traits(static_cast<std::uint32_t>(type))) return traits->name;
  thread_local std::string unknown;  // the view must outlive the call
  unknown = fmt::format("type {}", static_cast<std::uint32_t>(type));
  return unknown;
}

std::int64_t GgufTensor::numel() const {
  std::int64_t count = 1;
  for (const auto dim : dims) count *= dim;
  return count;
}

GgufFile::GgufFile(const std::filesystem::path& path) : path_(path), file_(std::make_shared<const MappedFile>(path)) {
  Reader in(file_->bytes(), path.string());
  version_ = read_version(in);
  const auto tensor_count = in.read_count("tensor count", kMinTensorInfoBytes);
  const auto kv_count = in.read_count("metadata key count", kMinKvBytes);
  metadata_ = read_metadata(in, kv_count);
  alignment_ = alignment_of(metadata_, in.path());

  std::vector<TensorInfo> infos;
  std::set<std::string> names;
  for (std::uint64_t i = 0; i < tensor_count; ++i) {
    infos.push_back(read_tensor_info(in));
    if (!names.insert(infos.back().tensor.name).second)
      fail("{}: duplicate tensor name '{}'", in.path(), infos.back().tensor.name);
  }
  data_offset_ = (in.position() + alignment_ - 1) / alignment_ * alignment_;
  place_tensors(infos, file_->bytes(), data_offset_, alignment_, in.path());
  for (auto& info : infos) tensors_.push_back(std::move(info.tensor));
}

const GgufValue* GgufFile::find(const std::string& key) const {
  const auto it = metadata_.find(key);
  return it == metadata_.end() ? nullptr : &it->second;
}

const GgufTensor* GgufFile::find_tensor(const std::string& name) const {
  const auto it = std::find_if(tensors_.begin(), tensors_.end(), [&](const GgufTensor& t) { return t.name == name; });
  return it == tensors_.end() ? nullptr : &*it;
}

const GgufValue* GgufFile::find_typed(const std::string& key, bool (*accepts)(const GgufValue&),
                                      std::string_view expected) const {
  const auto* value = find(key);
  if (value && !accepts(*value))
    fail("{}: metadata key '{}' is {}, not {}", path_.string(), key, value_type_name(*value), expected);
  return value;
}

std::optional<std::string> GgufFile::get_string(const std::string& key) const {
  const auto* value = find_typed(key, [](const GgufValue& v) { return v.type == GgufType::STRING; }, "a string");
  if (!value) return std::nullopt;
  return std::get<std::string>(value->value);
}

std::optional<std::int64_t> GgufFile::get_int(const std::string& key) const {
  const auto* value = find_typed(key, [](const GgufValue& v) { return is_integer(v.type); }, "an integer");
  if (!value) return std::nullopt;
  if (value->type == GgufType::UINT64 && value->unsigned_value > static_cast<std::uint64_t>(INT64_MAX))
    fail("{}: metadata key '{}' = {} does not fit in int64", path_.string(), key, value->unsigned_value);
  return std::get<std::int64_t>(value->value);
}

std::optional<double> GgufFile::get_float(const std::string& key) const {
  const auto* value =
      find_typed(key, [](const GgufValue& v) { return is_float(v.type) || is_integer(v.type); }, "a number");
  if (!value) return std::nullopt;
  if (is_float(value->type)) return std::get<double>(value->value);
  return static_cast<double>(*get_int(key));
}

std::optional<bool> GgufFile::get_bool(const std::string& key) const {
  const auto* value = find_typed(key, [](const GgufValue& v) { return v.type == GgufType::BOOL; }, "a bool");
  if (!value) return std::nullopt;
  return std::get<bool>(value->value);
}

std::optional<std::vector<std::string>> GgufFile::get_string_array(const std::string& key) const {
  const auto* value = find_typed(
      key, [](const GgufValue& v) { return v.is_array() && v.element_type == GgufType::STRING; }, "an array of strings");
  if (!value) return std::nullopt;
  return std::get<std::vector<std::string>>(value->value);
}

std::optional<std::vector<std::int64_t>> GgufFile::get_int_array(const std::string& key) const {
  const auto* value = find_typed(
      key, [](const GgufValue& v) { return v.is_array() && is_integer(v.element_type); }, "an array of integers");
  if (!value) return std::nullopt;
  return std::get<std::vector<std::int64_t>>(value->value);
}

std::optional<std::vector<double>> GgufFile::get_float_array(const std::string& key) const {
  const auto* value = find_typed(
      key, [](const GgufValue& v) { return v.is_array() && is_float(v.element_type); }, "an array of floats");
  if (!value) return std::nullopt;
  return std::get<std::vector<double>>(value->value);
}

std::string describe_gguf(const GgufFile& file) {
  auto out = fmt::format("{}: GGUF v{}, alignment {}, data section at byte {}\n{} metadata keys, {} tensors\n\n",
                         file.path().string(), file.version(), file.alignment(), file.data_offset(),
                         file.metadata().size(), file.tensors().size());
  out += fmt::format("{:<40} {:<16} {}\n", "key", "type", "value");
  for (const auto& [key, value] : file.metadata())
    out += fmt::format("{:<40} {:<16} {}\n", key, value_type_name(value), value.to_string());
  out += fmt::format("\n{:<40} {:<6} {:>20} {:>12} {:>12}\n", "tensor", "type", "dims", "offset", "bytes");
  for (const auto& tensor : file.tensors())
    out += fmt::format("{:<40} {:<6} {:>20} {:>12} {:>12}\n", tensor.name, ggml_type_name(tensor.type),
                       fmt::format("{}", fmt::join(tensor.dims, "x")), tensor.offset, tensor.data.size());
  return out;
}

bool is_gguf_file(const std::filesystem::path& path) {
  std::error_code error;
  if (!std::filesystem::is_regular_file(path, error)) return false;
  if (path.extension() == ".gguf") return true;
  std::ifstream in(path, std::ios::binary);
  char magic[4] = {};
  return in.read(magic, 4) && std::string_view(magic, 4) == "GGUF";
}

}  // namespace fbq
