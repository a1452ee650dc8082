#include "quant/group_quant.h"

#include <algorithm>
#include <cmath>

#include "io/dtype.h"
#include "util/error.h"

namespace fbq {

void QuantSpec::validate(int in_features) const {
  if (bits != 2 && bits != 3 && bits != 4 && bits != 8) fail("--bits {} is not supported (use 2, 3, 4 or 8)", bits);
  if (group_size <= 0 || in_features % group_size != 0)
    fail("--group-size {} does not divide the input dimension {}", group_size, in_features);
  if (scale_bits < 2 || scale_bits > 11) fail("--scale-bits {} is not supported (use 2 … 11)", scale_bits);
}

const char* zero_points_name(ZeroPoints zero_points) {
  switch (zero_points) {
    case ZeroPoints::any: return "any";
    case ZeroPoints::nonzero: return "nonzero";
    case ZeroPoints::symmetric: return "symmetric";
  }
  return "?";
}

ZeroPoints parse_zero_points(const std::string& name) {
  if (name == "gptq") return ZeroPoints::nonzero;  // the command line's name: what GPTQ v1 checkpoints can store
  for (auto z : {ZeroPoints::any, ZeroPoints::nonzero, ZeroPoints::symmetric})
    if (name == zero_points_name(z)) return z;
  fail("--zero-points '{}' is not known (use any, gptq or symmetric)", name);
}

namespace {

// The smallest float16 ≥ `exact` with at most `significant_bits` significant bits. Positive float16 bit
// patterns order like their values, so rounding the pattern up to a multiple of 2^(11 − bits) clears the low
// mantissa bits (a carry moves into the exponent, which is still the next larger value).
float round_scale_up(float exact, int significant_bits) {
  std::uint32_t half = float_to_half(exact);
  if (half_to_float(static_cast<std::uint16_t>(half)) < exact) ++half;
  const std::uint32_t step = 1u << (11 - significant_bits);
  half = (half + step - 1) & ~(step - 1);
  const float scale = half < 0x7C00u ? half_to_float(static_cast<std::uint16_t>(half)) : INFINITY;
  if (!std::isfinite(scale)) fail("weight range of size {} is too large for float16 scales", exact);
  return scale;
}

}  // namespace

GroupParams fit_group(const float* values, int count, const QuantSpec& spec, float clip) {
  return fit_group_clipped(values, count, spec, clip, clip);
}

GroupParams fit_group_clipped(const float* values, int count, const QuantSpec& spec, float clip_low, float clip_high) {
  float low = 0.0f, high = 0.0f;  // the range always contains 0, so the zero point fits in b bits
  for (int i = 0; i < count; ++i) {
    low = std::min(low, values[i]);
    high = std::max(high, values[i]);
  }
  low *= clip_low;
  high *= clip_high;
  const int levels = spec.levels(), middle = 1 << (spec.bits - 1);
  // Every grid below represents [−s·z − s/2, s·(levels − z) + s/2] around [low, high], so |w − ŵ| ≤ s/2.
  if (spec.zero_points == ZeroPoints::symmetric) {
    const float exact = std::max(-low / static_cast<float>(middle), high / static_cast<float>(levels - middle));
    return {exact == 0.0f ? 1.0f : round_scale_up(exact, spec.scale_bits), middle};
  }
  const int lowest_zero = spec.zero_points == ZeroPoints::nonzero ? 1 : 0;
  const float exact = (high - low) / static_cast<float>(levels);
  if (exact == 0.0f) return {1.0f, lowest_zero};  // an all-zero group: any scale reproduces it
  float scale = round_scale_up(exact, spec.scale_bits);
  int zero = std::clamp(static_cast<int>(std::nearbyint(-low / scale)), 0, levels);
  if (zero < lowest_zero) {
    // low > −s/2: with z = 1 the top of the range must fit in levels − 1 steps (low still does, as −s < low).
    scale = round_scale_up(std::max(exact, high / static_cast<float>(levels - 1)), spec.scale_bits);
    zero = lowest_zero;
  }
  return {scale, zero};
}

void quantize_group_into(QuantizedMatrix& out, int row, int col, const float* values, int count,
                         const GroupParams& params) {
  const int levels = out.spec.levels();
  std::uint8_t* codes = &out.codes[static_cast<std::size_t>(row) * out.cols + col];
  for (int i = 0; i < count; ++i) codes[i] = static_cast<std::uint8_t>(quantize_value(values[i], params, levels));
  out.params[static_cast<std::size_t>(row) * out.groups_per_row() + col / out.spec.group_size] = params;
}

QuantizedMatrix quantize_rtn(const float* weights, int rows, int cols, const QuantSpec& spec, float clip) {
  spec.validate(cols);
  QuantizedMatrix out{rows, cols, spec, std::vector<std::uint8_t>(static_cast<std::size_t>(rows) * cols),
                      std::vector<GroupParams>(static_cast<std::size_t>(rows) * (cols / spec.group_size))};
#pragma omp parallel for schedule(static)
  for (int r = 0; r < rows; ++r)
    for (int c = 0; c < cols; c += spec.group_size) {
      const float* group = weights + static_cast<std::size_t>(r) * cols + c;
      quantize_group_into(out, r, c, group, spec.group_size, fit_group(group, spec.group_size, spec, clip));
    }
  return out;
}

QuantizedMatrix quantize_rtn_clip_searched(const float* weights, int rows, int cols, const QuantSpec& spec,
                                           const std::vector<double>& column_weights) {
  spec.validate(cols);
  constexpr int kClipSteps = 10;  // clip = 1 − 0.05·step, down to 0.5
  const int g = spec.group_size;
  QuantizedMatrix out{rows, cols, spec, std::vector<std::uint8_t>(static_cast<std::size_t>(rows) * cols),
                      std::vector<GroupParams>(static_cast<std::size_t>(rows) * (cols / g))};
#pragma omp parallel for schedule(dynamic, 4)
  for (int r = 0; r < rows; ++r)
    for (int c = 0; c < cols; c += g) {
      const float* group = weights + static_cast<std::size_t>(r) * cols + c;
      double best_error = INFINITY;
      GroupParams best{};
      for (int step = 0; step <= kClipSteps; ++step) {
        const auto params = fit_group(group, g, spec, 1.0f - 0.05f * static_cast<float>(step));
        double error = 0.0;
        for (int j = 0; j < g; ++j) {
          const double diff = dequantize_value(quantize_value(group[j], params, spec.levels()), params) - group[j];
          error += diff * diff * column_weights[c + j];
        }
        if (error < best_error) {
          best_error = error;
          best = params;
        }
      }
      quantize_group_into(out, r, c, group, g, best);
    }
  return out;
}

std::vector<float> QuantizedMatrix::dequantize() const {
  std::vector<float> out;
  dequantize_into(out);
  return out;
}

void QuantizedMatrix::dequantize_into(std::vector<float>& out) const {
  out.resize(static_cast<std::size_t>(rows) * cols);
#pragma omp parallel for schedule(static) if (static_cast<std::int64_t>(rows) * cols >= (1 << 16))
  for (int r = 0; r < rows; ++r)
    for (int c = 0; c < cols; ++c) {
      const std::size_t i = static_cast<std::size_t>(r) * cols + c;
      out[i] = dequantize_value(codes[i], group(r, c));
    }
}

}  // namespace fbq
