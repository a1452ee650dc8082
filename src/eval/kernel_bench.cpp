#include "eval/kernel_bench.h"

#include <cblas.h>
#include <fmt/core.h>
#include <omp.h>

#include <immintrin.h>

#include <algorithm>
#include <chrono>
#include <cstring>
#include <deque>
#include <random>

#include "io/dtype.h"
#include "kernels/gemv_dense.h"
#include "kernels/gemv_int8.h"
#include "kernels/gemv_packed.h"
#include "pack/packed_linear.h"
#include "quant/method.h"

namespace fbq {
namespace {

using Clock = std::chrono::steady_clock;

// Best mean seconds per call over five repeats of ~`budget` seconds of calls (this VM's timings wander by
// ±30% between repeats); `call(i)` should touch copy i.
double seconds_per_call(const std::function<void(int)>& call, double budget) {
  call(0);  // warm-up: page faults, thread pool start
  double best = 1e30;
  for (int repeat = 0; repeat < 5; ++repeat) {
    int calls = 0;
    const auto start = Clock::now();
    double elapsed = 0;
    while (calls < 3 || elapsed < budget) {
      call(calls++);
      elapsed = std::chrono::duration<double>(Clock::now() - start).count();
    }
    best = std::min(best, elapsed / calls);
  }
  return best;
}

int copies_for(double bytes, std::size_t footprint) {
  return static_cast<int>(std::clamp(static_cast<double>(footprint) / bytes + 1.0, 2.0, 256.0));
}

// Random codes, zeros and scales: the kernel's speed does not depend on the values.
PackedWeights random_packed(int m, int n, int bits, int group) {
  std::mt19937 rng(1);
  PackedWeights w;
  w.rows = m;
  w.cols = n;
  w.spec = {bits, group};
  w.codes.resize(static_cast<std::size_t>(m) * w.code_words_per_row());
  w.zeros.resize(static_cast<std::size_t>(w.zero_words()));
  for (auto& word : w.codes) word = rng();
  for (auto& word : w.zeros) word = rng();
  w.scales.assign(static_cast<std::size_t>(m) * w.groups_per_row(), float_to_half(0.01f));
  return w;
}

std::vector<float> small_values(std::size_t count) {
  std::mt19937 rng(2);
  std::uniform_real_distribution<float> uniform(-0.01f, 0.01f);
  std::vector<float> values(count);
  for (auto& v : values) v = uniform(rng);
  return values;
}

struct Bench {
  const KernelBenchOptions& options;
  const std::function<void(const KernelBenchCase&)>& report;

  void emit(KernelBenchCase c, double seconds) const {
    c.microseconds = seconds * 1e6;
    c.gbps = c.bytes / seconds / 1e9;
    c.bandwidth_gbps = measure_read_bandwidth(std::size_t{256} << 20, 0.02);  // 256 MiB ≫ the caches
    c.fraction_of_bandwidth = c.gbps / c.bandwidth_gbps;
    report(c);
  }

  void dense(int m, int n, int batch, const std::vector<float>& x, std::vector<float>& y) const {
    const auto shape = fmt::format("{}x{}", m, n);
    const double f32_bytes = 4.0 * m * n;
    std::vector<std::vector<float>> f32(copies_for(f32_bytes, options.footprint), small_values(std::size_t(m) * n));
    const double f32_seconds = seconds_per_call([&](int i) {
      const auto& w = f32[i % f32.size()];
      if (batch == 1)
        cblas_sgemv(CblasRowMajor, CblasNoTrans, m, n, 1.0f, w.data(), n, x.data(), 1, 0.0f, y.data(), 1);
      else  // Y (batch × m) = X (batch × n) · Wᵀ
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, batch, m, n, 1.0f, x.data(), n, w.data(), n, 0.0f, y.data(), m);
    }, options.seconds_per_case);
    emit({shape, "f32", "openblas", 32, 0, 0, batch, {}, 0, f32_bytes}, f32_seconds);
    f32.clear();

    std::vector<std::uint16_t> one(std::size_t(m) * n);
    for (std::size_t i = 0; i < one.size(); ++i) one[i] = static_cast<std::uint16_t>(0x3c00 + (i % 251));
    std::vector<std::vector<std::uint16_t>> bf16(copies_for(2.0 * m * n, options.footprint), one);
    const double bf16_seconds = seconds_per_call(
        [&](int i) { gemv_half(DType::BF16, bf16[i % bf16.size()].data(), m, n, x.data(), batch, y.data()); }, options.seconds_per_case);
    const auto isa = kernel_isa_supported(KernelIsa::avx512) ? "avx512" : "scalar";
    emit({shape, "bf16", isa, 16, 0, 0, batch, {}, 0, 2.0 * m * n}, bf16_seconds);
  }

  // The integer path on the same layers: int8 activations × repacked tiles (bytes: the tiles it streams).
  void int8(const std::deque<PackedLinear>& layers, KernelBenchCase c, const std::vector<float>& x,
            std::vector<float>& y) const {
    const KernelIsa isa = int8_isa_supported(KernelIsa::avx512) ? KernelIsa::avx512
                          : int8_isa_supported(KernelIsa::avx2) ? KernelIsa::avx2
                                                                : KernelIsa::scalar;
    std::vector<const Int8Tiles*> tiles;
    for (const auto& layer : layers) tiles.push_back(layer.int8_tiles());
    if (!tiles.front()) return;
    c.kernel = "int8";
    c.isa = isa == KernelIsa::avx512 ? "avx512vnni" : kernel_isa_name(isa);
    c.bytes = static_cast<double>(tiles.front()->bytes());
    emit(c, seconds_per_call([&](int i) { gemv_int8(*tiles[i % tiles.size()], x.data(), c.batch, y.data(), isa); },
                             options.seconds_per_case));
  }

  void packed(int m, int n, int bits, int rank, int batch, const std::vector<float>& x, std::vector<float>& y) const {
    const auto base = random_packed(m, n, bits, options.group_size);
    const double weight_bytes =
        4.0 * (base.codes.size() + base.zeros.size()) + 2.0 * base.scales.size() + 2.0 * rank * (m + n);
    const int copies = copies_for(weight_bytes, options.footprint);
    std::deque<PackedLinear> fused, plain;  // deque: PackedLinear stays put
    std::vector<std::vector<float>> lora_a, lora_b;  // the unfused passes' f32 BLAS operands
    for (int i = 0; i < copies; ++i) {
      auto a = small_values(std::size_t(rank) * n), b = small_values(std::size_t(m) * rank);
      round_to_f16(a);
      round_to_f16(b);
      fused.emplace_back(base, std::vector<float>{}, rank, a, b);
      if (rank == 0) continue;
      plain.emplace_back(base, std::vector<float>{}, 0, std::vector<float>{}, std::vector<float>{});
      lora_a.push_back(std::move(a));
      lora_b.push_back(std::move(b));
    }
    const KernelIsa isa = kernel_isa_supported(KernelIsa::avx512) ? KernelIsa::avx512
                          : kernel_isa_supported(KernelIsa::avx2) ? KernelIsa::avx2
                                                                   : KernelIsa::scalar;
    KernelBenchCase c{fmt::format("{}x{}", m, n), "packed", kernel_isa_name(isa), bits, options.group_size, rank, batch,
                      {}, 0, weight_bytes};
    if (rank > 0) c.fused = true;
    emit(c, seconds_per_call([&](int i) { gemv_packed(fused[i % copies].kernel_view(), x.data(), batch, y.data()); },
                             options.seconds_per_case));
    int8(fused, c, x, y);
    if (rank == 0) return;
    // Unfused: the kernel without branch, then T = X·Aᵀ and Y += T·Bᵀ as two more BLAS passes over f32 copies of
    // A and B (BLAS has no f16 GEMV; the second pass re-reads and re-writes Y).
    std::vector<float> t(std::size_t(batch) * rank);
    c.kernel = "packed";
    c.isa = kernel_isa_name(isa);
    c.bytes = weight_bytes;
    c.fused = false;
    emit(c, seconds_per_call([&](int i) {
           gemv_packed(plain[i % copies].kernel_view(), x.data(), batch, y.data());
           cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, batch, rank, n, 1.0f, x.data(), n,
                       lora_a[i % copies].data(), n, 0.0f, t.data(), rank);
           cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, batch, m, rank, 1.0f, t.data(), rank,
                       lora_b[i % copies].data(), rank, 1.0f, y.data(), m);
         }, options.seconds_per_case));
  }
};

}  // namespace

namespace {

// Sums `words` of each of `streams` interleaved streams (`stride` words apart) from `first`, with the widest
// loads this CPU has: the probe must not be slower than the kernels it is the yardstick for.
__attribute__((target("avx512f"))) std::uint64_t sum_avx512(const std::uint64_t* first, std::size_t stride,
                                                             std::size_t streams, std::size_t words) {
  __m512i acc = _mm512_setzero_si512();
  for (std::size_t i = 0; i + 8 <= words; i += 8)
    for (std::size_t k = 0; k < streams; ++k) acc = _mm512_add_epi64(acc, _mm512_loadu_si512(first + k * stride + i));
  return static_cast<std::uint64_t>(_mm512_reduce_add_epi64(acc));
}

__attribute__((target("avx2"))) std::uint64_t sum_avx2(const std::uint64_t* first, std::size_t stride,
                                                       std::size_t streams, std::size_t words) {
  __m256i acc = _mm256_setzero_si256();
  for (std::size_t i = 0; i + 4 <= words; i += 4)
    for (std::size_t k = 0; k < streams; ++k)
      acc = _mm256_add_epi64(acc, _mm256_loadu_si256(reinterpret_cast<const __m256i*>(first + k * stride + i)));
  std::uint64_t lanes[4];
  std::memcpy(lanes, &acc, sizeof(acc));
  return lanes[0] + lanes[1] + lanes[2] + lanes[3];
}

}  // namespace

double measure_read_bandwidth(std::size_t bytes, double seconds_per_repeat) {
  // Each thread sums its share as kStreams interleaved sequential streams (one stream per core leaves the
  // prefetchers short of what a matrix-vector product draws from DRAM), with AVX-512 or AVX2 loads.
  constexpr std::size_t kStreams = 8;
  const std::size_t count = bytes / sizeof(std::uint64_t);
  std::vector<std::uint64_t> buffer(count, 1);
  const auto sum = __builtin_cpu_supports("avx512f") ? sum_avx512 : __builtin_cpu_supports("avx2") ? sum_avx2 : nullptr;
  volatile std::uint64_t sink = 0;
  const double seconds = seconds_per_call([&](int) {
    std::uint64_t total = 0;
#pragma omp parallel reduction(+ : total)
    {
      const std::size_t threads = omp_get_num_threads(), share = count / threads;
      const std::size_t first = share * omp_get_thread_num(), stride = share / kStreams;
      if (sum) {
        total += sum(&buffer[first], stride, kStreams, stride);
      } else {
        for (std::size_t i = 0; i < stride; ++i)
          for (std::size_t k = 0; k < kStreams; ++k) total += buffer[first + k * stride + i];
      }
    }
    sink = total;
  }, seconds_per_repeat);
  return static_cast<double>(count * sizeof(std::uint64_t)) / seconds / 1e9;
}

void run_kernel_bench(const KernelBenchOptions& options, const std::function<void(const KernelBenchCase&)>& report) {
  const Bench bench{options, report};
  for (const auto& [m, n] : options.shapes) {
    const int max_batch = *std::max_element(options.batches.begin(), options.batches.end());
    const auto x = small_values(std::size_t(max_batch) * n);
    std::vector<float> y(std::size_t(max_batch) * m);
    if (options.dense)
      for (const int batch : options.batches) bench.dense(m, n, batch, x, y);
    for (const int bits : options.bits)
      for (const int rank : options.ranks)
        for (const int batch : options.batches) bench.packed(m, n, bits, rank, batch, x, y);
  }
}

}  // namespace fbq
