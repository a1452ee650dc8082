#pragma once
// Rank-r approximation of a residual matrix (DESIGN §1 "Initialisation" (a)): LQER/L2QER's branch, and the
// SVD initialisation of FBQuant's sub-branch.
#include <vector>

namespace fbq {

// A branch B·A: A is rank×n, B is m×rank, both row-major float32 (not yet rounded to f16).
struct LowRank {
  int rank = 0;
  std::vector<float> a, b;
};

// The rank-r B·A closest to the m×n row-major `residual` R. With `hessian` (n×n, H = X·Xᵀ/N) it minimises
// ‖(R − B·A)·S‖_F with S = diag(sqrt(diag(H))), the activation-scaled (L2QER) error: U·Σ·Vᵀ = svd(R·S),
// B = U_r·Σ_r^½, A = Σ_r^½·V_rᵀ·S⁻¹. Without it (nullptr) it is the plain truncated SVD of R.
// Layers with min(m, n) > 2048 use a seeded randomized SVD (util/linalg.h truncated_svd).
// Σ is split evenly so A and B have comparable magnitudes (both are stored in f16).
// Throws fbq::Error unless 1 ≤ rank ≤ min(m, n) and the sizes match.
LowRank scaled_low_rank(const std::vector<float>& residual, int m, int n, int rank, const std::vector<double>* hessian);

}  // namespace fbq
