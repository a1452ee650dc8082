// Decode-kernel speed (DESIGN §3 "Physical limit"): GB/s of the bytes one forward pass must read for a
// 4096×4096 packed linear at batch 1, against this machine's read bandwidth measured in the same run.
#include <cblas.h>
#include <fmt/core.h>
#include <omp.h>

#include <algorithm>
#include <chrono>
#include <cstdlib>
#include <functional>
#include <random>
#include <vector>

#include "io/dtype.h"
#include "kernels/gemv_packed.h"
#include "pack/packed_linear.h"

namespace {

using Clock = std::chrono::steady_clock;

// Best seconds per call over ~0.5 s of calls (after one warm-up call).
double best_seconds(const std::function<void()>& call) {
  call();
  double best = 1e30, total = 0.0;
  for (int i = 0; i < 1000 && (i < 5 || total < 0.5); ++i) {
    const auto start = Clock::now();
    call();
    const double s = std::chrono::duration<double>(Clock::now() - start).count();
    best = std::min(best, s);
    total += s;
  }
  return best;
}

double read_bandwidth_gbs() {
  const std::size_t count = (std::size_t{1} << 30) / sizeof(std::uint64_t);  // 1 GiB
  std::vector<std::uint64_t> buffer(count, 1);
  volatile std::uint64_t sink = 0;
  const double seconds = best_seconds([&] {
    std::uint64_t sum = 0;
#pragma omp parallel for reduction(+ : sum) schedule(static)
    for (std::size_t i = 0; i < count; ++i) sum += buffer[i];
    sink = sum;
  });
  return static_cast<double>(count * sizeof(std::uint64_t)) / seconds / 1e9;
}

// Random codes, zeros and scales: the kernel's speed does not depend on the values.
fbq::PackedLinear random_linear(int m, int n, int bits, int group, int rank) {
  std::mt19937 rng(1);
  fbq::PackedWeights w;
  w.rows = m;
  w.cols = n;
  w.spec = {bits, group};
  w.codes.resize(static_cast<std::size_t>(m) * w.code_words_per_row());
  w.zeros.resize(static_cast<std::size_t>(w.zero_words()));
  for (auto& word : w.codes) word = rng();
  for (auto& word : w.zeros) word = rng();
  w.scales.assign(static_cast<std::size_t>(m) * w.groups_per_row(), fbq::float_to_half(0.01f));
  std::vector<float> a(static_cast<std::size_t>(rank) * n, 0.01f), b(static_cast<std::size_t>(m) * rank, 0.01f);
  return fbq::PackedLinear(std::move(w), {}, rank, std::move(a), std::move(b));
}

}  // namespace

int main() {
  const char* coretype = std::getenv("OPENBLAS_CORETYPE");
  fmt::print("OPENBLAS_CORETYPE={} threads={} best isa: avx512 {} avx2 {}\n", coretype ? coretype : "(unset)",
             omp_get_max_threads(), fbq::kernel_isa_supported(fbq::KernelIsa::avx512),
             fbq::kernel_isa_supported(fbq::KernelIsa::avx2));
  const double bandwidth = read_bandwidth_gbs();
  fmt::print("read bandwidth (sum over 1 GiB): {:.1f} GB/s\n", bandwidth);
  const int m = 4096, n = 4096;
  std::vector<float> x(n, 0.5f), y(m);
  fmt::print("{:<18} {:>8} {:>10} {:>8} {:>8} {:>12}\n", "4096x4096 batch 1", "isa", "us", "GB/s", "of peak", "reference us");
  for (const int bits : {4, 3})
    for (const int rank : {0, 32}) {
      const auto linear = random_linear(m, n, bits, 128, rank);
      const double bytes = 4.0 * (linear.packed().codes.size() + linear.packed().zeros.size()) +
                           2.0 * linear.packed().scales.size() + 4.0 * rank * (m + n);  // branch held as f32
      const double reference = best_seconds([&] { linear.forward_reference(x.data(), y.data()); });
      for (const auto isa : {fbq::KernelIsa::avx512, fbq::KernelIsa::avx2, fbq::KernelIsa::scalar}) {
        if (!fbq::kernel_isa_supported(isa)) continue;
        const double s = best_seconds([&] { fbq::gemv_packed(linear.kernel_view(), x.data(), 1, y.data(), isa); });
        fmt::print("int{} g128 rank {:<3}    {:>8} {:>10.1f} {:>8.2f} {:>7.0f}% {:>12.1f}\n", bits, rank,
                   fbq::kernel_isa_name(isa), s * 1e6, bytes / s / 1e9, 100.0 * bytes / s / 1e9 / bandwidth,
                   reference * 1e6);
      }
      if (rank == 0) continue;
      // The branch unfused, for DESIGN §3's "extra time fused vs unfused": base kernel, then t = A·x and
      // y += B·t as two more passes (the second one re-reads and re-writes y).
      const auto base = random_linear(m, n, bits, 128, 0);
      std::vector<float> t(rank);
      const double unfused = best_seconds([&] {
        fbq::gemv_packed(base.kernel_view(), x.data(), 1, y.data());
        cblas_sgemv(CblasRowMajor, CblasNoTrans, rank, n, 1.0f, linear.lora_a().data(), n, x.data(), 1, 0.0f, t.data(), 1);
        cblas_sgemv(CblasRowMajor, CblasNoTrans, m, rank, 1.0f, linear.lora_b().data(), rank, t.data(), 1, 1.0f, y.data(), 1);
      });
      const double fused = best_seconds([&] { fbq::gemv_packed(linear.kernel_view(), x.data(), 1, y.data()); });
      const double plain = best_seconds([&] { fbq::gemv_packed(base.kernel_view(), x.data(), 1, y.data()); });
      fmt::print("int{} rank {} branch extra time (best isa): fused {:.1f} us, unfused (2 sgemv) {:.1f} us\n", bits, rank,
                 (fused - plain) * 1e6, (unfused - plain) * 1e6);
    }
}
