#pragma once
// GPTQ (Frantar et al., 2022): quantize the columns of W one at a time and push each column's rounding error
// onto the columns not yet quantized, weighted by the upper Cholesky factor of H⁻¹, so the layer-wise
// error tr(E·H·Eᵀ) stays small. Lazy batching: the error of a block of columns reaches the columns after the
// block through one GEMM.
//
// H is factored once (gptq_prepare) and the factor can quantize many matrices: FBQuant with GPTQ as its inner
// quantizer calls gptq_quantize(W − Σ) on the same H at every step.
#include <vector>

#include "quant/group_quant.h"

namespace fbq {

struct GptqOptions {
  double damp = 0.01;     // λ = damp · mean(diag(H)) added to the diagonal (raised 10x on Cholesky failure)
  int block_size = 128;   // lazy-batch block: columns updated in place before one GEMM to the rest
  bool act_order = false; // quantize columns by decreasing diag(H), with group params fitted up front
};

// H⁻¹'s upper Cholesky factor in the order the columns are quantized, plus what is needed to apply it.
struct GptqFactor {
  int n = 0;
  GptqOptions options;
  double damp = 0.0;                 // relative damping finally used (options.damp, or 10x, 100x, ...)
  std::vector<int> dead_columns;     // inputs with diag(H) == 0: their weights are quantized as 0
  std::vector<int> order;            // order[k] = original column quantized k-th (identity without act_order)
  // U with (H + λI)⁻¹ = Uᵀ·U, rows/columns permuted by `order`, n × n row-major. Computed in double,
  // stored in float because it only ever multiplies the float weights.
  std::vector<float> upper_inverse;
};

struct GptqInfo {
  double damp = 0.0;  // relative damping finally used
  int dead_columns = 0;
};

// Factors H (n × n row-major, symmetric PSD). Throws fbq::Error on a malformed H or bad options, or when
// H + λI is still not positive definite after raising λ 1000-fold.
GptqFactor gptq_prepare(const std::vector<double>& hessian, int n, const GptqOptions& options);

// Quantizes the m × n row-major `weights` with a factor of their layer's H.
QuantizedMatrix gptq_quantize(const std::vector<float>& weights, int m, int n, const GptqFactor& factor,
                              const QuantSpec& spec);

// gptq_prepare + gptq_quantize.
QuantizedMatrix gptq_quantize(const std::vector<float>& weights, int m, int n, const std::vector<double>& hessian,
                              const QuantSpec& spec, const GptqOptions& options, GptqInfo* info = nullptr);

}  // namespace fbq
