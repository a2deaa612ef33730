"""Conversions between the pixel spaces the code uses (jittable, NHWC) — the one place images
are normalised or change channel count.

* *stored*: the uint8 images the data layer delivers (training batches, evaluation batches);
* *unit*: pixels in ``[0, 1]`` (augmentation, corruptions, attacks, image files);
* *normalised*: what classifiers take, ``(x − mean) / std`` with the data set's constants;
* *symmetric*: pixels in ``[-1, 1]`` (CTRL's encoder input and decoder's tanh range).

Channel counts are mapped grey -> RGB by repetition and RGB -> grey by the BT.601 luma.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp

LUMA = (0.299, 0.587, 0.114)  # ITU-R BT.601


def unit_from_uint8(images: jax.Array) -> jax.Array:
    """Stored uint8 images -> float32 ``[0, 1]`` pixels."""
    return jnp.asarray(images).astype(jnp.float32) / jnp.float32(255.0)


def normalised_from_uint8(images: jax.Array, mean: Any, std: Any) -> jax.Array:
    """Stored uint8 images -> a classifier's normalised input."""
    return normalised_from_unit(unit_from_uint8(images), jnp.asarray(mean), jnp.asarray(std))


def symmetric_from_uint8(images: jax.Array) -> jax.Array:
    """Stored uint8 images -> ``[-1, 1]`` (CTRL)."""
    return symmetric_from_unit(unit_from_uint8(images))


def unit_from_normalised(images: jax.Array, mean: Any, std: Any) -> jax.Array:
    """Normalised images -> ``[0, 1]`` pixels (``x·std + mean``; not clipped)."""
    return images * std + mean


def normalised_from_unit(pixels: jax.Array, mean: Any, std: Any) -> jax.Array:
    """``[0, 1]`` pixels -> the normalised input (``(x − mean) / std``)."""
    return (pixels - mean) / std


def symmetric_from_unit(pixels: jax.Array) -> jax.Array:
    """``[0, 1]`` -> ``[-1, 1]``."""
    return 2.0 * pixels - 1.0


def unit_from_symmetric(images: jax.Array) -> jax.Array:
    """``[-1, 1]`` -> ``[0, 1]`` (not clipped)."""
    return (images + 1.0) * 0.5


def to_channels(x: jax.Array, channels: int) -> jax.Array:
    """Grey ↔ RGB: 1 → 3 repeats the channel, 3 → 1 takes the BT.601 luma; equal counts pass."""
    c = x.shape[-1]
    if c == channels:
        return x
    if c == 1 and channels == 3:
        return jnp.repeat(x, 3, axis=-1)
    if c == 3 and channels == 1:
        return jnp.sum(x * jnp.asarray(LUMA, x.dtype), axis=-1, keepdims=True)
    raise ValueError(f"cannot map images with {c} channels to {channels} channels.")


def to_shape(x: jax.Array, image_shape: tuple[int, int, int]) -> jax.Array:
    """Images of any size / channel count -> ``image_shape`` (channels by :func:`to_channels`,
    then a linear, antialiased resize)."""
    h, w, c = image_shape
    x = to_channels(x, c)
    if x.shape[1:3] == (h, w):
        return x
    return jax.image.resize(x, (x.shape[0], h, w, c), method="linear", antialias=True)
