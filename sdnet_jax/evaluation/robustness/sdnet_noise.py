"""SDNet's own noise (its ``robust_inference.py``) as pure, jittable functions.

SDNet corrupts each test image as a 0–255 array (``np.array`` of the PIL image), clips to the valid
range, **truncates to uint8** (``x.astype(np.uint8)``: towards zero) and only then normalises. With
``p`` the 0–255 pixels, ``c`` the noise level, ``z ~ N(0, 1)``, ``u, v ~ U[0, 1)`` per element:

============  ==================================================  ===============================
family        SDNet's formula, then ``astype(np.uint8)``           levels ``c`` (SDNet's numpy)
============  ==================================================  ===============================
gaussian      ``clip(p/255 + c·z, 0, 1)·255``                      ``arange(0.02, 0.21, 0.02)``
shot          ``clip(Poisson(p/255·c)/c, 0, 1)·255``                ``arange(60, 3, -6)``
speckle       ``clip(p/255·(1 + c·z), 0, 1)·255``                  ``arange(0.1, 0.7, 0.1)``
impulse       ``skimage.util.random_noise(p/255, 's&p', amount=c)``  ``arange(0.03, 0.3, 0.03)``
============  ==================================================  ===============================

Impulse is scikit-image's salt and pepper: an element is flipped when ``u <= c``, then set to 1
(salt) when ``v <= 0.5`` and to 0 otherwise. ``np.arange(0.03, 0.3, 0.03)`` has **ten** values,
0.03 … 0.30 (floating point puts 0.3 inside the half-open range), so SDNet's impulse table ends at
0.30, not 0.27.

The arithmetic here is the same formula rearranged to stay exact on whole grey levels
(``p + 255·c·z`` rather than ``(p/255 + c·z)·255``, ``255·k/c`` for a Poisson count ``k``,
unflipped impulse pixels untouched), so the truncation never drops a whole level to rounding.
SDNet's float64 ``(k/c)·255`` sometimes lands a hair below a whole number and truncates one level
lower: the two agree except, by at most one level, where SDNet's value is within rounding of an
integer (tested against a NumPy transcription of SDNet's functions). Random numbers are JAX's:
the same key gives every level of a family the same ``z`` / ``u`` / ``v`` (common random numbers;
shot noise draws per rate).
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType
from typing import Any, Final

import jax
import jax.numpy as jnp

from sdnet_jax.data.pixels import normalised_from_unit, unit_from_normalised

LEVELS: Final[Mapping[str, tuple[float, ...]]] = MappingProxyType(
    {
        "gaussian": (0.02, 0.04, 0.06, 0.08, 0.1, 0.12, 0.14, 0.16, 0.18, 0.2),
        "shot": (60.0, 54.0, 48.0, 42.0, 36.0, 30.0, 24.0, 18.0, 12.0, 6.0),
        "speckle": (0.1, 0.2, 0.3, 0.4, 0.5, 0.6),
        "impulse": (0.03, 0.06, 0.09, 0.12, 0.15, 0.18, 0.21, 0.24, 0.27, 0.3),
    }
)
"""SDNet's noise levels per family, in its order (shot: photons, decreasing = noisier)."""

LAMS: Final[tuple[float, ...]] = tuple(round(0.1 * k, 1) for k in range(1, 15))
"""SDNet's test-time λ grid for the stem, ``np.linspace(0.1, 1.4, 14)``."""

FAMILIES: Final[tuple[str, ...]] = tuple(LEVELS)


def noise_255(pixels: jax.Array, key: jax.Array, family: str, level: Any) -> jax.Array:
    """SDNet's noise on 0–255 pixels, clipped and truncated to whole grey levels.

    Args:
      pixels: float array of whole grey levels in ``[0, 255]`` (any shape).
      key: a ``jax.random`` key.
      family: one of :data:`FAMILIES` (static).
      level: the level ``c`` (a Python float or a traced scalar).

    Returns:
      Float array of whole grey levels in ``[0, 255]``, the shape of ``pixels``.
    """
    if family not in LEVELS:
        raise ValueError(f"unknown SDNet noise {family!r}; valid: {list(FAMILIES)}.")
    p = jnp.asarray(pixels, jnp.float32)
    c = jnp.asarray(level, jnp.float32)
    if family == "gaussian":
        noisy = p + 255.0 * c * jax.random.normal(key, p.shape)
    elif family == "speckle":
        noisy = p + p * (c * jax.random.normal(key, p.shape))
    elif family == "shot":
        counts = jax.random.poisson(key, jnp.maximum(p / 255.0 * c, 0.0), p.shape)
        noisy = counts.astype(jnp.float32) * 255.0 / c
    else:
        flip_key, salt_key = jax.random.split(key)
        flipped = jax.random.uniform(flip_key, p.shape) <= c
        salted = jax.random.uniform(salt_key, p.shape) <= 0.5
        noisy = jnp.where(flipped, jnp.where(salted, 255.0, 0.0), p)
    return jnp.floor(jnp.clip(noisy, 0.0, 255.0))


def corrupt_normalised(
    images: jax.Array, key: jax.Array, level: Any, *, family: str, mean: Any, std: Any
) -> jax.Array:
    """SDNet's noise on normalised images: back to whole 0–255 grey levels (the input pipeline's
    images are uint8 ones normalised), :func:`noise_255`, then ``/255`` and normalised again."""
    pixels = jnp.round(jnp.clip(unit_from_normalised(images, mean, std), 0.0, 1.0) * 255.0)
    noisy = noise_255(pixels, key, family, level)
    return normalised_from_unit(noisy / 255.0, mean, std)
