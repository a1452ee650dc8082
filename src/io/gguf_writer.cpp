#include "io/gguf_writer.h"

#include <sstream>

#include "io/text_files.h"

#include "util/error.h"

namespace fbq {
namespace {

template <typename T>
void put(std::string& out, T value) {
  out.append(reinterpret_cast<const char*>(&value), sizeof value);
}

void put_string(std::string& out, const std::string& text) {
  put<std::uint64_t>(out, text.size());
  out += text;
}

void put_integer(std::string& out, GgufType type, std::int64_t value) {
  switch (type) {
    case GgufType::UINT8: put(out, static_cast<std::uint8_t>(value)); break;
    case GgufType::INT8: put(out, static_cast<std::int8_t>(value)); break;
    case GgufType::UINT16: put(out, static_cast<std::uint16_t>(value)); break;
    case GgufType::INT16: put(out, static_cast<std::int16_t>(value)); break;
    case GgufType::UINT32: put(out, static_cast<std::uint32_t>(value)); break;
    case GgufType::INT32: put(out, static_cast<std::int32_t>(value)); break;
    default: put(out, value); break;  // UINT64 (bit pattern) and INT64
  }
}

void put_float(std::string& out, GgufType type, double value) {
  if (type == GgufType::FLOAT32)
    put(out, static_cast<float>(value));
  else
    put(out, value);
}

// One overload per alternative of GgufValue::value; `type` is the scalar's or the array element's type.
void put_value(std::string& out, GgufType type, std::int64_t value) { put_integer(out, type, value); }
void put_value(std::string& out, GgufType type, double value) { put_float(out, type, value); }
void put_value(std::string& out, GgufType, bool value) { put<std::uint8_t>(out, value); }
void put_value(std::string& out, GgufType, const std::string& value) { put_string(out, value); }
template <typename T>
void put_value(std::string& out, GgufType element_type, const std::vector<T>& elements) {
  put(out, static_cast<std::uint32_t>(element_type));
  put<std::uint64_t>(out, elements.size());
  for (const auto& element : elements) put_value(out, element_type, element);
}

GgufValue scalar(GgufType type, decltype(GgufValue::value) value) {
  GgufValue result;
  result.type = type;
  result.value = std::move(value);
  return result;
}

GgufValue array(GgufType element_type, decltype(GgufValue::value) elements) {
  auto result = scalar(GgufType::ARRAY, std::move(elements));
  result.element_type = element_type;
  return result;
}

}  // namespace

GgufValue gguf_string(std::string text) { return scalar(GgufType::STRING, std::move(text)); }
GgufValue gguf_int(GgufType type, std::int64_t value) { return scalar(type, value); }
GgufValue gguf_uint64(std::uint64_t value) {
  auto result = scalar(GgufType::UINT64, static_cast<std::int64_t>(value));
  result.unsigned_value = value;
  return result;
}
GgufValue gguf_float(GgufType type, double value) { return scalar(type, value); }
GgufValue gguf_bool(bool value) { return scalar(GgufType::BOOL, value); }
GgufValue gguf_string_array(std::vector<std::string> elements) { return array(GgufType::STRING, std::move(elements)); }
GgufValue gguf_int_array(GgufType element_type, std::vector<std::int64_t> elements) {
  return array(element_type, std::move(elements));
}
GgufValue gguf_float_array(GgufType element_type, std::vector<double> elements) {
  return array(element_type, std::move(elements));
}
GgufValue gguf_bool_array(std::vector<bool> elements) { return array(GgufType::BOOL, std::move(elements)); }

GgufWriter::GgufWriter(std::uint32_t alignment) : alignment_(alignment) {
  if (alignment != 32) set("general.alignment", gguf_int(GgufType::UINT32, alignment));
}

void GgufWriter::set(std::string key, GgufValue value) { metadata_.emplace_back(std::move(key), std::move(value)); }

void GgufWriter::add_tensor(std::string name, GgmlType type, std::vector<std::int64_t> dims,
                            std::vector<std::uint8_t> data) {
  tensors_.push_back({std::move(name), type, std::move(dims), std::move(data)});
}

std::string GgufWriter::header() const {
  std::string out = "GGUF";
  put<std::uint32_t>(out, 3);
  put<std::uint64_t>(out, tensors_.size());
  put<std::uint64_t>(out, metadata_.size());
  for (const auto& [key, value] : metadata_) {
    put_string(out, key);
    put(out, static_cast<std::uint32_t>(value.type));
    const auto type = value.is_array() ? value.element_type : value.type;
    std::visit([&](const auto& held) { put_value(out, type, held); }, value.value);
  }
  std::uint64_t offset = 0;
  for (const auto& tensor : tensors_) {
    put_string(out, tensor.name);
    put<std::uint32_t>(out, tensor.dims.size());
    for (const auto dim : tensor.dims) put<std::uint64_t>(out, dim);
    put(out, static_cast<std::uint32_t>(tensor.type));
    put<std::uint64_t>(out, offset);
    offset += (tensor.data.size() + alignment_ - 1) / alignment_ * alignment_;
  }
  return out;
}

void GgufWriter::write_to(std::ostream& out) const {
  std::string chunk = header();
  std::uint64_t written = 0;
  const auto emit = [&] {
    out.write(chunk.data(), static_cast<std::streamsize>(chunk.size()));
    written += chunk.size();
  };
  emit();
  for (const auto& tensor : tensors_) {
    chunk.assign((alignment_ - written % alignment_) % alignment_, '\0');
    emit();
    chunk.assign(reinterpret_cast<const char*>(tensor.data.data()), tensor.data.size());
    emit();
  }
}

std::string GgufWriter::bytes() const {
  std::ostringstream out;
  write_to(out);
  return std::move(out).str();
}

void GgufWriter::write(const std::filesystem::path& path) const {
  write_file_atomically(path, [&](std::ostream& out) { write_to(out); });
}

}  // namespace fbq
