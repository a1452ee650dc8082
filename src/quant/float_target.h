#pragma once
// Asymmetric calibration (`fbq quantize --float-target`): aim each linear at the float model's output W·X̄
// instead of at W·X, the float weights applied to the quantized model's own, drifted, input X.
// With H = X·Xᵀ/N and K = X·Dᵀ/N, D = X − X̄ (calib/calibration.h, InputDrift):
//   ‖W_F·X − W·X̄‖²/N = tr((W_F − W̃)·H·(W_F − W̃)ᵀ) + const,    W̃ = W − W·Kᵀ·H⁻¹,
// because W·D splits into its least-squares fit on X's rows (W·Kᵀ·H⁻¹·X) and a remainder orthogonal to them.
// So every method aims at the float model unchanged: it quantizes W̃ against the same H.
#include <vector>

#include "calib/calibration.h"

namespace fbq {

// W̃ (m × n row-major), with H damped by damp·mean(diag(H)) as GPTQ damps it (raised 10× up to three
// times if H + λI is still not positive definite).
std::vector<float> float_target_weights(const std::vector<float>& weights, int m, int n,
                                        const std::vector<double>& hessian, const InputDrift& drift, double damp);

// ‖W_F·X − W·X̄‖² / ‖W·X̄‖², from the moments: how far the layer's output is from the float model's.
double float_output_error(const std::vector<float>& weights, const std::vector<float>& reconstructed, int m, int n,
                          const std::vector<double>& hessian, const InputDrift& drift);

}  // namespace fbq
