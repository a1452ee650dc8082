#!/usr/bin/python3
"""Writes a Hugging Face LLaMA directory with the exact published shapes of a known model and random bf16
weights (N(0, 0.02) linears and embeddings, unit norms), for speed and memory measurements at real shapes
without downloading anything (developer script: Debian's /usr/bin/python3 with numpy).

Usage: scripts/random_model.py --shape tinyllama-1.1b -o DIR [--seed S] [--tokenizer FILE]
"""
import argparse
import json
import os
import shutil
import struct
import sys

import numpy as np

SHAPES = {  # hidden, intermediate, layers, heads, kv heads, vocab, max positions, rope theta
    "tinyllama-1.1b": (2048, 5632, 22, 32, 4, 32000, 2048, 10000.0),
    "llama2-7b": (4096, 11008, 32, 32, 32, 32000, 4096, 10000.0),
    "llama2-13b": (5120, 13824, 40, 40, 40, 32000, 4096, 10000.0),
}


def bf16_bytes(rng, shape, std):
    """Random normal values rounded to bf16 (round to nearest even), as little-endian bytes."""
    bits = (rng.standard_normal(shape, dtype=np.float32) * np.float32(std)).view(np.uint32)
    bits = (bits + 0x7FFF + ((bits >> 16) & 1)) >> 16
    return bits.astype("<u2").tobytes()


def tensors(shape, rng):
    hidden, inter, layers, heads, kv_heads, vocab = shape[:6]
    head_dim = hidden // heads
    yield "model.embed_tokens.weight", (vocab, hidden), 0.02
    for l in range(layers):
        p = f"model.layers.{l}."
        yield p + "input_layernorm.weight", (hidden,), None
        yield p + "self_attn.q_proj.weight", (heads * head_dim, hidden), 0.02
        yield p + "self_attn.k_proj.weight", (kv_heads * head_dim, hidden), 0.02
        yield p + "self_attn.v_proj.weight", (kv_heads * head_dim, hidden), 0.02
        yield p + "self_attn.o_proj.weight", (hidden, heads * head_dim), 0.02
        yield p + "post_attention_layernorm.weight", (hidden,), None
        yield p + "mlp.gate_proj.weight", (inter, hidden), 0.02
        yield p + "mlp.up_proj.weight", (inter, hidden), 0.02
        yield p + "mlp.down_proj.weight", (hidden, inter), 0.02
    yield "model.norm.weight", (hidden,), None
    yield "lm_head.weight", (vocab, hidden), 0.02


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shape", required=True, choices=sorted(SHAPES))
    parser.add_argument("-o", "--output", required=True)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--tokenizer", default=os.path.join(os.path.dirname(__file__), "..", "..", "shared",
                                                            "tokenizers", "llama2-tokenizer.model"))
    args = parser.parse_args()
    if os.path.exists(args.output):
        sys.exit(f"{args.output}: exists")
    if not os.path.isfile(args.tokenizer):
        sys.exit(f"{args.tokenizer}: no such tokenizer (give --tokenizer)")
    shape = SHAPES[args.shape]
    hidden, inter, layers, heads, kv_heads, vocab, max_pos, theta = shape
    rng = np.random.default_rng(args.seed)
    entries = list(tensors(shape, rng))
    header, offset = {}, 0
    for name, dims, _ in entries:
        size = 2 * int(np.prod(dims))
        header[name] = {"dtype": "BF16", "shape": list(dims), "data_offsets": [offset, offset + size]}
        offset += size
    header["__metadata__"] = {"format": "pt", "generator": f"scripts/random_model.py --shape {args.shape} --seed {args.seed}"}
    blob = json.dumps(header, separators=(",", ":")).encode()
    blob += b" " * (-len(blob) % 8)
    os.makedirs(args.output)
    with open(os.path.join(args.output, "model.safetensors"), "wb") as out:
        out.write(struct.pack("<Q", len(blob)) + blob)
        for i, (name, dims, std) in enumerate(entries):
            out.write(np.full(dims, 0x3F80, "<u2").tobytes() if std is None else bf16_bytes(rng, dims, std))
            print(f"\r{i + 1}/{len(entries)} tensors", end="", file=sys.stderr)
    print(file=sys.stderr)
    config = {"architectures": ["LlamaForCausalLM"], "model_type": "llama", "hidden_size": hidden,
              "intermediate_size": inter, "num_hidden_layers": layers, "num_attention_heads": heads,
              "num_key_value_heads": kv_heads, "vocab_size": vocab, "max_position_embeddings": max_pos,
              "rms_norm_eps": 1e-5, "rope_theta": theta, "tie_word_embeddings": False, "torch_dtype": "bfloat16",
              "hidden_act": "silu"}
    with open(os.path.join(args.output, "config.json"), "w") as out:
        json.dump(config, out, indent=2)
    shutil.copy(args.tokenizer, os.path.join(args.output, "tokenizer.model"))
    print(f"wrote {args.output}: {args.shape}, {offset / 2**30:.2f} GiB of bf16 weights", file=sys.stderr)


if __name__ == "__main__":
    main()
