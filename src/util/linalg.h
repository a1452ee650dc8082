#pragma once
// Dense linear algebra in double precision on row-major matrices, over the LAPACK routines that OpenBLAS
// exports (no LAPACKE: it would pull in a second BLAS through Debian's liblapack alternative).
// Every routine throws fbq::Error when LAPACK reports failure.
#include <cstdint>
#include <vector>

namespace fbq {

// In place: the upper-triangular U with A = Uᵀ·U (A is n×n symmetric positive definite; the strictly
// lower triangle is zeroed). Returns false (A unchanged semantics undefined) when A is not positive definite.
bool cholesky_upper(std::vector<double>& a, int n);

// In place inverse of a symmetric positive definite n×n matrix (full matrix written). Returns false when
// A is not positive definite.
bool invert_spd(std::vector<double>& a, int n);

// Thin SVD of an m×n row-major matrix: A = U·diag(S)·Vᵀ with U m×k, S k, Vt k×n (k = min(m, n)),
// singular values in decreasing order.
struct Svd {
  int k = 0;
  std::vector<double> u, s, vt;
};
Svd svd(const std::vector<double>& a, int m, int n);

// The leading `rank` singular triplets of an m×n row-major matrix by randomized range finding (Halko,
// Martinsson & Tropp 2011): a Gaussian sketch with 16 extra columns, `power_iterations` rounds of A·Aᵀ, then
// the exact SVD of the small projected matrix. O(m·n·(rank + 16)) instead of the full SVD's O(m·n·min(m,n));
// deterministic in `seed`. Returns k = rank.
Svd truncated_svd(const std::vector<double>& a, int m, int n, int rank, std::uint64_t seed, int power_iterations = 3);

}  // namespace fbq
