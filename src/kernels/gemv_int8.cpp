#include "kernels/gemv_int8.h"

#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <optional>
#include <string_view>
#include <utility>

#include "io/dtype.h"
#include "kernels/gemv_int8_internal.h"
#include "util/error.h"

namespace fbq {
namespace {

// Bits of the byte field that carries a code in its chunk (3-bit codes keep their top bit in `high`).
int field_bits(int bits) { return bits == 3 ? 2 : bits; }

void write_chunk(std::uint8_t* chunk, int bits, int lane, int column_in_chunk, std::uint32_t code) {
  const int slice = column_in_chunk / 4, byte = 4 * lane + column_in_chunk % 4, width = field_bits(bits);
  chunk[byte] |= static_cast<std::uint8_t>((code & ((1u << width) - 1u)) << (width * slice));
  if (bits == 3 && (code & 4u)) {
    std::uint64_t high;
    std::memcpy(&high, chunk + 64 + 8 * slice, 8);
    high |= std::uint64_t{1} << byte;
    std::memcpy(chunk + 64 + 8 * slice, &high, 8);
  }
}

// The code of (lane, column) of a tile's group codes: the layout read back, for the scalar kernel and tests.
std::uint32_t read_chunk(const std::uint8_t* group_codes, int bits, int lane, int column) {
  const int columns = int8_chunk_columns(bits);
  const std::uint8_t* chunk = group_codes + static_cast<std::size_t>(column / columns) * int8_chunk_bytes(bits);
  const int in_chunk = column % columns, slice = in_chunk / 4, byte = 4 * lane + in_chunk % 4;
  const int width = field_bits(bits);
  std::uint32_t code = (chunk[byte] >> (width * slice)) & ((1u << width) - 1u);
  if (bits == 3) {
    std::uint64_t high;
    std::memcpy(&high, chunk + 64 + 8 * slice, 8);
    code |= static_cast<std::uint32_t>((high >> byte) & 1u) << 2;
  }
  return code;
}

void free_aligned(void* p) { std::free(p); }

}  // namespace

std::size_t Int8Tiles::bytes() const {
  return static_cast<std::size_t>(tiles) * groups * group_code_bytes + meta.size() * sizeof(TileGroupMeta) +
         (branch_b.size() + lora_a.size()) * sizeof(std::uint16_t) + input_scale.size() * sizeof(float);
}

bool int8_tiles_support(const PackedKernelView& w) {
  return (w.bits == 2 || w.bits == 3 || w.bits == 4 || w.bits == 8) && w.group_size > 0 &&
         w.group_size % 16 == 0 && w.cols % w.group_size == 0;
}

Int8Tiles repack_int8_tiles(const PackedKernelView& w) {
  if (!int8_tiles_support(w))
    fail("integer tiles: {}-bit codes in groups of {} are not supported", w.bits, w.group_size);
  Int8Tiles t;
  t.rows = w.rows, t.cols = w.cols, t.bits = w.bits, t.group_size = w.group_size, t.rank = w.rank;
  t.tiles = (w.rows + kTileRows - 1) / kTileRows;
  t.groups = w.cols / w.group_size;
  t.group_code_bytes = static_cast<std::size_t>(2) * w.group_size * w.bits;
  const std::size_t code_bytes = static_cast<std::size_t>(t.tiles) * t.groups * t.group_code_bytes;
  t.codes = {static_cast<std::uint8_t*>(std::aligned_alloc(64, (code_bytes + 63) / 64 * 64)), free_aligned};
  if (!t.codes) fail("integer tiles: out of memory for {} bytes", code_bytes);
  std::memset(t.codes.get(), 0, code_bytes);
  t.meta.assign(static_cast<std::size_t>(t.tiles) * t.groups, TileGroupMeta{});
  const int columns = int8_chunk_columns(w.bits);
#pragma omp parallel for schedule(static)
  for (int tile = 0; tile < t.tiles; ++tile)
    for (int lane = 0; lane < kTileRows && tile * kTileRows + lane < w.rows; ++lane) {
      const int row = tile * kTileRows + lane;
      const std::uint32_t* stream = w.codes + static_cast<std::size_t>(row) * w.code_words_per_row;
      for (int g = 0; g < t.groups; ++g) {
        const std::int64_t index = static_cast<std::int64_t>(row) * t.groups + g;
        TileGroupMeta& meta = t.meta[static_cast<std::size_t>(tile) * t.groups + g];
        meta.scale[lane] = w.scales[index];
        meta.zero[lane] = static_cast<std::uint8_t>(read_bits(w.zeros, index, w.bits));
        std::uint8_t* group_codes = t.codes.get() + (static_cast<std::size_t>(tile) * t.groups + g) * t.group_code_bytes;
        for (int j = 0; j < w.group_size; ++j)
          write_chunk(group_codes + static_cast<std::size_t>(j / columns) * int8_chunk_bytes(w.bits), w.bits, lane,
                      j % columns, read_bits(stream, static_cast<std::int64_t>(g) * w.group_size + j, w.bits));
      }
    }
  t.branch_b.assign(static_cast<std::size_t>(t.tiles) * w.rank * kTileRows, 0);
  for (int row = 0; row < w.rows; ++row)
    for (int k = 0; k < w.rank; ++k)
      t.branch_b[(static_cast<std::size_t>(row / kTileRows) * w.rank + k) * kTileRows + row % kTileRows] =
          w.lora_b[static_cast<std::size_t>(row) * w.rank + k];
  t.lora_a.assign(w.lora_a, w.lora_a + static_cast<std::size_t>(w.rank) * w.cols);
  if (w.input_scale) t.input_scale.assign(w.input_scale, w.input_scale + w.cols);
  return t;
}

namespace kernels {

void quantize_group_scalar(const float* x, const float* input_scale, int count, std::int8_t* q, float* scale,
                           std::int32_t* sum) {
  const auto value = [&](int j) { return input_scale ? x[j] / input_scale[j] : x[j]; };  // divide, as the float path
  float amax = 0.0f;
  for (int j = 0; j < count; ++j) amax = std::max(amax, std::fabs(value(j)));
  const float inverse = amax > 0.0f ? 127.0f / amax : 0.0f;
  std::int32_t total = 0;
  for (int j = 0; j < count; ++j) {
    q[j] = static_cast<std::int8_t>(std::clamp(static_cast<int>(std::nearbyint(value(j) * inverse)), -127, 127));
    total += q[j];
  }
  *scale = amax / 127.0f;
  *sum = total;
}

}  // namespace kernels

namespace {

kernels::QuantizeGroupFn group_quantizer(KernelIsa isa) {
  return isa == KernelIsa::avx512 ? kernels::quantize_group_avx512
         : isa == KernelIsa::avx2 ? kernels::quantize_group_avx2
                                  : kernels::quantize_group_scalar;
}

}  // namespace

void quantize_activations(const float* x, const float* input_scale, int cols, int group_size, Int8Activations& out,
                          KernelIsa isa) {
  if (!int8_isa_supported(isa) || isa == KernelIsa::best) fail("quantize_activations: {} not runnable here", kernel_isa_name(isa));
  const kernels::QuantizeGroupFn quantize = group_quantizer(isa);
  const int groups = cols / group_size;
  out.q.assign(static_cast<std::size_t>(cols), 0);
  out.scale.resize(groups);
  out.sum.resize(groups);
  for (int g = 0; g < groups; ++g) {
    const std::size_t first = static_cast<std::size_t>(g) * group_size;
    quantize(x + first, input_scale ? input_scale + first : nullptr, group_size,
                                   out.q.data() + first, &out.scale[g], &out.sum[g]);
  }
}

namespace kernels {
namespace {

// The reference of the integer numerics: the tile layout read back code by code, exact integer group sums,
// then per group acc = fma(s·d, (float)(Σc·q − z·Σq), acc) and per branch column acc = fma(b, t, acc) — the
// operations, in the order, every SIMD kernel performs per lane.
void scalar_tiles(const Int8Args& a, int first_tile, int end_tile) {
  const Int8Tiles& w = *a.w;
  for (int tile = first_tile; tile < end_tile; ++tile)
    for (int lane = 0; lane < kTileRows && tile * kTileRows + lane < w.rows; ++lane)
      for (int t = 0; t < a.batch; ++t) {
        const Int8Activations& x = a.x[t];
        float acc = 0.0f;
        for (int g = 0; g < w.groups; ++g) {
          const std::uint8_t* codes = w.tile_codes(tile, g);
          std::int32_t dot = 0;
          for (int j = 0; j < w.group_size; ++j)
            dot += static_cast<std::int32_t>(read_chunk(codes, w.bits, lane, j)) *
                   x.q[static_cast<std::size_t>(g) * w.group_size + j];
          const TileGroupMeta& meta = w.meta[static_cast<std::size_t>(tile) * w.groups + g];
          dot -= static_cast<std::int32_t>(meta.zero[lane]) * x.sum[g];
          const float scale = half_to_float(meta.scale[lane]) * x.scale[g];
          acc = std::fma(scale, static_cast<float>(dot), acc);
        }
        for (int k = 0; k < w.rank; ++k)
          acc = std::fma(half_to_float(w.branch_b[(static_cast<std::size_t>(tile) * w.rank + k) * kTileRows + lane]),
                         a.branch[t * w.rank + k], acc);
        a.y[static_cast<std::size_t>(t) * w.rows + tile * kTileRows + lane] = acc;
      }
}

}  // namespace

TilesFn int8_tiles_scalar(int, int) { return scalar_tiles; }

}  // namespace kernels

std::uint32_t int8_tile_code(const Int8Tiles& w, int row, int column) {
  return read_chunk(w.tile_codes(row / kTileRows, column / w.group_size), w.bits, row % kTileRows,
                    column % w.group_size);
}

bool int8_isa_supported(KernelIsa isa) {
  if (isa == KernelIsa::avx512)
    return kernel_isa_supported(KernelIsa::avx512) && __builtin_cpu_supports("avx512vnni");
  return kernel_isa_supported(isa);
}

namespace {

KernelIsa resolve_int8(KernelIsa isa) {
  if (isa == KernelIsa::best) {
    isa = preferred_kernel_isa();
    if (isa == KernelIsa::avx512 && !int8_isa_supported(isa)) isa = KernelIsa::avx2;
  }
  if (!int8_isa_supported(isa)) fail("this CPU lacks {} for the integer kernel", kernel_isa_name(isa));
  return isa;
}

void gemv_int8_chunk(const Int8Tiles& w, const float* x, int batch, float* y, KernelIsa isa) {
  using namespace kernels;
  const int n = w.cols, r = w.rank;
  const TilesFn tiles_fn = isa == KernelIsa::avx512 ? int8_tiles_avx512(w.bits, batch)
                           : isa == KernelIsa::avx2  ? int8_tiles_avx2(w.bits, batch)
                                                     : int8_tiles_scalar(w.bits, batch);
  const DotFn dot = isa == KernelIsa::avx512 ? dot_avx512 : isa == KernelIsa::avx2 ? dot_avx2 : dot_scalar;
  const QuantizeGroupFn quantize = group_quantizer(isa);
  // Buffers reused call after call (no allocation per token), of the calling thread: the parallel region below
  // must reach them through these pointers, not by name (a thread_local name there is each worker's own).
  thread_local Int8Activations activations_buffer[kKernelMaxBatch];
  thread_local std::vector<float> branch_buffer;
  Int8Activations* const activations = activations_buffer;
  for (int t = 0; t < batch; ++t) {
    activations[t].q.resize(n);
    activations[t].scale.resize(w.groups);
    activations[t].sum.resize(w.groups);
  }
  branch_buffer.resize(static_cast<std::size_t>(batch) * r);
  float* const branch = branch_buffer.data();
  const float* input_scale = w.input_scale.empty() ? nullptr : w.input_scale.data();
  const Int8Args args{&w, activations, batch, branch, y};
#pragma omp parallel if (static_cast<std::int64_t>(w.rows) * n >= (1 << 16))
  {
    // Every tile needs all of x quantized and all of t = A·x (in floats, as the float path computes it).
#pragma omp for schedule(static) nowait
    for (int i = 0; i < batch * w.groups; ++i) {
      const int t = i / w.groups, g = i % w.groups;
      const std::size_t first = static_cast<std::size_t>(g) * w.group_size;
      quantize(x + static_cast<std::size_t>(t) * n + first, input_scale ? input_scale + first : nullptr, w.group_size,
               activations[t].q.data() + first, &activations[t].scale[g], &activations[t].sum[g]);
    }
#pragma omp for schedule(static)
    for (int i = 0; i < batch * r; ++i)
      branch[i] = dot(w.lora_a.data() + static_cast<std::size_t>(i % r) * n, x + static_cast<std::size_t>(i / r) * n, n);
#pragma omp for schedule(static)
    for (int tile = 0; tile < w.tiles; ++tile) tiles_fn(args, tile, tile + 1);
  }
}

std::atomic<int> activations_mode{-1};  // -1: not read from the environment yet

std::optional<Activations> environment_activations() {
  const char* value = std::getenv("FBQ_ACTIVATIONS");
  if (!value || !*value) return std::nullopt;
  for (const auto& [name, mode] : {std::pair{"float", Activations::exact}, std::pair{"int8-decode", Activations::int8_decode},
                                   std::pair{"int8", Activations::int8}})
    if (std::string_view(value) == name) return mode;
  fail("FBQ_ACTIVATIONS must be float, int8-decode or int8 (got '{}')", value);
}

}  // namespace

void gemv_int8(const Int8Tiles& w, const float* x, int batch, float* y, KernelIsa isa) {
  if (batch < 0) fail("integer kernel: batch of {} tokens", batch);
  const KernelIsa chosen = resolve_int8(isa);
  for (int t = 0; t < batch; t += kKernelMaxBatch)
    gemv_int8_chunk(w, x + static_cast<std::size_t>(t) * w.cols, std::min(kKernelMaxBatch, batch - t),
                    y + static_cast<std::size_t>(t) * w.rows, chosen);
}

void set_activations(Activations mode) { activations_mode = static_cast<int>(mode); }

Activations activations() {
  if (activations_mode < 0) activations_mode = static_cast<int>(environment_activations().value_or(Activations::int8_decode));
  return static_cast<Activations>(activations_mode.load());
}

bool activations_from_environment() { return environment_activations().has_value(); }

}  // namespace fbq
