#pragma once
// Read-only memory map of a whole file (RAII). Tensors are read straight out of the map.
#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <span>

namespace fbq {

class MappedFile {
 public:
  explicit MappedFile(const std::filesystem::path& path);  // throws fbq::Error
  ~MappedFile();
  MappedFile(const MappedFile&) = delete;
  MappedFile& operator=(const MappedFile&) = delete;

  std::span<const std::uint8_t> bytes() const { return {data_, size_}; }
  std::size_t size() const { return size_; }
  const std::filesystem::path& path() const { return path_; }

 private:
  std::filesystem::path path_;
  const std::uint8_t* data_ = nullptr;
  std::size_t size_ = 0;
};

// Drops the pages wholly inside `bytes` from this process's resident memory. Only for bytes of a read-only
// file mapping (a MappedFile): they are read back from the file if touched again. Streaming a checkpoint
// layer by layer calls it on what it has converted, so a 13 GB file does not stay resident as it is read.
void release_pages(std::span<const std::uint8_t> bytes);

}  // namespace fbq
