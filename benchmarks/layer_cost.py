"""Cost of the CSC *layer* (``CSCConv``, the Flax module) relative to an ``nn.Conv`` of the same shape.

For K = 1, 2, 4, 8 iterations and the SDNet stem (3->64: 3x3/1 at 32x32, the ImageNet 7x7/2 at
224x224) and body (64->64 at 32x32, 128->128 at 16x16) shapes, prints ``layer time / conv time`` for
the forward pass and for forward+backward (gradients with respect to the parameters and the input in
both), beside the floor ``2K - 1`` (iteration 0 is one conv, every later one a transposed conv and a
conv), in two modes:

* ``train``: the ``power_iteration`` collection is mutable, so the layer runs its warm-started
  power-iteration update (``power_iters`` iterations on a batch-1 signal-shaped vector) every call;
* ``eval``: the collection is frozen (the stored step size is used as is).

Each time ratio is measured side by side in one process, interleaving the two programs, median over
repeats; absolute times are context only. Beside them, ``flops``: the ratio of XLA's own FLOP counts
of the two compiled programs (``compiled.cost_analysis()``), which is deterministic (a ``while`` loop
body is counted once). The power iteration's share shrinks as the batch grows (its vector has batch 1).

    python -m benchmarks.layer_cost [--batch 8] [--batch-224 2] [--repeats 3] [--iters 1 2 4 8]
        [--shapes stem32 stem224 body32 body16] [--json bench_out/layer_cost.json]
"""

from __future__ import annotations

import argparse

import flax.linen as nn
import jax
import jax.numpy as jnp

from benchmarks.common import header, median_ratio, write_json
from sdnet_jax.models import CSCConv
from sdnet_jax.models.csc import STATE

# name -> (label, C_in, C_out, spatial size, kernel, stride)
SHAPES = {
    "stem32": ("stem 3->64 3x3/1 32x32", 3, 64, 32, 3, 1),
    "stem224": ("stem 3->64 7x7/2 224x224", 3, 64, 224, 7, 2),
    "body32": ("body 64->64 3x3/1 32x32", 64, 64, 32, 3, 1),
    "body16": ("body 128->128 3x3/1 16x16", 128, 128, 16, 3, 1),
}
MODES = ("train", "eval")


def flops(compiled) -> float:
    """XLA's FLOP count of a compiled program (0 when the backend does not report it)."""
    analysis = compiled.cost_analysis()
    if isinstance(analysis, list | tuple):  # older JAX: one dict per computation
        analysis = analysis[0] if analysis else {}
    return float((analysis or {}).get("flops", 0.0))


def _sq(out: jax.Array) -> jax.Array:
    return jnp.sum(jnp.square(out.astype(jnp.float32)))


def _compile(programs: dict) -> dict:
    return {name: (jax.jit(fn).lower(*a).compile(), a) for name, (fn, a) in programs.items()}


def build_conv(cout: int, kernel: int, stride: int, x: jax.Array) -> dict:
    """Compiled ``{program: (callable, args)}`` of ``nn.Conv``, fwd and fwd+bwd.

    fwd+bwd is the gradient of ``sum(out**2)`` with respect to the parameters and the input.
    """
    pad = ((kernel // 2, kernel // 2),) * 2
    conv = nn.Conv(cout, (kernel, kernel), strides=stride, padding=pad, use_bias=False)
    conv_vars = conv.init(jax.random.key(1), x)

    def conv_fwd(v, x):
        return conv.apply(v, x)

    def conv_fb(p, x):
        return jax.grad(lambda p, x: _sq(conv.apply({"params": p}, x)), argnums=(0, 1))(p, x)

    return _compile(
        {
            "conv_fwd": (conv_fwd, (conv_vars, x)),
            "conv_fwd_bwd": (conv_fb, (conv_vars["params"], x)),
        }
    )


def build_csc(num_iters: int, cout: int, kernel: int, stride: int, x: jax.Array, **csc) -> dict:
    """Compiled ``{program: (callable, args)}`` of ``CSCConv`` in both modes, fwd and fwd+bwd."""
    pad = ((kernel // 2, kernel // 2),) * 2
    layer = CSCConv(cout, kernel, strides=stride, padding=pad, num_iters=num_iters, **csc)
    csc_vars = layer.init(jax.random.key(1), x)
    params, state = csc_vars["params"], csc_vars[STATE]

    def csc_fwd(mutable):
        def f(params, state, x):
            return layer.apply({"params": params, STATE: state}, x, mutable=mutable)

        return f

    def csc_fb(mutable):
        def loss(params, state, x):
            out = layer.apply({"params": params, STATE: state}, x, mutable=mutable)
            out, new_state = out if mutable else (out, state)
            return _sq(out), new_state

        def f(params, state, x):
            return jax.grad(loss, argnums=(0, 2), has_aux=True)(params, state, x)

        return f

    programs = {
        "train_fwd": (csc_fwd([STATE]), (params, state, x)),
        "eval_fwd": (csc_fwd(False), (params, state, x)),
        "train_fwd_bwd": (csc_fb([STATE]), (params, state, x)),
        "eval_fwd_bwd": (csc_fb(False), (params, state, x)),
    }
    return _compile(programs)


def measure(programs: dict, modes, repeats: int) -> dict:
    """Time and FLOP ratios of the CSC programs to the conv's, per mode and pass."""
    row = {}
    for mode in modes:
        for kind in ("fwd", "fwd_bwd"):
            fn, args = programs[f"{mode}_{kind}"]
            base, base_args = programs[f"conv_{kind}"]
            ratio, _, t_conv = median_ratio(fn, base, args, repeats, args_b=base_args)
            row[f"{mode}_{kind}_ratio"] = ratio
            row[f"{mode}_{kind}_flops_ratio"] = flops(fn) / max(flops(base), 1.0)
            row[f"conv_{kind}_ms"] = 1e3 * t_conv
    return row


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--batch", type=int, default=8, help="batch of the 32x32 and 16x16 shapes")
    parser.add_argument("--batch-224", type=int, default=2, help="batch of the 224x224 shape")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--iters", type=int, nargs="+", default=[1, 2, 4, 8])
    parser.add_argument("--shapes", nargs="+", choices=list(SHAPES), default=list(SHAPES))
    parser.add_argument("--modes", nargs="+", choices=MODES, default=list(MODES))
    parser.add_argument("--power-iters", type=int, default=None, help="CSCConv.power_iters")
    parser.add_argument("--json", default="bench_out/layer_cost.json")
    args = parser.parse_args(argv)
    csc = {} if args.power_iters is None else {"power_iters": args.power_iters}

    print(f"jax {jax.__version__} on {jax.devices()[0].platform}; layer/conv time (XLA flops)")
    cols = [f"{m} {k}" for m in args.modes for k in ("fwd", "fwd+bwd")]
    print(f"{'shape':<26} {'N':>3} {'K':>2} {'floor':>5} " + " ".join(f"{c:>17}" for c in cols))
    rows = []
    for key in args.shapes:
        label, cin, cout, size, kernel, stride = SHAPES[key]
        batch = args.batch_224 if size >= 224 else args.batch
        x = jax.random.normal(jax.random.key(0), (batch, size, size, cin), jnp.float32)
        conv = build_conv(cout, kernel, stride, x)
        for k in args.iters:
            programs = {**conv, **build_csc(k, cout, kernel, stride, x, **csc)}
            row = dict(shape=label, batch=batch, K=k, floor=2 * k - 1)
            row.update(measure(programs, args.modes, args.repeats))
            rows.append(row)
            cells = [
                f"{row[f'{m}_{p}_ratio']:6.2f} ({row[f'{m}_{p}_flops_ratio']:6.2f})"
                for m in args.modes
                for p in ("fwd", "fwd_bwd")
            ]
            print(
                f"{label:<26} {batch:>3} {k:>2} {2 * k - 1:>5} "
                + " ".join(f"{c:>17}" for c in cells)
                + f"   conv {row['conv_fwd_ms']:.1f} / {row['conv_fwd_bwd_ms']:.1f} ms",
                flush=True,
            )
    result = dict(header(), repeats=args.repeats, csc_options=csc, rows=rows)
    write_json(args.json, result)
    return result


if __name__ == "__main__":
    main()
