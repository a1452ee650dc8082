#pragma once
// Element types found in model files, and conversion of raw little-endian storage to float32.
#include <cstddef>
#include <cstdint>
#include <optional>
#include <span>
#include <string_view>

namespace fbq {

enum class DType { F64, F32, F16, BF16, I64, I32, I16, I8, U8, BOOL };

// Safetensors spelling ("F32", "BF16", ...); nullopt for a name we do not know.
std::optional<DType> dtype_from_name(std::string_view name);
std::string_view dtype_name(DType dtype);
std::size_t dtype_size(DType dtype);
bool dtype_is_float(DType dtype);  // F64/F32/F16/BF16: the ones convertible to float32 weights

float half_to_float(std::uint16_t bits);
std::uint16_t float_to_half(float value);  // round to nearest even
inline float bf16_to_float(std::uint16_t bits) {
  const std::uint32_t word = static_cast<std::uint32_t>(bits) << 16;
  float value;
  __builtin_memcpy(&value, &word, sizeof value);
  return value;
}

// Converts `count` elements of a floating dtype from (possibly unaligned) `raw` into `out`.
void convert_to_f32(DType dtype, const std::uint8_t* raw, std::size_t count, float* out);

}  // namespace fbq
