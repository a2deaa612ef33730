"""Our CSC layer against SDNet's reference PyTorch layer, on this CPU.

The same layer on both sides (docs/design.md section 2): 2 unrolled iterations, non-negative codes,
``λ = 0.1``, step ``t = 0.9 / L``, 3x3 kernels, stride 1, padding 1. PyTorch follows SDNet's public
code: analysis ``F.conv2d``, synthesis ``F.conv_transpose2d`` with the ``output_padding`` that gives
the signal's size, ``z₀ = relu(t·Aᵀx − tλ)`` and ``z = relu(z + t·Aᵀ(x − A z) − tλ)``. Ours is the
pure op (:func:`sdnet_jax.ops.sdnet` on :func:`sdnet_jax.ops.conv_pair`, jitted, NHWC) and the
Flax layer :class:`sdnet_jax.models.CSCConv` applied with its ``power_iteration`` collection frozen.

``L`` is estimated once, outside the timed region, and given to both sides as a number (the same
``t``): SDNet's layer runs up to 50 power iterations before *every* forward pass, which is left out
here, so the comparison is of the solver alone and favours PyTorch. PyTorch's forward runs under
``torch.no_grad``; forward+backward is the gradient of ``sum(z²)`` with respect to the input and the
kernel on both sides. PyTorch gets as many threads as the CPU cores JAX uses, and its OpenMP threads
sleep rather than spin between parallel regions (``OMP_WAIT_POLICY=PASSIVE`` unless the variable is
already set): spinning threads starve JAX's thread pool when the two are interleaved on a small CPU, and
under other load they starved PyTorch itself (its layer ran 3-5x slower on this 2-core machine).

Prints ``ours / PyTorch`` time ratios (below 1: ours is faster), each measured side by side in one
process, interleaving the two programs, median over repeats; absolute times are context only.

    python -m benchmarks.torch_reference [--batch 16 128] [--repeats 3] \
        [--json bench_out/torch_reference.json]
"""

from __future__ import annotations

import argparse
import math
import os
from functools import partial

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # read when torch's OpenMP runtime starts

import jax
import jax.numpy as jnp
import numpy as np
import torch
import torch.nn.functional as F

from benchmarks.common import header, median_ratio, write_json
from sdnet_jax import models, ops

# name: (C_in, C_out, spatial size)
SHAPES = {
    "stem 3->64 32x32": (3, 64, 32),
    "body 64->64 32x32": (64, 64, 32),
    "body 128->128 16x16": (128, 128, 16),
}
LAM = 0.1
NUM_ITERS = 2
STEP_SCALE = 0.9


def torch_csc(
    x: torch.Tensor,
    weight: torch.Tensor,
    *,
    step: float,
    lam: float = LAM,
    num_iters: int = NUM_ITERS,
    stride: int = 1,
    padding: int = 1,
    nonneg: bool = True,
) -> torch.Tensor:
    """SDNet's CSC layer in PyTorch (NCHW), as its public code computes it.

    Args:
      x: input ``(N, C_in, H, W)``.
      weight: dictionary ``(C_out, C_in, kh, kw)`` (an ``nn.Conv2d`` weight).
      step: ``t = 0.9 / L``, a number: no power iteration runs here (SDNet runs it before every
        forward pass; the benchmark keeps it out of the timed region and gives both sides one ``t``).
      lam, num_iters, stride, padding, nonneg: as SDNet's ``DictConv2d``.

    For ``num_iters >= 3`` this is SDNet's FISTA variant (momentum, gradient at the non-extrapolated
    point), ``method='sdnet'`` in :func:`sdnet_jax.ops.solve_lasso`.
    """

    def prox(u):
        return F.relu(u - step * lam) if nonneg else torch.sign(u) * F.relu(u.abs() - step * lam)

    def analysis(v):
        return F.conv2d(v, weight, stride=stride, padding=padding)

    z = prox(step * analysis(x))
    out_pad = [
        n + 2 * padding - k - (m - 1) * stride
        for n, k, m in zip(x.shape[2:], weight.shape[2:], z.shape[2:], strict=True)
    ]

    def synthesis(c):
        return F.conv_transpose2d(
            c, weight, stride=stride, padding=padding, output_padding=tuple(out_pad)
        )

    z_prev, tau = z, 1.0
    for _ in range(num_iters - 1):
        tau_next = (1.0 + math.sqrt(1.0 + 4.0 * tau * tau)) / 2.0
        y = z + ((tau - 1.0) / tau_next) * (z - z_prev)
        z_prev, z, tau = z, prox(y + step * analysis(x - synthesis(z))), tau_next
    return z


def lipschitz(kernel: jax.Array, hw: tuple[int, int], stride: int, padding: int) -> float:
    """``L = ‖A‖²`` of the zero-padded, strided operator at input size ``hw`` (power iteration)."""
    analysis, synthesis = ops.conv_pair(kernel, signal_hw=hw, strides=stride, padding=padding)
    u = jax.random.normal(jax.random.key(7), (1, *hw, kernel.shape[2]), kernel.dtype)
    value, _ = ops.power_iteration(analysis, u, num_iters=100, synthesis=synthesis)
    return float(value)


def ours_op(x, kernel, *, step, stride=1, padding=1, num_iters=NUM_ITERS):
    """Our side, the pure op: ``ops.sdnet`` on the conv pair (NHWC, HWIO)."""
    analysis, synthesis = ops.conv_pair(
        kernel, signal_hw=x.shape[1:3], strides=stride, padding=padding
    )
    return ops.sdnet(
        x,
        analysis,
        synthesis=synthesis,
        lam=LAM,
        step=step,
        num_iters=num_iters,
        nonneg=True,
    )


def ours_layer(x, kernel, *, lipschitz_value, stride=1, padding=1, num_iters=NUM_ITERS):
    """Our side, the Flax layer with its power-iteration state frozen at ``lipschitz_value``."""
    layer = models.CSCConv(
        features=kernel.shape[-1],
        kernel_size=kernel.shape[:2],
        strides=stride,
        padding=padding,
        lam=LAM,
        num_iters=num_iters,
        method="sdnet",
        nonneg=True,
        step_scale=STEP_SCALE,
        param_dtype=kernel.dtype,
    )
    state = {  # the vector only sets the shape: the frozen state runs no power iteration
        "u": jnp.ones((1, *x.shape[1:3], x.shape[-1]), jnp.float32),
        "lipschitz": jnp.asarray(lipschitz_value, kernel.dtype),
    }
    return layer.apply({"params": {"dictionary": kernel}, "power_iteration": state}, x)


def jax_fwd_bwd(f, x, kernel):
    return jax.grad(lambda x, k: jnp.sum(f(x, k) ** 2), argnums=(0, 1))(x, kernel)


def torch_fwd(x, weight, step):
    with torch.no_grad():
        return torch_csc(x, weight, step=step)


def torch_fwd_bwd(x, weight, step):
    z = torch_csc(x, weight, step=step)
    return torch.autograd.grad(torch.sum(z**2), (x, weight))


def to_torch(x: jax.Array, kernel: jax.Array) -> tuple[torch.Tensor, torch.Tensor]:
    """NHWC input and HWIO kernel to NCHW / OIHW tensors that require grad."""
    xt = torch.from_numpy(np.asarray(x).transpose(0, 3, 1, 2).copy()).requires_grad_()
    wt = torch.from_numpy(np.asarray(kernel).transpose(3, 2, 0, 1).copy()).requires_grad_()
    return xt, wt


def problem(batch: int, cin: int, cout: int, size: int, dtype=jnp.float32):
    key_x, key_k = jax.random.split(jax.random.key(0))
    x = jax.random.normal(key_x, (batch, size, size, cin), dtype)
    kernel = ops.normalize_atoms(jax.random.normal(key_k, (3, 3, cin, cout), dtype))
    return x, kernel


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--batch", type=int, nargs="+", default=[16, 128])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--shapes", nargs="+", choices=list(SHAPES), default=list(SHAPES))
    parser.add_argument("--json", default="bench_out/torch_reference.json")
    args = parser.parse_args(argv)

    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    torch.set_num_threads(cores)
    print(
        f"jax {jax.__version__} on {jax.devices()[0].platform}, torch {torch.__version__} with "
        f"{torch.get_num_threads()} threads; ratios ours / PyTorch (op | CSCConv layer)"
    )
    print(
        f"{'shape':<20} {'batch':>5} {'fwd op':>7} {'layer':>6} {'f+b op':>7} {'layer':>6}"
        "   (PyTorch fwd / f+b ms)"
    )
    rows = []
    for name in args.shapes:
        cin, cout, size = SHAPES[name]
        for batch in args.batch:
            x, kernel = problem(batch, cin, cout, size)
            lip = lipschitz(kernel, (size, size), 1, 1)
            step = STEP_SCALE / lip
            op = partial(ours_op, step=step)
            layer = partial(ours_layer, lipschitz_value=lip)
            xt, wt = to_torch(x, kernel)
            targs = (xt, wt, step)
            row = dict(shape=name, batch=batch, c_in=cin, c_out=cout, size=size, lipschitz=lip)
            for kind, ours, theirs in (
                ("fwd", lambda f: f, torch_fwd),
                ("fwd_bwd", lambda f: partial(jax_fwd_bwd, f), torch_fwd_bwd),
            ):
                for side, f in (("op", op), ("layer", layer)):
                    ratio, t_ours, t_torch = median_ratio(
                        jax.jit(ours(f)), theirs, (x, kernel), args.repeats, args_b=targs
                    )
                    row[f"{kind}_{side}_ratio"] = ratio
                    row[f"{kind}_{side}_ms"] = 1e3 * t_ours
                    row[f"{kind}_torch_ms"] = 1e3 * t_torch  # the second (layer) measurement
            rows.append(row)
            print(
                f"{name:<20} {batch:>5} {row['fwd_op_ratio']:7.2f} {row['fwd_layer_ratio']:6.2f} "
                f"{row['fwd_bwd_op_ratio']:7.2f} {row['fwd_bwd_layer_ratio']:6.2f}"
                f"   ({row['fwd_torch_ms']:.1f} / {row['fwd_bwd_torch_ms']:.1f})",
                flush=True,
            )
    result = dict(
        header(),
        torch=torch.__version__,
        torch_threads=torch.get_num_threads(),
        cpu_cores=cores,
        omp_wait_policy=os.environ.get("OMP_WAIT_POLICY"),
        load_average=os.getloadavg(),
        num_iters=NUM_ITERS,
        lam=LAM,
        step_scale=STEP_SCALE,
        repeats=args.repeats,
        rows=rows,
    )
    write_json(args.json, result)
    return result


if __name__ == "__main__":
    main()
