#include "quant/low_rank.h"

#include <algorithm>
#include <cmath>

#include "util/error.h"
#include "util/linalg.h"

namespace fbq {
namespace {

// Channels that never fire (H_jj = 0) would make S singular; floor diag(H) at a tiny fraction of its mean.
constexpr double kRelativeDiagonalFloor = 1e-6;

std::vector<double> column_scales(const std::vector<double>* hessian, int n) {
  std::vector<double> scales(n, 1.0);
  if (hessian == nullptr) return scales;
  double mean = 0.0;
  for (int j = 0; j < n; ++j) mean += (*hessian)[static_cast<std::size_t>(j) * n + j];
  mean /= n;
  if (mean <= 0.0) return scales;  // no activation energy anywhere: nothing to weight by
  const double floor = kRelativeDiagonalFloor * mean;
  for (int j = 0; j < n; ++j) scales[j] = std::sqrt(std::max((*hessian)[static_cast<std::size_t>(j) * n + j], floor));
  return scales;
}

}  // namespace

LowRank scaled_low_rank(const std::vector<float>& residual, int m, int n, int rank,
                        const std::vector<double>* hessian) {
  if (m <= 0 || n <= 0 || residual.size() != static_cast<std::size_t>(m) * n)
    fail("low-rank approximation: residual has {} values, expected {}×{}", residual.size(), m, n);
  if (rank < 1 || rank > std::min(m, n))
    fail("low-rank approximation: rank {} is outside 1..{} for a {}×{} matrix", rank, std::min(m, n), m, n);
  if (hessian != nullptr && hessian->size() != static_cast<std::size_t>(n) * n)
    fail("low-rank approximation: Hessian has {} values, expected {}×{}", hessian->size(), n, n);

  const auto scales = column_scales(hessian, n);
  std::vector<double> scaled(residual.size());
  for (int i = 0; i < m; ++i)
    for (int j = 0; j < n; ++j) {
      const std::size_t index = static_cast<std::size_t>(i) * n + j;
      scaled[index] = residual[index] * scales[j];
    }
  // Exact below kExactSvdLimit (every layer of the small reference models, so their results stay those of the
  // full SVD); above it the full SVD dominates a layer's time (~40 s at 4096×4096 on 2 cores), while the
  // randomized one finds the leading `rank` directions in a fraction of a second.
  constexpr int kExactSvdLimit = 2048;
  const bool exact = std::min(m, n) <= kExactSvdLimit || 4 * rank > std::min(m, n);
  const Svd decomposition = exact ? svd(scaled, m, n) : truncated_svd(scaled, m, n, rank, /*seed=*/0);

  LowRank out{rank, std::vector<float>(static_cast<std::size_t>(rank) * n),
              std::vector<float>(static_cast<std::size_t>(m) * rank)};
  for (int k = 0; k < rank; ++k) {
    const double root = std::sqrt(decomposition.s[k]);
    for (int i = 0; i < m; ++i)
      out.b[static_cast<std::size_t>(i) * rank + k] =
          static_cast<float>(decomposition.u[static_cast<std::size_t>(i) * decomposition.k + k] * root);
    for (int j = 0; j < n; ++j)
      out.a[static_cast<std::size_t>(k) * n + j] =
          static_cast<float>(root * decomposition.vt[static_cast<std::size_t>(k) * n + j] / scales[j]);
  }
  return out;
}

}  // namespace fbq
