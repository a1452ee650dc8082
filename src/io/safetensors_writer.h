#pragma once
// Streams tensors into a safetensors file: data goes to a side file as tensors arrive (so a whole model
// never sits in memory), finish() writes the header and appends the data. The side file is left for the
// caller to remove (with its directory): a checkpoint (state()) refers to it, and a writer made from that
// state continues where the checkpoint was taken.
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <map>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "io/dtype.h"

namespace fbq {

class SafetensorsWriter {
 public:
  explicit SafetensorsWriter(std::filesystem::path path);
  // Continues from `state()` of an earlier writer of `path`: the side file is cut back to what that state
  // covers (anything written after it is dropped). Throws when the side file is shorter.
  SafetensorsWriter(std::filesystem::path path, const nlohmann::json& state);

  void add(const std::string& name, DType dtype, const std::vector<std::int64_t>& shape, const void* data,
           std::size_t bytes);
  // Converts float32 values to `dtype` (F32, F16 or BF16, round to nearest even) before writing.
  void add_floats(const std::string& name, DType dtype, const std::vector<std::int64_t>& shape,
                  const std::vector<float>& values);
  // Flushes the side file and returns what it holds so far (tensor entries and length), as JSON.
  nlohmann::json state();
  void finish(const std::map<std::string, std::string>& metadata = {});
  const std::filesystem::path& data_path() const { return data_path_; }

 private:
  struct Entry {
    DType dtype;
    std::vector<std::int64_t> shape;
    std::uint64_t begin, end;
  };
  std::filesystem::path path_, data_path_;
  std::ofstream data_;
  std::uint64_t offset_ = 0;
  std::map<std::string, Entry> entries_;
};

std::uint16_t float_to_bf16(float value);

}  // namespace fbq
