#include "io/gguf_blocks.h"

#include <array>
#include <cstring>

#include "io/dtype.h"
#include "util/error.h"

namespace fbq {
namespace {

constexpr std::array<GgmlTypeTraits, 15> kTypes{{
    {GgmlType::F32, "F32", 1, 4},
    {GgmlType::F16, "F16", 1, 2},
    {GgmlType::Q4_0, "Q4_0", 32, sizeof(BlockQ4_0)},
    {GgmlType::Q4_1, "Q4_1", 32, sizeof(BlockQ4_1)},
    {GgmlType::Q5_0, "Q5_0", 32, sizeof(BlockQ5_0)},
    {GgmlType::Q5_1, "Q5_1", 32, sizeof(BlockQ5_1)},
    {GgmlType::Q8_0, "Q8_0", 32, sizeof(BlockQ8_0)},
    // Known so that files holding them parse and list; no dequantizer yet.
    {GgmlType::Q8_1, "Q8_1", 32, 36},
    {GgmlType::Q2_K, "Q2_K", QK_K, 84},
    {GgmlType::Q3_K, "Q3_K", QK_K, 110},
    {GgmlType::Q4_K, "Q4_K", QK_K, sizeof(BlockQ4_K)},
    {GgmlType::Q5_K, "Q5_K", QK_K, sizeof(BlockQ5_K)},
    {GgmlType::Q6_K, "Q6_K", QK_K, sizeof(BlockQ6_K)},
    {GgmlType::Q8_K, "Q8_K", QK_K, 292},
    {GgmlType::BF16, "BF16", 1, 2},
}};

// The j-th six-bit scale and min of a Q4_K/Q5_K super-block (ggml's get_scale_min_k4): entries 0-3 sit
// in the low six bits of bytes 0-3 (scales) and 4-7 (mins); entries 4-7 combine a nibble of bytes 8-11
// with the top two bits of bytes 0-7.
void scale_min_k4(int j, const std::uint8_t* q, float& scale, float& min) {
  if (j < 4) {
    scale = q[j] & 63;
    min = q[j + 4] & 63;
 } else {
    scale = (q[j + 4] & 0xF) | ((q[j - 4] >> 6) << 4);
    min = (q[j + 4] >> 4) | ((q[j] >> 6) << 4);
 }
}

std::uint32_t high_bits_q5(const std::uint8_t (&qh)[4]) {
  std::uint32_t bits;
  std::memcpy(&bits, qh, sizeof bits);
  return bits;
}

// Copies each block out of the (possibly unaligned) file bytes before decoding it.
template <typename Block>
void dequantize_blocks(std::span<const std::uint8_t> raw, std::int64_t block_elements, float* out) {
  for (std::size_t offset = 0; offset + sizeof(Block) <= raw.size(); offset += sizeof(Block)) {
    Block block;
    std::memcpy(&block, raw.data() + offset, sizeof block);
    dequantize_block(block, out);
    out += block_elements;
 }
}

}  // namespace

const GgmlTypeTraits* ggml_type_traits(std::uint32_t type) {
  for (const auto& traits : kTypes)
    if (static_cast<std::uint32_t>(traits.type) == type) return &traits;
  return nullptr;
}

void dequantize_block(const BlockQ8_0& block, float* out) {
  const float d = half_to_float(block.d);
  for (int j = 0; j < 32; ++j) out[j] = block.qs[j] * d;
}

void dequantize_block(const BlockQ4_0& block, float* out) {
  const float d = half_to_float(block.d);
  for (int j = 0; j < 16; ++j) {
    out[j] = ((block.qs[j] & 0x0F) - 8) * d;
    out[j + 16] = ((block.qs[j] >> 4) - 8) * d;
 }
}

void dequantize_block(const BlockQ4_1& block, float* out) {
  const float d = half_to_float(block.d), m = half_to_float(block.m);
  for (int j = 0; j < 16; ++j) {
    out[j] = (block.qs[j] & 0x0F) * d + m;
    out[j + 16] = (block.qs[j] >> 4) * d + m;
 }
}

void dequantize_block(const BlockQ5_0& block, float* out) {
  const float d = half_to_float(block.d);
  const std::uint32_t qh = high_bits_q5(block.qh);
  for (int j = 0; j < 16; ++j) {
    const int high0 = ((qh >> j) << 4) & 0x10, high1 = (qh >> (j + 12)) & 0x10;
    out[j] = (((block.qs[j] & 0x0F) | high0) - 16) * d;
    out[j + 16] = (((block.qs[j] >> 4) | high1) - 16) * d;
 }
}

void dequantize_block(const BlockQ5_1& block, float* out) {
  const float d = half_to_float(block.d), m = half_to_float(block.m);
  const std::uint32_t qh = high_bits_q5(block.qh);
  for (int j = 0; j < 16; ++j) {
    const int high0 = ((qh >> j) << 4) & 0x10, high1 = (qh >> (j + 12)) & 0x10;
    out[j] = ((block.qs[j] & 0x0F) | high0) * d + m;
    out[j + 16] = ((block.qs[j] >> 4) | high1) * d + m;
 }
}

// Q4_K and Q5_K: 4 chunks of 64 elements; the low nibbles of 32 bytes are sub-block 2c, the high ones 2c + 1.
void dequantize_block(const BlockQ4_K& block, float* out) {
  const float d = half_to_float(block.d), dmin = half_to_float(block.dmin);
  for (int chunk = 0; chunk < 4; ++chunk) {
    const std::uint8_t* q = block.qs + 32 * chunk;
    float scale_lo, min_lo, scale_hi, min_hi;
    scale_min_k4(2 * chunk, block.scales, scale_lo, min_lo);
    scale_min_k4(2 * chunk + 1, block.scales, scale_hi, min_hi);
    const float d1 = d * scale_lo, m1 = dmin * min_lo, d2 = d * scale_hi, m2 = dmin * min_hi;
    for (int l = 0; l < 32; ++l) *out++ = d1 * (q[l] & 0xF) - m1;
    for (int l = 0; l < 32; ++l) *out++ = d2 * (q[l] >> 4) - m2;
 }
}

void dequantize_block(const BlockQ5_K& block, float* out) {
  const float d = half_to_float(block.d), dmin = half_to_float(block.dmin);
  for (int chunk = 0; chunk < 4; ++chunk) {
    const std::uint8_t* ql = block.qs + 32 * chunk;
    const std::uint8_t bit_lo = 1u << (2 * chunk), bit_hi = 2u << (2 * chunk);  // chunk's bits in qh[l]
    float scale_lo, min_lo, scale_hi, min_hi;
    scale_min_k4(2 * chunk, block.scales, scale_lo, min_lo);
    scale_min_k4(2 * chunk + 1, block.scales, scale_hi, min_hi);
    const float d1 = d * scale_lo, m1 = dmin * min_lo, d2 = d * scale_hi, m2 = dmin * min_hi;
    for (int l = 0; l < 32; ++l) *out++ = d1 * ((ql[l] & 0xF) + (block.qh[l] & bit_lo ? 16 : 0)) - m1;
    for (int l = 0; l < 32; ++l) *out++ = d2 * ((ql[l] >> 4) + (block.qh[l] & bit_hi ? 16 : 0)) - m2;
 }
}

// Q6_K: two halves of 128 elements, each from 64 bytes of ql, 32 of qh and 8 scales.
void dequantize_block(const BlockQ6_K& block, float* out) {
  const float d = half_to_float(block.d);
  for (int half = 0; half < 2; ++half) {
    const std::uint8_t* ql = block.ql + 64 * half;
    const std::uint8_t* qh = block.qh + 32 * half;
    const std::int8_t* sc = block.scales + 8 * half;
    float* y = out + 128 * half;
    for (int l = 0; l < 32; ++l) {
      const int is = l / 16;
      const int q1 = ((ql[l] & 0xF) | (((qh[l] >> 0) & 3) << 4)) - 32;
      const int q2 = ((ql[l + 32] & 0xF) | (((qh[l] >> 2) & 3) << 4)) - 32;
      const int q3 = ((ql[l] >> 4) | (((qh[l] >> 4) & 3) << 4)) - 32;
      const int q4 = ((ql[l + 32] >> 4) | (((qh[l] >> 6) & 3) << 4)) - 32;
      y[l] = d * sc[is] * q1;
      y[l + 32] = d * sc[is + 2] * q2;
      y[l + 64] = d * sc[is + 4] * q3;
      y[l + 96] = d * sc[is + 6] * q4;
   }
 }
}

std::vector<float> dequantize_gguf_tensor(const GgufTensor& tensor, const std::filesystem::path& file) {
  const auto& traits = *ggml_type_traits(static_cast<std::uint32_t>(tensor.type));  // GgufFile checked it
  std::vector<float> values(static_cast<std::size_t>(tensor.numel()));
  if (values.empty()) return values;  // a zero dimension: no bytes to convert (and no pointers to pass memcpy)
  const auto raw = tensor.data;
  const auto n = traits.block_elements;
  switch (tensor.type) {
    case GgmlType::F32: convert_to_f32(DType::F32, raw.data(), values.size(), values.data()); break;
    case GgmlType::F16: convert_to_f32(DType::F16, raw.data(), values.size(), values.data()); break;
    case GgmlType::BF16: convert_to_f32(DType::BF16, raw.data(), values.size(), values.data()); break;
    case GgmlType::Q4_0: dequantize_blocks<BlockQ4_0>(raw, n, values.data()); break;
    case GgmlType::Q4_1: dequantize_blocks<BlockQ4_1>(raw, n, values.data()); break;
    case GgmlType::Q5_0: dequantize_blocks<BlockQ5_0>(raw, n, values.data()); break;
    case GgmlType::Q5_1: dequantize_blocks<BlockQ5_1>(raw, n, values.data()); break;
    case GgmlType::Q8_0: dequantize_blocks<BlockQ8_0>(raw, n, values.data()); break;
    case GgmlType::Q4_K: dequantize_blocks<BlockQ4_K>(raw, n, values.data()); break;
    case GgmlType::Q5_K: dequantize_blocks<BlockQ5_K>(raw, n, values.data()); break;
    case GgmlType::Q6_K: dequantize_blocks<BlockQ6_K>(raw, n, values.data()); break;
    default: fail("{}: tensor '{}' is {}, which fbquant cannot dequantize yet", file.string(), tensor.name, traits.name);
 }
  return values;
}

}  // namespace fbq
