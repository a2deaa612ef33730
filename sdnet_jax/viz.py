"""Small NumPy helpers that turn arrays into images (dictionary atoms, image grids, PNG files) and
the display of SDNet's hidden-feature visualisation (per-image min-max scaling, histogram
equalisation)."""

from __future__ import annotations

import math
import os

import numpy as np
from PIL import Image


def image_grid(images: np.ndarray, columns: int | None = None, pad: int = 1) -> np.ndarray:
    """Tiles ``(N, H, W, C)`` images in [0, 1] into one ``(H', W', C)`` image (white padding)."""
    n, h, w, c = images.shape
    columns = columns or math.ceil(math.sqrt(n))
    rows = math.ceil(n / columns)
    grid = np.ones((rows * (h + pad) + pad, columns * (w + pad) + pad, c), np.float32)
    for i, img in enumerate(images):
        r, col = divmod(i, columns)
        y, x = pad + r * (h + pad), pad + col * (w + pad)
        grid[y : y + h, x : x + w] = img
    return grid


def atom_grid(dictionary: np.ndarray, columns: int | None = None) -> np.ndarray:
    """The atoms of an HWIO dictionary ``(kh, kw, C_in, n)`` as a grid, each scaled to [0, 1].

    Colour when ``C_in == 3``; otherwise the input channels are averaged to one grey image.
    """
    atoms = np.moveaxis(np.asarray(dictionary, np.float32), -1, 0)  # (n, kh, kw, C_in)
    if atoms.shape[-1] != 3:
        atoms = atoms.mean(axis=-1, keepdims=True)
    lo = atoms.min(axis=(1, 2, 3), keepdims=True)
    hi = atoms.max(axis=(1, 2, 3), keepdims=True)
    return image_grid((atoms - lo) / np.maximum(hi - lo, 1e-12), columns)


def minmax_per_channel(images: np.ndarray) -> np.ndarray:
    """``(N, H, W, C)`` images scaled to [0, 1] per image and channel (SDNet's display of its
    hidden features); a constant channel becomes 0."""
    x = np.asarray(images, np.float32)
    lo = x.min(axis=(1, 2), keepdims=True)
    hi = x.max(axis=(1, 2), keepdims=True)
    return (x - lo) / np.where(hi > lo, hi - lo, 1.0)


def equalize(images: np.ndarray) -> np.ndarray:
    """Histogram equalisation of ``(N, H, W, C)`` images in [0, 1], per image and channel, on 256
    grey levels (the algorithm of PIL's ``ImageOps.equalize``, which SDNet's visualisation
    re-implements): level ``v`` maps to ``(count of pixels below v + step // 2) // step``, with
    ``step`` the pixel count without the brightest non-empty level, divided by 255 (integer
    division); a channel with ``step == 0`` is left as it is."""
    levels = np.clip(np.floor(np.asarray(images, np.float32) * 255.0), 0, 255).astype(np.int64)
    out = np.empty(levels.shape, np.float32)
    n, _, _, c = levels.shape
    for i in range(n):
        for k in range(c):
            channel = levels[i, :, :, k]
            histogram = np.bincount(channel.ravel(), minlength=256)
            nonzero = histogram[histogram > 0]
            step = (nonzero.sum() - nonzero[-1]) // 255
            if step == 0:
                out[i, :, :, k] = channel / 255.0
                continue
            below = np.concatenate([[0], np.cumsum(histogram)[:-1]])
            lut = np.minimum((below + step // 2) // step, 255)
            out[i, :, :, k] = lut[channel] / 255.0
    return out


def save_png(path: str | os.PathLike[str], image: np.ndarray, scale: int = 1) -> np.ndarray:
    """Writes an ``(H, W, C)`` image in [0, 1] (C = 1 or 3), upscaled ``scale``× (nearest); returns
    the uint8 array written."""
    if scale < 1:
        raise ValueError(f"scale must be >= 1, got {scale}.")
    img = np.clip(np.asarray(image, np.float32), 0.0, 1.0)
    if scale > 1:
        img = np.repeat(np.repeat(img, scale, axis=0), scale, axis=1)
    data = np.round(img * 255.0).astype(np.uint8)
    directory = os.path.dirname(os.fspath(path))
    if directory:
        os.makedirs(directory, exist_ok=True)
    if data.shape[-1] == 1:
        Image.fromarray(data[..., 0], mode="L").save(path)
    else:
        Image.fromarray(data, mode="RGB").save(path)
    return data
