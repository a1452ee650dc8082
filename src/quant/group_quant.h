#pragma once
// Asymmetric uniform group-wise quantization (DESIGN §1 "Quantizer Q"): per output row, per group of
// `group_size` consecutive input columns, a float16 scale s and an integer zero point z in [0, 2^b − 1]:
//   q = clamp(round(w / s) + z, 0, 2^b − 1),   ŵ = s · (q − z).
// As in GPTQ, the [min, max] range of a group is widened to contain 0 so z fits in b bits; the scale is
// rounded *up* to float16 so the stored scale still covers the range and |w − ŵ| ≤ s/2 holds exactly.
#include <cstdint>
#include <string>
#include <vector>

namespace fbq {

// Which zero points the grid may use. `any` is the widest grid; the others exist so a result can be written
// exactly in other engines' formats (docs/FORMAT.md "Grid settings"): GPTQ v1 stores z − 1, so it cannot hold
// z = 0 (`nonzero`: z ∈ [1, 2^b − 1]); vLLM's Marlin kernel and llama.cpp's Q4_0/Q8_0 assume z = 2^(b−1)
// (`symmetric`).
enum class ZeroPoints { any, nonzero, symmetric };

struct QuantSpec {
  int bits = 4;
  int group_size = 128;  // input columns per group; equal to the input dim for per-channel
  ZeroPoints zero_points = ZeroPoints::any;
  // Significant bits kept in the float16 scale (11 = all). 7 makes llama.cpp's Q4_1 offset m = −s·z exact in
  // float16 for every z < 16 (docs/FORMAT.md).
  int scale_bits = 11;

  int levels() const { return (1 << bits) - 1; }  // largest code
  // Throws fbq::Error unless bits ∈ {2,3,4,8}, group_size divides `in_features` and scale_bits ∈ [2, 11].
  void validate(int in_features) const;
  // b + (16-bit scale + b-bit zero) / g.
  double bits_per_weight() const { return bits + (16.0 + bits) / group_size; }
};

struct GroupParams {
  float scale;  // exactly representable in float16
  int zero;     // in [0, levels]
};

// Scale/zero of one group's values (min/max, optionally shrunk by `clip` ∈ (0, 1] for clip search), on the
// grid `spec` allows (zero points, scale precision).
GroupParams fit_group(const float* values, int count, const QuantSpec& spec, float clip = 1.0f);
// The same with the range's two ends shrunk separately: [clip_low·min, clip_high·max] (learnable clipping, LWC).
GroupParams fit_group_clipped(const float* values, int count, const QuantSpec& spec, float clip_low, float clip_high);

// "any" / "nonzero" / "symmetric" ⇄ ZeroPoints (the names in quantization_config); parsing also takes "gptq"
// (the command line's name for nonzero).
const char* zero_points_name(ZeroPoints zero_points);
ZeroPoints parse_zero_points(const std::string& name);

inline int quantize_value(float w, const GroupParams& p, int levels) {
  const float q = __builtin_nearbyintf(w / p.scale) + static_cast<float>(p.zero);
  return q < 0.0f ? 0 : (q > static_cast<float>(levels) ? levels : static_cast<int>(q));
}
inline float dequantize_value(int q, const GroupParams& p) { return p.scale * static_cast<float>(q - p.zero); }

// A quantized weight matrix in unpacked form: what quantization methods produce and the packer consumes.
struct QuantizedMatrix {
  int rows = 0, cols = 0;
  QuantSpec spec;
  std::vector<std::uint8_t> codes;  // rows × cols, each in [0, 2^b − 1]
  std::vector<GroupParams> params;  // rows × (cols / group_size)

  int groups_per_row() const { return cols / spec.group_size; }
  const GroupParams& group(int row, int col) const {
    return params[static_cast<std::size_t>(row) * groups_per_row() + col / spec.group_size];
  }
  std::vector<float> dequantize() const;  // rows × cols
  void dequantize_into(std::vector<float>& out) const;  // the same into a reused buffer (resized)
};

// Round-to-nearest of a row-major rows × cols matrix, group by group (min/max, or shrunk by `clip`).
QuantizedMatrix quantize_rtn(const float* weights, int rows, int cols, const QuantSpec& spec, float clip = 1.0f);

// RTN where each group's range is shrunk by the clip ratio (1.00, 0.95, …, 0.50) that minimises that group's
// error Σ_j e_j²·w_j, with w_j = column_weights[j] (a diagonal of H: it keeps the groups independent).
QuantizedMatrix quantize_rtn_clip_searched(const float* weights, int rows, int cols, const QuantSpec& spec,
                                           const std::vector<double>& column_weights);

// Quantizes one group of `count` values of row `row` starting at column `col` into `out` with `params`.
void quantize_group_into(QuantizedMatrix& out, int row, int col, const float* values, int count, const GroupParams& params);

}  // namespace fbq
