#pragma once
// The Hugging Face GPTQ layout of one linear (AutoGPTQ / GPTQModel / vLLM; docs/FORMAT.md "GPTQ export and
// import"), and its exact conversion to and from PackedWeights. Pure functions: no files.
//
// For in_features K, out_features N, group g, bits b (w[n,k] = s[g_idx[k], n] · (q[n,k] − z[g_idx[k], n])):
//   qweight I32 [K·b/32, N]   column n = the K codes of output n as a little-endian stream of b-bit fields
//                             (AutoGPTQ's pack(): 3-bit fields straddle words the same way)
//   qzeros  I32 [K/g, N·b/32] row G = the N zero points of group G as such a stream; v1 stores z − 1, v2 z
//   scales  F16 [K/g, N]
//   g_idx   I32 [K]           the group of each input column (k // g unless the columns were reordered)
#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include "pack/packed_linear.h"

namespace fbq {

// checkpoint_format "gptq" (v1: stores z − 1, so z = 0 cannot be written) or "gptq_v2" (stores z).
enum class GptqZeroFormat { v1, v2 };
const char* checkpoint_format_name(GptqZeroFormat format);
GptqZeroFormat parse_checkpoint_format(const std::string& name);  // throws fbq::Error naming the value

struct GptqTensors {
  int in_features = 0, out_features = 0;  // K, N
  int bits = 0, group_size = 0;
  std::vector<std::uint32_t> qweight;  // qweight_rows() × N
  std::vector<std::uint32_t> qzeros;   // groups() × qzeros_cols()
  std::vector<std::uint16_t> scales;   // groups() × N, float16 bits
  std::vector<std::int32_t> g_idx;     // K

  int groups() const { return in_features / group_size; }
  std::int64_t qweight_rows() const { return static_cast<std::int64_t>(in_features) * bits / 32; }
  std::int64_t qzeros_cols() const { return static_cast<std::int64_t>(out_features) * bits / 32; }
};

// Packed weights and the input order GPTQ's g_idx implies: packed column j holds input column
// input_order[j] (empty: the identity), as PackedLinear takes them.
struct GptqLinearWeights {
  PackedWeights weights;
  std::vector<int> input_order;
};

// Why a rows × cols linear at `bits` has no GPTQ tensors (K·b or N·b is not a multiple of 32, so qweight or
// qzeros would end in a partial word); empty when it has them.
std::string gptq_shape_problem(int rows, int cols, int bits);

// Throws fbq::Error naming `name` unless bits ∈ {2,3,4,8}, the group divides K and K·b, N·b fill whole words.
void validate_gptq_dims(int out_features, int in_features, int bits, int group_size, const std::string& name);

// How many of the weights' zero points equal `zero` (v1 cannot store 0; GPTQ "sym" means all are 2^(b−1)).
std::int64_t count_zero_points(const PackedWeights& weights, int zero);

// `weights` (rows = N, cols = K) as GPTQ tensors; packed column j is input column input_order[j] (empty: the
// identity). Throws fbq::Error when the shape has no GPTQ layout, or for v1 when a zero point is 0.
GptqTensors to_gptq(const PackedWeights& weights, std::span<const int> input_order, GptqZeroFormat format);

// The inverse. Input columns are sorted (stably) by g_idx into contiguous groups; every group must have
// exactly group_size members. Throws fbq::Error naming `name` (the linear) and the offending tensor for any
// inconsistency: bits, sizes, g_idx out of range or uneven groups, a v1 zero field that means z = 2^b.
GptqLinearWeights from_gptq(const GptqTensors& tensors, GptqZeroFormat format, const std::string& name);

}  // namespace fbq
