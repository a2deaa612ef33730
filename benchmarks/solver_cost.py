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
from functools import partial

import jax
import jax.numpy as jnp

from benchmarks.common import header, median_ratio, write_json
from sdnet_jax import ops

SHAPES = {"stem 3->64": (3, 64), "body 64->64": (64, 64)}


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
    result = dict(header(), batch=args.batch, size=args.size, rows=rows)
    write_json(args.json, result)
    return result


if __name__ == "__main__":
    main()
