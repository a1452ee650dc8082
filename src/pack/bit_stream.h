#pragma once
// Little-endian streams of `bits`-wide fields in uint32 words (the packed layout of docs/FORMAT.md).
// Inline: the packer, the scalar reference and the SIMD kernels all read fields one at a time.
#include <cstdint>

namespace fbq {

// Field `index`; a field may straddle two words (3-bit codes).
inline std::uint32_t read_bits(const std::uint32_t* words, std::int64_t index, int bits) {
  const std::int64_t bit = index * bits;
  const std::int64_t word = bit >> 5;
  const int shift = static_cast<int>(bit & 31);
  std::uint64_t window = words[word] >> shift;
  if (shift + bits > 32) window |= static_cast<std::uint64_t>(words[word + 1]) << (32 - shift);
  return static_cast<std::uint32_t>(window) & ((1u << bits) - 1u);
}

void write_bits(std::uint32_t* words, std::int64_t index, int bits, std::uint32_t value);

}  // namespace fbq
