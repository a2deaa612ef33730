"""What every benchmark shares: side-by-side timing and the JSON output.

Each benchmark prints ratios measured in one process, interleaving the programs it compares (these
machines are noisy; absolute times are context only) and writes its rows as JSON under ``bench_out/``.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable

import jax
import numpy as np

from sdnet_jax import workarounds

workarounds.prefer_eigen_convolutions()  # as the entrypoints do; before any JAX computation


def time_once(fn: Callable, *args) -> float:
    """Wall time of one call, waiting for JAX's asynchronous results."""
    start = time.perf_counter()
    jax.block_until_ready(fn(*args))
    return time.perf_counter() - start


def median_ratio(fn_a, fn_b, args, repeats: int, args_b=None) -> tuple[float, float, float]:
    """Median of per-repeat ``t_a / t_b`` (the two calls interleaved), plus the median times.

    ``fn_b`` gets ``args_b`` when given (e.g. PyTorch tensors), else ``args``. Both are called once
    first to compile and warm up.
    """
    args_b = args if args_b is None else args_b
    jax.block_until_ready(fn_a(*args))
    jax.block_until_ready(fn_b(*args_b))
    ta, tb = [], []
    for _ in range(repeats):
        ta.append(time_once(fn_a, *args))
        tb.append(time_once(fn_b, *args_b))
    ratios = np.array(ta) / np.array(tb)
    return float(np.median(ratios)), float(np.median(ta)), float(np.median(tb))


def header() -> dict:
    """Context recorded with every result."""
    return dict(jax=jax.__version__, platform=jax.devices()[0].platform, date=time.strftime("%F"))


def write_json(path: str | None, result: dict) -> None:
    if not path:
        return
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    with open(path, "w") as f:
        json.dump(result, f, indent=2)
