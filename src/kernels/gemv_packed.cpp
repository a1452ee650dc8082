#include "kernels/gemv_packed.h"

#include <cpuid.h>

#include <algorithm>
#include <atomic>
#include <cstdlib>
#include <string_view>
#include <vector>

#include "io/dtype.h"
#include "kernels/gemv_internal.h"
#include "util/error.h"

namespace fbq {
namespace kernels {
namespace {

// The reference: dequantize a row to floats exactly as PackedLinear::forward_reference does, then plain
// float dot products in column order.
void scalar_rows(const RowArgs& a, int first_row, int end_row) {
  const PackedKernelView& w = *a.w;
  const int n = w.cols, m = w.rows, r = w.rank, bits = w.bits, g = w.group_size, groups = n / g;
  const std::uint32_t mask = (1u << bits) - 1u;
  std::vector<float> row(n), b_row(r);
  for (int i = first_row; i < end_row; ++i) {
    for (int k = 0; k < r; ++k) b_row[k] = half_to_float(w.lora_b[static_cast<std::size_t>(i) * r + k]);
    const std::uint32_t* words = w.codes + static_cast<std::size_t>(i) * w.code_words_per_row;
    std::uint64_t buffer = 0;
    int available = 0;
    for (int group = 0; group < groups; ++group) {
      const std::int64_t index = static_cast<std::int64_t>(i) * groups + group;
      const float scale = half_to_float(w.scales[index]);
      const int zero = static_cast<int>(read_bits(w.zeros, index, bits));
      for (int c = group * g; c < (group + 1) * g; ++c) {
        if (available < bits) {
          buffer |= static_cast<std::uint64_t>(*words++) << available;
          available += 32;
        }
        row[c] = scale * static_cast<float>(static_cast<int>(buffer & mask) - zero);
        buffer >>= bits;
        available -= bits;
      }
    }
    for (int t = 0; t < a.batch; ++t) {
      const float* x = a.x + static_cast<std::size_t>(t) * n;
      float sum = 0.0f;
      for (int j = 0; j < n; ++j) sum += row[j] * x[j];
      for (int k = 0; k < r; ++k) sum += b_row[k] * a.branch[t * r + k];
      a.y[static_cast<std::size_t>(t) * m + i] = sum;
    }
  }
}

}  // namespace

RowsFn rows_scalar(int, int) { return scalar_rows; }

// Widens first and then sums exactly like PackedLinear::forward_reference, so both compile to the same
// arithmetic (the compiler contracts `sum += a·x` into FMAs depending on the loop's shape).
float dot_scalar(const std::uint16_t* a_half, const float* x, int n) {
  std::vector<float> a(n);
  for (int j = 0; j < n; ++j) a[j] = half_to_float(a_half[j]);
  float sum = 0.0f;
  for (int j = 0; j < n; ++j) sum += a[j] * x[j];
  return sum;
}

int nibble_span(KernelIsa isa, int bits) {
  if (bits != 4) return 0;
  return isa == KernelIsa::avx512 ? 32 : isa == KernelIsa::avx2 ? 16 : 0;
}

}  // namespace kernels

namespace {

// CPUID leaf 1, ECX bit 29 (clang 14's __builtin_cpu_supports has no "f16c").
bool cpu_has_f16c() {
  unsigned eax = 0, ebx = 0, ecx = 0, edx = 0;
  return __get_cpuid(1, &eax, &ebx, &ecx, &edx) && (ecx & bit_F16C);
}

}  // namespace

bool kernel_isa_supported(KernelIsa isa) {
  switch (isa) {
    case KernelIsa::avx2:
      return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") && cpu_has_f16c();
    case KernelIsa::avx512:
      return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
             __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512dq") &&
             kernel_isa_supported(KernelIsa::avx2);  // the AVX-512 file also uses F16C
    default:
      return true;
  }
}

const char* kernel_isa_name(KernelIsa isa) {
  switch (isa) {
    case KernelIsa::scalar: return "scalar";
    case KernelIsa::avx2: return "avx2";
    case KernelIsa::avx512: return "avx512";
    default: return "best";
  }
}

namespace {

KernelIsa best_supported() {
  if (kernel_isa_supported(KernelIsa::avx512)) return KernelIsa::avx512;
  if (kernel_isa_supported(KernelIsa::avx2)) return KernelIsa::avx2;
  return KernelIsa::scalar;
}

KernelIsa from_environment() {
  const char* value = std::getenv("FBQ_KERNEL_ISA");
  if (!value || !*value) return best_supported();
  for (const auto isa : {KernelIsa::scalar, KernelIsa::avx2, KernelIsa::avx512, KernelIsa::best})
    if (std::string_view(value) == kernel_isa_name(isa)) {
      if (!kernel_isa_supported(isa)) fail("FBQ_KERNEL_ISA={}: this CPU lacks it", value);
      return isa == KernelIsa::best ? best_supported() : isa;
    }
  fail("FBQ_KERNEL_ISA must be scalar, avx2, avx512 or best (got '{}')", value);
}

std::atomic<int> preferred{-1};  // -1: not read from the environment yet

KernelIsa resolve(KernelIsa isa, const PackedKernelView& w) {
  if (isa == KernelIsa::best) isa = preferred_kernel_isa();
  if (!kernel_isa_supported(isa)) fail("this CPU lacks {} for the packed kernel", kernel_isa_name(isa));
  if (w.group_size % 32 != 0) return KernelIsa::scalar;  // SIMD kernels step whole 32-code blocks per group
  return isa;
}

// One chunk of at most kKernelMaxBatch tokens.
void gemv_chunk(const PackedKernelView& w, const float* x, int batch, float* y, KernelIsa isa) {
  using namespace kernels;
  const int m = w.rows, n = w.cols, r = w.rank;
  const RowsFn rows = isa == KernelIsa::avx512 ? rows_avx512(w.bits, batch)
                      : isa == KernelIsa::avx2  ? rows_avx2(w.bits, batch)
                                                : rows_scalar(w.bits, batch);
  const DotFn dot = isa == KernelIsa::avx512 ? dot_avx512 : isa == KernelIsa::avx2 ? dot_avx2 : dot_scalar;
  std::vector<float> scaled, branch(static_cast<std::size_t>(batch) * r);
  const float* xs = x;
  if (w.input_scale) {  // divide (not multiply by a reciprocal) to match the reference bit for bit
    scaled.assign(x, x + static_cast<std::size_t>(batch) * n);
    for (int t = 0; t < batch; ++t)
      for (int j = 0; j < n; ++j) scaled[static_cast<std::size_t>(t) * n + j] /= w.input_scale[j];
    xs = scaled.data();
  }
  std::vector<float> reordered;
  if (const int span = nibble_span(isa, w.bits)) {
    reordered.resize(static_cast<std::size_t>(batch) * n);
    for (std::size_t base = 0; base < reordered.size(); base += span)
      for (int i = 0; i < span / 2; ++i) {
        reordered[base + i] = xs[base + 2 * i];
        reordered[base + span / 2 + i] = xs[base + 2 * i + 1];
      }
    xs = reordered.data();
  }
  const RowArgs args{&w, xs, batch, branch.data(), y};
  constexpr int kChunkRows = 16;
  const int chunks = (m + kChunkRows - 1) / kChunkRows;
  // Threads only pay off once the layer is big enough to amortise the fork/join.
#pragma omp parallel if (static_cast<std::int64_t>(m) * n >= (1 << 16))
  {
#pragma omp for schedule(static)
    for (int i = 0; i < batch * r; ++i)  // t = A·x first: every row below needs all of it
      branch[i] = dot(w.lora_a + static_cast<std::size_t>(i % r) * n, x + static_cast<std::size_t>(i / r) * n, n);
#pragma omp for schedule(static)
    for (int c = 0; c < chunks; ++c) rows(args, c * kChunkRows, std::min(m, (c + 1) * kChunkRows));
  }
}

}  // namespace

void set_preferred_kernel_isa(KernelIsa isa) {
  if (isa == KernelIsa::best) isa = best_supported();
  if (!kernel_isa_supported(isa)) fail("this CPU lacks {} for the packed kernel", kernel_isa_name(isa));
  preferred = static_cast<int>(isa);
}

KernelIsa preferred_kernel_isa() {
  if (preferred < 0) preferred = static_cast<int>(from_environment());
  return static_cast<KernelIsa>(preferred.load());
}

void gemv_packed(const PackedKernelView& w, const float* x, int batch, float* y, KernelIsa isa) {
  if (batch < 0) fail("packed kernel: batch of {} tokens", batch);
  const KernelIsa chosen = resolve(isa, w);
  for (int t = 0; t < batch; t += kKernelMaxBatch)
    gemv_chunk(w, x + static_cast<std::size_t>(t) * w.cols, std::min(kKernelMaxBatch, batch - t),
               y + static_cast<std::size_t>(t) * w.rows, chosen);
}

}  // namespace fbq
