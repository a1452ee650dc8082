#pragma once
// The interface every quantization method implements (one file per method under src/quant/methods/), and
// the registry the CLI and the calibration pipeline look methods up in. A method file registers itself with
// FBQ_REGISTER_METHOD; adding a method touches nothing else.
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "quant/group_quant.h"

namespace fbq {

// Calibration statistics of one linear layer's input (n = in_features), from N calibration tokens.
struct LayerStats {
  int n = 0;
  std::int64_t tokens = 0;
  std::vector<double> hessian;    // H = X·Xᵀ / N, n × n row-major
  std::vector<float> mean_abs;    // mean |x_j| per input channel (AWQ)
  // H of held-out calibration windows (same layer input), when the pipeline collected one; empty otherwise.
  // Methods that iterate choose their kept iterate on it, so the choice is not fitted to the training H.
  std::vector<double> validation_hessian;
};

struct MethodOptions {
  QuantSpec spec;
  int rank = 0;              // low-rank branch rank (0 = none)
  double damp = 0.01;        // GPTQ: damping as a fraction of mean(diag(H))
  int block_size = 128;      // GPTQ: lazy-batch block size
  bool act_order = false;    // GPTQ: quantize columns by decreasing diag(H)
  bool clip_search = false;  // RTN/AWQ: search a per-group clip ratio minimising H-weighted error
  bool scaled_svd = true;    // LQER: activation-scaled SVD (L2QER) instead of plain SVD
  // Branch size as a bit budget: when > 0, each layer's rank is ⌊X·m·n / (16·(m+n))⌋ (at least 1), so the
  // f16 branch costs ≈ X extra bits per weight; overrides `rank`.
  double branch_bits = 0.0;
  std::uint64_t seed = 0;
  // Method-specific settings (`-O key=value` on the CLI), checked against QuantMethod::params().
  std::map<std::string, std::string> params;

  // The branch rank of an m × n layer (rank, or from branch_bits).
  int branch_rank(int m, int n) const;
  // A method-specific setting, or `fallback` when absent; throws when it does not parse.
  double param_number(const std::string& name, double fallback) const;
  std::string param_text(const std::string& name, const std::string& fallback) const;
};

// A method-specific setting a method accepts, for validation and `fbq quantize --list-methods`.
struct MethodParam {
  std::string name, default_value, help;
};

// What a method hands back for one linear layer (m = out, n = in).
struct QuantizedLayer {
  QuantizedMatrix weights;
  // Optional low-rank branch y += B·(A·x): A is r×n, B is m×r (row-major), values already rounded to f16.
  int rank = 0;
  std::vector<float> lora_a, lora_b;
  // Optional per-input-channel divisor (AWQ): the layer computes Q(W·diag(s))·(x / s). Empty = none.
  std::vector<float> input_scale;
  std::string note;  // short method-specific detail for the report (e.g. "alpha=0.5")
  std::vector<std::pair<std::string, double>> metrics;  // numbers for the per-layer report (e.g. losses)
  // Curves for the report (`fbq report`), e.g. FBQuant's losses at each evaluated step: equal-length series
  // named "step", "loss", "val_loss".
  std::vector<std::pair<std::string, std::vector<double>>> curves;

  // The float weights this layer effectively applies: dequant(Q)·diag(1/s) + B·A (m × n row-major).
  std::vector<float> effective_weights() const;
};

class QuantMethod {
 public:
  virtual ~QuantMethod() = default;
  virtual std::string name() const = 0;
  virtual bool uses_rank() const { return false; }
  virtual std::vector<MethodParam> params() const { return {}; }
  // `weights`: m × n row-major float32. Throws fbq::Error on options it cannot honour.
  virtual QuantizedLayer quantize(const std::vector<float>& weights, int m, int n, const LayerStats& stats,
                                  const MethodOptions& options) const = 0;
};

using MethodFactory = std::function<std::unique_ptr<QuantMethod>()>;
bool register_method(const std::string& name, MethodFactory factory);
std::unique_ptr<QuantMethod> make_method(const std::string& name);  // throws listing the known names
std::vector<std::string> method_names();
// Throws unless every key of options.params is one of method.params().
void check_method_params(const QuantMethod& method, const MethodOptions& options);

#define FBQ_REGISTER_METHOD(NAME, TYPE) \
  static const bool fbq_registered_##TYPE = ::fbq::register_method(NAME, [] { return std::make_unique<TYPE>(); })

// tr(E·H·Eᵀ) / tr(W·H·Wᵀ) with E = Ŵ − W: the layer-wise reconstruction error all methods report.
double relative_h_error(const std::vector<float>& weights, const std::vector<float>& reconstructed, int m, int n,
                        const std::vector<double>& hessian);
// tr(E·H·Eᵀ), the numerator alone (a caller scoring several reconstructions of one W computes tr(W·H·Wᵀ) once).
double h_error_norm(const std::vector<float>& weights, const std::vector<float>& reconstructed, int m, int n,
                    const std::vector<double>& hessian);
// tr(M·H·Mᵀ) for an m × n matrix M.
double h_weighted_norm(const float* matrix, int m, int n, const std::vector<double>& hessian);

// max |W − W_F| / (s/2) over all weights of `layer` against the float `weights`: ≤ 1 with RTN inside the
// feedback loop (the FBQuant bound), unbounded with GPTQ inside or quantize-then-compensate.
double max_error_over_half_step(const std::vector<float>& weights, const QuantizedLayer& layer);

// Rounds each value to the nearest float16 (branch factors are stored as f16).
void round_to_f16(std::vector<float>& values);

}  // namespace fbq
