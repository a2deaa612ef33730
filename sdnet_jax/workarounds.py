"""Platform workarounds: what this project does differently because of one backend's behaviour,
each with the JAX version and machine it was measured on (re-measure with ``make bench`` when
JAX changes; the numbers live in the README's Benchmarks section).

* :func:`prefer_eigen_convolutions` — XLA's CPU backend (jax 0.10.2, 2-core x86 machine) lowered
  convolutions to YNNPACK fusions that ran single-threaded; ``--xla_cpu_experimental_ynn_fusion_type=``
  (an empty list) in ``XLA_FLAGS`` makes it use its multi-threaded Eigen kernels instead (a 3x3
  64->64 conv at batch 128 2.1x faster, a 2-iteration CSC layer's forward+backward 1.7x). XLA reads
  ``XLA_FLAGS`` once, when the first backend starts: the entrypoints, benchmarks and tests call it
  before any JAX computation; a flag already in ``XLA_FLAGS`` is left as the user set it. CPU only.
* :func:`kernel_grad_chunk` — on the CPU backend (jax 0.10.2) the kernel gradient of a convolution,
  one contraction over the whole batch, ran 2-4x slower than the convolution at batch 128; taken
  in chunks of ``KERNEL_GRAD_CHUNK`` examples (:func:`sdnet_jax.ops.dictionary.conv_analysis`'s
  custom JVP: the same sums in another order) it costs about one convolution (backprop through a
  2-iteration CSC layer 1.3-1.6x faster). GPU/TPU take the whole batch at once.
* One batched Cholesky in the rate-reduction ops (``sdnet_jax.ops.rates._rates_of``): three or
  more concurrent batched Cholesky factorisations of 128x128 matrices under ``jax.grad``
  deadlocked jaxlib's CPU backend (jax 0.10.2), hanging CTRL training; every Gram matrix of an
  objective is therefore zero-padded to one size and factorised in one call (the structure of that
  function, not a switch, so it stays there; ``tests/ops/test_rate_reduction.py`` has the
  regression test).

Imports jax's public API only (the ops use it; nothing here reads ``jax._src``, so a newer JAX
changes at most whether :func:`backends_started` can tell).
"""

from __future__ import annotations

import os
import warnings

import jax

EIGEN_CONVOLUTIONS = "--xla_cpu_experimental_ynn_fusion_type="


def prefer_eigen_convolutions() -> bool:
    """Adds :data:`EIGEN_CONVOLUTIONS` to ``XLA_FLAGS``; returns whether it did.

    Does nothing when the user's ``XLA_FLAGS`` already sets that option, and warns (also doing
    nothing) when a JAX backend is already running, since XLA would ignore the change.
    """
    flags = os.environ.get("XLA_FLAGS", "")
    if EIGEN_CONVOLUTIONS.split("=")[0] in flags:
        return False
    if backends_started():
        warnings.warn(
            "prefer_eigen_convolutions() called after JAX started its backends: XLA_FLAGS is read "
            "once, so call it before the first JAX computation.",
            stacklevel=2,
        )
        return False
    os.environ["XLA_FLAGS"] = f"{flags} {EIGEN_CONVOLUTIONS}".strip()
    return True


def backends_started() -> bool:
    """Whether JAX has started its backends (so ``XLA_FLAGS`` was read already), asked through
    public API only: ``jax_num_cpu_devices`` may change only before the backends start, and JAX
    refuses a change afterwards. The probe sets another value and restores the old one, which
    changes nothing when no backend runs. A JAX without that option cannot tell: ``False``."""
    try:
        current = jax.config.jax_num_cpu_devices
    except AttributeError:
        return False
    try:
        jax.config.update("jax_num_cpu_devices", -2 if current != -2 else -3)
    except RuntimeError:
        return True
    jax.config.update("jax_num_cpu_devices", current)
    return False


KERNEL_GRAD_CHUNK = 16  # examples per convolution in a kernel gradient on the CPU backend


def kernel_grad_chunk(batch: int) -> int:
    """Examples per convolution in a conv kernel gradient: ``KERNEL_GRAD_CHUNK`` on the CPU
    backend, the whole ``batch`` elsewhere (GPU/TPU convolution libraries take it at once)."""
    return KERNEL_GRAD_CHUNK if jax.default_backend() == "cpu" else batch
