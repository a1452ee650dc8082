#!/usr/bin/python3
"""Test oracle for src/quant/block/learnable_clipping (tests/test_block_backward.cpp): OmniQuant's learnable
weight clipping of a random matrix in PyTorch (float32), the straight-through estimator on round(), the scale
rounded up to float16 (gradient passed through), and autograd's gradient of L = sum(G * W_hat) w.r.t. the
per-group logits. Writes w, high, low, grad (G), w_hat, grad_high, grad_low as .npy (float32) into OUTDIR."""
import argparse
import os

import numpy as np
import torch


def round_ste(x):
    return x + (torch.round(x) - x).detach()


def f16_up(s):
    """The smallest float16 >= s (as fit_group stores scales)."""
    exact = s.detach().numpy()
    half = exact.astype(np.float16)
    half = np.where(half.astype(np.float32) < exact, np.nextafter(half, np.float16(np.inf)), half)
    return torch.from_numpy(half.astype(np.float32))


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("outdir")
    parser.add_argument("--rows", type=int, default=6)
    parser.add_argument("--cols", type=int, default=64)
    parser.add_argument("--group", type=int, default=16)
    parser.add_argument("--bits", type=int, default=3)
    parser.add_argument("--seed", type=int, default=0)
    a = parser.parse_args()
    gen = torch.Generator().manual_seed(a.seed)
    levels = 2 ** a.bits - 1
    groups = a.cols // a.group
    w = torch.randn(a.rows, a.cols, generator=gen) * 0.05
    high = (1.0 + 4.0 * torch.rand(a.rows, groups, generator=gen)).requires_grad_()
    low = (1.0 + 4.0 * torch.rand(a.rows, groups, generator=gen)).requires_grad_()
    grad = torch.randn(a.rows, a.cols, generator=gen)

    wg = w.view(a.rows, groups, a.group)
    hi = torch.sigmoid(high) * wg.amax(-1).clamp(min=0)
    lo = torch.sigmoid(low) * wg.amin(-1).clamp(max=0)
    exact = (hi - lo) / levels
    s = exact + (f16_up(exact) - exact).detach()
    z = torch.clamp(round_ste(-lo / s), 0, levels)
    q = torch.clamp(round_ste(wg / s[..., None]) + z[..., None], 0, levels)
    w_hat = (s[..., None] * (q - z[..., None])).reshape(a.rows, a.cols)
    (grad * w_hat).sum().backward()

    os.makedirs(a.outdir, exist_ok=True)
    for name, value in {"w": w, "high": high, "low": low, "grad": grad, "w_hat": w_hat, "grad_high": high.grad,
                        "grad_low": low.grad}.items():
        np.save(os.path.join(a.outdir, name + ".npy"), value.detach().numpy().astype("<f4"))


if __name__ == "__main__":
    main()
