#include "quant/gptq.h"

#include <cblas.h>

#include <algorithm>
#include <cmath>
#include <numeric>

#include "util/error.h"
#include "util/linalg.h"

namespace fbq {
namespace {

constexpr int kDampRetries = 3;  // λ grows 10x per retry: up to 1000 · damp · mean(diag(H))

// U with (H + λI)⁻¹ = Uᵀ·U, or false when H + λI is not numerically positive definite.
bool factor_damped_inverse(const std::vector<double>& hessian, int n, double lambda, std::vector<double>& upper) {
  upper = hessian;
  for (int j = 0; j < n; ++j) upper[static_cast<std::size_t>(j) * n + j] += lambda;
  return invert_spd(upper, n) && cholesky_upper(upper, n);
}

// Block boundaries must fall on group starts when group params are fitted during the sweep: a group is then
// fitted either inside one block (all its columns already carry the block's updates) or at a block start
// (nothing pending anywhere). Lazy batching is exact, so the block size changes only rounding order.
int aligned_block_size(int block_size, int group_size) {
  if (group_size <= block_size) return block_size / group_size * group_size;
  int divisor = block_size;
  while (group_size % divisor != 0) --divisor;
  return divisor;
}

}  // namespace

GptqFactor gptq_prepare(const std::vector<double>& hessian, int n, const GptqOptions& options) {
  if (n <= 0) fail("gptq: input dimension {} must be positive", n);
  if (hessian.size() != static_cast<std::size_t>(n) * n)
    fail("gptq: the Hessian has {} values, expected {} x {} = {}", hessian.size(), n, n,
         static_cast<std::size_t>(n) * n);
  if (!(options.damp > 0.0) || !std::isfinite(options.damp)) fail("gptq: damp {} must be positive", options.damp);
  if (options.block_size <= 0) fail("gptq: block size {} must be positive", options.block_size);
  for (double value : hessian)
    if (!std::isfinite(value)) fail("gptq: the Hessian holds a non-finite value");

  GptqFactor factor;
  factor.n = n;
  factor.options = options;
  std::vector<double> h = hessian;
  for (int j = 0; j < n; ++j) {
    double& diagonal = h[static_cast<std::size_t>(j) * n + j];
    if (diagonal < 0.0) fail("gptq: H[{0},{0}] = {1} < 0: not a Hessian XᵀX/N", j, diagonal);
    // An input that is always 0 carries no information: any weight is as good, so pin it to 0.
    if (diagonal == 0.0) {
      diagonal = 1.0;
      factor.dead_columns.push_back(j);
    }
  }

  factor.order.resize(n);
  std::iota(factor.order.begin(), factor.order.end(), 0);
  if (options.act_order) {
    // Most active inputs first; stable so ties keep their original order (deterministic).
    std::stable_sort(factor.order.begin(), factor.order.end(), [&](int a, int b) {
      return h[static_cast<std::size_t>(a) * n + a] > h[static_cast<std::size_t>(b) * n + b];
    });
    std::vector<double> permuted(h.size());
    for (int i = 0; i < n; ++i)
      for (int j = 0; j < n; ++j)
        permuted[static_cast<std::size_t>(i) * n + j] =
            h[static_cast<std::size_t>(factor.order[i]) * n + factor.order[j]];
    h = std::move(permuted);
  }

  double mean_diagonal = 0.0;
  for (int j = 0; j < n; ++j) mean_diagonal += h[static_cast<std::size_t>(j) * n + j];
  mean_diagonal /= n;

  std::vector<double> upper;
  factor.damp = options.damp;
  for (int attempt = 0;; ++attempt) {
    if (factor_damped_inverse(h, n, factor.damp * mean_diagonal, upper)) break;
    if (attempt == kDampRetries)
      fail("gptq: H + λI is not positive definite even with damp {} (λ = {:g}); the Hessian is not a valid XᵀX/N",
           factor.damp, factor.damp * mean_diagonal);
    factor.damp *= 10.0;
  }
  factor.upper_inverse.assign(upper.begin(), upper.end());
  return factor;
}

QuantizedMatrix gptq_quantize(const std::vector<float>& weights, int m, int n, const GptqFactor& factor,
                              const QuantSpec& spec) {
  spec.validate(n);
  if (m <= 0) fail("gptq: output dimension {} must be positive", m);
  if (factor.n != n) fail("gptq: the Hessian factor is for {} inputs, the weights have {}", factor.n, n);
  if (weights.size() != static_cast<std::size_t>(m) * n)
    fail("gptq: {} weights given for a {} x {} matrix", weights.size(), m, n);

  const int g = spec.group_size, groups = n / g, levels = spec.levels();
  const bool static_groups = factor.options.act_order;
  const std::vector<int>& order = factor.order;
  const float* upper = factor.upper_inverse.data();
  QuantizedMatrix out{m, n, spec, std::vector<std::uint8_t>(static_cast<std::size_t>(m) * n),
                      std::vector<GroupParams>(static_cast<std::size_t>(m) * groups)};

  // The working copy, columns in quantization order; it accumulates the propagated errors.
  std::vector<float> work(weights.size());
  for (int r = 0; r < m; ++r) {
    const float* source = &weights[static_cast<std::size_t>(r) * n];
    float* row = &work[static_cast<std::size_t>(r) * n];
    for (int k = 0; k < n; ++k) row[k] = source[order[k]];
  }
  std::vector<bool> dead(n, false);
  for (int j : factor.dead_columns) dead[j] = true;
  for (int k = 0; k < n; ++k)
    if (dead[order[k]])
      for (int r = 0; r < m; ++r) work[static_cast<std::size_t>(r) * n + k] = 0.0f;

  if (static_groups) {
    // Our packed format groups consecutive *original* columns, which act_order scatters over the sweep:
    // fit every group before any update, on the original (dead-zeroed) weights.
    std::vector<float> original(g);
    for (int r = 0; r < m; ++r)
      for (int c = 0; c < n; c += g) {
        for (int i = 0; i < g; ++i) original[i] = dead[c + i] ? 0.0f : weights[static_cast<std::size_t>(r) * n + c + i];
        out.params[static_cast<std::size_t>(r) * groups + c / g] = fit_group(original.data(), g, spec);
      }
  }

  const int block_size = static_groups ? factor.options.block_size : aligned_block_size(factor.options.block_size, g);
  std::vector<float> errors(static_cast<std::size_t>(m) * block_size);
  for (int start = 0; start < n; start += block_size) {
    const int end = std::min(n, start + block_size), count = end - start;
    // Inside a block each row only ever sees its own errors: rows are independent.
#pragma omp parallel for schedule(static)
    for (int r = 0; r < m; ++r) {
      float* row = &work[static_cast<std::size_t>(r) * n];
      float* row_errors = &errors[static_cast<std::size_t>(r) * count];
      GroupParams* row_params = &out.params[static_cast<std::size_t>(r) * groups];
      std::uint8_t* row_codes = &out.codes[static_cast<std::size_t>(r) * n];
      for (int k = start; k < end; ++k) {
        // Without act_order order[k] == k, so a group is fitted on its current (error-updated) weights.
        if (!static_groups && k % g == 0) row_params[k / g] = fit_group(row + k, g, spec);
        const GroupParams& params = row_params[order[k] / g];
        const int code = quantize_value(row[k], params, levels);
        row_codes[order[k]] = static_cast<std::uint8_t>(code);
        const float* u = upper + static_cast<std::size_t>(k) * n;
        const float error = (row[k] - dequantize_value(code, params)) / u[k];
        row_errors[k - start] = error;
        for (int j = k + 1; j < end; ++j) row[j] -= error * u[j];
      }
    }
    // W[:, end:] −= E_block · U[start:end, end:]
    if (end < n)
      cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, m, n - end, count, -1.0f, errors.data(), count,
                  upper + static_cast<std::size_t>(start) * n + end, n, 1.0f, work.data() + end, n);
  }
  return out;
}

QuantizedMatrix gptq_quantize(const std::vector<float>& weights, int m, int n, const std::vector<double>& hessian,
                              const QuantSpec& spec, const GptqOptions& options, GptqInfo* info) {
  spec.validate(n);  // before the O(n³) factorisation
  const auto factor = gptq_prepare(hessian, n, options);
  if (info) *info = {factor.damp, static_cast<int>(factor.dead_columns.size())};
  return gptq_quantize(weights, m, n, factor, spec);
}

}  // namespace fbq
