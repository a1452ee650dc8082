#pragma once
// ggml's tensor storage types: block layouts (byte for byte as ggml-common.h defines them), sizes, and
// scalar dequantizers that follow ggml's reference `dequantize_row_*` (ggml-quants.c) formula for formula.
#include <cstdint>
#include <filesystem>
#include <span>
#include <string_view>
#include <vector>

#include "io/gguf.h"

namespace fbq {

inline constexpr int QK_K = 256;  // elements per k-quant super-block

// Half-precision fields hold raw IEEE binary16 bits.
struct BlockQ8_0 {
  std::uint16_t d;
  std::int8_t qs[32];
};
struct BlockQ4_0 {
  std::uint16_t d;
  std::uint8_t qs[16];  // element j in the low nibble of qs[j], element j + 16 in the high one
};
struct BlockQ4_1 {
  std::uint16_t d, m;
  std::uint8_t qs[16];
};
struct BlockQ5_0 {
  std::uint16_t d;
  std::uint8_t qh[4];  // fifth bits, one per element (little-endian uint32)
  std::uint8_t qs[16];
};
struct BlockQ5_1 {
  std::uint16_t d, m;
  std::uint8_t qh[4];
  std::uint8_t qs[16];
};
struct BlockQ4_K {
  std::uint16_t d, dmin;
  std::uint8_t scales[12];  // 8 six-bit scales and 8 six-bit mins, packed (see get_scale_min_k4)
  std::uint8_t qs[QK_K / 2];
};
struct BlockQ5_K {
  std::uint16_t d, dmin;
  std::uint8_t scales[12];
  std::uint8_t qh[QK_K / 8];
  std::uint8_t qs[QK_K / 2];
};
struct BlockQ6_K {
  std::uint8_t ql[QK_K / 2];      // low four bits
  std::uint8_t qh[QK_K / 4];      // high two bits
  std::int8_t scales[QK_K / 16];  // one per 16 elements
  std::uint16_t d;
};

static_assert(sizeof(BlockQ8_0) == 34);
static_assert(sizeof(BlockQ4_0) == 18);
static_assert(sizeof(BlockQ4_1) == 20);
static_assert(sizeof(BlockQ5_0) == 22);
static_assert(sizeof(BlockQ5_1) == 24);
static_assert(sizeof(BlockQ4_K) == 144);
static_assert(sizeof(BlockQ5_K) == 176);
static_assert(sizeof(BlockQ6_K) == 210);

// How a ggml type stores its elements: `block_elements` elements in `block_bytes` bytes.
struct GgmlTypeTraits {
  GgmlType type;
  std::string_view name;
  std::int64_t block_elements;
  std::uint64_t block_bytes;
};
const GgmlTypeTraits* ggml_type_traits(std::uint32_t type);  // null for a type this reader does not know

// One block to its float values (block_elements of them), as ggml's dequantize_row_* computes them.
void dequantize_block(const BlockQ8_0& block, float* out);
void dequantize_block(const BlockQ4_0& block, float* out);
void dequantize_block(const BlockQ4_1& block, float* out);
void dequantize_block(const BlockQ5_0& block, float* out);
void dequantize_block(const BlockQ5_1& block, float* out);
void dequantize_block(const BlockQ4_K& block, float* out);
void dequantize_block(const BlockQ5_K& block, float* out);
void dequantize_block(const BlockQ6_K& block, float* out);

// The tensor's values in float32, in its GGUF element order; an fbq::Error naming `file` for the types
// without a dequantizer (Q8_1, Q2_K, Q3_K, Q8_K).
std::vector<float> dequantize_gguf_tensor(const GgufTensor& tensor, const std::filesystem::path& file);

}  // namespace fbq
