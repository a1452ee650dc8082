#pragma once
// Integer decode path for packed linears (docs/FORMAT.md, "Integer tiles"): activations quantized per token
// to int8 with one f32 scale per weight group, weights repacked once into tiles of 16 rows whose code bytes
// feed `vpdpbusd` directly (u8 codes × s8 activations → int32), the group's scale and zero point applied once
// per group and row:
//   y[row] = Σ_g (s[row,g]·d[g]) · (Σ_{j∈g} c[row,j]·q[j] − z[row,g]·Σ_{j∈g} q[j])  +  B[row,:]·(A·x)
// where x' = x / input_scale, d[g] = max_{j∈g} |x'_j| / 127 and q[j] = round(x'_j / d[g]). The integer sums
// are exact, so every ISA computes the same floats as the scalar reference (same operations, same order).
#include <cstddef>
#include <cstdint>
#include <memory>
#include <vector>

#include "kernels/gemv_packed.h"

namespace fbq {

// Rows per tile: one int32 lane per row in a 512-bit register.
inline constexpr int kTileRows = 16;

// One 64-byte load of a tile's codes. Lane i (bytes 4i … 4i+3) belongs to row i of the tile; byte 4i+p holds
// the codes of columns j+p, j+4+p, … (one per bit slice) so that each slice, masked out, is the u8 operand of
// one vpdpbusd against the 4 activation bytes q[j+4k … j+4k+3] broadcast to every lane.
struct Int8Chunk {  // 4 columns: bytes[4i+p] = c(i, j+p)
  std::uint8_t bytes[64];
};
struct Int4Chunk {  // 8 columns: nibbles[4i+p] = c(i, j+p) | c(i, j+4+p) << 4
  std::uint8_t nibbles[64];
};
struct Int2Chunk {  // 16 columns: crumbs[4i+p] = Σ_k c(i, j+4k+p) << 2k
  std::uint8_t crumbs[64];
};
struct Int3Chunk {  // 16 columns: the low two bits as an Int2Chunk, bit 2 of c(i, j+4k+p) in bit 4i+p of high[k]
  std::uint8_t low[64];
  std::uint64_t high[4];
};
// A tile's scale (float16 bits) and zero point per row for one group, in a stream beside the codes.
struct TileGroupMeta {
  std::uint16_t scale[kTileRows];
  std::uint8_t zero[kTileRows];
};
static_assert(sizeof(Int8Chunk) == 64 && sizeof(Int4Chunk) == 64 && sizeof(Int2Chunk) == 64);
static_assert(sizeof(Int3Chunk) == 96 && sizeof(TileGroupMeta) == 48);

// Columns one chunk covers and its bytes, per bit width.
constexpr int int8_chunk_columns(int bits) { return bits == 8 ? 4 : bits == 4 ? 8 : 16; }
constexpr int int8_chunk_bytes(int bits) { return bits == 3 ? 96 : 64; }

// A packed linear repacked for the integer kernels; owns everything it needs (the branch's A and the AWQ
// divisors are copied), so it can outlive the view it was built from.
struct Int8Tiles {
  int rows = 0, cols = 0, bits = 4, group_size = 128, rank = 0;
  int tiles = 0, groups = 0;        // ⌈rows / 16⌉, cols / group_size
  std::size_t group_code_bytes = 0;  // one tile's codes of one group: 2·group_size·bits
  // tiles × groups × group_code_bytes, 64-byte aligned; rows past `rows` in the last tile are zero codes.
  std::unique_ptr<std::uint8_t[], void (*)(void*)> codes{nullptr, nullptr};
  std::vector<TileGroupMeta> meta;        // tiles × groups
  std::vector<std::uint16_t> branch_b;    // tiles × rank × 16: B transposed per tile, float16, zero-padded
  std::vector<std::uint16_t> lora_a;      // rank × cols, float16 (t = A·x in floats, as the float path)
  std::vector<float> input_scale;         // cols divisors, or empty

  const std::uint8_t* tile_codes(int tile, int group) const {
    return codes.get() + (static_cast<std::size_t>(tile) * groups + group) * group_code_bytes;
  }
  // Bytes one call streams: codes, meta and the branch.
  std::size_t bytes() const;
};

// Whether the integer kernels can run this layer (bits 2/3/4/8, group_size a multiple of 16); otherwise the
// float path serves it.
bool int8_tiles_support(const PackedKernelView& w);
Int8Tiles repack_int8_tiles(const PackedKernelView& w);
// The code of (row, column) read back from the tiles (tests check the layout against the packed stream).
std::uint32_t int8_tile_code(const Int8Tiles& w, int row, int column);

// One token's activations: x' = x / input_scale quantized per group (scale d[g], Σq per group for the zero
// points). Every ISA gives the same bytes (the kernels use the one of their ISA); scalar is the reference.
struct Int8Activations {
  std::vector<std::int8_t> q;
  std::vector<float> scale;
  std::vector<std::int32_t> sum;
};
void quantize_activations(const float* x, const float* input_scale, int cols, int group_size, Int8Activations& out,
                          KernelIsa isa = KernelIsa::scalar);

// Whether this CPU runs the integer kernel of `isa`: avx512 needs AVX512-VNNI (vpdpbusd), avx2 uses
// vpmaddubsw + vpmaddwd; scalar always.
bool int8_isa_supported(KernelIsa isa);

// y: batch × rows for x: batch × cols (any batch ≥ 0; chunks of kKernelMaxBatch). isa best: the preferred
// ISA of the packed kernel (FBQ_KERNEL_ISA), lowered to avx2 where AVX512-VNNI is missing.
void gemv_int8(const Int8Tiles& w, const float* x, int batch, float* y, KernelIsa isa = KernelIsa::best);

// Where packed linears use int8 activations. int8_decode (the default): decode steps (≤ kKernelMaxBatch tokens),
// while prefill dequantizes into float GEMMs, so the quality commands (perplexity, compare, eval) measure the
// float path. int8: prefill too, in chunks of 8 tokens through the same tiles (what generate, chat and bench
// use). exact: the float path everywhere (--exact-activations). FBQ_ACTIVATIONS=float|int8-decode|int8 sets it
// from the environment (and then the commands keep it).
enum class Activations { exact, int8_decode, int8 };
void set_activations(Activations mode);
Activations activations();
bool activations_from_environment();  // whether FBQ_ACTIVATIONS chose (a bad value throws fbq::Error)

}  // namespace fbq
