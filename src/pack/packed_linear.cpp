#include "pack/packed_linear.h"

#include <cblas.h>
#include <fmt/core.h>

#include <algorithm>

#include "io/dtype.h"
#include "util/error.h"

namespace fbq {

void write_bits(std::uint32_t* words, std::int64_t index, int bits, std::uint32_t value) {
  const std::int64_t bit = index * bits;
  const std::int64_t word = bit >> 5;
  const int shift = static_cast<int>(bit & 31);
  const std::uint32_t mask = (1u << bits) - 1u;
  words[word] = (words[word] & ~(mask << shift)) | ((value & mask) << shift);
  if (shift + bits > 32) {
    const int spilled = shift + bits - 32;
    const std::uint32_t high_mask = (1u << spilled) - 1u;
    words[word + 1] = (words[word + 1] & ~high_mask) | ((value & mask) >> (bits - spilled));
  }
}

void PackedWeights::validate() const {
  spec.validate(cols);
  if (rows <= 0) fail("packed weights: {} rows", rows);
  if (codes.size() != static_cast<std::size_t>(rows) * code_words_per_row() ||
      zeros.size() != static_cast<std::size_t>(zero_words()) ||
      scales.size() != static_cast<std::size_t>(rows) * groups_per_row())
    fail("packed weights {}x{} at {} bits, group {}: tensor sizes do not match", rows, cols, spec.bits, spec.group_size);
}

PackedWeights pack(const QuantizedMatrix& matrix) {
  PackedWeights packed;
  packed.rows = matrix.rows;
  packed.cols = matrix.cols;
  packed.spec = matrix.spec;
  const int groups = packed.groups_per_row();
  packed.codes.assign(static_cast<std::size_t>(packed.rows) * packed.code_words_per_row(), 0u);
  packed.zeros.assign(static_cast<std::size_t>(packed.zero_words()), 0u);
  packed.scales.resize(static_cast<std::size_t>(packed.rows) * groups);
  for (int r = 0; r < packed.rows; ++r) {
    std::uint32_t* code_row = &packed.codes[static_cast<std::size_t>(r) * packed.code_words_per_row()];
    for (int c = 0; c < packed.cols; ++c)
      write_bits(code_row, c, matrix.spec.bits, matrix.codes[static_cast<std::size_t>(r) * matrix.cols + c]);
    for (int g = 0; g < groups; ++g) {
      const auto& params = matrix.params[static_cast<std::size_t>(r) * groups + g];
      write_bits(packed.zeros.data(), static_cast<std::int64_t>(r) * groups + g, matrix.spec.bits,
                 static_cast<std::uint32_t>(params.zero));
      packed.scales[static_cast<std::size_t>(r) * groups + g] = float_to_half(params.scale);
    }
  }
  return packed;
}

QuantizedMatrix unpack(const PackedWeights& packed) {
  packed.validate();
  const int groups = packed.groups_per_row();
  QuantizedMatrix matrix{packed.rows, packed.cols, packed.spec,
                         std::vector<std::uint8_t>(static_cast<std::size_t>(packed.rows) * packed.cols),
                         std::vector<GroupParams>(static_cast<std::size_t>(packed.rows) * groups)};
  for (int r = 0; r < packed.rows; ++r) {
    const std::uint32_t* code_row = &packed.codes[static_cast<std::size_t>(r) * packed.code_words_per_row()];
    for (int c = 0; c < packed.cols; ++c)
      matrix.codes[static_cast<std::size_t>(r) * packed.cols + c] =
          static_cast<std::uint8_t>(read_bits(code_row, c, packed.spec.bits));
    for (int g = 0; g < groups; ++g) {
      const std::int64_t index = static_cast<std::int64_t>(r) * groups + g;
      matrix.params[index] = {half_to_float(packed.scales[index]),
                              static_cast<int>(read_bits(packed.zeros.data(), index, packed.spec.bits))};
    }
  }
  return matrix;
}

void validate_input_order(std::span<const int> order, int cols) {
  std::vector<bool> seen(cols, false);
  if (order.size() != static_cast<std::size_t>(cols)) fail("input order has {} entries for {} columns", order.size(), cols);
  for (const int column : order) {
    if (column < 0 || column >= cols || seen[column]) fail("input order is not a permutation of {} columns", cols);
    seen[column] = true;
  }
}

PackedLinear::PackedLinear(PackedWeights weights, std::vector<float> input_scale, int rank, std::vector<float> lora_a,
                           std::vector<float> lora_b, std::vector<int> input_order)
    : Linear(weights.rows, weights.cols),
      weights_(std::move(weights)),
      input_scale_(std::move(input_scale)),
      input_order_(std::move(input_order)),
      rank_(rank),
      lora_a_(lora_a.size()),
      lora_b_(lora_b.size()) {
  // Branch factors are f16 values (QuantizedLayer, the file), so narrowing them is exact.
  std::transform(lora_a.begin(), lora_a.end(), lora_a_.begin(), float_to_half);
  std::transform(lora_b.begin(), lora_b.end(), lora_b_.begin(), float_to_half);
  weights_.validate();
  const std::size_t m = weights_.rows, n = weights_.cols;
  if (!input_scale_.empty() && input_scale_.size() != n)
    fail("packed linear {}x{}: input scale has {} values", m, n, input_scale_.size());
  if (rank_ < 0 || lora_a_.size() != rank_ * n || lora_b_.size() != m * rank_)
    fail("packed linear {}x{}: branch of rank {} has A {} and B {} values", m, n, rank_, lora_a_.size(),
         lora_b_.size());
  if (!input_order_.empty()) validate_input_order(input_order_, weights_.cols);
  scale_values_.resize(weights_.scales.size());
  std::transform(weights_.scales.begin(), weights_.scales.end(), scale_values_.begin(), half_to_float);
}

namespace {
std::vector<float> widen(const std::vector<std::uint16_t>& halves) {
  std::vector<float> out(halves.size());
  std::transform(halves.begin(), halves.end(), out.begin(), half_to_float);
  return out;
}
}  // namespace

std::vector<float> PackedLinear::lora_a() const { return widen(lora_a_); }
std::vector<float> PackedLinear::lora_b() const { return widen(lora_b_); }

PackedLinear PackedLinear::from_layer(const QuantizedLayer& layer) {
  return PackedLinear(pack(layer.weights), layer.input_scale, layer.rank, layer.lora_a, layer.lora_b);
}

double PackedLinear::bits_per_weight() const {
  const double weights = static_cast<double>(weights_.rows) * weights_.cols;
  const double bits = 32.0 * (weights_.codes.size() + weights_.zeros.size()) + 16.0 * weights_.scales.size() +
                      16.0 * (input_scale_.size() + lora_a_.size() + lora_b_.size());
  return bits / weights;
}

std::size_t PackedLinear::weight_bytes() const {
  return 4 * (weights_.codes.size() + weights_.zeros.size()) +
         2 * (weights_.scales.size() + input_scale_.size() + lora_a_.size() + lora_b_.size());
}

std::string PackedLinear::describe() const {
  return fmt::format("int{} g{}{}{}{}", weights_.spec.bits, weights_.spec.group_size,
                     rank_ > 0 ? fmt::format(" + rank-{} branch", rank_) : "", input_scale_.empty() ? "" : " + input scale",
                     input_order_.empty() ? "" : " + input order");
}

namespace {

// Streams `count` consecutive `bits`-wide fields from the start of `words` (one row's codes).
void unpack_fields(const std::uint32_t* words, int count, int bits, std::uint8_t* out) {
  const std::uint32_t mask = (1u << bits) - 1u;
  std::uint64_t buffer = 0;
  int available = 0;
  for (int i = 0; i < count; ++i) {
    if (available < bits) {
      buffer |= static_cast<std::uint64_t>(*words++) << available;
      available += 32;
    }
    out[i] = static_cast<std::uint8_t>(buffer & mask);
    buffer >>= bits;
    available -= bits;
  }
}

}  // namespace

void PackedLinear::dequantize_rows(int first_row, int count, float* out) const {
  const int n = weights_.cols, bits = weights_.spec.bits, g = weights_.spec.group_size, groups = weights_.groups_per_row();
  std::vector<std::uint8_t> codes(n);
  for (int i = 0; i < count; ++i) {
    const int r = first_row + i;
    unpack_fields(&weights_.codes[static_cast<std::size_t>(r) * weights_.code_words_per_row()], n, bits, codes.data());
    float* row = out + static_cast<std::size_t>(i) * n;
    for (int group = 0; group < groups; ++group) {
      const std::int64_t index = static_cast<std::int64_t>(r) * groups + group;
      const float scale = scale_values_[index];
      const int zero = static_cast<int>(read_bits(weights_.zeros.data(), index, bits));
      for (int c = group * g; c < (group + 1) * g; ++c) row[c] = scale * static_cast<float>(codes[c] - zero);
    }
  }
}

namespace {

// x'[t, j] = x[t, order[j]]: the input in the packed column order.
std::vector<float> gather_columns(const float* x, int n_tokens, const std::vector<int>& order) {
  const std::size_t n = order.size();
  std::vector<float> gathered(n * n_tokens);
  for (int t = 0; t < n_tokens; ++t)
    for (std::size_t j = 0; j < n; ++j) gathered[t * n + j] = x[t * n + order[j]];
  return gathered;
}

}  // namespace

void PackedLinear::forward_reference(const float* x, float* y) const {
  const int m = weights_.rows, n = weights_.cols;
  const std::vector<float> ordered = input_order_.empty() ? std::vector<float>(x, x + n) : gather_columns(x, 1, input_order_);
  x = ordered.data();  // the branch's A is in the same column order
  std::vector<float> scaled = ordered, branch(rank_);
  const auto a = lora_a(), b = lora_b();
  if (!input_scale_.empty())
    for (int j = 0; j < n; ++j) scaled[j] /= input_scale_[j];
  for (int k = 0; k < rank_; ++k) {  // t = A·x first, so each row adds B[row,:]·t before its store
    float sum = 0.0f;
    for (int j = 0; j < n; ++j) sum += a[static_cast<std::size_t>(k) * n + j] * x[j];
    branch[k] = sum;
  }
  constexpr int kChunk = 16;
#pragma omp parallel
  {
    std::vector<float> rows(static_cast<std::size_t>(kChunk) * n);
#pragma omp for schedule(static)
    for (int first = 0; first < m; first += kChunk) {
      const int count = std::min(kChunk, m - first);
      dequantize_rows(first, count, rows.data());
      for (int i = 0; i < count; ++i) {
        const float* row = &rows[static_cast<std::size_t>(i) * n];
        float sum = 0.0f;
        for (int j = 0; j < n; ++j) sum += row[j] * scaled[j];
        for (int k = 0; k < rank_; ++k) sum += b[static_cast<std::size_t>(first + i) * rank_ + k] * branch[k];
        y[first + i] = sum;
      }
    }
  }
}

PackedKernelView PackedLinear::kernel_view() const {
  return {weights_.rows,
          weights_.cols,
          weights_.spec.bits,
          weights_.spec.group_size,
          weights_.codes.data(),
          weights_.code_words_per_row(),
          weights_.zeros.data(),
          weights_.scales.data(),
          input_scale_.empty() ? nullptr : input_scale_.data(),
          rank_,
          lora_a_.data(),
          lora_b_.data()};
}

const Int8Tiles* PackedLinear::int8_tiles() const {
  std::call_once(int8_->built, [&] {
    if (int8_tiles_support(kernel_view())) int8_->tiles = std::make_unique<Int8Tiles>(repack_int8_tiles(kernel_view()));
  });
  return int8_->tiles.get();
}

void PackedLinear::forward(const float* x, int n_tokens, float* y) const {
  if (input_order_.empty()) return forward_in_order(x, n_tokens, y);
  forward_in_order(gather_columns(x, n_tokens, input_order_).data(), n_tokens, y);
}

void PackedLinear::forward_in_order(const float* x, int n_tokens, float* y) const {
  const int m = weights_.rows, n = weights_.cols;
  const Activations mode = activations();
  const bool decode = n_tokens <= kKernelMaxBatch;
  if (mode == Activations::int8 || (decode && mode == Activations::int8_decode))
    if (const Int8Tiles* tiles = int8_tiles()) {  // the integer tiles, 8 tokens per pass (compute-bound beyond)
      gemv_int8(*tiles, x, n_tokens, y);
      return;
    }
  if (decode) {  // memory-bound: stream the packed weights once (fused kernel)
    gemv_packed(kernel_view(), x, n_tokens, y);
    return;
  }
  // Prefill: dequantize tiles of rows (in parallel) and multiply each with one GEMM. Tiles of ~1M weights
  // amortise the GEMM call without ever holding an f32 copy of a large matrix.
  std::vector<float> scaled(x, x + static_cast<std::size_t>(n_tokens) * n);
  if (!input_scale_.empty())
    for (int t = 0; t < n_tokens; ++t)
      for (int j = 0; j < n; ++j) scaled[static_cast<std::size_t>(t) * n + j] /= input_scale_[j];
  const int tile_rows = std::clamp((1 << 20) / n, 16, m);
  std::vector<float> tile(static_cast<std::size_t>(tile_rows) * n);
  for (int r = 0; r < m; r += tile_rows) {
    const int rows = std::min(tile_rows, m - r);
#pragma omp parallel for schedule(static)
    for (int i = 0; i < rows; ++i) dequantize_rows(r + i, 1, tile.data() + static_cast<std::size_t>(i) * n);
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, n_tokens, rows, n, 1.0f, scaled.data(), n, tile.data(), n,
                0.0f, y + r, m);
  }
  if (rank_ > 0) {  // branch as two thin GEMMs: T = X·Aᵀ (tokens × r), Y += T·Bᵀ
    const auto a = lora_a(), b = lora_b();
    std::vector<float> branch(static_cast<std::size_t>(n_tokens) * rank_);
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, n_tokens, rank_, n, 1.0f, x, n, a.data(), n, 0.0f,
                branch.data(), rank_);
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, n_tokens, m, rank_, 1.0f, branch.data(), rank_, b.data(),
                rank_, 1.0f, y, m);
  }
}

}  // namespace fbq
