#include "util/linalg.h"

#include <algorithm>

#include "util/error.h"

extern "C" {
void dpotrf_(const char* uplo, const int* n, double* a, const int* lda, int* info);
void dpotri_(const char* uplo, const int* n, double* a, const int* lda, int* info);
void dgesdd_(const char* jobz, const int* m, const int* n, double* a, const int* lda, double* s, double* u,
             const int* ldu, double* vt, const int* ldvt, double* work, const int* lwork, int* iwork, int* info);
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

}  // namespace fbq
