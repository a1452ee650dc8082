#pragma once
// Safetensors reading (single file or a sharded index), memory-mapped and bounds-checked: every header
// field, offset and size is validated against the file before any tensor is handed out.
#include <cstdint>
#include <filesystem>
#include <map>
#include <set>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "io/dtype.h"
#include "io/mapped_file.h"

namespace fbq {

struct TensorView {
  std::string name;
  DType dtype;
  std::vector<std::int64_t> shape;
  std::span<const std::uint8_t> data;  // inside the mapped file
  std::filesystem::path file;

  std::int64_t numel() const;
  std::string shape_string() const;  // "[384, 1024]"
};

class SafetensorsFile {
 public:
  explicit SafetensorsFile(const std::filesystem::path& path);  // throws fbq::Error
  const std::vector<TensorView>& tensors() const { return tensors_; }
  const std::map<std::string, std::string>& metadata() const { return metadata_; }

 private:
  std::unique_ptr<MappedFile> file_;
  std::vector<TensorView> tensors_;
  std::map<std::string, std::string> metadata_;
};

// Named tensors of one checkpoint, whatever file format they came from; keeps their mapped files alive.
class TensorStore {
 public:
  explicit TensorStore(std::filesystem::path source) : source_(std::move(source)) {}
  // A Hugging Face checkpoint: `model.safetensors`, or the shards named by `model.safetensors.index.json`
  // (every name in its weight_map must be in the shard it names).
  static TensorStore open_directory(const std::filesystem::path& dir);
  static TensorStore open_file(const std::filesystem::path& file);

  // Registers `view` (its bytes must live in `owner`); a duplicate name is an error.
  void add(std::shared_ptr<const void> owner, TensorView view);
  // The same for a view into `file`'s read-only mapping.
  void add(std::shared_ptr<const SafetensorsFile> file, const TensorView& view);

  const TensorView* find(const std::string& name) const;
  const TensorView& get(const std::string& name) const;  // throws "tensor X is missing from ..."
  // The same, also refusing a shape other than `expected_shape` (the error names both shapes).
  const TensorView& get(const std::string& name, const std::vector<std::int64_t>& expected_shape) const;
  // What keeps tensor `name`'s bytes alive (its mapped file): hold it to use the bytes after the store is gone.
  std::shared_ptr<const void> owner(const std::string& name) const;
  std::vector<const TensorView*> all() const;            // sorted by name
  const std::filesystem::path& source() const { return source_; }

  // Float32 copy of a float tensor whose shape must equal `expected_shape` (error names both shapes). The
  // source pages of a tensor from a safetensors file are released from resident memory after the copy.
  std::vector<float> load_f32(const std::string& name, const std::vector<std::int64_t>& expected_shape) const;

 private:
  std::filesystem::path source_;
  std::map<std::string, std::shared_ptr<const void>> owners_;
  std::map<std::string, TensorView> by_name_;
  std::set<std::string> file_mapped_;  // tensors whose bytes are in a read-only file mapping
};

// Refuses weights with NaN/Inf: they would silently poison every output. Names the tensor and the first bad index.
void check_finite(const std::string& name, std::span<const float> values);

}  // namespace fbq
