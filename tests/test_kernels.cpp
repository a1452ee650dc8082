// The fused decode kernel (src/kernels/): every SIMD variant against the scalar kernel, and the scalar kernel
// against PackedLinear::forward_reference, over bit widths, group sizes, branch ranks, batches and odd shapes.
#include <fmt/core.h>
#include <gtest/gtest.h>

#include <bit>
#include <cmath>
#include <functional>
#include <random>

#include "io/dtype.h"
#include "packed_layers.h"
#include "kernels/gemv_dense.h"
#include "kernels/gemv_int8.h"
#include "kernels/gemv_packed.h"
#include "pack/half_linear.h"
#include "pack/packed_linear.h"
#include "quant/group_quant.h"
#include "quant/method.h"
#include "util/error.h"

namespace fbq {
namespace {

// Σ_j |ŵ_j·x_j / s_j| + Σ_k |B_k·t_k| per output (t-major like y), in double: the scale of the rounding
// error of any summation order of that row's terms.
std::vector<double> term_magnitudes(const PackedLinear& linear, const float* x, int batch) {
  const int m = linear.out_features(), n = linear.in_features(), r = linear.rank();
  const auto w = unpack(linear.packed()).dequantize();
  const auto lora_a = linear.lora_a(), lora_b = linear.lora_b();
  std::vector<double> out(static_cast<std::size_t>(batch) * m);
  for (int t = 0; t < batch; ++t) {
    const float* xt = x + static_cast<std::size_t>(t) * n;
    std::vector<double> branch(r);
    for (int k = 0; k < r; ++k)
      for (int j = 0; j < n; ++j) branch[k] += double(lora_a[static_cast<std::size_t>(k) * n + j]) * xt[j];
    for (int i = 0; i < m; ++i) {
      double sum = 0.0;
      for (int j = 0; j < n; ++j)
        sum += std::fabs(double(w[static_cast<std::size_t>(i) * n + j]) * xt[j] /
                         (linear.input_scale().empty() ? 1.0 : linear.input_scale()[j]));
      for (int k = 0; k < r; ++k) sum += std::fabs(lora_b[static_cast<std::size_t>(i) * r + k] * branch[k]);
      out[static_cast<std::size_t>(t) * m + i] = sum;
    }
  }
  return out;
}

// The bound: SIMD kernels form ŵ = s·q − s·z with one FMA (the reference rounds s·(q − z) once) and sum
// in another order, so they differ by rounding errors of size ~√n·2⁻²⁴·Σ|terms| (a random walk over n = 256
// terms; the worst case is n·2⁻²⁴·Σ|terms|). |y| alone is no scale for that when terms cancel, hence
// |got − want| ≤ 1e-5·(1 + |want|) + 2e-6·Σ|terms|.
void expect_close(const std::vector<float>& got, const std::vector<float>& want, const std::vector<double>& magnitude,
                  double tolerance) {
  ASSERT_EQ(got.size(), want.size());
  for (std::size_t i = 0; i < got.size(); ++i)
    ASSERT_NEAR(got[i], want[i], tolerance * (1.0 + std::fabs(want[i])) + 2e-6 * magnitude[i]) << "output " << i;
}

void expect_isa_matches_scalar(KernelIsa isa) {
  if (!kernel_isa_supported(isa)) GTEST_SKIP() << "CPU lacks " << kernel_isa_name(isa);
  for_each_layer([&](const PackedLinear& linear) {
    const auto view = linear.kernel_view();
    for (const int batch : {1, 2, 3, 8}) {
      SCOPED_TRACE(fmt::format("batch {}", batch));
      const auto x = unaligned_input(batch, view.cols, 100 + batch);
      std::vector<float> got(static_cast<std::size_t>(batch) * view.rows), want(got.size());
      gemv_packed(view, x.data(), batch, got.data(), isa);
      gemv_packed(view, x.data(), batch, want.data(), KernelIsa::scalar);
      expect_close(got, want, term_magnitudes(linear, x.data(), batch), 1e-5);
    }
  });
}

TEST(Kernels, Avx2MatchesScalar) { expect_isa_matches_scalar(KernelIsa::avx2); }
TEST(Kernels, Avx512MatchesScalar) { expect_isa_matches_scalar(KernelIsa::avx512); }

// The whole batch through forward_reference, one token at a time.
std::vector<float> reference(const PackedLinear& linear, const float* x, int batch) {
  const int m = linear.out_features(), n = linear.in_features();
  std::vector<float> y(static_cast<std::size_t>(batch) * m);
  for (int t = 0; t < batch; ++t) linear.forward_reference(x + static_cast<std::size_t>(t) * n, &y[static_cast<std::size_t>(t) * m]);
  return y;
}

TEST(Kernels, ScalarMatchesForwardReference) {
  for_each_layer([](const PackedLinear& linear) {
    const auto view = linear.kernel_view();
    const int batch = 3;
    const auto x = unaligned_input(batch, view.cols, 7);
    std::vector<float> got(static_cast<std::size_t>(batch) * view.rows);
    gemv_packed(view, x.data(), batch, got.data(), KernelIsa::scalar);
    // Same dequantization and the same summation order as the reference: equal to the bit.
    ASSERT_EQ(got, reference(linear, x.data(), batch));
  });
}

TEST(Kernels, ForwardUsesKernelUpToEightTokensAndChunksLargerBatches) {
  const auto before = activations();
  set_activations(Activations::exact);  // the float kernel (int8: test_int8_kernels.cpp)
  const auto linear = make_linear(37, kCols, 3, 64, 7, true, 5);
  const auto view = linear.kernel_view();
  for (const int batch : {1, 5, 8, 11}) {  // 11: forward takes the GEMM path, gemv_packed runs 8 + 3
    SCOPED_TRACE(fmt::format("batch {}", batch));
    const auto x = unaligned_input(batch, view.cols, 9);
    std::vector<float> forward(static_cast<std::size_t>(batch) * view.rows), kernel(forward.size());
    linear.forward(x.data(), batch, forward.data());
    gemv_packed(view, x.data(), batch, kernel.data());
    const auto want = reference(linear, x.data(), batch);
    const auto magnitude = term_magnitudes(linear, x.data(), batch);
    expect_close(forward, want, magnitude, 1e-5);
    expect_close(kernel, want, magnitude, 1e-5);
  }
  set_activations(before);
}

TEST(Kernels, LayersAboveTheThreadingThresholdMatch) {
  // 301 × 256 weights: large enough for the OpenMP path (rows split over threads, A·x shared by all rows).
  const auto linear = make_linear(301, kCols, 4, 128, 32, true, 21);
  const auto view = linear.kernel_view();
  for (const int batch : {1, 8}) {
    SCOPED_TRACE(fmt::format("batch {}", batch));
    const auto x = unaligned_input(batch, view.cols, 13);
    std::vector<float> got(static_cast<std::size_t>(batch) * view.rows);
    gemv_packed(view, x.data(), batch, got.data());
    expect_close(got, reference(linear, x.data(), batch), term_magnitudes(linear, x.data(), batch), 1e-5);
  }
}

TEST(Kernels, OtherGroupSizes) {
  // g = 96 (a multiple of 32 dividing n = 192) runs the SIMD kernels; g = 16 falls back to the scalar kernel.
  for (const int group : {96, 16}) {
    SCOPED_TRACE(fmt::format("group {}", group));
    const auto linear = make_linear(19, 192, 3, group, 7, true, 11);
    const auto view = linear.kernel_view();
    const auto x = unaligned_input(2, view.cols, 3);
    std::vector<float> want(2 * static_cast<std::size_t>(view.rows)), got(want.size());
    gemv_packed(view, x.data(), 2, want.data(), KernelIsa::scalar);
    for (const auto isa : {KernelIsa::avx2, KernelIsa::avx512, KernelIsa::best}) {
      if (!kernel_isa_supported(isa)) continue;
      gemv_packed(view, x.data(), 2, got.data(), isa);
      expect_close(got, want, term_magnitudes(linear, x.data(), 2), 1e-5);
    }
  }
}

TEST(Kernels, PreferredIsaSteersBest) {
  const auto before = preferred_kernel_isa();
  set_preferred_kernel_isa(KernelIsa::scalar);
  EXPECT_EQ(preferred_kernel_isa(), KernelIsa::scalar);
  const auto linear = make_linear(5, kCols, 3, 32, 7, false, 17);
  const auto x = unaligned_input(1, kCols, 19);
  std::vector<float> got(5);
  gemv_packed(linear.kernel_view(), x.data(), 1, got.data());  // best → the preferred scalar kernel: exact
  EXPECT_EQ(got, reference(linear, x.data(), 1));
  set_preferred_kernel_isa(before);
}

// The 16-bit float GEMV (bf16/f16 checkpoints run as stored): every SIMD variant against the scalar reference,
// odd shapes, every batch, ≤ 1e-5 of Σ|w·x|.
// A rows × cols matrix stored in bf16 or f16, and its exact f32 widening.
struct HalfMatrix {
  std::vector<std::uint16_t> stored;
  std::vector<float> widened;
};

HalfMatrix random_half(DType dtype, int rows, int cols, std::uint64_t seed) {
  const auto values = random_values(static_cast<std::size_t>(rows) * cols, seed);
  HalfMatrix m{std::vector<std::uint16_t>(values.size()), std::vector<float>(values.size())};
  for (std::size_t i = 0; i < values.size(); ++i) {
    m.stored[i] = dtype == DType::F16 ? float_to_half(values[i])
                                      : static_cast<std::uint16_t>(std::bit_cast<std::uint32_t>(values[i]) >> 16);
    m.widened[i] = dtype == DType::F16 ? half_to_float(m.stored[i]) : bf16_to_float(m.stored[i]);
  }
  return m;
}

// y = x·Wᵀ in double (t-major), and Σ|terms| per output: the reference and the scale of its rounding.
void exact_product(const std::vector<float>& w, int rows, int cols, const float* x, int batch, std::vector<float>& exact,
                   std::vector<double>& magnitude) {
  std::vector<double> sums(static_cast<std::size_t>(batch) * rows);
  magnitude.assign(sums.size(), 0.0);
  for (int t = 0; t < batch; ++t)
    for (int i = 0; i < rows; ++i)
      for (int j = 0; j < cols; ++j) {
        const double term = double(w[static_cast<std::size_t>(i) * cols + j]) * x[static_cast<std::size_t>(t) * cols + j];
        magnitude[static_cast<std::size_t>(t) * rows + i] += std::fabs(term);
        sums[static_cast<std::size_t>(t) * rows + i] += term;
      }
  exact.assign(sums.begin(), sums.end());
}

TEST(Kernels, DenseHalfMatchesScalar) {
  for (const DType dtype : {DType::BF16, DType::F16})
    for (const KernelIsa isa : {KernelIsa::avx2, KernelIsa::avx512}) {
      if (!kernel_isa_supported(isa)) {
        std::printf("[ SKIPPED  ] %s: CPU lacks it\n", kernel_isa_name(isa));
        continue;
      }
      for (const int cols : {256, 203}) {  // 203: a tail after the last 16 (and 8) columns
        const int rows = 37;
        const auto w = random_half(dtype, rows, cols, 23);
        for (int batch = 1; batch <= 9; ++batch) {  // 9: a chunk of 8, then 1
          SCOPED_TRACE(fmt::format("{} {} cols {} batch {}", dtype_name(dtype), kernel_isa_name(isa), cols, batch));
          const auto x = unaligned_input(batch, cols, 29 + batch);
          std::vector<float> got(static_cast<std::size_t>(batch) * rows), want(got.size()), exact;
          std::vector<double> magnitude;
          gemv_half(dtype, w.stored.data(), rows, cols, x.data(), batch, got.data(), isa);
          gemv_half(dtype, w.stored.data(), rows, cols, x.data(), batch, want.data(), KernelIsa::scalar);
          exact_product(w.widened, rows, cols, x.data(), batch, exact, magnitude);
          expect_close(got, want, magnitude, 1e-5);
          expect_close(want, exact, magnitude, 1e-5);  // the reference itself
        }
      }
    }
  EXPECT_THROW(gemv_half(DType::F32, nullptr, 1, 1, nullptr, 1, nullptr), Error);
}

// Prefill through HalfLinear: tiles of rows widened to f32, one GEMM each (here 3 tiles, the last one partial),
// against the exact product; decode batches take the GEMV.
TEST(Kernels, HalfLinearPrefillMatchesExactProduct) {
  const int rows = 300, cols = 8192;  // tiles of 2^20 / 8192 = 128 rows
  for (const DType dtype : {DType::BF16, DType::F16}) {
    auto w = std::make_shared<HalfMatrix>(random_half(dtype, rows, cols, 41));
    const HalfLinear linear(StoredMatrix(dtype, rows, cols, w->stored.data(), w));
    for (const int batch : {3, kKernelMaxBatch + 7}) {
      SCOPED_TRACE(fmt::format("{} batch {}", dtype_name(dtype), batch));
      const auto x = unaligned_input(batch, cols, 43);
      std::vector<float> got(static_cast<std::size_t>(batch) * rows), exact;
      std::vector<double> magnitude;
      linear.forward(x.data(), batch, got.data());
      exact_product(w->widened, rows, cols, x.data(), batch, exact, magnitude);
      expect_close(got, exact, magnitude, 1e-5);
    }
  }
}

}  // namespace
}  // namespace fbq
