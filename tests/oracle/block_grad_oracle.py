#!/usr/bin/python3
"""Test oracle for src/quant/block (tests/test_block_backward.cpp): a random small LLaMA decoder block in
PyTorch (float64), L = scale * ||block(x) - target||^2, and autograd's gradients w.r.t. the seven linear
weights and both RMSNorm weights. Writes every tensor as raw little-endian float64 (NAME.f64) into OUTDIR,
plus loss.txt. The block is written out independently of the C++ code (HF LlamaDecoderLayer semantics)."""
import argparse
import math
import os

import torch

LINEARS = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]


def rms_norm(x, weight, eps):
    return weight * (x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + eps))


def rotate_half(x):
    half = x.shape[-1] // 2
    return torch.cat((-x[..., half:], x[..., :half]), dim=-1)


def block(x, p, a):
    tokens = x.shape[0]
    h = rms_norm(x, p["attn_norm"], a.eps)
    q = (h @ p["q_proj"].T).view(tokens, a.heads, a.head_dim).transpose(0, 1)
    k = (h @ p["k_proj"].T).view(tokens, a.kv_heads, a.head_dim).transpose(0, 1)
    v = (h @ p["v_proj"].T).view(tokens, a.kv_heads, a.head_dim).transpose(0, 1)
    inv_freq = 1.0 / (a.theta ** (torch.arange(0, a.head_dim, 2, dtype=torch.float64) / a.head_dim))
    angles = torch.outer(torch.arange(tokens, dtype=torch.float64), inv_freq)
    cos, sin = torch.cat((angles, angles), -1).cos(), torch.cat((angles, angles), -1).sin()
    q = q * cos + rotate_half(q) * sin
    k = k * cos + rotate_half(k) * sin
    group = a.heads // a.kv_heads
    k, v = k.repeat_interleave(group, 0), v.repeat_interleave(group, 0)
    scores = q @ k.transpose(-1, -2) / math.sqrt(a.head_dim)
    mask = torch.triu(torch.ones(tokens, tokens, dtype=torch.bool), 1)
    attn = torch.softmax(scores.masked_fill(mask, float("-inf")), -1) @ v
    x = x + attn.transpose(0, 1).reshape(tokens, -1) @ p["o_proj"].T
    h = rms_norm(x, p["ffn_norm"], a.eps)
    mlp = torch.nn.functional.silu(h @ p["gate_proj"].T) * (h @ p["up_proj"].T)
    return x + mlp @ p["down_proj"].T


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("outdir")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--dim", type=int, default=32)
    parser.add_argument("--hidden", type=int, default=48)
    parser.add_argument("--heads", type=int, default=4)
    parser.add_argument("--kv-heads", type=int, default=2)
    parser.add_argument("--head-dim", type=int, default=8)
    parser.add_argument("--tokens", type=int, default=9)
    parser.add_argument("--eps", type=float, default=1e-5)
    parser.add_argument("--theta", type=float, default=10000.0)
    a = parser.parse_args()

    gen = torch.Generator().manual_seed(a.seed)
    def randn(*shape, scale=1.0):
        return (torch.randn(*shape, generator=gen, dtype=torch.float64) * scale).requires_grad_()
    q_dim, kv_dim = a.heads * a.head_dim, a.kv_heads * a.head_dim
    shapes = {"q_proj": (q_dim, a.dim), "k_proj": (kv_dim, a.dim), "v_proj": (kv_dim, a.dim), "o_proj": (a.dim, q_dim),
              "gate_proj": (a.hidden, a.dim), "up_proj": (a.hidden, a.dim), "down_proj": (a.dim, a.hidden)}
    params = {name: randn(*shape, scale=1.0 / math.sqrt(shape[1])) for name, shape in shapes.items()}
    params["attn_norm"] = (1.0 + 0.1 * torch.randn(a.dim, generator=gen, dtype=torch.float64)).requires_grad_()
    params["ffn_norm"] = (1.0 + 0.1 * torch.randn(a.dim, generator=gen, dtype=torch.float64)).requires_grad_()
    x = torch.randn(a.tokens, a.dim, generator=gen, dtype=torch.float64)
    target = x + 0.5 * torch.randn(a.tokens, a.dim, generator=gen, dtype=torch.float64)
    scale = 1.0 / (a.tokens * a.dim)

    loss = scale * (block(x, params, a) - target).pow(2).sum()
    loss.backward()
    os.makedirs(a.outdir, exist_ok=True)
    def save(name, tensor):
        tensor.detach().contiguous().numpy().astype("<f8").tofile(os.path.join(a.outdir, name + ".f64"))
    save("input", x)
    save("target", target)
    for name, value in params.items():
        save(name, value)
        save("grad_" + name, value.grad)
    with open(os.path.join(a.outdir, "loss.txt"), "w") as f:
        f.write(repr(loss.item()) + "\n")


if __name__ == "__main__":
    main()
