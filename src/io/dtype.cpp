#include "io/dtype.h"

#include <array>
#include <cmath>
#include <cstring>

#include "util/error.h"

namespace fbq {
namespace {

struct DTypeInfo {
  DType dtype;
  std::string_view name;
  std::size_t size;
};

constexpr std::array<DTypeInfo, 10> kDTypes{{
    {DType::F64, "F64", 8},
    {DType::F32, "F32", 4},
    {DType::F16, "F16", 2},
    {DType::BF16, "BF16", 2},
    {DType::I64, "I64", 8},
    {DType::I32, "I32", 4},
    {DType::I16, "I16", 2},
    {DType::I8, "I8", 1},
    {DType::U8, "U8", 1},
    {DType::BOOL, "BOOL", 1},
}};

const DTypeInfo& info(DType dtype) { return kDTypes[static_cast<std::size_t>(dtype)]; }

template <typename T>
T load_unaligned(const std::uint8_t* p) {
  T value;
  std::memcpy(&value, p, sizeof value);
  return value;
}

}  // namespace

std::optional<DType> dtype_from_name(std::string_view name) {
  for (const auto& entry : kDTypes)
    if (entry.name == name) return entry.dtype;
  return std::nullopt;
}

std::string_view dtype_name(DType dtype) { return info(dtype).name; }
std::size_t dtype_size(DType dtype) { return info(dtype).size; }
bool dtype_is_float(DType dtype) {
  return dtype == DType::F64 || dtype == DType::F32 || dtype == DType::F16 || dtype == DType::BF16;
}

float half_to_float(std::uint16_t bits) {
  const std::uint32_t sign = (bits & 0x8000u) << 16;
  const std::uint32_t exponent = (bits >> 10) & 0x1fu;
  const std::uint32_t mantissa = bits & 0x3ffu;
  std::uint32_t word;
  if (exponent == 0x1f) {
    word = sign | 0x7f800000u | (mantissa << 13);  // inf / nan
  } else if (exponent != 0) {
    word = sign | ((exponent + 112) << 23) | (mantissa << 13);
  } else if (mantissa == 0) {
    word = sign;
  } else {  // subnormal half: value = mantissa * 2^-24
    const float magnitude = std::ldexp(static_cast<float>(mantissa), -24);
    return sign ? -magnitude : magnitude;
  }
  float value;
  std::memcpy(&value, &word, sizeof value);
  return value;
}

std::uint16_t float_to_half(float value) {
  std::uint32_t word;
  std::memcpy(&word, &value, sizeof word);
  const std::uint16_t sign = static_cast<std::uint16_t>((word >> 16) & 0x8000u);
  const std::uint32_t abs = word & 0x7fffffffu;
  if (abs >= 0x7f800000u) return sign | 0x7c00u | (abs > 0x7f800000u ? 0x200u : 0u);
  if (abs >= 0x477ff000u) return sign | 0x7c00u;  // rounds to >= 65520: overflow to inf
  if (abs < 0x38800000u) {                          // below the smallest normal half: subnormal
    const float magnitude = std::fabs(value);
    return sign | static_cast<std::uint16_t>(std::nearbyint(std::ldexp(magnitude, 24)));
  }
  // Normal: rebias exponent, round mantissa to nearest even.
  const std::uint32_t rebased = abs - 0x38000000u;
  const std::uint32_t rounded = rebased + 0xfffu + ((rebased >> 13) & 1u);
  return sign | static_cast<std::uint16_t>(rounded >> 13);
}

void convert_to_f32(DType dtype, const std::uint8_t* raw, std::size_t count, float* out) {
  switch (dtype) {
    case DType::F32:
      std::memcpy(out, raw, count * sizeof(float));
      return;
    case DType::F64:
      for (std::size_t i = 0; i < count; ++i) out[i] = static_cast<float>(load_unaligned<double>(raw + 8 * i));
      return;
    case DType::F16:
      for (std::size_t i = 0; i < count; ++i) out[i] = half_to_float(load_unaligned<std::uint16_t>(raw + 2 * i));
      return;
    case DType::BF16:
      for (std::size_t i = 0; i < count; ++i) out[i] = bf16_to_float(load_unaligned<std::uint16_t>(raw + 2 * i));
      return;
    default:
      fail("cannot convert {} tensor data to float32", dtype_name(dtype));
  }
}

}  // namespace fbq
