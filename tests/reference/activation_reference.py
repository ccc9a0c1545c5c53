#!/usr/bin/env python3
"""PyTorch reference outputs for bnlab's activations (run by ctest).

For each activation and case: y = f(x), gx = ∂<y, gy>/∂x, and the double
backward of s = <gx, v>: ∂s/∂x and ∂s/∂gy. Maxout's reference is built here
from view + max, the way PyTorch users write it.
"""
import argparse
import os
import random
import sys

import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from refio import ReferenceWriter, with_layout  # noqa: E402


def maxout(k):
    def f(x):
        n, c = x.shape[0], x.shape[1]
        return x.reshape(n, c // k, k, *x.shape[2:]).max(dim=2).values
    return f


# name, options (as bnlab's make_activation takes them), the PyTorch function
ACTIVATIONS = [
    ("tanh", {}, torch.tanh),
    ("sigmoid", {}, torch.sigmoid),
    ("softsign", {}, F.softsign),
    ("hardtanh", {}, F.hardtanh),
    ("hardtanh", {"min_val": -2.0, "max_val": 0.5}, lambda x: F.hardtanh(x, -2.0, 0.5)),
    ("relu", {}, F.relu),
    ("leaky_relu", {}, F.leaky_relu),
    ("leaky_relu", {"negative_slope": 0.2}, lambda x: F.leaky_relu(x, 0.2)),
    ("elu", {}, F.elu),
    ("elu", {"alpha": 0.7}, lambda x: F.elu(x, 0.7)),
    ("gelu", {}, F.gelu),
    ("gelu", {"approximate": "tanh"}, lambda x: F.gelu(x, approximate="tanh")),
    ("silu", {}, F.silu),
    ("maxout", {"pieces": 2}, maxout(2)),
    ("maxout", {"pieces": 3}, maxout(3)),
]

SHAPES = [(4, 6), (3, 6, 5), (2, 6, 3, 4), (5, 12)]
LAYOUTS = {2: ["contiguous", "transposed"], 3: ["contiguous", "noncontiguous"],
           4: ["contiguous", "channels_last"]}


def special_values(options):
    """Inputs at the edges: ±50, ±20, kinks and bounds exactly, tiny values."""
    vals = [0.0, -0.0, 50.0, -50.0, 20.0, -20.0, 1e-7, -1e-7, 3.0, -3.0, 0.5, -0.5, 1.0, -1.0]
    for key in ("min_val", "max_val"):
        if key in options:
            vals.append(options[key])
    return vals


def make_input(gen, shape, dtype, options):
    x = torch.randn(shape, generator=gen, dtype=torch.float64) * 3
    flat = x.view(-1)
    special = torch.tensor(special_values(options), dtype=torch.float64)
    # scatter the special values over random positions
    pos = torch.randperm(flat.numel(), generator=gen)[: min(flat.numel(), special.numel())]
    flat[pos] = special[: pos.numel()]
    return x.to(dtype)


def evaluate(fn, x0, gy0, v, layout):
    """y, gx = ∂<y, gy>/∂x and the double backward of s = <gx, v>."""
    x = with_layout(x0, layout).requires_grad_(True)
    y = fn(x)
    gy = gy0.clone().requires_grad_(True)
    gx, = torch.autograd.grad(y, x, gy, create_graph=True)
    s = (gx * v).sum()
    g2x = g2gy = None
    if s.requires_grad:
        g2x, g2gy = torch.autograd.grad(s, (x, gy), allow_unused=True)
    g2x = torch.zeros_like(x) if g2x is None else g2x
    g2gy = torch.zeros_like(gy) if g2gy is None else g2gy
    return {"y": y.detach(), "grad_x": gx.detach(), "grad2_x": g2x, "grad2_grad_y": g2gy}


def main():
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--out", required=True)
    ap.add_argument("--seed", default="11")
    args = ap.parse_args()
    seed = random.SystemRandom().randrange(2**31) if args.seed == "random" else int(args.seed)
    gen = torch.Generator().manual_seed(seed)
    w = ReferenceWriter()
    cases = []
    for name, options, fn in ACTIVATIONS:
        for shape in SHAPES:
            for dtype in (torch.float32, torch.float64):
                for layout in LAYOUTS[len(shape)]:
                    x0 = make_input(gen, shape, dtype, options)
                    gy0 = torch.randn(fn(x0).shape, generator=gen, dtype=torch.float64).to(dtype)
                    v = torch.randn(shape, generator=gen, dtype=torch.float64).to(dtype)
                    ref = evaluate(fn, x0, gy0, v, layout)
                    case = {
                        "name": f"{name}{options}_{list(shape)}_{str(dtype)[6:]}_{layout}",
                        "activation": name, "options": options, "dtype": str(dtype)[6:],
                        "layout": layout, "x": w.tensor(x0), "grad_y": w.tensor(gy0),
                        "v": w.tensor(v), **{k: w.tensor(t) for k, t in ref.items()},
                    }
                    if dtype != torch.float64:
                        # PyTorch's float64 answer on the same inputs (see batch_norm_reference.py)
                        exact = evaluate(fn, x0.double(), gy0.double(), v.double(), layout)
                        case["exact"] = {k: w.tensor(t.to(dtype)) for k, t in exact.items()}
                    cases.append(case)
    w.save(args.out, "activation", {"torch_version": torch.__version__, "seed": seed,
                                    "cases": cases})
    print(f"activation reference: {len(cases)} cases, seed {seed}, torch {torch.__version__}")


if __name__ == "__main__":
    main()
