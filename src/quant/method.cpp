#include "quant/method.h"

#include <cblas.h>
#include <fmt/ranges.h>

#include <algorithm>
#include <cmath>
#include <map>

#include "io/dtype.h"
#include "util/error.h"

namespace fbq {
namespace {

std::map<std::string, MethodFactory>& registry() {
  static std::map<std::string, MethodFactory> methods;
  return methods;
}

}  // namespace

bool register_method(const std::string& name, MethodFactory factory) {
  return registry().emplace(name, std::move(factory)).second;
}

std::unique_ptr<QuantMethod> make_method(const std::string& name) {
  const auto it = registry().find(name);
  if (it == registry().end()) fail("unknown method '{}' (known: {})", name, fmt::join(method_names(), ", "));
  return it->second();
}

std::vector<std::string> method_names() {
  std::vector<std::string> names;
  for (const auto& [name, factory] : registry()) names.push_back(name);
  return names;
}

void check_method_params(const QuantMethod& method, const MethodOptions& options) {
  const auto known = method.params();
  for (const auto& setting : options.params) {
    const std::string& key = setting.first;  // a named variable: clang 14 cannot capture structured bindings
    if (std::none_of(known.begin(), known.end(), [&](const MethodParam& p) { return p.name == key; })) {
      std::vector<std::string> names;
      for (const auto& p : known) names.push_back(p.name);
      fail("method '{}' has no setting '{}' (settings: {})", method.name(), key,
           names.empty() ? std::string("none") : fmt::format("{}", fmt::join(names, ", ")));
    }
  }
}

int MethodOptions::branch_rank(int m, int n) const {
  if (branch_bits <= 0.0) return rank;
  const double budget = branch_bits * m * n / (16.0 * (m + n));
  return std::max(1, static_cast<int>(std::floor(budget)));
}

double MethodOptions::param_number(const std::string& name, double fallback) const {
  const auto it = params.find(name);
  if (it == params.end()) return fallback;
  try {
    std::size_t used = 0;
    const double value = std::stod(it->second, &used);
    if (used == it->second.size() && std::isfinite(value)) return value;
  } catch (const std::exception&) {
  }
  fail("setting {}={} is not a number", name, it->second);
}

std::string MethodOptions::param_text(const std::string& name, const std::string& fallback) const {
  const auto it = params.find(name);
  return it == params.end() ? fallback : it->second;
}

std::vector<float> QuantizedLayer::effective_weights() const {
  const int m = weights.rows, n = weights.cols;
  auto out = weights.dequantize();
  if (!input_scale.empty())
    for (int i = 0; i < m; ++i)
      for (int j = 0; j < n; ++j) out[static_cast<std::size_t>(i) * n + j] /= input_scale[j];
  if (rank > 0)
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, m, n, rank, 1.0f, lora_b.data(), rank, lora_a.data(), n,
                1.0f, out.data(), n);
  return out;
}

double h_weighted_norm(const float* matrix, int m, int n, const std::vector<double>& hessian) {
  // tr(M·H·Mᵀ) = Σ_i m_i·H·m_iᵀ in double, a block of rows at a time through one GEMM: a matrix-vector
  // product per row would stream all of H once per row (memory-bound: ~13 s for a 4096×4096 layer).
  constexpr int kBlockRows = 256;
  std::vector<double> block(static_cast<std::size_t>(std::min(m, kBlockRows)) * n), product(block.size());
  double total = 0.0;
  for (int first = 0; first < m; first += kBlockRows) {
    const int rows = std::min(kBlockRows, m - first);
    const std::size_t count = static_cast<std::size_t>(rows) * n;
    std::copy_n(matrix + static_cast<std::size_t>(first) * n, count, block.begin());
    cblas_dgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, rows, n, n, 1.0, block.data(), n, hessian.data(), n, 0.0,
                product.data(), n);
    total += cblas_ddot(static_cast<int>(count), block.data(), 1, product.data(), 1);
  }
  return total;
}

double h_error_norm(const std::vector<float>& weights, const std::vector<float>& reconstructed, int m, int n,
                    const std::vector<double>& hessian) {
  std::vector<float> error(weights.size());
  for (std::size_t i = 0; i < error.size(); ++i) error[i] = reconstructed[i] - weights[i];
  return h_weighted_norm(error.data(), m, n, hessian);
}

double relative_h_error(const std::vector<float>& weights, const std::vector<float>& reconstructed, int m, int n,
                        const std::vector<double>& hessian) {
  const double reference = h_weighted_norm(weights.data(), m, n, hessian);
  return reference > 0.0 ? h_error_norm(weights, reconstructed, m, n, hessian) / reference : 0.0;
}

double max_error_over_half_step(const std::vector<float>& weights, const QuantizedLayer& layer) {
  const auto effective = layer.effective_weights();
  const int n = layer.weights.cols;
  double worst = 0.0;
  for (std::size_t i = 0; i < effective.size(); ++i) {
    const auto& params = layer.weights.group(static_cast<int>(i / n), static_cast<int>(i % n));
    worst = std::max(worst, std::fabs(static_cast<double>(effective[i]) - weights[i]) / (0.5 * params.scale));
  }
  return worst;
}

void round_to_f16(std::vector<float>& values) {
  for (auto& value : values) value = half_to_float(float_to_half(value));
}

}  // namespace fbq
