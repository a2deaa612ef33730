"""Host work on one example: an image as stored in a data set -> the fixed-size uint8 image the
devices receive (the *stored* image, at the size the model sees). Nothing random happens here:
augmentation runs on the devices (:mod:`sdnet_jax.data.augment`).

The transform (:func:`stored_image`) is the identity for data sets of fixed-size images, with
two exceptions: ImageNet's images vary in size and become "shorter side resized to 256, central
224 x 224 crop"; and with ``image_size=N`` every data set's image becomes its central square
resized to N x N (:func:`center_crop_resize`; CelebA's usual "centre crop 178, resize"). Grey
images are repeated to the data set's channel count.
"""

from __future__ import annotations

import numbers

import numpy as np
from PIL import Image

from sdnet_jax.data import datasets

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
    resized (bilinear, antialiased by PIL when shrinking) to ``size`` × ``size``; just the crop
    when ``s`` is already ``size``."""
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


def check_image_size(image_size: int | None) -> int | None:
    """``image_size`` validated: ``None`` (the native size) or an int >= 1."""
    if image_size is None:
        return None
    if isinstance(image_size, bool) or not isinstance(image_size, numbers.Integral):
        raise TypeError(f"image_size must be an int or None, got {image_size!r}")
    if image_size < 1:
        raise ValueError(f"image_size must be >= 1 (or None for the native size), got {image_size}")
    return int(image_size)


def image_shape(spec: datasets.DatasetSpec, image_size: int | None) -> tuple[int, int, int]:
    """The ``(H, W, C)`` of the stored images (and of the model's input)."""
    if image_size is None:
        return spec.image_shape
    return (image_size, image_size, spec.image_shape[-1])


def stored_image(
    image: np.ndarray, spec: datasets.DatasetSpec, image_size: int | None
) -> np.ndarray:
    """One example's image as the devices receive it (see the module docstring)."""
    image = as_channels(np.asarray(image), spec.image_shape[-1])
    if image_size is not None:
        image = center_crop_resize(image, image_size)
    elif spec.resize_eval:
        image = resize_shorter_center_crop(image, resize=IMAGENET_RESIZE, crop=spec.image_shape[0])
    shape = image_shape(spec, image_size)
    if image.shape != shape:
        raise ValueError(f"got an image of shape {image.shape}, expected {shape}")
    return image
