// The integer decode path (src/kernels/gemv_int8*): the tile layout read back against the packed streams,
// the activation quantizer's bounds, the scalar reference against an independent double-precision evaluation
// of the same formula, every SIMD variant against the scalar reference, and the int8 result against the float
// path (the error int8 activations cost).
#include <gtest/gtest.h>

#include <cmath>

#include "io/dtype.h"
#include "kernels/gemv_int8.h"
#include "packed_layers.h"
#include "util/error.h"

namespace fbq {
namespace {

TEST(Int8Kernels, TilesHoldEveryCodeScaleZeroAndBranchValue) {
  for_each_layer([](const PackedLinear& linear) {
    const auto view = linear.kernel_view();
    const auto tiles = repack_int8_tiles(view);
    const int groups = view.cols / view.group_size;
    ASSERT_EQ(tiles.tiles, (view.rows + 15) / 16);
    for (int row = 0; row < tiles.tiles * kTileRows; ++row) {
      const std::uint32_t* stream = view.codes + static_cast<std::size_t>(row) * view.code_words_per_row;
      for (int col = 0; col < view.cols; ++col)
        ASSERT_EQ(int8_tile_code(tiles, row, col), row < view.rows ? read_bits(stream, col, view.bits) : 0u)
            << "row " << row << " col " << col;
      for (int g = 0; g < groups; ++g) {
        const auto& meta = tiles.meta[static_cast<std::size_t>(row / 16) * groups + g];
        const std::int64_t index = static_cast<std::int64_t>(row) * groups + g;
        ASSERT_EQ(meta.scale[row % 16], row < view.rows ? view.scales[index] : 0);
        ASSERT_EQ(meta.zero[row % 16], row < view.rows ? read_bits(view.zeros, index, view.bits) : 0u);
      }
      for (int k = 0; k < view.rank; ++k)
        ASSERT_EQ(tiles.branch_b[(static_cast<std::size_t>(row / 16) * view.rank + k) * 16 + row % 16],
                  row < view.rows ? view.lora_b[static_cast<std::size_t>(row) * view.rank + k] : 0);
    }
  });
}

TEST(Int8Kernels, ActivationsRoundToTheNearestStepOfTheirGroup) {
  const int cols = 256, group = 64;
  auto x = random_values(cols, 5);
  for (int j = 64; j < 128; ++j) x[j] = 0.0f;  // an all-zero group: scale 0, codes 0
  x[200] = 1e4f;                                // an outlier: only its group's step grows
  std::vector<float> divisors(cols, 2.0f);
  for (const float* input_scale : {static_cast<const float*>(nullptr), static_cast<const float*>(divisors.data())}) {
    Int8Activations a;
    quantize_activations(x.data(), input_scale, cols, group, a);
    ASSERT_EQ(a.q.size(), static_cast<std::size_t>(cols));
    for (int g = 0; g < cols / group; ++g) {
      float amax = 0.0f;
      std::int32_t sum = 0;
      for (int j = g * group; j < (g + 1) * group; ++j) {
        const float v = x[j] / (input_scale ? input_scale[j] : 1.0f);
        amax = std::max(amax, std::fabs(v));
        sum += a.q[j];
        ASSERT_LE(std::abs(a.q[j]), 127);
        if (a.scale[g] > 0.0f) {
          ASSERT_LE(std::fabs(v / a.scale[g] - a.q[j]), 0.5f + 1e-4f) << j;
        }
      }
      EXPECT_FLOAT_EQ(a.scale[g], amax / 127.0f);
      EXPECT_EQ(a.sum[g], sum);
    }
    EXPECT_EQ(a.scale[1], 0.0f);
    EXPECT_EQ(a.q[200], 127);
    for (const auto isa : {KernelIsa::avx2, KernelIsa::avx512}) {  // the kernels' own quantizers: the same bytes
      if (!int8_isa_supported(isa)) continue;
      Int8Activations simd;
      quantize_activations(x.data(), input_scale, cols, group, simd, isa);
      EXPECT_EQ(simd.q, a.q) << kernel_isa_name(isa);
      EXPECT_EQ(simd.scale, a.scale) << kernel_isa_name(isa);
      EXPECT_EQ(simd.sum, a.sum) << kernel_isa_name(isa);
    }
  }
}

// The formula of gemv_int8.h in double, from the packed streams (not the tiles).
std::vector<double> int8_formula(const PackedLinear& linear, const float* x, int batch) {
  const auto view = linear.kernel_view();
  const int m = view.rows, n = view.cols, r = view.rank, groups = n / view.group_size;
  const auto a = linear.lora_a(), b = linear.lora_b();
  std::vector<double> y(static_cast<std::size_t>(batch) * m);
  for (int t = 0; t < batch; ++t) {
    Int8Activations q;
    quantize_activations(x + static_cast<std::size_t>(t) * n, view.input_scale, n, view.group_size, q);
    std::vector<double> branch(r);
    for (int k = 0; k < r; ++k)
      for (int j = 0; j < n; ++j) branch[k] += double(a[static_cast<std::size_t>(k) * n + j]) * x[t * n + j];
    for (int i = 0; i < m; ++i) {
      const std::uint32_t* stream = view.codes + static_cast<std::size_t>(i) * view.code_words_per_row;
      double sum = 0.0;
      for (int g = 0; g < groups; ++g) {
        const std::int64_t index = static_cast<std::int64_t>(i) * groups + g;
        const double zero = read_bits(view.zeros, index, view.bits);
        double dot = 0.0;
        for (int j = g * view.group_size; j < (g + 1) * view.group_size; ++j)
          dot += (double(read_bits(stream, j, view.bits)) - zero) * q.q[j];
        sum += double(half_to_float(view.scales[index])) * q.scale[g] * dot;
      }
      for (int k = 0; k < r; ++k) sum += double(b[static_cast<std::size_t>(i) * r + k]) * branch[k];
      y[static_cast<std::size_t>(t) * m + i] = sum;
    }
  }
  return y;
}

template <typename Want>
void expect_within_1e5(const std::vector<float>& got, const std::vector<Want>& want) {
  ASSERT_EQ(got.size(), want.size());
  for (std::size_t i = 0; i < got.size(); ++i) ASSERT_NEAR(got[i], want[i], 1e-5 * (1.0 + std::fabs(want[i]))) << "output " << i;
}

std::vector<float> run_int8(const Int8Tiles& tiles, const float* x, int batch, KernelIsa isa) {
  std::vector<float> y(static_cast<std::size_t>(batch) * tiles.rows);
  gemv_int8(tiles, x, batch, y.data(), isa);
  return y;
}

TEST(Int8Kernels, ScalarReferenceEvaluatesTheFormula) {
  for_each_layer([](const PackedLinear& linear) {
    const auto tiles = repack_int8_tiles(linear.kernel_view());
    const int batch = 3;
    const auto x = unaligned_input(batch, tiles.cols, 7);
    expect_within_1e5(run_int8(tiles, x.data(), batch, KernelIsa::scalar), int8_formula(linear, x.data(), batch));
  });
}

// The integer sums are exact and the float steps are the same operations in the same order, so a SIMD kernel
// equals the reference to the bit without a branch; with one, t = A·x comes from that ISA's float dot product
// (a different summation order), hence the 1e-5 relative bound there.
void expect_int8_isa_matches_scalar(KernelIsa isa) {
  if (!int8_isa_supported(isa)) GTEST_SKIP() << "CPU lacks the integer kernel of " << kernel_isa_name(isa);
  for_each_layer([&](const PackedLinear& linear) {
    const auto tiles = repack_int8_tiles(linear.kernel_view());
    for (int batch = 1; batch <= kKernelMaxBatch; ++batch) {
      SCOPED_TRACE(fmt::format("batch {}", batch));
      const auto x = unaligned_input(batch, tiles.cols, 100 + batch);
      const auto got = run_int8(tiles, x.data(), batch, isa), want = run_int8(tiles, x.data(), batch, KernelIsa::scalar);
      if (tiles.rank == 0) {
        ASSERT_EQ(got, want);
      } else {
        expect_within_1e5(got, want);
      }
    }
  });
}

TEST(Int8Kernels, Avx2MatchesScalar) { expect_int8_isa_matches_scalar(KernelIsa::avx2); }
TEST(Int8Kernels, Avx512VnniMatchesScalar) { expect_int8_isa_matches_scalar(KernelIsa::avx512); }

TEST(Int8Kernels, BatchesAboveEightRunInChunksAndBigLayersInThreads) {
  const auto linear = make_linear(301, kCols, 4, 128, 32, true, 21);  // above the OpenMP threshold
  const auto tiles = repack_int8_tiles(linear.kernel_view());
  const int batch = 11;
  const auto x = unaligned_input(batch, tiles.cols, 13);
  expect_within_1e5(run_int8(tiles, x.data(), batch, KernelIsa::best), int8_formula(linear, x.data(), batch));
}

// What the int8 activations cost against the float path on random layers: a small relative error of the
// output vector (a step of max|x|/127 per group: ≈ 0.7% of a Gaussian x), measured over the 37-row layers'
// outputs (single rows can cancel to near zero).
TEST(Int8Kernels, CloseToTheFloatPath) {
  for_each_layer([](const PackedLinear& linear) {
    const auto view = linear.kernel_view();
    if (view.rows == 1) return;
    const auto tiles = repack_int8_tiles(view);
    const auto x = unaligned_input(2, view.cols, 3);
    const auto got = run_int8(tiles, x.data(), 2, KernelIsa::best);
    std::vector<float> want(got.size());
    gemv_packed(view, x.data(), 2, want.data(), KernelIsa::scalar);
    double error = 0.0, norm = 0.0;
    for (std::size_t i = 0; i < got.size(); ++i) {
      error += (got[i] - want[i]) * double(got[i] - want[i]);
      norm += want[i] * double(want[i]);
    }
    EXPECT_LT(std::sqrt(error / norm), 0.02);
  });
}

// PackedLinear::forward under each setting: int8_decode (the default) takes the tiles for up to 8 tokens and the
// dequantize + GEMM path beyond; int8 takes the tiles for any batch; exact the float kernel and the GEMM path.
TEST(Int8Kernels, ForwardFollowsTheActivationsSetting) {
  const auto before = activations();
  const auto linear = make_linear(37, kCols, 3, 64, 7, true, 5);
  const auto tiles = repack_int8_tiles(linear.kernel_view());
  const auto forward = [&](Activations mode, const Input& x, int batch) {
    set_activations(mode);
    std::vector<float> y(static_cast<std::size_t>(batch) * 37);
    linear.forward(x.data(), batch, y.data());
    return y;
  };
  for (const int batch : {1, 8, 11}) {
    SCOPED_TRACE(fmt::format("batch {}", batch));
    const auto x = unaligned_input(batch, kCols, 9);
    std::vector<float> float_kernel(static_cast<std::size_t>(batch) * 37);
    gemv_packed(linear.kernel_view(), x.data(), batch, float_kernel.data());
    const auto int8 = run_int8(tiles, x.data(), batch, KernelIsa::best);
    const auto exact = forward(Activations::exact, x, batch);
    EXPECT_EQ(forward(Activations::int8, x, batch), int8);
    if (batch <= kKernelMaxBatch) {
      EXPECT_EQ(forward(Activations::int8_decode, x, batch), int8);
      EXPECT_EQ(exact, float_kernel);
    } else {
      EXPECT_EQ(forward(Activations::int8_decode, x, batch), exact) << "prefill stays in floats";
      EXPECT_NE(exact, int8);
    }
  }
  set_activations(before);
}

TEST(Int8Kernels, RefusesWhatTheTilesCannotHold) {
  const auto linear = make_linear(5, 192, 3, 96, 0, false, 3);  // 96 = 6 × 16: fine
  EXPECT_NO_THROW(repack_int8_tiles(linear.kernel_view()));
  auto view = linear.kernel_view();
  view.group_size = 24;
  EXPECT_FALSE(int8_tiles_support(view));
  EXPECT_THROW(repack_int8_tiles(view), Error);
}

}  // namespace
}  // namespace fbq
