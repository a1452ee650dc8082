#include "pack/gptq_layout.h"

#include <fmt/core.h>

#include <algorithm>

#include "pack/bit_stream.h"
#include "util/error.h"

namespace fbq {

const char* checkpoint_format_name(GptqZeroFormat format) { return format == GptqZeroFormat::v1 ? "gptq" : "gptq_v2"; }

GptqZeroFormat parse_checkpoint_format(const std::string& name) {
  if (name == "gptq") return GptqZeroFormat::v1;
  if (name == "gptq_v2") return GptqZeroFormat::v2;
  fail("checkpoint_format '{}' is not gptq or gptq_v2", name);
}

std::string gptq_shape_problem(int rows, int cols, int bits) {
  const auto multiple_of_32 = [&](int features) { return static_cast<std::int64_t>(features) * bits % 32 == 0; };
  if (!multiple_of_32(cols))
    return fmt::format("{} input features at {} bits do not fill whole qweight words (K·b must be a multiple of 32)",
                       cols, bits);
  if (!multiple_of_32(rows))
    return fmt::format("{} output features at {} bits do not fill whole qzeros words (N·b must be a multiple of 32)",
                       rows, bits);
  return {};
}

std::int64_t count_zero_points(const PackedWeights& weights, int zero) {
  std::int64_t count = 0;
  const std::int64_t fields = static_cast<std::int64_t>(weights.rows) * weights.groups_per_row();
  for (std::int64_t i = 0; i < fields; ++i)
    count += read_bits(weights.zeros.data(), i, weights.spec.bits) == static_cast<std::uint32_t>(zero);
  return count;
}

void validate_gptq_dims(int out_features, int in_features, int bits, int group_size, const std::string& name) {
  if (bits != 2 && bits != 3 && bits != 4 && bits != 8) fail("{}: bits {} is not a GPTQ width (2, 3, 4 or 8)", name, bits);
  if (in_features <= 0 || out_features <= 0) fail("{}: {} x {} features", name, out_features, in_features);
  if (group_size <= 0 || in_features % group_size != 0)
    fail("{}: group size {} does not divide the {} input features", name, group_size, in_features);
  if (const auto problem = gptq_shape_problem(out_features, in_features, bits); !problem.empty())
    fail("{}.qweight: {}", name, problem);
}

namespace {

int zero_offset(GptqZeroFormat format) { return format == GptqZeroFormat::v1 ? 1 : 0; }

// One output's code stream in GPTQ column order (input column k at field k) from its packed row, where
// field j holds input column order[j].
void reorder_fields(const std::uint32_t* packed_row, std::span<const int> order, int bits, std::uint32_t* column) {
  for (std::size_t j = 0; j < order.size(); ++j)
    write_bits(column, order[j], bits, read_bits(packed_row, static_cast<std::int64_t>(j), bits));
}

}  // namespace

GptqTensors to_gptq(const PackedWeights& weights, std::span<const int> input_order, GptqZeroFormat format) {
  weights.validate();
  const int n_out = weights.rows, k_in = weights.cols, bits = weights.spec.bits, g = weights.spec.group_size;
  if (const auto problem = gptq_shape_problem(n_out, k_in, bits); !problem.empty()) fail("{}", problem);
  if (!input_order.empty()) validate_input_order(input_order, k_in);
  GptqTensors t{k_in, n_out, bits, g, {}, {}, {}, {}};
  const int groups = t.groups();
  const std::int64_t column_words = t.qweight_rows(), zero_words = t.qzeros_cols();
  t.qweight.assign(static_cast<std::size_t>(column_words) * n_out, 0u);
  t.qzeros.assign(static_cast<std::size_t>(groups) * zero_words, 0u);
  t.scales.resize(static_cast<std::size_t>(groups) * n_out);
  t.g_idx.resize(k_in);
  for (int j = 0; j < k_in; ++j) t.g_idx[input_order.empty() ? j : input_order[j]] = j / g;

  // Both layouts stream one output's codes along K, so without a reorder a packed row is a qweight column.
  std::vector<std::uint32_t> column(column_words);
  for (int n = 0; n < n_out; ++n) {
    const std::uint32_t* row = &weights.codes[static_cast<std::size_t>(n) * weights.code_words_per_row()];
    if (input_order.empty()) {
      std::copy(row, row + column_words, column.begin());
    } else {
      std::fill(column.begin(), column.end(), 0u);
      reorder_fields(row, input_order, bits, column.data());
    }
    for (std::int64_t w = 0; w < column_words; ++w) t.qweight[static_cast<std::size_t>(w) * n_out + n] = column[w];
  }

  const auto offset = static_cast<std::uint32_t>(zero_offset(format));
  for (int n = 0; n < n_out; ++n)
    for (int group = 0; group < groups; ++group) {
      const std::int64_t index = static_cast<std::int64_t>(n) * groups + group;
      const std::uint32_t zero = read_bits(weights.zeros.data(), index, bits);
      if (zero < offset)
        fail("zero point 0 at output {}, group {}: GPTQ v1 stores z − 1 and cannot hold it", n, group);
      write_bits(&t.qzeros[static_cast<std::size_t>(group) * zero_words], n, bits, zero - offset);
      t.scales[static_cast<std::size_t>(group) * n_out + n] = weights.scales[index];
    }
  return t;
}

namespace {

void check_gptq_sizes(const GptqTensors& t, const std::string& name) {
  validate_gptq_dims(t.out_features, t.in_features, t.bits, t.group_size, name);
  const auto expect = [&](std::size_t size, std::int64_t rows, std::int64_t cols, const char* tensor) {
    if (size != static_cast<std::size_t>(rows * cols))
      fail("{}.{} has {} values, expected [{}, {}]", name, tensor, size, rows, cols);
  };
  expect(t.qweight.size(), t.qweight_rows(), t.out_features, "qweight");
  expect(t.qzeros.size(), t.groups(), t.qzeros_cols(), "qzeros");
  expect(t.scales.size(), t.groups(), t.out_features, "scales");
  expect(t.g_idx.size(), 1, t.in_features, "g_idx");
}

// The stable sort of the input columns by group: contiguous groups, each in ascending column order. Empty
// when that is the identity (g_idx = k // g).
std::vector<int> order_by_group(const GptqTensors& t, const std::string& name) {
  const int groups = t.groups();
  std::vector<int> next(groups, 0);
  for (int k = 0; k < t.in_features; ++k) {
    const int group = t.g_idx[k];
    if (group < 0 || group >= groups) fail("{}.g_idx[{}] = {} is outside [0, {})", name, k, group, groups);
    ++next[group];
  }
  for (int group = 0; group < groups; ++group)
    if (next[group] != t.group_size)
      fail("{}.g_idx: group {} has {} input columns, expected {} (uneven groups cannot be held)", name, group,
           next[group], t.group_size);
  for (int group = 0; group < groups; ++group) next[group] = group * t.group_size;
  std::vector<int> order(t.in_features);
  for (int k = 0; k < t.in_features; ++k) order[next[t.g_idx[k]]++] = k;
  bool identity = true;
  for (int j = 0; j < t.in_features && identity; ++j) identity = order[j] == j;
  if (identity) order.clear();
  return order;
}

}  // namespace

GptqLinearWeights from_gptq(const GptqTensors& t, GptqZeroFormat format, const std::string& name) {
  check_gptq_sizes(t, name);
  GptqLinearWeights out{{}, order_by_group(t, name)};
  PackedWeights& w = out.weights;
  w.rows = t.out_features;
  w.cols = t.in_features;
  w.spec = {t.bits, t.group_size};
  const int n_out = w.rows, bits = t.bits, groups = t.groups();
  const std::int64_t column_words = t.qweight_rows(), zero_words = t.qzeros_cols();
  w.codes.assign(static_cast<std::size_t>(n_out) * w.code_words_per_row(), 0u);
  w.zeros.assign(static_cast<std::size_t>(w.zero_words()), 0u);
  w.scales.resize(static_cast<std::size_t>(n_out) * groups);

  std::vector<std::uint32_t> column(column_words);
  for (int n = 0; n < n_out; ++n) {
    for (std::int64_t word = 0; word < column_words; ++word) column[word] = t.qweight[static_cast<std::size_t>(word) * n_out + n];
    std::uint32_t* row = &w.codes[static_cast<std::size_t>(n) * w.code_words_per_row()];
    if (out.input_order.empty())
      std::copy(column.begin(), column.end(), row);
    else
      for (int j = 0; j < w.cols; ++j) write_bits(row, j, bits, read_bits(column.data(), out.input_order[j], bits));
  }

  const auto offset = static_cast<std::uint32_t>(zero_offset(format));
  std::int64_t unrepresentable = 0;
  for (int group = 0; group < groups; ++group)
    for (int n = 0; n < n_out; ++n) {
      const std::uint32_t zero = read_bits(&t.qzeros[static_cast<std::size_t>(group) * zero_words], n, bits) + offset;
      unrepresentable += zero > static_cast<std::uint32_t>(w.spec.levels());
      const std::int64_t index = static_cast<std::int64_t>(n) * groups + group;
      write_bits(w.zeros.data(), index, bits, zero);
      w.scales[index] = t.scales[static_cast<std::size_t>(group) * n_out + n];
    }
  if (unrepresentable > 0)
    fail("{}.qzeros: {} zero fields are 2^{} − 1, which GPTQ v1 reads as z = 2^{} (outside {} bits; such files come "
         "from packing z = 0 into v1)", name, unrepresentable, bits, bits, bits);
  return out;
}

}  // namespace fbq
