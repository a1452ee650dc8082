#include "export/gguf_export.h"

#include <climits>
#include <cstring>

#include "io/dtype.h"
#include "io/gguf_writer.h"
#include "io/safetensors.h"
#include "model/model.h"
#include "pack/packed_linear.h"
#include "tokenizer/gguf_vocabulary.h"
#include "util/error.h"

namespace fbq {
namespace {

namespace fs = std::filesystem;

constexpr int kBlock = 32;  // weights per GGUF block, along the input dimension

// GGUF row h·hd + 2i + c holds HF row h·hd + c·hd/2 + i: llama.cpp's RoPE rotates adjacent pairs where
// Hugging Face's rotate_half pairs i with i + hd/2 (convert_hf_to_gguf.py's LlamaModel.permute).
std::vector<int> rope_row_order(int heads, int head_dim) {
  std::vector<int> order(static_cast<std::size_t>(heads) * head_dim);
  for (int h = 0; h < heads; ++h)
    for (int i = 0; i < head_dim / 2; ++i)
      for (int c = 0; c < 2; ++c) order[h * head_dim + 2 * i + c] = h * head_dim + c * head_dim / 2 + i;
  return order;
}

std::vector<int> identity_order(int rows) {
  std::vector<int> order(rows);
  for (int r = 0; r < rows; ++r) order[r] = r;
  return order;
}

std::size_t block_bytes(GgmlType type) {
  switch (type) {
    case GgmlType::Q4_0: return 18;  // f16 d, 16 nibble pairs
    case GgmlType::Q4_1: return 20;  // f16 d, f16 m, 16 nibble pairs
    case GgmlType::Q5_0: return 22;  // f16 d, 32 high bits, 16 nibble pairs
    case GgmlType::Q8_0: return 34;  // f16 d, 32 int8
    default: fail("internal: no block size for {}", ggml_type_name(type));
  }
}

// The cheapest block type that holds every weight of `q` exactly (see the header).
GgmlType exact_block_type(const QuantizedMatrix& q, const std::string& name) {
  if (q.spec.group_size % kBlock != 0)
    fail("{}: group size {} is not a multiple of llama.cpp's {}-weight blocks, so no GGUF type holds it exactly",
         name, q.spec.group_size, kBlock);
  int low = INT_MAX, high = INT_MIN;
  bool offsets_are_halves = q.spec.bits <= 4;  // Q4_1 stores the code itself and m = −s·z
  for (int r = 0; r < q.rows; ++r)
    for (int c = 0; c < q.cols; ++c) {
      const auto& p = q.group(r, c);
      const int centred = q.codes[static_cast<std::size_t>(r) * q.cols + c] - p.zero;
      low = std::min(low, centred);
      high = std::max(high, centred);
      if (c % q.spec.group_size == 0 && offsets_are_halves) {
        const float offset = -p.scale * static_cast<float>(p.zero);
        offsets_are_halves = half_to_float(float_to_half(offset)) == offset;
      }
    }
  if (low >= -8 && high <= 7) return GgmlType::Q4_0;
  if (offsets_are_halves) return GgmlType::Q4_1;
  if (low >= -16 && high <= 15) return GgmlType::Q5_0;
  if (low >= -128 && high <= 127) return GgmlType::Q8_0;
  fail("{}: 8-bit codes with q - z in [{}, {}] fit no GGUF block exactly (quantize with --sym for Q8_0)", name, low, high);
}

void put_half(std::uint8_t* out, float value) {
  const std::uint16_t bits = float_to_half(value);
  std::memcpy(out, &bits, 2);
}

// One block of 32 consecutive codes of one row, all in the group `p`, as llama.cpp's block_q* struct:
// qs[j] holds element j in its low nibble and element j + 16 in its high one.
void encode_block(GgmlType type, const std::uint8_t* codes, const GroupParams& p, std::uint8_t* out) {
  put_half(out, p.scale);
  const auto centred = [&](int j, int offset) { return static_cast<std::uint8_t>(codes[j] - p.zero + offset); };
  switch (type) {
    case GgmlType::Q4_0:
      for (int j = 0; j < 16; ++j) out[2 + j] = centred(j, 8) | centred(j + 16, 8) << 4;
      break;
    case GgmlType::Q4_1:
      put_half(out + 2, -p.scale * static_cast<float>(p.zero));
      for (int j = 0; j < 16; ++j) out[4 + j] = codes[j] | codes[j + 16] << 4;
      break;
    case GgmlType::Q5_0: {
      std::uint32_t high_bits = 0;
      for (int j = 0; j < kBlock; ++j) high_bits |= static_cast<std::uint32_t>(centred(j, 16) >> 4) << j;
      std::memcpy(out + 2, &high_bits, 4);  // little-endian, as the x86 ggml reads it
      for (int j = 0; j < 16; ++j) out[6 + j] = (centred(j, 16) & 0xF) | (centred(j + 16, 16) & 0xF) << 4;
      break;
    }
    case GgmlType::Q8_0:
      for (int j = 0; j < kBlock; ++j) out[2 + j] = centred(j, 0);  // two's complement int8
      break;
    default: fail("internal: cannot encode {}", ggml_type_name(type));
  }
}

std::vector<std::uint8_t> encode_matrix(GgmlType type, const QuantizedMatrix& q, const std::vector<int>& row_order) {
  const std::size_t per_block = block_bytes(type), blocks_per_row = q.cols / kBlock;
  std::vector<std::uint8_t> out(q.rows * blocks_per_row * per_block);
  for (int r = 0; r < q.rows; ++r) {
    const int source = row_order[r];
    for (std::size_t b = 0; b < blocks_per_row; ++b) {
      const int col = static_cast<int>(b) * kBlock;
      encode_block(type, &q.codes[static_cast<std::size_t>(source) * q.cols + col], q.group(source, col),
                   &out[(r * blocks_per_row + b) * per_block]);
    }
  }
  return out;
}

std::vector<std::uint8_t> halves_bytes(const std::vector<float>& values) {
  std::vector<std::uint8_t> out(values.size() * 2);
  for (std::size_t i = 0; i < values.size(); ++i) put_half(&out[2 * i], values[i]);
  return out;
}

std::vector<std::uint8_t> floats_bytes(const std::vector<float>& values) {
  std::vector<std::uint8_t> out(values.size() * 4);
  std::memcpy(out.data(), values.data(), out.size());
  return out;
}

// A float tensor as the checkpoint stores it (F32/F16/BF16 are GGUF types too), dims reversed to GGUF's order.
void add_stored_tensor(GgufWriter& file, const std::string& gguf_name, const TensorView& view) {
  GgmlType type;
  switch (view.dtype) {
    case DType::F32: type = GgmlType::F32; break;
    case DType::F16: type = GgmlType::F16; break;
    case DType::BF16: type = GgmlType::BF16; break;
    default: fail("{}: dtype {} has no GGUF counterpart", view.name, dtype_name(view.dtype));
  }
  std::vector<std::int64_t> dims(view.shape.rbegin(), view.shape.rend());
  file.add_tensor(gguf_name, type, std::move(dims), {view.data.begin(), view.data.end()});
}

// Refusals that need only the config (before any tensor is read).
void check_architecture(const ModelConfig& c, const fs::path& model) {
  const auto where = model.string();
  if (c.qkv_bias || c.o_bias) fail("{}: projection biases are not written to GGUF yet (llama architecture only)", where);
  if (c.sliding_window > 0 && c.sliding_window < c.max_seq_len)
    fail("{}: a sliding window of {} tokens has no place in llama.cpp's llama architecture", where, c.sliding_window);
  if (c.head_dim % 2 != 0) fail("{}: odd head_dim {}", where, c.head_dim);
}

void set_model_metadata(GgufWriter& file, const ModelConfig& c, const std::string& name) {
  const auto u32 = [](std::int64_t v) { return gguf_int(GgufType::UINT32, v); };
  const auto f32 = [](double v) { return gguf_float(GgufType::FLOAT32, v); };
  file.set("general.architecture", gguf_string("llama"));
  file.set("general.name", gguf_string(name));
  file.set("general.quantized_by", gguf_string("fbquant"));
  file.set("llama.context_length", u32(c.max_seq_len));
  file.set("llama.embedding_length", u32(c.dim));
  file.set("llama.block_count", u32(c.n_layers));
  file.set("llama.feed_forward_length", u32(c.hidden_dim));
  file.set("llama.attention.head_count", u32(c.n_heads));
  file.set("llama.attention.head_count_kv", u32(c.n_kv_heads));
  file.set("llama.attention.layer_norm_rms_epsilon", f32(c.rms_eps));
  file.set("llama.rope.freq_base", f32(c.rope_theta));
  file.set("llama.rope.dimension_count", u32(c.head_dim));
  file.set("llama.vocab_size", u32(c.vocab_size));
  if (c.head_dim * c.n_heads != c.dim) {
    file.set("llama.attention.key_length", u32(c.head_dim));
    file.set("llama.attention.value_length", u32(c.head_dim));
  }
  if (c.rope_scaling.type == RopeScaling::Type::linear) {
    file.set("llama.rope.scaling.type", gguf_string("linear"));
    file.set("llama.rope.scaling.factor", f32(c.rope_scaling.factor));
  }
}

// Llama-3 RoPE scaling as llama.cpp takes it: per-pair divisors of the frequency (`rope_freqs.weight`).
std::vector<float> rope_frequency_factors(const ModelConfig& c) {
  auto unscaled = c;
  unscaled.rope_scaling = {};
  const auto base = unscaled.rope_inverse_frequencies(), scaled = c.rope_inverse_frequencies();
  std::vector<float> factors(base.size());
  for (std::size_t i = 0; i < base.size(); ++i) factors[i] = base[i] / scaled[i];
  return factors;
}

struct Projection {
  const char* hf;    // our name under model.layers.N.
  const char* gguf;  // llama.cpp's under blk.N.
  std::unique_ptr<Linear> DecoderLayer::*member;
};
constexpr Projection kProjections[] = {
    {"self_attn.q_proj", "attn_q", &DecoderLayer::q_proj},   {"self_attn.k_proj", "attn_k", &DecoderLayer::k_proj},
    {"self_attn.v_proj", "attn_v", &DecoderLayer::v_proj},   {"self_attn.o_proj", "attn_output", &DecoderLayer::o_proj},
    {"mlp.gate_proj", "ffn_gate", &DecoderLayer::gate_proj}, {"mlp.up_proj", "ffn_up", &DecoderLayer::up_proj},
    {"mlp.down_proj", "ffn_down", &DecoderLayer::down_proj},
};

void check_output(const fs::path& path, bool overwrite, const char* what) {
  const auto parent = path.parent_path().empty() ? fs::path(".") : path.parent_path();
  if (!fs::is_directory(parent)) fail("{} {}: directory {} does not exist", what, path.string(), parent.string());
  if (fs::is_directory(path)) fail("{} {} is a directory", what, path.string());
  if (fs::exists(path) && !overwrite) fail("{} {} exists (pass --overwrite to replace it)", what, path.string());
}

fs::path branch_path(const GgufExportOptions& options) {
  if (options.branch_output) return *options.branch_output;
  auto path = options.output;
  return path.replace_extension(".lora.gguf");
}

class GgufExporter {
 public:
  GgufExporter(const GgufExportOptions& options, const CheckpointReader& reader)
      : options_(options), reader_(reader), c_(reader.config()), store_(TensorStore::open_directory(options.model)) {}

  GgufExportSummary run() {
    set_model_metadata(model_, c_, options_.model.filename().empty() ? options_.model.parent_path().filename().string()
                                                                     : options_.model.filename().string());
    const auto tokenizer = reader_.default_tokenizer();
    if (!tokenizer) fail("{}: no tokenizer beside the model (a GGUF carries its vocabulary)", options_.model.string());
    for (auto& [key, value] : gguf_vocabulary(*tokenizer)) model_.set(key, std::move(value));
    add_stored_tensor(model_, "token_embd.weight", store_.get("model.embed_tokens.weight"));
    for (int i = 0; i < c_.n_layers; ++i) add_layer(i);
    model_.add_tensor("output_norm.weight", GgmlType::F32, {c_.dim}, floats_bytes(reader_.final_norm()));
    add_head();
    if (c_.rope_scaling.type == RopeScaling::Type::llama3)
      model_.add_tensor("rope_freqs.weight", GgmlType::F32, {c_.head_dim / 2}, floats_bytes(rope_frequency_factors(c_)));
    summary_.source_bits_per_weight = source_bits_ / static_cast<double>(summary_.quantized_weights);
    write();
    return summary_;
  }

 private:
  void add_layer(int index) {
    const auto layer = reader_.layer(index, FloatWeights::as_stored);
    const auto blk = fmt::format("blk.{}.", index);
    model_.add_tensor(blk + "attn_norm.weight", GgmlType::F32, {c_.dim}, floats_bytes(layer.attn_norm));
    model_.add_tensor(blk + "ffn_norm.weight", GgmlType::F32, {c_.dim}, floats_bytes(layer.ffn_norm));
    for (const auto& projection : kProjections) {
      const auto name = fmt::format("model.layers.{}.{}", index, projection.hf);
      const auto* packed = dynamic_cast<const PackedLinear*>((layer.*projection.member).get());
      if (!packed) fail("{}: {} is not quantized, so there is nothing to export exactly", options_.model.string(), name);
      const auto& hf = std::string_view(projection.hf);
      const auto order = hf == "self_attn.q_proj"   ? rope_row_order(c_.n_heads, c_.head_dim)
                         : hf == "self_attn.k_proj" ? rope_row_order(c_.n_kv_heads, c_.head_dim)
                                                    : identity_order(packed->packed().rows);
      add_linear(blk + projection.gguf + ".weight", name, *packed, order);
    }
  }

  // `output.weight`: a packed head through the linears' exact blocks (its rows need no RoPE order), a float one
  // as stored; none when tied.
  void add_head() {
    if (store_.find("lm_head.qweight")) {
      const auto head = reader_.lm_head(FloatWeights::as_stored);
      const auto& packed = dynamic_cast<const PackedLinear&>(*head);
      add_linear("output.weight", "lm_head", packed, identity_order(packed.packed().rows));
    } else if (const auto* head = store_.find("lm_head.weight")) {
      add_stored_tensor(model_, "output.weight", *head);
    }
  }

  void add_linear(const std::string& gguf_name, const std::string& name, const PackedLinear& linear,
                  const std::vector<int>& order) {
    if (!linear.input_scale().empty())
      fail("{}: AWQ input scales (y = Q·(x / s)) cannot be folded exactly into llama.cpp's blocks; quantize "
           "without AWQ to export", name);
    const auto& packed = linear.packed();
    const auto matrix = unpack(packed);
    const auto type = exact_block_type(matrix, name);
    auto blocks = encode_matrix(type, matrix, order);
    const std::int64_t weights = static_cast<std::int64_t>(packed.rows) * packed.cols;
    summary_.linear_types[std::string(ggml_type_name(type))]++;
    summary_.quantized_weights += weights;
    summary_.quantized_bytes += blocks.size();
    source_bits_ += packed.spec.bits_per_weight() * static_cast<double>(weights);
    model_.add_tensor(gguf_name, type, {packed.cols, packed.rows}, std::move(blocks));
    if (linear.rank() > 0) add_branch(gguf_name, linear, order);
  }

  // lora_a: ne = [in, r] (row-major A, r × in); lora_b: ne = [r, out] (row-major B, out × r), rows in the
  // base tensor's order (convert_lora_to_gguf.py permutes B only).
  void add_branch(const std::string& gguf_name, const PackedLinear& linear, const std::vector<int>& order) {
    const int r = linear.rank(), rows = linear.packed().rows, cols = linear.packed().cols;
    const auto b = linear.lora_b();
    std::vector<float> b_ordered(b.size());
    for (int row = 0; row < rows; ++row)
      std::copy_n(&b[static_cast<std::size_t>(order[row]) * r], r, &b_ordered[static_cast<std::size_t>(row) * r]);
    branch_.add_tensor(gguf_name + ".lora_a", GgmlType::F16, {cols, r}, halves_bytes(linear.lora_a()));
    branch_.add_tensor(gguf_name + ".lora_b", GgmlType::F16, {r, rows}, halves_bytes(b_ordered));
    summary_.branch_tensors += 2;
    summary_.max_rank = std::max(summary_.max_rank, r);
  }

  void write() {
    if (summary_.branch_tensors > 0) {
      branch_.set("general.architecture", gguf_string("llama"));
      branch_.set("general.type", gguf_string("adapter"));
      branch_.set("adapter.type", gguf_string("lora"));
      // llama.cpp scales each tensor by alpha / rank, or by the user's scale alone when alpha is 0: with per-layer
      // ranks, 0 is the only alpha that gives every layer scale 1.
      branch_.set("adapter.lora.alpha", gguf_float(GgufType::FLOAT32, 0.0));
      summary_.branch_output = branch_path(options_);
      if (summary_.branch_output == options_.output) fail("--branch-out must differ from the output file");
      check_output(summary_.branch_output, options_.overwrite, "--branch-out");
      branch_.write(summary_.branch_output);
      summary_.branch_bytes = fs::file_size(summary_.branch_output);
    }
    try {
      model_.write(options_.output);
    } catch (...) {
      std::error_code ignored;
      if (!summary_.branch_output.empty()) fs::remove(summary_.branch_output, ignored);
      throw;
    }
    summary_.file_bytes = fs::file_size(options_.output);
  }

  const GgufExportOptions& options_;
  const CheckpointReader& reader_;
  const ModelConfig& c_;
  TensorStore store_;
  GgufWriter model_, branch_;
  GgufExportSummary summary_;
  double source_bits_ = 0;
};

}  // namespace

GgufExportSummary export_gguf(const GgufExportOptions& options) {
  if (!fs::is_directory(options.model))
    fail("{}: not a packed model directory (fbq quantize writes one)", options.model.string());
  check_output(options.output, options.overwrite, "output");
  const CheckpointReader reader(options.model);
  if (reader.format() != "fbquant-packed")
    fail("{}: a {} model is not quantized; export writes packed models (run fbq quantize first)", options.model.string(),
         reader.format());
  check_architecture(reader.config(), options.model);
  if (options.branch_output) check_output(*options.branch_output, options.overwrite, "--branch-out");
  return GgufExporter(options, reader).run();
}

}  // namespace fbq
