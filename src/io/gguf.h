#pragma once
// GGUF files (llama.cpp's model format, versions 2 and 3), memory-mapped and bounds-checked: every count,
// string length, dimension and offset is validated against the file before use. Metadata values of every
// type (arrays included) are kept; tensors are handed out as raw blocks plus their ggml type.
#include <cstdint>
#include <filesystem>
#include <map>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

#include "io/mapped_file.h"

namespace fbq {

// gguf_type: the metadata value types of the GGUF spec.
enum class GgufType : std::uint32_t {
  UINT8 = 0, INT8 = 1, UINT16 = 2, INT16 = 3, UINT32 = 4, INT32 = 5, FLOAT32 = 6, BOOL = 7,
  STRING = 8, ARRAY = 9, UINT64 = 10, INT64 = 11, FLOAT64 = 12,
};

// One metadata value. Scalars: integers as int64 (uint64 beyond INT64_MAX keeps its bit pattern in
// `unsigned_value`), floats as double. Arrays keep their element type and their elements in the vector
// that fits it (strings, integers, floats or bools; nested arrays are refused at parse time).
struct GgufValue {
  GgufType type = GgufType::UINT8;
  GgufType element_type = GgufType::UINT8;  // arrays only
  std::variant<std::int64_t, double, bool, std::string, std::vector<std::string>, std::vector<std::int64_t>,
               std::vector<double>, std::vector<bool>>
      value;
  std::uint64_t unsigned_value = 0;  // UINT64 scalars

  bool is_array() const { return type == GgufType::ARRAY; }
  std::size_t array_size() const;
  std::string to_string(std::size_t max_elements = 8) const;  // for `fbq inspect`
};

// ggml_type values of the tensor types this reader knows (the numbers are the file's).
enum class GgmlType : std::uint32_t {
  F32 = 0, F16 = 1, Q4_0 = 2, Q4_1 = 3, Q5_0 = 6, Q5_1 = 7, Q8_0 = 8, Q8_1 = 9, Q2_K = 10, Q3_K = 11,
  Q4_K = 12, Q5_K = 13, Q6_K = 14, Q8_K = 15, BF16 = 30,
};
std::string_view ggml_type_name(GgmlType type);  // "Q4_K"; "type 17" style for unknown values

struct GgufTensor {
  std::string name;
  GgmlType type;
  std::vector<std::int64_t> dims;       // GGUF order: dims[0] is the contiguous (row) dimension
  std::uint64_t offset = 0;             // from the start of the data section
  std::span<const std::uint8_t> data;   // inside the mapped file
  std::int64_t numel() const;
};

class GgufFile {
 public:
  explicit GgufFile(const std::filesystem::path& path);  // throws fbq::Error with one readable line
  const std::filesystem::path& path() const { return path_; }
  std::uint32_t version() const { return version_; }
  std::uint64_t alignment() const { return alignment_; }
  std::uint64_t data_offset() const { return data_offset_; }

  const std::map<std::string, GgufValue>& metadata() const { return metadata_; }
  const GgufValue* find(const std::string& key) const;
  // Typed lookups: nullopt when the key is absent; an fbq::Error naming the key when its type differs.
  std::optional<std::string> get_string(const std::string& key) const;
  std::optional<std::int64_t> get_int(const std::string& key) const;  // any integer type
  std::optional<double> get_float(const std::string& key) const;      // FLOAT32/FLOAT64 (or an integer)
  std::optional<bool> get_bool(const std::string& key) const;
  std::optional<std::vector<std::string>> get_string_array(const std::string& key) const;
  std::optional<std::vector<std::int64_t>> get_int_array(const std::string& key) const;
  std::optional<std::vector<double>> get_float_array(const std::string& key) const;

  const std::vector<GgufTensor>& tensors() const { return tensors_; }
  const GgufTensor* find_tensor(const std::string& name) const;
  std::shared_ptr<const MappedFile> mapping() const { return file_; }

 private:
  // The value of `key` (null when absent) after checking `accepts` it; the error names `expected`.
  const GgufValue* find_typed(const std::string& key, bool (*accepts)(const GgufValue&), std::string_view expected) const;

  std::filesystem::path path_;
  std::shared_ptr<const MappedFile> file_;
  std::uint32_t version_ = 0;
  std::uint64_t alignment_ = 32;
  std::uint64_t data_offset_ = 0;
  std::map<std::string, GgufValue> metadata_;
  std::vector<GgufTensor> tensors_;
};

// Version, alignment, every metadata key (type and value; arrays shortened) and every tensor, for `fbq inspect`.
std::string describe_gguf(const GgufFile& file);

// Whether to read a file as GGUF: it starts with the GGUF magic, or its name ends in ".gguf" (so that a
// damaged .gguf gets the GGUF reader's error, not another format's).
bool is_gguf_file(const std::filesystem::path& path);

}  // namespace fbq
