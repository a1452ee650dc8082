#pragma once
// Decode-kernel benchmark (`fbq bench kernels`, DESIGN §3 "Physical limit"): decoding reads every weight once,
// so each case is timed with its weights coming from DRAM (copies rotated past the caches) and reported as GB/s
// of the bytes it must read, against this machine's read bandwidth measured in the same run.
#include <cstddef>
#include <functional>
#include <optional>
#include <string>
#include <utility>
#include <vector>

namespace fbq {

struct KernelBenchOptions {
  std::vector<std::pair<int, int>> shapes = {{4096, 4096}, {11008, 4096}, {4096, 11008}};  // rows × cols
  std::vector<int> bits = {2, 3, 4};
  int group_size = 128;
  std::vector<int> ranks = {0, 32};
  std::vector<int> batches = {1, 8};
  bool dense = true;                            // f32 and bf16 GEMV baselines per shape and batch
  double seconds_per_case = 0.25;               // timed calls per repeat last about this long
  std::size_t footprint = std::size_t{1} << 29;  // rotate weight copies over ≥ this many bytes (512 MiB)
};

struct KernelBenchCase {
  std::string shape;   // "4096x11008" (rows × cols)
  std::string kernel;  // "packed" (float activations), "int8" (integer tiles), "f32" (OpenBLAS sgemv/sgemm) or "bf16"
  std::string isa;
  int bits = 0, group = 0, rank = 0, batch = 1;
  std::optional<bool> fused;  // rank > 0: branch inside the kernel, or as two extra BLAS passes
  double microseconds = 0;
  double bytes = 0;  // weights (codes, zeros, scales, f32 branch) that one call must read
  double gbps = 0;
  // The read bandwidth measured right after this case (this VM's drifts by tens of percent within minutes, so
  // one figure for the whole run would flatter or wrong cases) and gbps as a fraction of it.
  double bandwidth_gbps = 0, fraction_of_bandwidth = 0;
};

// GB/s of a multi-threaded sum over `bytes`, several streams per thread, AVX-512/AVX2 loads (best of a few
// passes of ~`seconds` each).
double measure_read_bandwidth(std::size_t bytes = std::size_t{1} << 30, double seconds = 0.5);

// Calls `report` after each case, in order: per shape, dense baselines, then bits × rank × batch (× fused,
// × float/int8 activations).
void run_kernel_bench(const KernelBenchOptions& options, const std::function<void(const KernelBenchCase&)>& report);

}  // namespace fbq
