#pragma once
// FBQuant's objective and its gradient (DESIGN §1), kept apart from the method so tests can check the
// gradient against finite differences.
//
// With Σ = B·A, R = W − Σ and W_F = Q(R) + Σ, the error is E = W_F − W = Q(R) − R and the loss is
// L = tr(E·H·Eᵀ). Q is treated as locally constant (∂W_F/∂Σ = I almost everywhere; no straight-through
// estimator), so ∂L/∂Σ = 2·E·H and
//   ∂L/∂B = 2·E·(H·Aᵀ)   (m×r),     ∂L/∂A = 2·(Bᵀ·E)·H   (r×n),
// both O(m·n·r + n²·r): E·H (m·n²) is never formed.
#include <vector>

#include "quant/group_quant.h"

namespace fbq {

struct BranchGradients {
  std::vector<float> grad_a;  // r × n
  std::vector<float> grad_b;  // m × r
};

// `error` = E (m×n), `hessian` = H (n×n, float), `a` (r×n), `b` (m×r), all row-major.
BranchGradients branch_gradients(const std::vector<float>& error, const std::vector<float>& hessian,
                                 const std::vector<float>& a, const std::vector<float>& b, int m, int n, int r);

// The RTN feedback step in one pass per group: R = W − Σ, Q(R) into `out` (storage reused) and
// E = Q(R) − R into `error` (resized), without materialising R or Q(R).
void feedback_quantize_rtn(const std::vector<float>& weights, const std::vector<float>& sigma, int m, int n,
                           const QuantSpec& spec, QuantizedMatrix& out, std::vector<float>& error);

// tr(E·H·Eᵀ) for an m × n error (O(m·n²): evaluated every few steps only).
double reconstruction_loss(const std::vector<float>& error, const std::vector<float>& hessian, int m, int n);

}  // namespace fbq
