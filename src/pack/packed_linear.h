#pragma once
// A linear layer holding packed b-bit weights (DESIGN §4 layout, see docs/FORMAT.md) with an optional
// per-input-channel divisor (AWQ) and an optional low-rank branch: y = Q(W)·(x / s) + B·(A·x). An optional
// input order (GPTQ act-order checkpoints whose groups are not runs of consecutive columns) gathers
// x'[j] = x[order[j]] first; W's columns, s and A are then in that order.
//
// Packed layout: each output row's codes as a little-endian bit stream of `bits`-bit fields in uint32
// words (3-bit codes straddle words), code_words_per_row() words per row; the zero points of all groups
// (row-major, rows × groups) as one such bit stream; scales float16, one per group.
#include <cstdint>
#include <memory>
#include <mutex>
#include <span>
#include <vector>

#include "kernels/gemv_int8.h"
#include "kernels/gemv_packed.h"
#include "model/linear.h"
#include "pack/bit_stream.h"
#include "quant/method.h"

namespace fbq {

struct PackedWeights {
  int rows = 0, cols = 0;
  QuantSpec spec;
  std::vector<std::uint32_t> codes;  // rows × code_words_per_row()
  std::vector<std::uint32_t> zeros;  // zero_words(): one stream over rows × groups
  std::vector<std::uint16_t> scales;  // rows × groups, float16 bits

  int groups_per_row() const { return cols / spec.group_size; }
  int code_words_per_row() const { return (cols * spec.bits + 31) / 32; }
  std::int64_t zero_words() const {
    return (static_cast<std::int64_t>(rows) * groups_per_row() * spec.bits + 31) / 32;
  }
  void validate() const;  // sizes consistent with rows/cols/spec; throws fbq::Error
};

PackedWeights pack(const QuantizedMatrix& matrix);
QuantizedMatrix unpack(const PackedWeights& packed);

// Throws fbq::Error unless `order` is a permutation of 0 … cols−1.
void validate_input_order(std::span<const int> order, int cols);


class PackedLinear final : public Linear {
 public:
  PackedLinear(PackedWeights weights, std::vector<float> input_scale, int rank, std::vector<float> lora_a,
               std::vector<float> lora_b, std::vector<int> input_order = {});
  static PackedLinear from_layer(const QuantizedLayer& layer);

  void forward(const float* x, int n_tokens, float* y) const override;
  std::size_t weight_bytes() const override;
  std::string describe() const override;

  // Scalar reference: one token, dequantize on the fly (the baseline fast kernels are tested against).
  void forward_reference(const float* x, float* y) const;
  // This layer's tensors for the fused decode kernel (forward() uses it for up to kKernelMaxBatch tokens, on
  // the gathered input when the layer has an input order).
  PackedKernelView kernel_view() const;
  // The integer path's repacked copy, built on first use (decode with int8 activations); null where the
  // tiles cannot hold this layer (then decode takes the float path).
  const Int8Tiles* int8_tiles() const;

  const PackedWeights& packed() const { return weights_; }
  const std::vector<float>& input_scale() const { return input_scale_; }
  const std::vector<int>& input_order() const { return input_order_; }  // empty = the identity
  int rank() const { return rank_; }
  std::vector<float> lora_a() const;  // widened from the f16 values held
  std::vector<float> lora_b() const;
  double bits_per_weight() const;  // codes + scales + zeros + branch (+ input scales), per weight

 private:
  void dequantize_rows(int first_row, int count, float* out) const;
  void forward_in_order(const float* x, int n_tokens, float* y) const;  // x already in the packed column order

  PackedWeights weights_;
  std::vector<float> scale_values_;  // float copies of the f16 scales
  std::vector<float> input_scale_;   // empty = none
  std::vector<int> input_order_;     // empty = none
  int rank_ = 0;
  // r×n and m×r as f16 bits, as in the file: half the bytes the decode kernel streams per token.
  std::vector<std::uint16_t> lora_a_, lora_b_;
  // Shared by copies (the tiles own their data and the weights never change after construction).
  struct TilesCache {
    std::once_flag built;
    std::unique_ptr<Int8Tiles> tiles;
  };
  std::shared_ptr<TilesCache> int8_ = std::make_shared<TilesCache>();
};

}  // namespace fbq
