"""Pure, jittable noise corruptions with the CIFAR-10-C / ImageNet-C severity parameters.

The SDNet robustness experiments corrupt clean test images with the noise corruptions of
Hendrycks & Dietterich (ICLR 2019) and raise the sparse-coding λ at test time. This module
re-implements the four noise corruptions of their ``make_cifar_c.py`` (and, via
``table='imagenet'``, of ``make_imagenet_c.py``) as pure functions of an image batch and a
``jax.random`` key, so they run on device, inside ``jax.jit`` and under ``jax.vmap``.

Images are floating point with values in ``[0, 1]`` (any shape; NHWC ``(N, H, W, C)`` is the
intended one, every corruption acts elementwise). The corruptions act on these ``[0, 1]``
images: the input pipeline's per-channel mean/std normalisation must be applied *after*
corruption, never before. Outputs are clipped to ``[0, 1]`` and keep the input's shape and
dtype (the arithmetic runs in at least float32, so bfloat16 / float16 inputs are upcast for
the computation and rounded back at the end).

With ``c`` the severity's parameter, ``z ~ N(0, 1)`` i.i.d. per element and ``u ~ U[0, 1)``:

==================  ==========================================  ==============================
corruption          formula (then ``clip(·, 0, 1)``)             c, severity 1..5 (CIFAR-10-C)
==================  ==========================================  ==============================
``gaussian_noise``  ``x + c·z``                                  0.04, 0.06, 0.08, 0.09, 0.10
``shot_noise``      ``Poisson(c·x) / c``                         500, 250, 100, 75, 50
``impulse_noise``   ``1 if u < c/2, 0 if u > 1 - c/2, else x``  0.01, 0.02, 0.03, 0.05, 0.07
``speckle_noise``   ``x + x·c·z``                                0.06, 0.10, 0.12, 0.16, 0.20
==================  ==========================================  ==============================

ImageNet-C parameters (``table='imagenet'``): gaussian 0.08, 0.12, 0.18, 0.26, 0.38; shot 60,
25, 12, 5, 3; impulse 0.03, 0.06, 0.09, 0.17, 0.27; speckle 0.15, 0.20, 0.35, 0.45, 0.60.

Impulse noise is salt-and-pepper with amount ``c`` applied per element (per channel value,
not per pixel), half salt and half pepper, which is the distribution of
``skimage.util.random_noise(x, mode='s&p', amount=c)`` for ``x`` in ``[0, 1]``. It draws one
uniform per element rather than skimage's two Bernoulli masks, so with a fixed key the set of
corrupted elements only grows with the severity (likewise ``z`` is shared across severities
for the Gaussian and speckle noise): a severity sweep with one key uses common random numbers.
Random streams are JAX's, so results are not bit-identical to the NumPy originals, and the
original ``make_cifar_c.py`` also rounded its outputs to uint8, which is not done here.

Severity
--------
``severity`` is either a Python int (or NumPy integer / concrete integer array), validated to
lie in 1..5 with a ``ValueError`` raised at call (or trace) time, before anything compiles; or
a *traced* scalar integer array under ``jax.jit`` / ``jax.vmap``, which indexes a ``jnp``
parameter table so a whole severity sweep compiles once, e.g.::

    sweep = jax.jit(jax.vmap(gaussian_noise, in_axes=(None, None, 0)))
    noisy = sweep(images, key, jnp.arange(1, 6))  # (5, N, H, W, C)

A traced severity cannot raise: values outside 1..5 give an all-NaN output instead.
"""

from __future__ import annotations

import operator
from collections.abc import Callable, Mapping
from types import MappingProxyType
from typing import Final, Literal, Protocol

import jax
import jax.numpy as jnp
import numpy as np

__all__ = [
    "CORRUPTIONS",
    "CORRUPTION_PARAMS",
    "TABLES",
    "Corruption",
    "Severity",
    "Table",
    "corrupt",
    "gaussian_noise",
    "impulse_noise",
    "shot_noise",
    "speckle_noise",
]

Table = Literal["cifar10", "imagenet"]
Severity = int | jax.Array
"""A Python int in 1..5, or a scalar integer (possibly traced) array."""

NUM_SEVERITIES: Final = 5

CORRUPTION_PARAMS: Final[Mapping[str, Mapping[str, tuple[float, ...]]]] = MappingProxyType(
    {
        # Hendrycks & Dietterich, ImageNet-C/create_c/make_cifar_c.py.
        "cifar10": MappingProxyType(
            {
                "gaussian_noise": (0.04, 0.06, 0.08, 0.09, 0.10),
                "shot_noise": (500.0, 250.0, 100.0, 75.0, 50.0),
                "impulse_noise": (0.01, 0.02, 0.03, 0.05, 0.07),
                "speckle_noise": (0.06, 0.10, 0.12, 0.16, 0.20),
            }
        ),
        # Hendrycks & Dietterich, ImageNet-C/create_c/make_imagenet_c.py.
        "imagenet": MappingProxyType(
            {
                "gaussian_noise": (0.08, 0.12, 0.18, 0.26, 0.38),
                "shot_noise": (60.0, 25.0, 12.0, 5.0, 3.0),
                "impulse_noise": (0.03, 0.06, 0.09, 0.17, 0.27),
                "speckle_noise": (0.15, 0.20, 0.35, 0.45, 0.60),
            }
        ),
    }
)
"""``CORRUPTION_PARAMS[table][name][severity - 1]`` is the parameter ``c`` of the formulas."""

TABLES: Final[tuple[str, ...]] = tuple(CORRUPTION_PARAMS)


class Corruption(Protocol):
    """Signature shared by the corruptions: ``(images, key, severity, *, table) -> images``."""

    def __call__(
        self, images: jax.Array, key: jax.Array, severity: Severity, *, table: Table = "cifar10"
    ) -> jax.Array: ...


# --------------------------------------------------------------------------------------------
# Validation and parameter lookup
# --------------------------------------------------------------------------------------------


def _check_images(images: jax.Array) -> jax.Array:
    images = jnp.asarray(images)
    if not jnp.issubdtype(images.dtype, jnp.floating):
        raise ValueError(
            f"images must be floating point with values in [0, 1], got dtype {images.dtype} "
            "(convert uint8 images with x.astype(jnp.float32) / 255 first)"
        )
    return images


def _check_severity(severity: Severity) -> int | jax.Array:
    """A validated Python int in 1..5, or a scalar integer tracer (checked for dtype/rank only)."""
    bad = f"severity must be an integer in 1..{NUM_SEVERITIES}, got {severity!r}"
    if isinstance(severity, bool | np.bool_):
        raise ValueError(bad)
    if not isinstance(severity, jax.core.Tracer):
        try:
            value = operator.index(severity)  # int, np.integer, concrete 0-d integer arrays
        except TypeError:
            raise ValueError(bad) from None
        if not 1 <= value <= NUM_SEVERITIES:
            raise ValueError(bad)
        return value
    if severity.ndim != 0 or not jnp.issubdtype(severity.dtype, jnp.integer):
        raise ValueError(
            f"a traced severity must be a scalar integer array, got shape {severity.shape} "
            f"and dtype {severity.dtype}"
        )
    return severity


def _check_table(table: str) -> Mapping[str, tuple[float, ...]]:
    if table not in CORRUPTION_PARAMS:
        raise ValueError(f"unknown table {table!r}; valid tables: {', '.join(TABLES)}")
    return CORRUPTION_PARAMS[table]


def _compute_dtype(dtype: jnp.dtype) -> jnp.dtype:
    return jnp.promote_types(dtype, jnp.float32)


def _param(
    name: str, severity: int | jax.Array, table: str, dtype: jnp.dtype
) -> tuple[float | jax.Array, jax.Array | None]:
    """``(c, valid)``: a Python float (and ``None``) for an int severity, else traced scalars."""
    values = _check_table(table)[name]
    if isinstance(severity, int):
        return values[severity - 1], None
    index = jnp.clip(severity - 1, 0, NUM_SEVERITIES - 1)
    valid = (severity >= 1) & (severity <= NUM_SEVERITIES)
    return jnp.asarray(values, dtype=dtype)[index], valid


def _finish(out: jax.Array, valid: jax.Array | None, dtype: jnp.dtype) -> jax.Array:
    out = jnp.clip(out, 0.0, 1.0)
    if valid is not None:
        out = jnp.where(valid, out, jnp.nan)
    return out.astype(dtype)


def _prepare(
    name: str, images: jax.Array, severity: Severity, table: str
) -> tuple[jax.Array, float | jax.Array, jax.Array | None]:
    images = _check_images(images)
    severity = _check_severity(severity)
    compute = _compute_dtype(images.dtype)
    c, valid = _param(name, severity, table, compute)
    return images.astype(compute), c, valid


# --------------------------------------------------------------------------------------------
# Corruptions
# --------------------------------------------------------------------------------------------


def gaussian_noise(
    images: jax.Array, key: jax.Array, severity: Severity, *, table: Table = "cifar10"
) -> jax.Array:
    """Additive Gaussian noise ``clip(x + c·z, 0, 1)``, ``z ~ N(0, 1)``.

    Args:
      images: float array in ``[0, 1]``, typically ``(N, H, W, C)``.
      key: a ``jax.random`` key.
      severity: 1..5 (Python int, validated) or a traced scalar integer array.
      table: ``'cifar10'`` (c = 0.04 … 0.10) or ``'imagenet'`` (c = 0.08 … 0.38).

    Returns:
      The corrupted images, same shape and dtype as ``images``, values in ``[0, 1]``.
    """
    dtype = jnp.asarray(images).dtype
    x, c, valid = _prepare("gaussian_noise", images, severity, table)
    z = jax.random.normal(key, x.shape, x.dtype)
    return _finish(x + c * z, valid, dtype)


def shot_noise(
    images: jax.Array, key: jax.Array, severity: Severity, *, table: Table = "cifar10"
) -> jax.Array:
    """Shot (Poisson) noise ``clip(Poisson(c·x) / c, 0, 1)``.

    Args:
      images: float array in ``[0, 1]``, typically ``(N, H, W, C)``.
      key: a ``jax.random`` key.
      severity: 1..5 (Python int, validated) or a traced scalar integer array.
      table: ``'cifar10'`` (c = 500 … 50 photons) or ``'imagenet'`` (c = 60 … 3).

    Returns:
      The corrupted images, same shape and dtype as ``images``, values in ``[0, 1]``.
    """
    dtype = jnp.asarray(images).dtype
    x, c, valid = _prepare("shot_noise", images, severity, table)
    # Negative rates (inputs slightly below 0) would make the sampler return garbage.
    counts = jax.random.poisson(key, jnp.maximum(x * c, 0.0), x.shape)
    return _finish(counts.astype(x.dtype) / c, valid, dtype)


def impulse_noise(
    images: jax.Array, key: jax.Array, severity: Severity, *, table: Table = "cifar10"
) -> jax.Array:
    """Salt-and-pepper noise with amount ``c``: each element independently becomes 1 with
    probability ``c/2``, 0 with probability ``c/2``, and is kept otherwise.

    Args:
      images: float array in ``[0, 1]``, typically ``(N, H, W, C)``.
      key: a ``jax.random`` key.
      severity: 1..5 (Python int, validated) or a traced scalar integer array.
      table: ``'cifar10'`` (c = 0.01 … 0.07) or ``'imagenet'`` (c = 0.03 … 0.27).

    Returns:
      The corrupted images, same shape and dtype as ``images``, values in ``[0, 1]``.
    """
    dtype = jnp.asarray(images).dtype
    x, c, valid = _prepare("impulse_noise", images, severity, table)
    u = jax.random.uniform(key, x.shape, x.dtype)
    half = c / 2
    out = jnp.where(u < half, 1.0, jnp.where(u >= 1.0 - half, 0.0, x))
    return _finish(out, valid, dtype)


def speckle_noise(
    images: jax.Array, key: jax.Array, severity: Severity, *, table: Table = "cifar10"
) -> jax.Array:
    """Multiplicative (speckle) noise ``clip(x + x·c·z, 0, 1)``, ``z ~ N(0, 1)``.

    Args:
      images: float array in ``[0, 1]``, typically ``(N, H, W, C)``.
      key: a ``jax.random`` key.
      severity: 1..5 (Python int, validated) or a traced scalar integer array.
      table: ``'cifar10'`` (c = 0.06 … 0.20) or ``'imagenet'`` (c = 0.15 … 0.60).

    Returns:
      The corrupted images, same shape and dtype as ``images``, values in ``[0, 1]``.
    """
    dtype = jnp.asarray(images).dtype
    x, c, valid = _prepare("speckle_noise", images, severity, table)
    z = jax.random.normal(key, x.shape, x.dtype)
    return _finish(x + x * (c * z), valid, dtype)


CORRUPTIONS: Final[Mapping[str, Corruption]] = MappingProxyType(
    {
        "gaussian_noise": gaussian_noise,
        "shot_noise": shot_noise,
        "impulse_noise": impulse_noise,
        "speckle_noise": speckle_noise,
    }
)
"""The corruptions by their CIFAR-10-C file name (``gaussian_noise.npy``, …)."""


def corrupt(
    images: jax.Array,
    key: jax.Array,
    name: str,
    severity: Severity,
    table: Table = "cifar10",
) -> jax.Array:
    """Apply the corruption ``name`` (a key of :data:`CORRUPTIONS`) at ``severity``.

    Args:
      images: float array in ``[0, 1]``, typically ``(N, H, W, C)``.
      key: a ``jax.random`` key.
      name: e.g. ``'gaussian_noise'``; must be static under ``jax.jit``.
      severity: 1..5 (Python int, validated) or a traced scalar integer array.
      table: ``'cifar10'`` or ``'imagenet'`` parameters.

    Returns:
      The corrupted images, same shape and dtype as ``images``, values in ``[0, 1]``.

    Raises:
      ValueError: unknown ``name`` or ``table``, non-float images, or a Python severity
        outside 1..5.
    """
    fn: Callable[..., jax.Array] | None = CORRUPTIONS.get(name)
    if fn is None:
        raise ValueError(
            f"unknown corruption {name!r}; valid names: {', '.join(sorted(CORRUPTIONS))}"
        )
    return fn(images, key, severity, table=table)
