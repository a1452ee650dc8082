#include "io/llama2c.h"

#include <cstring>
#include <limits>

#include "util/error.h"

namespace fbq {

Llama2cCheckpoint read_llama2c_checkpoint(const std::filesystem::path& path) {
  auto file = std::make_shared<const MappedFile>(path);
  const auto bytes = file->bytes();
  constexpr std::size_t kHeaderBytes = 7 * sizeof(std::int32_t);
  if (bytes.size() < kHeaderBytes) fail("{}: too short for a llama2.c header ({} bytes)", path.string(), bytes.size());
  std::int32_t header[7];
  std::memcpy(header, bytes.data(), kHeaderBytes);

  ModelConfig c;
  c.dim = header[0];
  c.hidden_dim = header[1];
  c.n_layers = header[2];
  c.n_heads = header[3];
  c.n_kv_heads = header[4];
  // A negative vocab size is llama2.c's marker for an untied classifier stored at the end.
  if (header[5] == std::numeric_limits<std::int32_t>::min()) fail("{}: vocab size {} out of range", path.string(), header[5]);
  c.tie_embeddings = header[5] > 0;
  c.vocab_size = header[5] > 0 ? header[5] : -header[5];
  c.max_seq_len = header[6];
  c.head_dim = c.n_heads > 0 ? c.dim / c.n_heads : 0;
  c.rms_eps = 1e-5f;
  c.rope_theta = 10000.0f;
  c.validate(path.string());
  if (c.head_dim * c.n_heads != c.dim) fail("{}: dim {} is not divisible by {} heads", path.string(), c.dim, c.n_heads);

  Llama2cCheckpoint checkpoint{c, TensorStore(path)};
  std::uint64_t offset = kHeaderBytes;
  const auto take = [&](const std::string& name, std::vector<std::int64_t> shape) {
    std::uint64_t count = 1;
    for (const auto dim : shape) count *= static_cast<std::uint64_t>(dim);
    const std::uint64_t size = count * sizeof(float);
    if (offset + size > bytes.size())
      fail("{}: file ends at byte {} but tensor '{}' needs bytes up to {} (truncated?)", path.string(), bytes.size(),
           name, offset + size);
    checkpoint.tensors.add(file, TensorView{name, DType::F32, std::move(shape), bytes.subspan(offset, size), path});
    offset += size;
  };
  const std::int64_t dim = c.dim, hidden = c.hidden_dim, kv_dim = c.kv_dim(), head_dim = c.head_dim;
  const auto per_layer = [&](const std::string& suffix, std::vector<std::int64_t> shape) {
    for (int l = 0; l < c.n_layers; ++l) take(fmt::format("model.layers.{}.{}", l, suffix), shape);
  };

  take("model.embed_tokens.weight", {c.vocab_size, dim});
  per_layer("input_layernorm.weight", {dim});
  per_layer("self_attn.q_proj.weight", {dim, dim});
  per_layer("self_attn.k_proj.weight", {kv_dim, dim});
  per_layer("self_attn.v_proj.weight", {kv_dim, dim});
  per_layer("self_attn.o_proj.weight", {dim, dim});
  per_layer("post_attention_layernorm.weight", {dim});
  per_layer("mlp.gate_proj.weight", {hidden, dim});
  per_layer("mlp.down_proj.weight", {dim, hidden});
  per_layer("mlp.up_proj.weight", {hidden, dim});
  take("model.norm.weight", {dim});
  // Legacy precomputed RoPE tables (real and imaginary parts); the runtime computes its own.
  const std::uint64_t rope_tables = 2ull * c.max_seq_len * (head_dim / 2) * sizeof(float);
  if (offset + rope_tables > bytes.size()) fail("{}: truncated inside the RoPE tables", path.string());
  offset += rope_tables;
  if (!c.tie_embeddings) take("lm_head.weight", {c.vocab_size, dim});
  if (offset != bytes.size())
    fail("{}: {} unexpected trailing bytes after the last tensor (not a llama2.c v0 checkpoint?)", path.string(),
         bytes.size() - offset);
  return checkpoint;
}

}  // namespace fbq
