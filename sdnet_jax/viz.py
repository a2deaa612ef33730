"""Small NumPy helpers that turn arrays into images (dictionary atoms, image grids)."""

from __future__ import annotations

import math

import numpy as np


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
