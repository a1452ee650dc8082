#include "model/stored_matrix.h"

#include <cmath>

#include "util/error.h"

namespace fbq {

StoredMatrix::StoredMatrix(DType dtype, std::int64_t rows, std::int64_t cols, const void* data,
                           std::shared_ptr<const void> owner)
    : dtype_(dtype), rows_(rows), cols_(cols), data_(data), owner_(std::move(owner)) {
  if (dtype != DType::F32 && dtype != DType::BF16 && dtype != DType::F16)
    fail("a stored float matrix is F32, BF16 or F16, not {}", dtype_name(dtype));
}

StoredMatrix StoredMatrix::of_floats(std::int64_t rows, std::int64_t cols,
                                     std::shared_ptr<const std::vector<float>> values) {
  if (values->size() != static_cast<std::size_t>(rows * cols))
    fail("{}x{} matrix given {} values", rows, cols, values->size());
  StoredMatrix matrix(DType::F32, rows, cols, values->data(), values);
  matrix.float_vector_ = std::move(values);
  return matrix;
}

std::int64_t StoredMatrix::first_non_finite() const {
  const std::int64_t count = rows_ * cols_;
  if (dtype_ == DType::F32) {
    for (std::int64_t i = 0; i < count; ++i)
      if (!std::isfinite(floats()[i])) return i;
    return -1;
  }
  // All exponent bits set is Inf or NaN: bf16 has 8 exponent bits, f16 has 5.
  const std::uint16_t exponent = dtype_ == DType::BF16 ? 0x7F80 : 0x7C00;
  for (std::int64_t i = 0; i < count; ++i)
    if ((halves()[i] & exponent) == exponent) return i;
  return -1;
}

void StoredMatrix::widen_rows(std::int64_t first, std::int64_t count, float* out) const {
  if (first < 0 || count < 0 || first + count > rows_) fail("rows [{}, {}) outside a matrix of {} rows", first, first + count, rows_);
  const auto* base = static_cast<const std::uint8_t*>(data_) + static_cast<std::size_t>(first * cols_) * dtype_size(dtype_);
  convert_to_f32(dtype_, base, static_cast<std::size_t>(count * cols_), out);
}

}  // namespace fbq
