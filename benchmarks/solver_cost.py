"""Cost of the unrolled CSC solver relative to one convolution of the same shape.

For K = 1, 2, 4, 8 iterations and the SDNet stem (3->64) and body (64->64) shapes at 32x32, prints
``solver time / conv time`` for the forward pass and for forward+backward (gradients with respect to
the input and the kernel in both), beside the floor ``2K - 1`` (iteration 0 is one conv, every later
one a transposed conv and a conv). Each ratio is measured side by side in one process, interleaving
the two programs, median over repeats; absolute times are context only.

    python -m benchmarks.solver_cost [--batch 128] [--repeats 5] [--json bench_out/solver_cost.json]
"""

from __future__ import annotations

import argparse
import json
import os
import time
from functools import partial

import jax
import jax.numpy as jnp
import numpy as np

from sdnet_jax import ops

SHAPES = {"stem 3->64": (3, 64), "body 64->64": (64, 64)}


def _time(fn, *args) -> float:
    start = time.perf_counter()
    jax.block_until_ready(fn(*args))
    return time.perf_counter() - start


def median_ratio(fn_a, fn_b, args, repeats: int) -> tuple[float, float, float]:
    """Median of per-repeat ``t_a / t_b`` (interleaved), plus the median times."""
    for fn in (fn_a, fn_b):  # compile and warm up
        jax.block_until_ready(fn(*args))
    ta, tb = [], []
    for _ in range(repeats):
        ta.append(_time(fn_a, *args))
        tb.append(_time(fn_b, *args))
    ratios = np.array(ta) / np.array(tb)
    return float(np.median(ratios)), float(np.median(ta)), float(np.median(tb))


def build(num_iters: int, hw: tuple[int, int]):
    def conv(x, kernel):
        return ops.conv_analysis(x, kernel, strides=1, padding="SAME")

    def solver(x, kernel):
        analysis, synthesis = ops.conv_pair(kernel, signal_hw=hw)
        return ops.fista(
            x, analysis, synthesis=synthesis, lam=0.1, step=0.1, num_iters=num_iters, nonneg=True
        )

    def fwd_bwd(f, x, kernel):
        return jax.grad(lambda x, k: jnp.sum(f(x, k) ** 2), argnums=(0, 1))(x, kernel)

    return (
        jax.jit(conv),
        jax.jit(solver),
        jax.jit(partial(fwd_bwd, conv)),
        jax.jit(partial(fwd_bwd, solver)),
    )


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--size", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--iters", type=int, nargs="+", default=[1, 2, 4, 8])
    parser.add_argument("--json", default="bench_out/solver_cost.json")
    args = parser.parse_args(argv)

    hw = (args.size, args.size)
    print(
        f"jax {jax.__version__} on {jax.devices()[0].platform}, batch {args.batch}, {hw[0]}x{hw[1]}"
    )
    print(
        f"{'shape':<12} {'K':>2} {'floor':>5} {'fwd':>6} {'fwd+bwd':>8}   (conv fwd / fwd+bwd ms)"
    )
    rows = []
    for name, (cin, cout) in SHAPES.items():
        key_x, key_k = jax.random.split(jax.random.key(0))
        x = jax.random.normal(key_x, (args.batch, *hw, cin), jnp.float32)
        kernel = ops.normalize_atoms(jax.random.normal(key_k, (3, 3, cin, cout), jnp.float32))
        for k in args.iters:
            conv, solver, conv_fb, solver_fb = build(k, hw)
            fwd, _, t_conv = median_ratio(solver, conv, (x, kernel), args.repeats)
            fb, _, t_conv_fb = median_ratio(solver_fb, conv_fb, (x, kernel), args.repeats)
            row = dict(shape=name, K=k, floor=2 * k - 1, fwd_ratio=fwd, fwd_bwd_ratio=fb)
            row.update(conv_fwd_ms=1e3 * t_conv, conv_fwd_bwd_ms=1e3 * t_conv_fb)
            rows.append(row)
            print(
                f"{name:<12} {k:>2} {2 * k - 1:>5} {fwd:6.2f} {fb:8.2f}"
                f"   ({1e3 * t_conv:.1f} / {1e3 * t_conv_fb:.1f})",
                flush=True,
            )
    result = dict(jax=jax.__version__, batch=args.batch, size=args.size, rows=rows)
    if args.json:
        os.makedirs(os.path.dirname(args.json) or ".", exist_ok=True)
        with open(args.json, "w") as f:
            json.dump(result, f, indent=2)
    return result


if __name__ == "__main__":
    main()
