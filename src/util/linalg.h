#pragma once
// Dense linear algebra in double precision on row-major matrices, over the LAPACK routines that OpenBLAS
// exports (no LAPACKE: it would pull in a second BLAS through Debian's liblapack alternative).
// Every routine throws fbq::Error when LAPACK reports failure.
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

}  // namespace fbq
