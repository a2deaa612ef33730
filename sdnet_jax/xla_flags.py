"""XLA options this project sets for the CPU backend.

``prefer_eigen_convolutions()`` adds ``--xla_cpu_experimental_ynn_fusion_type=`` (an empty list) to
``XLA_FLAGS``: XLA's CPU backend then lowers convolutions to its multi-threaded Eigen kernels instead
of YNNPACK fusions, which ran single-threaded here (jax 0.10.2: a 64->64 3x3 conv at batch 128 took
the same time on one core as on two). Measured on the 2-core machine: that conv 2.1x faster, a
2-iteration CSC layer's forward+backward 1.7x faster at batch 128 (64->64: from 1.09x to 0.65x the
PyTorch reference layer's time; ``benchmarks.torch_reference``). It only affects the CPU backend.

XLA reads ``XLA_FLAGS`` once, when the first backend starts: call this before any JAX computation
(the entrypoints and benchmarks do). A flag already in ``XLA_FLAGS`` is left as the user set it.
"""

from __future__ import annotations

import os
import warnings

from jax._src import xla_bridge

EIGEN_CONVOLUTIONS = "--xla_cpu_experimental_ynn_fusion_type="


def prefer_eigen_convolutions() -> bool:
    """Adds :data:`EIGEN_CONVOLUTIONS` to ``XLA_FLAGS``; returns whether it did.

    Does nothing when the user's ``XLA_FLAGS`` already sets that option, and warns (also doing
    nothing) when a JAX backend is already running, since XLA would ignore the change.
    """
    flags = os.environ.get("XLA_FLAGS", "")
    if EIGEN_CONVOLUTIONS.split("=")[0] in flags:
        return False
    if xla_bridge.backends_are_initialized():
        warnings.warn(
            "prefer_eigen_convolutions() called after JAX started its backends: XLA_FLAGS is read "
            "once, so call it before the first JAX computation.",
            stacklevel=2,
        )
        return False
    os.environ["XLA_FLAGS"] = f"{flags} {EIGEN_CONVOLUTIONS}".strip()
    return True
