#!/usr/bin/python3
"""Test oracle for loading Hugging Face checkpoints of several architectures (llama, qwen2, mistral).

For each variant it writes a tiny random Hugging Face-style model directory and the logits a plain
float64 PyTorch forward gives for a fixed token sequence:

  OUT_DIR/variants.json            [{"name": ..., "tokens": 24, "vocab": ...}, ...]
  OUT_DIR/<variant>/config.json    the keys transformers writes for that model_type
  OUT_DIR/<variant>/model.safetensors
                                   HF tensor names, stored in the variant's dtype (BF16 / F16 / F32),
                                   written by hand (no safetensors package needed)
  OUT_DIR/<variant>/tokens.i32     24 token ids, raw little-endian int32
  OUT_DIR/<variant>/logits.f32     [24 x vocab] logits of every position, raw little-endian float32

The forward uses the weights exactly as stored (bf16 / f16 decoded back to float64), so rounding of
the stored weights is no part of the difference a C++ runtime shows against logits.f32. It is written
independently of the C++ code, following HF semantics: RMSNorm, rotate-half RoPE (with `linear` and
`llama3` scaling as in transformers' modeling_rope_utils), GQA, causal (optionally sliding-window)
softmax attention, SiLU-gated MLP, tied or untied lm_head.

Run with Debian's interpreter (it has torch and numpy):

  /usr/bin/python3 tests/oracle/arch_oracle.py OUT_DIR

Deterministic: every variant has its own numpy Generator with a fixed seed. Prints nothing on
success; exit status 1 with a message on failure.
"""
import json
import math
import os
import struct
import sys

try:
    import numpy as np
    import torch
except ImportError as err:  # pragma: no cover
    sys.stderr.write("arch_oracle: needs numpy and torch (run with /usr/bin/python3): %s\n" % err)
    sys.exit(1)

TOKENS = 24
TRANSFORMERS_VERSION = "4.44.2"

BASE = dict(hidden=64, inter=160, layers=2, vocab=97, max_pos=64, eps=1e-5, theta=10000.0)

VARIANTS = [
    dict(name="llama2", seed=1001, model_type="llama", heads=4, kv_heads=2, tied=False, dtype="BF16",
         rope_scaling=None),
    # original_max_position_embeddings is 64, not Llama 3's 8192 scaled down to 32: with head_dim 16 and
    # theta 500000 the wavelengths are 6.3, 32.4, 167, ...; old_len 32 (low_wavelen 32, high_wavelen 8)
    # would leave no frequency in the smoothed band, old_len 64 (bands 16..64) hits all three regimes.
    dict(name="llama3", seed=1002, model_type="llama", heads=4, kv_heads=1, tied=True, dtype="BF16",
         theta=500000.0,
         rope_scaling={"factor": 8.0, "high_freq_factor": 4.0, "low_freq_factor": 1.0,
                       "original_max_position_embeddings": 64, "rope_type": "llama3"}),
    dict(name="llama-linear", seed=1003, model_type="llama", heads=4, kv_heads=4, tied=False, dtype="F16",
         rope_scaling={"factor": 4.0, "type": "linear"}),
    # vocab 512: the size of stories260K's tok512, so the C++ tests can quantize this one on real text.
    dict(name="qwen2", seed=1004, model_type="qwen2", heads=4, kv_heads=2, tied=True, dtype="BF16",
         theta=1000000.0, eps=1e-6, qkv_bias=True, rope_scaling=None, vocab=512),
    dict(name="mistral", seed=1005, model_type="mistral", heads=4, kv_heads=2, head_dim=24, tied=False,
         dtype="F32", window=24),
    dict(name="llama-bias", seed=1006, model_type="llama", heads=2, kv_heads=2, tied=False, dtype="F32",
         attention_bias=True, rope_scaling=None),
]

TORCH_DTYPE = {"BF16": "bfloat16", "F16": "float16", "F32": "float32"}


class OracleError(Exception):
    pass


def check(cond, message):
    if not cond:
        raise OracleError(message)


# ---------------------------------------------------------------------------------------------------
# Storage: round to the stored dtype, keep the raw bytes and the decoded float64 values.

def store(values, dtype):
    """values: float64 ndarray. Returns (little-endian bytes as stored, decoded float64 ndarray)."""
    f32 = np.ascontiguousarray(values, dtype=np.float32)
    if dtype == "BF16":
        bits = f32.view(np.uint32).astype(np.uint64)
        rounded = ((bits + 0x7FFF + ((bits >> 16) & 1)) >> 16).astype(np.uint16)
        decoded = (rounded.astype(np.uint32) << 16).view(np.float32).astype(np.float64)
        return rounded.astype("<u2").tobytes(), decoded
    if dtype == "F16":
        half = f32.astype(np.float16)
        return half.astype("<f2").tobytes(), half.astype(np.float64)
    if dtype == "F32":
        return f32.astype("<f4").tobytes(), f32.astype(np.float64)
    raise OracleError("unknown dtype " + dtype)


def write_safetensors(path, tensors, dtype):
    """tensors: list of (name, shape, raw bytes), all of `dtype`."""
    header = {"__metadata__": {"format": "pt"}}
    offset = 0
    for name, shape, raw in tensors:
        header[name] = {"dtype": dtype, "shape": list(shape), "data_offsets": [offset, offset + len(raw)]}
        offset += len(raw)
    blob = json.dumps(header, separators=(",", ":")).encode("utf-8")
    blob += b" " * (-len(blob) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(blob)))
        f.write(blob)
        for _, _, raw in tensors:
            f.write(raw)


# ---------------------------------------------------------------------------------------------------
# Config: the keys transformers' LlamaConfig / Qwen2Config / MistralConfig write.

def make_config(v):
    common = {
        "attention_dropout": 0.0,
        "bos_token_id": 1,
        "eos_token_id": 2,
        "hidden_act": "silu",
        "hidden_size": v["hidden"],
        "initializer_range": 0.02,
        "intermediate_size": v["inter"],
        "max_position_embeddings": v["max_pos"],
        "model_type": v["model_type"],
        "num_attention_heads": v["heads"],
        "num_hidden_layers": v["layers"],
        "num_key_value_heads": v["kv_heads"],
        "rms_norm_eps": v["eps"],
        "rope_theta": v["theta"],
        "tie_word_embeddings": v["tied"],
        "torch_dtype": TORCH_DTYPE[v["dtype"]],
        "transformers_version": TRANSFORMERS_VERSION,
        "use_cache": True,
        "vocab_size": v["vocab"],
    }
    mt = v["model_type"]
    if mt == "llama":
        cfg = {"architectures": ["LlamaForCausalLM"], "attention_bias": v["attention_bias"], **common,
               "mlp_bias": False, "pretraining_tp": 1, "rope_scaling": v["rope_scaling"]}
    elif mt == "qwen2":
        cfg = {"architectures": ["Qwen2ForCausalLM"], **common, "max_window_layers": 2,
               "rope_scaling": None, "sliding_window": 4096, "use_sliding_window": False}
    elif mt == "mistral":
        # MistralConfig has neither attention_bias nor rope_scaling; it does have head_dim and sliding_window.
        cfg = {"architectures": ["MistralForCausalLM"], **common, "head_dim": v["head_dim"],
               "sliding_window": v["window"]}
    else:
        raise OracleError("unknown model_type " + mt)
    return dict(sorted(cfg.items()))


# ---------------------------------------------------------------------------------------------------
# Forward (float64, HF semantics).

def rope_inv_freq(head_dim, theta, scaling):
    inv_freq = 1.0 / (theta ** (torch.arange(0, head_dim, 2, dtype=torch.float64) / head_dim))
    if scaling is None:
        return inv_freq
    kind = scaling.get("rope_type", scaling.get("type"))
    if kind == "linear":
        return inv_freq / scaling["factor"]
    if kind == "llama3":
        factor = scaling["factor"]
        low, high = scaling["low_freq_factor"], scaling["high_freq_factor"]
        old_len = scaling["original_max_position_embeddings"]
        low_wavelen, high_wavelen = old_len / low, old_len / high
        out = []
        for f in inv_freq.tolist():
            wavelen = 2 * math.pi / f
            if wavelen > low_wavelen:
                out.append(f / factor)
            elif wavelen < high_wavelen:
                out.append(f)
            else:
                smooth = (old_len / wavelen - low) / (high - low)
                out.append(f * ((1 - smooth) / factor + smooth))
        return torch.tensor(out, dtype=torch.float64)
    raise OracleError("unknown rope scaling %r" % kind)


def llama3_regimes(head_dim, theta, scaling):
    """Which of unchanged / smoothed / divided each llama3 frequency falls in."""
    inv_freq = 1.0 / (theta ** (torch.arange(0, head_dim, 2, dtype=torch.float64) / head_dim))
    old_len = scaling["original_max_position_embeddings"]
    low_wavelen = old_len / scaling["low_freq_factor"]
    high_wavelen = old_len / scaling["high_freq_factor"]
    regimes = set()
    for f in inv_freq.tolist():
        wavelen = 2 * math.pi / f
        regimes.add("divided" if wavelen > low_wavelen else "unchanged" if wavelen < high_wavelen else "smoothed")
    return regimes


def rms_norm(x, weight, eps):
    return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + eps) * weight


def rotate_half(x):
    half = x.shape[-1] // 2
    return torch.cat((-x[..., half:], x[..., :half]), dim=-1)


def attention_mask(tokens, window):
    """True where query i may see key j."""
    i = torch.arange(tokens).unsqueeze(1)
    j = torch.arange(tokens).unsqueeze(0)
    allowed = j <= i
    if window is not None:
        allowed = allowed & (j > i - window)
    return allowed


def forward(v, w, tokens):
    n = len(tokens)
    hd, heads, kv_heads = v["head_dim"], v["heads"], v["kv_heads"]
    x = w["model.embed_tokens.weight"][torch.tensor(tokens, dtype=torch.long)]
    inv_freq = rope_inv_freq(hd, v["theta"], v["rope_scaling"])
    angles = torch.outer(torch.arange(n, dtype=torch.float64), inv_freq)
    emb = torch.cat((angles, angles), -1)
    cos, sin = emb.cos(), emb.sin()
    allowed = attention_mask(n, v["window"])
    group = heads // kv_heads

    def linear(h, name):
        out = h @ w[name + ".weight"].T
        if name + ".bias" in w:
            out = out + w[name + ".bias"]
        return out

    for l in range(v["layers"]):
        p = "model.layers.%d." % l
        h = rms_norm(x, w[p + "input_layernorm.weight"], v["eps"])
        q = linear(h, p + "self_attn.q_proj").view(n, heads, hd).transpose(0, 1)
        k = linear(h, p + "self_attn.k_proj").view(n, kv_heads, hd).transpose(0, 1)
        val = linear(h, p + "self_attn.v_proj").view(n, kv_heads, hd).transpose(0, 1)
        q = q * cos + rotate_half(q) * sin
        k = k * cos + rotate_half(k) * sin
        k, val = k.repeat_interleave(group, 0), val.repeat_interleave(group, 0)
        scores = (q @ k.transpose(-1, -2)) / math.sqrt(hd)
        scores = scores.masked_fill(~allowed, float("-inf"))
        attn = torch.softmax(scores, -1) @ val
        x = x + linear(attn.transpose(0, 1).reshape(n, heads * hd), p + "self_attn.o_proj")
        h = rms_norm(x, w[p + "post_attention_layernorm.weight"], v["eps"])
        mlp = torch.nn.functional.silu(linear(h, p + "mlp.gate_proj")) * linear(h, p + "mlp.up_proj")
        x = x + linear(mlp, p + "mlp.down_proj")
    x = rms_norm(x, w["model.norm.weight"], v["eps"])
    head = w["model.embed_tokens.weight"] if v["tied"] else w["lm_head.weight"]
    return x @ head.T


# ---------------------------------------------------------------------------------------------------

def fill_defaults(spec):
    v = dict(BASE)
    v.update(spec)
    v.setdefault("head_dim", v["hidden"] // v["heads"])
    v.setdefault("attention_bias", False)
    v.setdefault("qkv_bias", v["attention_bias"])
    v.setdefault("window", None)
    v.setdefault("rope_scaling", None)
    return v


def build_variant(v, out_dir):
    rng = np.random.default_rng(v["seed"])
    hidden, inter, vocab, hd = v["hidden"], v["inter"], v["vocab"], v["head_dim"]
    q_dim, kv_dim = v["heads"] * hd, v["kv_heads"] * hd
    tokens = rng.integers(0, vocab, size=TOKENS).astype(np.int32)

    shapes = [("model.embed_tokens.weight", (vocab, hidden), "embed")]
    for l in range(v["layers"]):
        p = "model.layers.%d." % l
        shapes.append((p + "input_layernorm.weight", (hidden,), "norm"))
        for proj, dim in (("q_proj", q_dim), ("k_proj", kv_dim), ("v_proj", kv_dim)):
            shapes.append((p + "self_attn.%s.weight" % proj, (dim, hidden), "linear"))
            if v["qkv_bias"]:
                shapes.append((p + "self_attn.%s.bias" % proj, (dim,), "bias"))
        shapes.append((p + "self_attn.o_proj.weight", (hidden, q_dim), "linear"))
        if v["attention_bias"]:
            shapes.append((p + "self_attn.o_proj.bias", (hidden,), "bias"))
        shapes.append((p + "post_attention_layernorm.weight", (hidden,), "norm"))
        shapes.append((p + "mlp.gate_proj.weight", (inter, hidden), "linear"))
        shapes.append((p + "mlp.up_proj.weight", (inter, hidden), "linear"))
        shapes.append((p + "mlp.down_proj.weight", (hidden, inter), "linear"))
    shapes.append(("model.norm.weight", (hidden,), "norm"))
    if not v["tied"]:
        shapes.append(("lm_head.weight", (vocab, hidden), "linear"))

    stored, weights = [], {}
    for name, shape, kind in shapes:
        if kind == "embed":
            values = rng.normal(0.0, 1.0, size=shape)
        elif kind == "linear":
            values = rng.normal(0.0, 0.08, size=shape)
        elif kind == "norm":
            values = 1.0 + 0.1 * rng.normal(0.0, 1.0, size=shape)
        else:
            values = rng.normal(0.0, 0.3, size=shape)
        raw, decoded = store(values, v["dtype"])
        stored.append((name, shape, raw))
        weights[name] = torch.from_numpy(decoded.reshape(shape))

    logits = forward(v, weights, tokens.tolist())
    check(tuple(logits.shape) == (TOKENS, vocab), "%s: logits shape %s" % (v["name"], tuple(logits.shape)))
    check(bool(torch.isfinite(logits).all()), "%s: non-finite logits" % v["name"])
    check(float(logits.abs().max()) > 0.5, "%s: logits all tiny" % v["name"])

    vdir = os.path.join(out_dir, v["name"])
    os.makedirs(vdir, exist_ok=True)
    with open(os.path.join(vdir, "config.json"), "w") as f:
        json.dump(make_config(v), f, indent=2)
        f.write("\n")
    write_safetensors(os.path.join(vdir, "model.safetensors"), stored, v["dtype"])
    tokens.astype("<i4").tofile(os.path.join(vdir, "tokens.i32"))
    logits.numpy().astype("<f4").tofile(os.path.join(vdir, "logits.f32"))
    check(os.path.getsize(os.path.join(vdir, "logits.f32")) == 4 * TOKENS * vocab,
          "%s: logits.f32 has the wrong size" % v["name"])
    return {"name": v["name"], "tokens": TOKENS, "vocab": vocab}


def self_checks(variants):
    by_name = {v["name"]: v for v in variants}
    l3 = by_name["llama3"]
    regimes = llama3_regimes(l3["head_dim"], l3["theta"], l3["rope_scaling"])
    check(regimes == {"unchanged", "smoothed", "divided"},
          "llama3: rope frequencies hit only %s" % sorted(regimes))
    mi = by_name["mistral"]
    check(bool(torch.equal(attention_mask(TOKENS, mi["window"]), attention_mask(TOKENS, None))),
          "mistral: window %d mask differs from the causal mask for %d tokens" % (mi["window"], TOKENS))
    # The window logic itself must bite when the sequence is longer than the window.
    check(not bool(attention_mask(TOKENS, 4)[TOKENS - 1, TOKENS - 5]) and bool(attention_mask(TOKENS, 4)[TOKENS - 1, TOKENS - 4]),
          "sliding-window mask: query i must see keys i-W < j <= i")
    check(mi["heads"] * mi["head_dim"] != mi["hidden"], "mistral: q_dim should differ from hidden")


def main():
    if len(sys.argv) != 2:
        sys.stderr.write("usage: /usr/bin/python3 tests/oracle/arch_oracle.py OUT_DIR\n")
        return 1
    out_dir = sys.argv[1]
    try:
        variants = [fill_defaults(spec) for spec in VARIANTS]
        self_checks(variants)
        os.makedirs(out_dir, exist_ok=True)
        listing = [build_variant(v, out_dir) for v in variants]
        with open(os.path.join(out_dir, "variants.json"), "w") as f:
            json.dump(listing, f, indent=2)
            f.write("\n")
    except (OracleError, OSError) as err:
        sys.stderr.write("arch_oracle: %s\n" % err)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
