#pragma once
// A small GGUF v3 writer: metadata of every type (arrays included) and tensors of any ggml type given as
// raw bytes, each placed at the next multiple of the alignment. Used by the tests and for export.
#include <cstdint>
#include <filesystem>
#include <ostream>
#include <string>
#include <utility>
#include <vector>

#include "io/gguf.h"

namespace fbq {

// Metadata values to hand to GgufWriter::set.
GgufValue gguf_string(std::string text);
GgufValue gguf_int(GgufType type, std::int64_t value);  // any integer type but UINT64
GgufValue gguf_uint64(std::uint64_t value);
GgufValue gguf_float(GgufType type, double value);      // FLOAT32 or FLOAT64
GgufValue gguf_bool(bool value);
GgufValue gguf_string_array(std::vector<std::string> elements);
GgufValue gguf_int_array(GgufType element_type, std::vector<std::int64_t> elements);  // UINT64: bit patterns
GgufValue gguf_float_array(GgufType element_type, std::vector<double> elements);
GgufValue gguf_bool_array(std::vector<bool> elements);

class GgufWriter {
 public:
  explicit GgufWriter(std::uint32_t alignment = 32);  // also written as general.alignment when not 32

  // Keys and tensors are written in the order they are added.
  void set(std::string key, GgufValue value);
  // `data` must hold the tensor's blocks; dims in GGUF order (dims[0] contiguous). Not validated, so tests
  // can write broken files on purpose.
  void add_tensor(std::string name, GgmlType type, std::vector<std::int64_t> dims, std::vector<std::uint8_t> data);

  std::string bytes() const;  // the whole file
  // Written atomically (PATH.tmp, renamed when complete), streamed tensor by tensor; throws fbq::Error.
  void write(const std::filesystem::path& path) const;

 private:
  std::string header() const;  // magic, counts, metadata and tensor infos
  void write_to(std::ostream& out) const;

  struct Tensor {
    std::string name;
    GgmlType type;
    std::vector<std::int64_t> dims;
    std::vector<std::uint8_t> data;
  };
  std::uint32_t alignment_;
  std::vector<std::pair<std::string, GgufValue>> metadata_;
  std::vector<Tensor> tensors_;
};

}  // namespace fbq
