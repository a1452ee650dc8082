#include "io/safetensors_writer.h"

#include <cstring>
#include <nlohmann/json.hpp>

#include "util/error.h"

namespace fbq {

std::uint16_t float_to_bf16(float value) {
  std::uint32_t word;
  std::memcpy(&word, &value, sizeof word);
  if ((word & 0x7fffffffu) > 0x7f800000u) return static_cast<std::uint16_t>((word >> 16) | 0x40u);  // quiet NaN
  word += 0x7fffu + ((word >> 16) & 1u);
  return static_cast<std::uint16_t>(word >> 16);
}

SafetensorsWriter::SafetensorsWriter(std::filesystem::path path)
    : path_(std::move(path)), data_path_(path_.string() + ".data") {
  data_.open(data_path_, std::ios::binary | std::ios::trunc);
  if (!data_) fail("cannot write {}", data_path_.string());
}

SafetensorsWriter::SafetensorsWriter(std::filesystem::path path, const nlohmann::json& state)
    : path_(std::move(path)), data_path_(path_.string() + ".data") {
  offset_ = state.at("bytes").get<std::uint64_t>();
  for (const auto& [name, entry] : state.at("tensors").items()) {
    const auto dtype = dtype_from_name(entry.at("dtype").get<std::string>());
    if (!dtype) fail("{}: unknown dtype of '{}' in the checkpoint", data_path_.string(), name);
    entries_[name] = {*dtype, entry.at("shape").get<std::vector<std::int64_t>>(), entry.at("begin").get<std::uint64_t>(),
                      entry.at("end").get<std::uint64_t>()};
  }
  std::error_code error;
  const auto size = std::filesystem::file_size(data_path_, error);
  if (error || size < offset_) fail("{} is missing or shorter than its checkpoint", data_path_.string());
  std::filesystem::resize_file(data_path_, offset_);  // drops a layer that was cut off
  data_.open(data_path_, std::ios::binary | std::ios::app);
  if (!data_) fail("cannot write {}", data_path_.string());
}

nlohmann::json SafetensorsWriter::state() {
  data_.flush();
  if (!data_) fail("write to {} failed (disk full?)", data_path_.string());
  nlohmann::json tensors = nlohmann::json::object();
  for (const auto& [name, entry] : entries_)
    tensors[name] = {{"dtype", dtype_name(entry.dtype)}, {"shape", entry.shape}, {"begin", entry.begin}, {"end", entry.end}};
  return {{"bytes", offset_}, {"tensors", tensors}};
}

void SafetensorsWriter::add(const std::string& name, DType dtype, const std::vector<std::int64_t>& shape,
                            const void* data, std::size_t bytes) {
  if (entries_.contains(name)) fail("safetensors writer: tensor '{}' added twice", name);
  std::uint64_t count = 1;
  for (const auto dim : shape) count *= static_cast<std::uint64_t>(dim);
  if (count * dtype_size(dtype) != bytes) fail("safetensors writer: '{}' has {} bytes for its shape", name, bytes);
  data_.write(static_cast<const char*>(data), static_cast<std::streamsize>(bytes));
  if (!data_) fail("write to {} failed (disk full?)", data_path_.string());
  entries_[name] = {dtype, shape, offset_, offset_ + bytes};
  offset_ += bytes;
}

void SafetensorsWriter::add_floats(const std::string& name, DType dtype, const std::vector<std::int64_t>& shape,
                                   const std::vector<float>& values) {
  if (dtype == DType::F32) return add(name, dtype, shape, values.data(), values.size() * sizeof(float));
  std::vector<std::uint16_t> halves(values.size());
  for (std::size_t i = 0; i < values.size(); ++i)
    halves[i] = dtype == DType::F16 ? float_to_half(values[i]) : float_to_bf16(values[i]);
  if (dtype != DType::F16 && dtype != DType::BF16) fail("safetensors writer: cannot store floats as {}", dtype_name(dtype));
  add(name, dtype, shape, halves.data(), halves.size() * sizeof(std::uint16_t));
}

void SafetensorsWriter::finish(const std::map<std::string, std::string>& metadata) {
  data_.close();
  if (!data_) fail("write to {} failed", data_path_.string());
  nlohmann::json header = nlohmann::json::object();
  if (!metadata.empty()) header["__metadata__"] = metadata;
  for (const auto& [name, entry] : entries_)
    header[name] = {{"dtype", dtype_name(entry.dtype)}, {"shape", entry.shape}, {"data_offsets", {entry.begin, entry.end}}};
  std::string text = header.dump();
  text.append((8 - text.size() % 8) % 8, ' ');  // keeps the data section 8-byte aligned
  const std::uint64_t length = text.size();

  std::ofstream out(path_, std::ios::binary | std::ios::trunc);
  out.write(reinterpret_cast<const char*>(&length), 8);
  out << text;
  std::ifstream data(data_path_, std::ios::binary);
  out << data.rdbuf();
  out.close();
  if (!out) fail("write to {} failed (disk full?)", path_.string());
}

}  // namespace fbq
