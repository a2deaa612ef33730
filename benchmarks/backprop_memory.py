"""Memory of backprop through a CSC layer as the iteration count K grows.

For ``CSCConv`` (body shape 64->64, 3x3, 32x32, batch 32; evaluation mode, so only the solver runs)
and K = 1, 2, 4, 8, 16, 32, compiles the gradient of ``sum(z**2)`` with respect to the dictionary
and the input and reads XLA's ``temp`` bytes from ``compiled.memory_analysis()`` (the scratch
buffers, where the residuals kept for the backward pass live; deterministic, nothing is run), for:

* ``unrolled``: ``grad='unrolled'``, backprop through the iterations (memory grows with K);
* ``remat``: the same, with the whole layer call wrapped in ``jax.checkpoint`` by this benchmark
  (``solve_lasso`` has no per-iteration rematerialisation option). The backward pass re-runs the
  solve and then backprops through it, so for a *single* layer the peak is not lower; what it saves
  is the residuals held between this layer's forward and backward while *other* layers run;
* ``implicit``: ``grad='implicit'`` (conjugate gradients on the support at the fixed point; memory
  independent of K).

Prints the bytes and the ratio to K = 1 of each mode.

    python -m benchmarks.backprop_memory [--batch 32] [--size 32] [--channels 64]
        [--iters 1 2 4 8 16 32] [--json bench_out/backprop_memory.json]
"""

from __future__ import annotations

import argparse

import jax
import jax.numpy as jnp

from benchmarks.common import header, write_json
from sdnet_jax.models import CSCConv

MODES = ("unrolled", "remat", "implicit")


def temp_bytes(mode: str, num_iters: int, x: jax.Array, channels: int) -> int:
    """XLA temp bytes of the compiled fwd+bwd of one CSC layer."""
    grad = "implicit" if mode == "implicit" else "unrolled"
    layer = CSCConv(channels, 3, padding=((1, 1), (1, 1)), num_iters=num_iters, grad=grad)
    variables = jax.eval_shape(layer.init, jax.random.key(0), x)

    def forward(variables, x):
        return layer.apply(variables, x)

    if mode == "remat":
        forward = jax.checkpoint(forward)

    def loss(params, rest, x):
        return jnp.sum(jnp.square(forward({"params": params, **rest}, x)))

    params = variables["params"]
    rest = {k: v for k, v in variables.items() if k != "params"}
    fwd_bwd = jax.jit(jax.grad(loss, argnums=(0, 2)))
    compiled = fwd_bwd.lower(params, rest, x).compile()
    return int(compiled.memory_analysis().temp_size_in_bytes)


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--size", type=int, default=32)
    parser.add_argument("--channels", type=int, default=64)
    parser.add_argument("--iters", type=int, nargs="+", default=[1, 2, 4, 8, 16, 32])
    parser.add_argument("--modes", nargs="+", choices=MODES, default=list(MODES))
    parser.add_argument("--json", default="bench_out/backprop_memory.json")
    args = parser.parse_args(argv)

    x = jax.ShapeDtypeStruct((args.batch, args.size, args.size, args.channels), jnp.float32)
    code_mib = args.batch * args.size**2 * args.channels * 4 / 2**20
    print(
        f"jax {jax.__version__} on {jax.devices()[0].platform}; CSC {args.channels}->"
        f"{args.channels} 3x3, {args.size}x{args.size}, batch {args.batch} "
        f"(one code = {code_mib:.1f} MiB); fwd+bwd temp MiB (ratio to K=1)"
    )
    print(f"{'K':>3} " + " ".join(f"{m:>18}" for m in args.modes))
    rows, first = [], {}
    for k in args.iters:
        row = dict(K=k)
        for mode in args.modes:
            nbytes = temp_bytes(mode, k, x, args.channels)
            first.setdefault(mode, nbytes)
            row[f"{mode}_bytes"] = nbytes
            row[f"{mode}_ratio"] = nbytes / max(first[mode], 1)
        rows.append(row)
        cells = [f"{row[f'{m}_bytes'] / 2**20:8.1f} ({row[f'{m}_ratio']:5.2f})" for m in args.modes]
        print(f"{k:>3} " + " ".join(f"{c:>18}" for c in cells), flush=True)
    result = dict(header(), batch=args.batch, size=args.size, channels=args.channels, rows=rows)
    write_json(args.json, result)
    return result


if __name__ == "__main__":
    main()
