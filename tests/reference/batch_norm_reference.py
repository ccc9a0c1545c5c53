#!/usr/bin/env python3
"""PyTorch reference outputs for bnlab's BatchNorm{1,2,3}d (run by ctest).

For every case, a torch.nn.BatchNorm{1,2,3}d goes through a sequence of
train/eval steps; each step records the output, the gradients w.r.t. the
input, weight and bias, the second-order gradients (double backward), the
running statistics and num_batches_tracked after the step.

Double backward: with (gx, gw, gb) = ∂/∂(x, w, b) <y, gy> built with
create_graph, s = <gx, vx> + <gw, vw> + <gb, vb>, and we record ∂s/∂x, ∂s/∂w
and ∂s/∂gy. These second-order values are PyTorch's float64 evaluation on the
step's inputs and module state (rounded to the case's dtype first), stored in
the case's dtype: BatchNorm's second derivatives are ill-conditioned for small
batches, and PyTorch's own float32 double backward differs from its float64
result by up to ~200x assert_close's float32 tolerance at 2 values per channel,
so its float32 rounding noise is no reference.

For float32 cases each step also holds "exact": the first-order values from
that float64 evaluation. PyTorch's float32 CPU kernels accumulate some sums in
float32 (the channels_last backward, for one), and their result can stray
beyond the float32 tolerance from the float64 one; the C++ tests then accept a
result at least as close to the float64 value as PyTorch's float32 one is.
"""
import copy
import argparse
import itertools
import os
import random
import sys

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from refio import ReferenceWriter, with_layout  # noqa: E402

SHAPES = {
    1: [(8, 5), (3, 7, 4), (2, 3), (5, 4, 1)],
    2: [(4, 3, 5, 6), (2, 7, 3, 1), (3, 2, 1, 5)],
    3: [(2, 3, 4, 3, 5), (3, 2, 1, 2, 3)],
}
LAYOUTS = {1: ["contiguous", "noncontiguous", "transposed"],
           2: ["contiguous", "channels_last", "noncontiguous"],
           3: ["contiguous", "channels_last", "noncontiguous"]}
MOMENTA = [0.1, 0.37, None]
STEPS = ["train", "train", "eval", "train", "eval"]


def random_input(gen, shape, dtype):
    """Every channel gets its own batch mean in [-2, 2] and batch standard deviation
    in [0.5, 2], exactly: the values are standardized per channel before scaling.

    Controlling the batch deviation keeps the cases well-conditioned. Batch norm's
    gradients scale with 1/σ_batch, and a small batch drawn at random can have a
    tiny σ_batch (5 values at σ = 0.06 happen): there PyTorch's own float32
    gradient is off its float64 one by more than the float32 tolerance, and
    comparing with it would compare rounding noise.
    """
    c = shape[1]
    view = [1, c] + [1] * (len(shape) - 2)
    dims = [0] + list(range(2, len(shape)))
    z = torch.randn(shape, generator=gen, dtype=torch.float64)
    z = (z - z.mean(dims, keepdim=True)) / z.std(dims, unbiased=False, keepdim=True)
    mean = (torch.rand(c, generator=gen, dtype=torch.float64) * 4 - 2).view(view)
    scale = (torch.rand(c, generator=gen, dtype=torch.float64) * 1.5 + 0.5).view(view)
    return (z * scale + mean).to(dtype)


def grads_or_zeros(outputs, inputs, grad_outputs=None, create_graph=False):
    gs = torch.autograd.grad(outputs, inputs, grad_outputs, create_graph=create_graph,
                             allow_unused=True)
    return [torch.zeros_like(i) if g is None else g for g, i in zip(gs, inputs)]


def float64_step(bn64, x0, gy0, vs, layout, affine):
    """The step evaluated by PyTorch in float64 on the same (rounded) inputs and
    state: first- and second-order values, cast back to x0's dtype."""
    x = with_layout(x0.double(), layout).requires_grad_(True)
    gy = with_layout(gy0.double(), layout).requires_grad_(True)
    y = bn64(x)
    params = [x] + ([bn64.weight, bn64.bias] if affine else [])
    first = grads_or_zeros(y, params, gy, create_graph=True)
    s = sum((g * v.double()).sum() for g, v in zip(first, vs))
    wrt = [x, gy] + ([bn64.weight] if affine else [])
    second = grads_or_zeros(s, wrt)
    out = {"y": y, "grad_x": first[0], "grad2_x": second[0], "grad2_grad_y": second[1]}
    if affine:
        out.update({"grad_weight": first[1], "grad_bias": first[2], "grad2_weight": second[2]})
    if bn64.track_running_stats:
        out.update({"running_mean": bn64.running_mean, "running_var": bn64.running_var})
    return {k: v.detach().to(x0.dtype) for k, v in out.items()}


def run_case(w, gen, dim, shape, dtype, layout, momentum, affine, track):
    ctor = {1: torch.nn.BatchNorm1d, 2: torch.nn.BatchNorm2d, 3: torch.nn.BatchNorm3d}[dim]
    c = shape[1]
    eps = 1e-5 if dim != 3 else 1e-3
    bn = ctor(c, eps=eps, momentum=momentum, affine=affine, track_running_stats=track).to(dtype)
    init = {}
    with torch.no_grad():
        if affine:
            bn.weight.copy_(torch.rand(c, generator=gen, dtype=torch.float64) * 1.5 + 0.25)
            bn.bias.copy_(torch.randn(c, generator=gen, dtype=torch.float64))
            init["weight"] = w.tensor(bn.weight)
            init["bias"] = w.tensor(bn.bias)
        if track:
            bn.running_mean.copy_(torch.randn(c, generator=gen, dtype=torch.float64) * 0.5)
            bn.running_var.copy_(torch.rand(c, generator=gen, dtype=torch.float64) + 0.5)
            init["running_mean"] = w.tensor(bn.running_mean)
            init["running_var"] = w.tensor(bn.running_var)
    steps = []
    for mode in STEPS:
        bn.train(mode == "train")
        bn64 = copy.deepcopy(bn).double()  # the state before this step, in float64
        x0 = random_input(gen, shape, dtype)
        gy0 = torch.randn(shape, generator=gen, dtype=torch.float64).to(dtype)
        x = with_layout(x0, layout).requires_grad_(True)
        gy = with_layout(gy0, layout).requires_grad_(True)
        y = bn(x)
        params = [x] + ([bn.weight, bn.bias] if affine else [])
        first = grads_or_zeros(y, params, gy, create_graph=False)
        vs = [torch.randn(p.shape, generator=gen, dtype=torch.float64).to(dtype) for p in params]
        exact = float64_step(bn64, x0, gy0, vs, layout, affine)
        step = {
            "mode": mode,
            "x": w.tensor(x0), "grad_y": w.tensor(gy0), "y": w.tensor(y),
            "y_channels_last": bool(y.dim() >= 4 and layout == "channels_last" and y.is_contiguous(
                memory_format=torch.channels_last if y.dim() == 4 else torch.channels_last_3d)),
            "grad_x": w.tensor(first[0]),
            "v_x": w.tensor(vs[0]),
            "grad2_x": w.tensor(exact["grad2_x"]), "grad2_grad_y": w.tensor(exact["grad2_grad_y"]),
        }
        if dtype != torch.float64:
            # PyTorch's float64 answer, for where its own float32 one strays
            # beyond the tolerance (see README, "How bnlab's BatchNorm is checked").
            step["exact"] = {k: w.tensor(v) for k, v in exact.items() if not k.startswith("grad2")}
        if affine:
            step.update({"grad_weight": w.tensor(first[1]), "grad_bias": w.tensor(first[2]),
                         "v_weight": w.tensor(vs[1]), "v_bias": w.tensor(vs[2]),
                         "grad2_weight": w.tensor(exact["grad2_weight"])})
        if track:
            step.update({"running_mean": w.tensor(bn.running_mean),
                         "running_var": w.tensor(bn.running_var),
                         "num_batches_tracked": int(bn.num_batches_tracked)})
        steps.append(step)
    return {"name": f"BatchNorm{dim}d{list(shape)}_{str(dtype)[6:]}_{layout}_m{momentum}"
                    f"_affine{int(affine)}_track{int(track)}",
            "dim": dim, "shape": list(shape), "num_features": c, "dtype": str(dtype)[6:],
            "layout": layout, "eps": eps, "momentum": momentum, "affine": affine,
            "track_running_stats": track, "init": init, "steps": steps}


def cases(rng):
    """All (momentum, affine, track) combinations on the first shape and layout of each
    module and dtype; every other shape and layout with combinations drawn in turn."""
    combos = list(itertools.product(MOMENTA, [True, False], [True, False]))
    for dim in (1, 2, 3):
        for dtype in (torch.float32, torch.float64):
            for m, a, t in combos:
                yield dim, SHAPES[dim][0], dtype, "contiguous", m, a, t
            for shape, layout in itertools.product(SHAPES[dim], LAYOUTS[dim]):
                if (shape, layout) == (SHAPES[dim][0], "contiguous"):
                    continue
                for m, a, t in rng.sample(combos, 3):
                    yield dim, shape, dtype, layout, m, a, t


def main():
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--out", required=True, help="output directory")
    ap.add_argument("--seed", default="20261125",
                    help="integer seed, or 'random' for fresh cases (the seed used is recorded)")
    args = ap.parse_args()
    seed = random.SystemRandom().randrange(2**31) if args.seed == "random" else int(args.seed)
    gen = torch.Generator().manual_seed(seed)
    rng = random.Random(seed)
    torch.manual_seed(seed)
    w = ReferenceWriter()
    all_cases = [run_case(w, gen, *c) for c in cases(rng)]
    w.save(args.out, "batch_norm", {"torch_version": torch.__version__, "seed": seed,
                                    "cases": all_cases})
    print(f"batch_norm reference: {len(all_cases)} cases, seed {seed}, torch {torch.__version__}")


if __name__ == "__main__":
    main()
