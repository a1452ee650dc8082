#include "util/linalg.h"

#include <cblas.h>

#include <algorithm>
#include <random>

#include "util/error.h"

extern "C" {
void dpotrf_(const char* uplo, const int* n, double* a, const int* lda, int* info);
void dpotri_(const char* uplo, const int* n, double* a, const int* lda, int* info);
void dgesdd_(const char* jobz, const int* m, const int* n, double* a, const int* lda, double* s, double* u,
             const int* ldu, double* vt, const int* ldvt, double* work, const int* lwork, int* iwork, int* info);
void dgeqrf_(const int* m, const int* n, double* a, const int* lda, double* tau, double* work, const int* lwork,
             int* info);
void dorgqr_(const int* m, const int* n, const int* k, double* a, const int* lda, const double* tau, double* work,
             const int* lwork, int* info);
}

namespace fbq {

// LAPACK is column-major: a row-major symmetric matrix is its own transpose, so "L" in LAPACK's view is the
// upper triangle in ours.
bool cholesky_upper(std::vector<double>& a, int n) {
  int info = 0;
  dpotrf_("L", &n, a.data(), &n, &info);
  if (info < 0) fail("dpotrf: invalid argument {}", -info);
  if (info > 0) return false;
  for (int i = 0; i < n; ++i)
    for (int j = 0; j < i; ++j) a[static_cast<std::size_t>(i) * n + j] = 0.0;
  return true;
}

bool invert_spd(std::vector<double>& a, int n) {
  int info = 0;
  dpotrf_("L", &n, a.data(), &n, &info);
  if (info < 0) fail("dpotrf: invalid argument {}", -info);
  if (info > 0) return false;
  dpotri_("L", &n, a.data(), &n, &info);
  if (info != 0) return false;
  // dpotri filled our upper triangle; mirror it.
  for (int i = 0; i < n; ++i)
    for (int j = 0; j < i; ++j) a[static_cast<std::size_t>(i) * n + j] = a[static_cast<std::size_t>(j) * n + i];
  return true;
}

Svd svd(const std::vector<double>& a, int m, int n) {
  // Row-major A (m×n) is column-major Aᵀ (n×m): factor Aᵀ = U'·S·V'ᵀ, then A = V'·S·U'ᵀ.
  Svd out;
  out.k = std::min(m, n);
  std::vector<double> work_a = a;
  std::vector<double> u_t(static_cast<std::size_t>(n) * out.k), vt_t(static_cast<std::size_t>(out.k) * m);
  out.s.resize(out.k);
  std::vector<int> iwork(8 * static_cast<std::size_t>(out.k));
  int lda = n, ldu = n, ldvt = out.k, info = 0, lwork = -1;
  double query = 0;
  dgesdd_("S", &n, &m, work_a.data(), &lda, out.s.data(), u_t.data(), &ldu, vt_t.data(), &ldvt, &query, &lwork,
          iwork.data(), &info);
  lwork = static_cast<int>(query);
  std::vector<double> work(std::max(1, lwork));
  dgesdd_("S", &n, &m, work_a.data(), &lda, out.s.data(), u_t.data(), &ldu, vt_t.data(), &ldvt, work.data(), &lwork,
          iwork.data(), &info);
  if (info != 0) fail("dgesdd failed (info {})", info);
  // Column-major u_t (n×k) is row-major k×n: exactly Vᵀ of A. Column-major vt_t (k×m) is row-major m×k: U.
  out.vt = std::move(u_t);
  out.u = std::move(vt_t);
  return out;
}

namespace {

// In place: an orthonormal basis of the columns of the p×l row-major matrix x (p ≥ l), by Householder QR.
void orthonormalize_columns(std::vector<double>& x, int p, int l) {
  std::vector<double> column_major(x.size()), tau(l);
  for (int i = 0; i < p; ++i)
    for (int j = 0; j < l; ++j) column_major[static_cast<std::size_t>(j) * p + i] = x[static_cast<std::size_t>(i) * l + j];
  int info = 0, lwork = -1;
  double query = 0;
  dgeqrf_(&p, &l, column_major.data(), &p, tau.data(), &query, &lwork, &info);
  lwork = std::max(1, static_cast<int>(query));
  std::vector<double> work(lwork);
  dgeqrf_(&p, &l, column_major.data(), &p, tau.data(), work.data(), &lwork, &info);
  if (info != 0) fail("dgeqrf failed (info {})", info);
  lwork = -1;
  dorgqr_(&p, &l, &l, column_major.data(), &p, tau.data(), &query, &lwork, &info);
  lwork = std::max(1, static_cast<int>(query));
  work.resize(lwork);
  dorgqr_(&p, &l, &l, column_major.data(), &p, tau.data(), work.data(), &lwork, &info);
  if (info != 0) fail("dorgqr failed (info {})", info);
  for (int i = 0; i < p; ++i)
    for (int j = 0; j < l; ++j) x[static_cast<std::size_t>(i) * l + j] = column_major[static_cast<std::size_t>(j) * p + i];
}

}  // namespace

Svd truncated_svd(const std::vector<double>& a, int m, int n, int rank, std::uint64_t seed, int power_iterations) {
  constexpr int kOversampling = 16;
  const int l = std::min(rank + kOversampling, std::min(m, n));
  if (rank < 1 || rank > l) fail("truncated SVD: rank {} outside 1..{} for {}×{}", rank, std::min(m, n), m, n);
  std::mt19937_64 rng(seed);
  std::normal_distribution<double> normal;
  std::vector<double> sketch(static_cast<std::size_t>(n) * l), range(static_cast<std::size_t>(m) * l);
  for (auto& v : sketch) v = normal(rng);
  // range = orth(A·Ω), then (A·Aᵀ)^q refinements, re-orthonormalised each half-step against rounding.
  const auto multiply = [&](bool transpose, const std::vector<double>& in, std::vector<double>& out) {
    cblas_dgemm(CblasRowMajor, transpose ? CblasTrans : CblasNoTrans, CblasNoTrans, transpose ? n : m, l,
                transpose ? m : n, 1.0, a.data(), n, in.data(), l, 0.0, out.data(), l);
  };
  multiply(false, sketch, range);
  orthonormalize_columns(range, m, l);
  for (int q = 0; q < power_iterations; ++q) {
    multiply(true, range, sketch);
    orthonormalize_columns(sketch, n, l);
    multiply(false, sketch, range);
    orthonormalize_columns(range, m, l);
  }
  // A ≈ Q·(Qᵀ·A): the exact SVD of the l×n projection gives A's leading triplets.
  std::vector<double> projected(static_cast<std::size_t>(l) * n);
  cblas_dgemm(CblasRowMajor, CblasTrans, CblasNoTrans, l, n, m, 1.0, range.data(), l, a.data(), n, 0.0,
              projected.data(), n);
  const Svd small = svd(projected, l, n);
  Svd out;
  out.k = rank;
  out.s.assign(small.s.begin(), small.s.begin() + rank);
  out.vt.assign(small.vt.begin(), small.vt.begin() + static_cast<std::size_t>(rank) * n);
  out.u.resize(static_cast<std::size_t>(m) * rank);
  cblas_dgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, m, rank, l, 1.0, range.data(), l, small.u.data(), small.k, 0.0,
              out.u.data(), rank);
  return out;
}

}  // namespace fbq
