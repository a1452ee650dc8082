#pragma once
// A rows × cols float matrix as the checkpoint stores it — f32, bf16 or f16 — usually still inside the memory-mapped
// file, so a 7B model in bf16 takes its file's 13.5 GB, not twice that as f32. Rows widen to f32 on demand.
#include <cstdint>
#include <memory>
#include <vector>

#include "io/dtype.h"

namespace fbq {

class StoredMatrix {
 public:
  StoredMatrix() = default;
  // `data` (rows·cols elements of `dtype`, F32/BF16/F16) lives as long as `owner`.
  StoredMatrix(DType dtype, std::int64_t rows, std::int64_t cols, const void* data, std::shared_ptr<const void> owner);
  static StoredMatrix of_floats(std::int64_t rows, std::int64_t cols, std::shared_ptr<const std::vector<float>> values);

  DType dtype() const { return dtype_; }
  std::int64_t rows() const { return rows_; }
  std::int64_t cols() const { return cols_; }
  bool empty() const { return rows_ == 0; }
  std::size_t bytes() const { return static_cast<std::size_t>(rows_ * cols_) * dtype_size(dtype_); }
  const void* data() const { return data_; }
  const std::uint16_t* halves() const { return static_cast<const std::uint16_t*>(data_); }  // BF16/F16
  const float* floats() const { return static_cast<const float*>(data_); }                 // F32
  // The vector an of_floats() matrix shares (null for any other), so a dense linear can share it too.
  const std::shared_ptr<const std::vector<float>>& float_vector() const { return float_vector_; }

  // Flat index of the first NaN/Inf, or -1 when every value is finite.
  std::int64_t first_non_finite() const;

  // Rows [first, first + count) widened to f32 into `out` (count × cols).
  void widen_rows(std::int64_t first, std::int64_t count, float* out) const;

 private:
  DType dtype_ = DType::F32;
  std::int64_t rows_ = 0, cols_ = 0;
  const void* data_ = nullptr;
  std::shared_ptr<const void> owner_;
  std::shared_ptr<const std::vector<float>> float_vector_;
};

}  // namespace fbq
