"""The layer part on a GPU: ``CSCConv`` (jitted, its power-iteration state frozen) against SDNet's
PyTorch layer (:func:`benchmarks.torch_reference.torch_csc`) eager and ``torch.compile``d, the same
problem and step on both sides, forward and forward+backward; ratios ours / PyTorch (below 1: ours
is faster). Imports PyTorch: only for a GPU that has it."""

from __future__ import annotations

import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # before torch starts OpenMP (torch_reference)

import time
from collections.abc import Callable
from functools import partial
from typing import Any

import jax
import numpy as np
import torch

from benchmarks import torch_reference as ref

SHAPES = ("stem 3->64 32x32", "body 64->64 32x32")
REPEATS = 20


def _median_ms(fn: Callable, sync: Callable, repeats: int = REPEATS) -> float:
    sync(fn())  # compile / warm up
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        sync(fn())
        times.append(time.perf_counter() - start)
    return 1e3 * float(np.median(times))


def _torch_sync(out: Any) -> None:
    if torch.cuda.is_available():
        torch.cuda.synchronize()


def _programs(x, kernel, lip: float, device) -> tuple[dict, dict]:
    """Our jitted layer and SDNet's (eager and compiled) on one problem: ``({kind: fn},
    {(kind, mode): fn})``, each a call with no arguments."""
    step = ref.STEP_SCALE / lip
    layer = partial(ref.ours_layer, lipschitz_value=lip, num_iters=ref.NUM_ITERS)
    fwd, fwd_bwd = jax.jit(layer), jax.jit(partial(ref.jax_fwd_bwd, layer))
    ours = {"fwd": lambda: fwd(x, kernel), "fwd_bwd": lambda: fwd_bwd(x, kernel)}
    xt, wt = (t.detach().to(device).requires_grad_() for t in ref.to_torch(x, kernel))
    compiled = torch.compile(ref.torch_csc)

    def compiled_fwd():
        with torch.no_grad():
            return compiled(xt, wt, step=step)

    def compiled_fwd_bwd():
        return torch.autograd.grad(torch.sum(compiled(xt, wt, step=step) ** 2), (xt, wt))

    theirs = {
        ("fwd", "eager"): lambda: ref.torch_fwd(xt, wt, step),
        ("fwd_bwd", "eager"): lambda: ref.torch_fwd_bwd(xt, wt, step),
        ("fwd", "compiled"): compiled_fwd,
        ("fwd_bwd", "compiled"): compiled_fwd_bwd,
    }
    return ours, theirs


def compare(
    batch: int, deadline: float, progress: Callable, device: str = "cuda"
) -> dict[str, Any]:
    """Both layers on ``device`` (PyTorch's; JAX's default device): one row per shape of
    :data:`SHAPES`, as many as ``deadline`` allows."""
    result: dict[str, Any] = {"status": "running", "batch": batch, "device": device,
                              "torch": torch.__version__, "rows": []}  # fmt: skip
    for i, name in enumerate(SHAPES):
        if time.monotonic() > deadline:
            result["status"] = f"cut after {i} of {len(SHAPES)} shapes (budget)"
            return result
        cin, cout, size = ref.SHAPES[name]
        x, kernel = ref.problem(batch, cin, cout, size)
        lip = ref.lipschitz(kernel, (size, size), 1, 1)
        ours, theirs = _programs(x, kernel, lip, torch.device(device))
        row: dict[str, Any] = {"shape": name, "batch": batch, "lipschitz": lip}
        for kind, fn in ours.items():
            row[f"{kind}_ours_ms"] = _median_ms(fn, jax.block_until_ready)
        for (kind, mode), fn in theirs.items():
            try:
                row[f"{kind}_torch_{mode}_ms"] = _median_ms(fn, _torch_sync)
                row[f"{kind}_{mode}_ratio"] = (
                    row[f"{kind}_ours_ms"] / row[f"{kind}_torch_{mode}_ms"]
                )
            except Exception as error:  # torch.compile needs a working Triton
                row[f"{kind}_torch_{mode}_error"] = f"{type(error).__name__}: {error}"[:300]
        result["rows"].append(row)
        progress(result)
    result["status"] = "done"
    return result
