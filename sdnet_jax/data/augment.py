"""The training augmentations, in JAX: run inside the jitted train step on a batch of stored uint8
images, whichever loader delivered them (device-resident or Grain), so ``config.data.augment``
means one thing everywhere. Each example gets its own random words from the sampling contract
(:func:`sdnet_jax.data.sampling.example_bits`; a key made of them for ``'imagenet'``), so the
augmented global batch of a step is a function of ``(seed, step)``.

``augment``:
  ``'none'``       the stored image;
  ``'cifar'``      zero-pad 4, a random crop back to the stored size, a random horizontal flip
                   (dm-pix's ``pad_to_size`` and ``flip_left_right``, offsets from the words);
  ``'flip_crop'``  the same (meant for small grey images);
  ``'imagenet'``   an Inception-style random-resized crop of the stored image (area fraction
                   uniform in (0.08, 1), aspect log-uniform in (3/4, 4/3)) resized back to its
                   size, and a random horizontal flip. For ImageNet the stored image is the
                   evaluation's central 224 x 224 crop (:mod:`sdnet_jax.data.decode`), so the
                   crop is drawn from it rather than from the whole photograph.

Output: float32 pixels in ``[0, 1]`` (:mod:`sdnet_jax.data.pixels` maps them to a model's input).
"""

from __future__ import annotations

import math

import dm_pix
import jax
import jax.numpy as jnp

from sdnet_jax.data import pixels, sampling

AUGMENTATIONS = ("none", "cifar", "flip_crop", "imagenet")
PAD = 4  # the CIFAR augmentation's padding


def check_augment(augment: str) -> str:
    if augment not in AUGMENTATIONS:
        raise ValueError(f"unknown augment {augment!r}; one of {AUGMENTATIONS}")
    return augment


def pad_crop_flip(image: jax.Array, bits: jax.Array, *, pad: int = PAD) -> jax.Array:
    """One ``(H, W, C)`` image (any dtype): zero-pad ``pad`` on every side (dm-pix), crop a window
    of the original size at offsets uniform in ``[0, 2 * pad]``, flip it horizontally with
    probability 1/2; ``bits``: 3 uint32 random words (top, left, flip). The words come from one
    draw for the whole batch (:func:`sdnet_jax.data.sampling.example_bits`): a key per example
    and dm-pix's ``random_crop`` / ``random_flip_left_right`` drew six times as many (3x slower
    on a CPU)."""
    height, width, channels = image.shape
    top = (bits[0] % (2 * pad + 1)).astype(jnp.int32)
    left = (bits[1] % (2 * pad + 1)).astype(jnp.int32)
    padded = dm_pix.pad_to_size(image, height + 2 * pad, width + 2 * pad)
    window = jax.lax.dynamic_slice(padded, (top, left, 0), (height, width, channels))
    return jnp.where(bits[2] & 1, dm_pix.flip_left_right(window), window)


def _fallback_box(height: int, width: int, ratio: tuple[float, float]) -> tuple[int, int]:
    """The crop size when no sample fits: the largest centred crop, its ratio clipped."""
    in_ratio = width / height
    if in_ratio < min(ratio):
        return max(1, round(width / min(ratio))), width
    if in_ratio > max(ratio):
        return height, max(1, round(height * max(ratio)))
    return height, width


def random_resized_crop_flip(
    image: jax.Array,
    key: jax.Array,
    *,
    size: tuple[int, int],
    scale: tuple[float, float] = (0.08, 1.0),
    ratio: tuple[float, float] = (3 / 4, 4 / 3),
    attempts: int = 10,
) -> jax.Array:
    """One ``(H, W, C)`` float image: an Inception-style random-resized crop (the first of
    ``attempts`` samples that fits, else the centred fallback) resized bilinearly to ``size``,
    then a random flip."""
    height, width, channels = image.shape
    k_area, k_ratio, k_top, k_left, k_flip = jax.random.split(key, 5)
    area = jax.random.uniform(k_area, (attempts,), minval=scale[0], maxval=scale[1])
    log_ratio = (math.log(ratio[0]), math.log(ratio[1]))
    aspect = jnp.exp(jax.random.uniform(k_ratio, (attempts,), minval=log_ratio[0],
                                        maxval=log_ratio[1]))  # fmt: skip
    crop_w = jnp.round(jnp.sqrt(area * height * width * aspect))
    crop_h = jnp.round(jnp.sqrt(area * height * width / aspect))
    fits = (crop_w > 0) & (crop_w <= width) & (crop_h > 0) & (crop_h <= height)
    first, found = jnp.argmax(fits), jnp.any(fits)
    fallback_h, fallback_w = _fallback_box(height, width, ratio)
    crop_h = jnp.where(found, crop_h[first], fallback_h)
    crop_w = jnp.where(found, crop_w[first], fallback_w)
    top = jnp.where(found, jnp.floor(jax.random.uniform(k_top) * (height - crop_h + 1)),
                    (height - fallback_h) // 2)  # fmt: skip
    left = jnp.where(found, jnp.floor(jax.random.uniform(k_left) * (width - crop_w + 1)),
                     (width - fallback_w) // 2)  # fmt: skip
    scales = jnp.stack([size[0] / crop_h, size[1] / crop_w])
    out = jax.image.scale_and_translate(
        image, (size[0], size[1], channels), (0, 1), scales, -jnp.stack([top, left]) * scales,
        method="linear", antialias=True,
    )  # fmt: skip
    return dm_pix.random_flip_left_right(k_flip, jnp.clip(out, 0.0, 1.0))


def augment_images(images: jax.Array, bits: jax.Array, augment: str) -> jax.Array:
    """A batch ``(B, H, W, C)`` of stored uint8 images augmented per example with the random
    words ``bits`` (``(B, 4)`` uint32, :func:`sdnet_jax.data.sampling.example_bits`): float32
    pixels in ``[0, 1]``, same shape."""
    check_augment(augment)
    if augment in ("cifar", "flip_crop"):  # on the uint8 images: a quarter of the bytes
        images = jax.vmap(pad_crop_flip)(images, bits)
    x = pixels.unit_from_uint8(images)
    if augment != "imagenet":
        return x
    size = images.shape[1:3]
    crop = lambda image, key: random_resized_crop_flip(image, key, size=size)
    return jax.vmap(crop)(x, sampling.example_keys(bits))
