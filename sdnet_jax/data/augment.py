"""Host-side image preprocessing and augmentation (numpy, PIL), one example at a time.

Every function takes a uint8 image ``(H, W, C)`` (``C`` = 1 or 3) and returns a uint8 image;
randomness comes from an explicit :class:`numpy.random.Generator`, drawn in a fixed order, so an
output is a deterministic function of the input and the generator's seed. Normalisation to the
model's input scale is :func:`normalize`, applied to whole batches afterwards.
"""

from __future__ import annotations

import math

import numpy as np
from PIL import Image

IMAGENET_RESIZE = 256
IMAGENET_CROP = 224


def _to_pil(image: np.ndarray) -> Image.Image:
    if image.dtype != np.uint8:
        raise TypeError(f"expected a uint8 image, got {image.dtype}")
    return Image.fromarray(image[..., 0] if image.shape[-1] == 1 else image)


def _from_pil(pil: Image.Image, channels: int) -> np.ndarray:
    array = np.asarray(pil, dtype=np.uint8)
    return array[..., None] if channels == 1 else array


def as_channels(image: np.ndarray, channels: int) -> np.ndarray:
    """``image`` as ``(H, W, channels)``: adds the channel axis of ``(H, W)`` images, repeats grey."""
    if image.ndim == 2:
        image = image[..., None]
    if image.shape[-1] == channels:
        return image
    if image.shape[-1] == 1:
        return np.repeat(image, channels, axis=-1)
    raise ValueError(f"cannot convert an image of shape {image.shape} to {channels} channels")


def flip_left_right(image: np.ndarray) -> np.ndarray:
    """Mirrors the image horizontally (along the width axis)."""
    return image[:, ::-1]


def pad_crop_flip(image: np.ndarray, rng: np.random.Generator, *, pad: int = 4) -> np.ndarray:
    """The CIFAR augmentation, for any image size.

    Zero-pads ``pad`` pixels on every side, crops a random window of the original size (offsets
    uniform in ``[0, 2 * pad]``), then flips it horizontally with probability 1/2.
    """
    height, width = image.shape[:2]
    padded = np.pad(image, ((pad, pad), (pad, pad), (0, 0)))
    top = int(rng.integers(0, 2 * pad + 1))
    left = int(rng.integers(0, 2 * pad + 1))
    out = padded[top : top + height, left : left + width]
    if rng.random() < 0.5:
        out = flip_left_right(out)
    return np.ascontiguousarray(out)


def random_resized_crop_box(
    height: int,
    width: int,
    rng: np.random.Generator,
    *,
    scale: tuple[float, float] = (0.08, 1.0),
    ratio: tuple[float, float] = (3 / 4, 4 / 3),
    attempts: int = 10,
) -> tuple[int, int, int, int]:
    """Samples the ``(top, left, crop_height, crop_width)`` of an Inception-style random crop.

    The crop covers a fraction of the area uniform in ``scale`` and has an aspect ratio (width /
    height) log-uniform in ``ratio``; after ``attempts`` rejected samples it falls back to the
    largest centred crop whose ratio is clipped to ``ratio`` (as torchvision's RandomResizedCrop).
    """
    area = height * width
    log_ratio = (math.log(ratio[0]), math.log(ratio[1]))
    for _ in range(attempts):
        target_area = area * rng.uniform(scale[0], scale[1])
        aspect = math.exp(rng.uniform(log_ratio[0], log_ratio[1]))
        crop_w = round(math.sqrt(target_area * aspect))
        crop_h = round(math.sqrt(target_area / aspect))
        if 0 < crop_w <= width and 0 < crop_h <= height:
            top = int(rng.integers(0, height - crop_h + 1))
            left = int(rng.integers(0, width - crop_w + 1))
            return top, left, crop_h, crop_w
    in_ratio = width / height
    if in_ratio < min(ratio):
        crop_w, crop_h = width, max(1, round(width / min(ratio)))
    elif in_ratio > max(ratio):
        crop_h, crop_w = height, max(1, round(height * max(ratio)))
    else:
        crop_h, crop_w = height, width
    return (height - crop_h) // 2, (width - crop_w) // 2, crop_h, crop_w


def random_resized_crop_flip(
    image: np.ndarray,
    rng: np.random.Generator,
    *,
    size: tuple[int, int],
    scale: tuple[float, float] = (0.08, 1.0),
    ratio: tuple[float, float] = (3 / 4, 4 / 3),
) -> np.ndarray:
    """The ImageNet training augmentation: a random-resized crop to ``size`` ``(H, W)``, bilinear,
    then a horizontal flip with probability 1/2."""
    top, left, crop_h, crop_w = random_resized_crop_box(
        image.shape[0], image.shape[1], rng, scale=scale, ratio=ratio
    )
    pil = _to_pil(image).resize(
        (size[1], size[0]), Image.Resampling.BILINEAR, box=(left, top, left + crop_w, top + crop_h)
    )
    out = _from_pil(pil, image.shape[-1])
    if rng.random() < 0.5:
        out = flip_left_right(out)
    return np.ascontiguousarray(out)


def resize_shorter_center_crop(
    image: np.ndarray, *, resize: int = IMAGENET_RESIZE, crop: int = IMAGENET_CROP
) -> np.ndarray:
    """The ImageNet evaluation transform: bilinear resize so the shorter side is ``resize`` (aspect
    ratio kept), then the central ``crop`` × ``crop`` window."""
    height, width = image.shape[:2]
    factor = resize / min(height, width)
    new_h = max(crop, round(height * factor))
    new_w = max(crop, round(width * factor))
    pil = _to_pil(image).resize((new_w, new_h), Image.Resampling.BILINEAR)
    top, left = (new_h - crop) // 2, (new_w - crop) // 2
    out = _from_pil(pil, image.shape[-1])[top : top + crop, left : left + crop]
    return np.ascontiguousarray(out)


def center_crop_resize(image: np.ndarray, size: int) -> np.ndarray:
    """The fixed-resolution transform: the central ``s`` × ``s`` square (``s`` the shorter side),
    resized (bilinear, antialiased by PIL when shrinking) to ``size`` × ``size``.

    This is "shorter side to ``size``, then the central ``size`` × ``size`` crop" without rounding
    the longer side; on CelebA (218 × 178) it is the usual "centre crop 178, then resize". The
    crop comes first, so the filter sees no pixel outside the square; when the shorter side is
    already ``size`` the result is just the crop.
    """
    if size < 1:
        raise ValueError(f"size must be >= 1, got {size}")
    height, width = image.shape[:2]
    side = min(height, width)
    top, left = (height - side) // 2, (width - side) // 2
    square = np.ascontiguousarray(image[top : top + side, left : left + side])
    if side == size:
        return square
    pil = _to_pil(square).resize((size, size), Image.Resampling.BILINEAR)
    return np.ascontiguousarray(_from_pil(pil, image.shape[-1]))


def normalize(images: np.ndarray, mean: tuple[float, ...], std: tuple[float, ...]) -> np.ndarray:
    """``(images / 255 - mean) / std`` per channel (last axis), as float32."""
    mean_arr = np.asarray(mean, dtype=np.float32)
    std_arr = np.asarray(std, dtype=np.float32)
    return ((images.astype(np.float32) / np.float32(255.0)) - mean_arr) / std_arr
