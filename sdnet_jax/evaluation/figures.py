"""PNG figures of CSC-CTRL (through Pillow): reconstructions beside their inputs, the ``|cos|``
heat map of class-sorted features, and the first-stage dictionary atoms. Images NHWC in
``[-1, 1]``."""

from __future__ import annotations

import math
import os
from collections.abc import Mapping
from typing import Any

import numpy as np

from sdnet_jax import viz
from sdnet_jax.checks import feature_matrix
from sdnet_jax.data import pixels
from sdnet_jax.viz import atom_grid, image_grid


def _to_unit(images: Any) -> np.ndarray:
    """NHWC images in [-1, 1] → [0, 1] float32 (clipped)."""
    x = np.asarray(images, np.float32)
    if x.ndim != 4:
        raise ValueError(f"images must be NHWC, got shape {x.shape}.")
    return np.clip(pixels.unit_from_symmetric(x), 0.0, 1.0)


def save_reconstruction_grid(
    path: str | os.PathLike[str], x: Any, x_hat: Any, n: int = 32, scale: int = 1, gap: int = 4
) -> np.ndarray:
    """Saves the first ``n`` images ``X`` (left panel) beside their reconstructions ``X̂`` (right).

    Both panels are :func:`sdnet_jax.viz.image_grid` tilings with the same layout
    (``ceil(√n)`` columns, 1-pixel white padding), so image ``i`` sits at the same place in each;
    the panels are separated by ``gap`` white pixels. Images in ``[-1, 1]`` are mapped to
    ``[0, 1]``; one channel gives a grey PNG, three an RGB one.

    Returns the saved ``uint8`` array ``(H, W, C)``: ``H = scale·(rows·(h+1)+1)``,
    ``W = scale·(2·(cols·(w+1)+1) + gap)``.
    """
    x, x_hat = _to_unit(x), _to_unit(x_hat)
    if x.shape != x_hat.shape:
        raise ValueError(f"x and x_hat must have one shape, got {x.shape} and {x_hat.shape}.")
    count = min(int(n), x.shape[0])
    if count < 1:
        raise ValueError("need at least one image.")
    columns = math.ceil(math.sqrt(count))
    left = image_grid(x[:count], columns)
    right = image_grid(x_hat[:count], columns)
    spacer = np.ones((left.shape[0], gap, left.shape[2]), np.float32)
    return viz.save_png(path, np.concatenate([left, spacer, right], axis=1), scale)


# A few anchors of matplotlib's 'viridis' colour map (0 → dark blue, 1 → yellow).
VIRIDIS = np.array(
    [
        [0.267, 0.005, 0.329],
        [0.231, 0.322, 0.545],
        [0.128, 0.567, 0.551],
        [0.369, 0.789, 0.383],
        [0.993, 0.906, 0.144],
    ]
)


def _colormap(values: np.ndarray) -> np.ndarray:
    """Values in [0, 1] → RGB by piecewise-linear interpolation of :data:`VIRIDIS`."""
    grid = np.linspace(0.0, 1.0, len(VIRIDIS))
    v = np.clip(values, 0.0, 1.0)
    return np.stack([np.interp(v, grid, VIRIDIS[:, c]) for c in range(3)], axis=-1)


def cosine_similarity_matrix(z: Any, labels: Any) -> tuple[np.ndarray, np.ndarray]:
    """``|cos(z_i, z_j)|`` for samples sorted by class, and the sorting permutation.

    Rows are normalised (so for CTRL's unit features this is ``|Z Zᵀ|``, the ``m × m`` matrix the
    papers write as ``|ZᵀZ|`` with samples as columns); the sort is stable, so samples keep their
    order within a class.
    """
    feats = feature_matrix("z", z)
    y = np.asarray(labels)
    if y.shape != (feats.shape[0],):
        raise ValueError(f"labels must have shape ({feats.shape[0]},), got {y.shape}.")
    order = np.argsort(y, kind="stable")
    f = feats[order]
    f = f / np.maximum(np.linalg.norm(f, axis=1, keepdims=True), 1e-12)
    return np.abs(f @ f.T), order


def pool_square(matrix: np.ndarray, size: int) -> np.ndarray:
    """An ``m × m`` matrix averaged over ``size × size`` near-equal blocks of consecutive rows and
    columns (``m > size``): each output entry is the mean of the entries of its block."""
    m = matrix.shape[0]
    starts = np.linspace(0, m, size + 1).round().astype(int)[:-1]
    counts = np.diff(np.append(starts, m))
    sums = np.add.reduceat(np.add.reduceat(matrix, starts, axis=0), starts, axis=1)
    return sums / np.outer(counts, counts)


def save_cosine_heatmap(
    path: str | os.PathLike[str], z: Any, labels: Any, cell: int | None = None, size: int = 512
) -> np.ndarray:
    """Saves the heat map of ``|cos(z_i, z_j)|`` with samples sorted by class (viridis, 0 → 1).

    Up to ``size`` samples, each is a ``cell × cell`` block (default ``max(1, size // m)``), so the
    PNG is ``(m·cell) × (m·cell)`` RGB; beyond, the matrix is averaged over ``size × size`` blocks of
    consecutive (class-sorted) samples (:func:`pool_square`), so the PNG stays ``size × size``
    whatever the number of evaluated samples. Good features show bright diagonal blocks (within
    class) on a dark background (orthogonal classes). Returns the saved ``uint8`` array.
    """
    sim, _ = cosine_similarity_matrix(z, labels)
    m = sim.shape[0]
    if m < 1:
        raise ValueError("z is empty.")
    if m > size:
        return viz.save_png(path, _colormap(pool_square(sim, size)), 1)
    cell = max(1, size // m) if cell is None else int(cell)
    return viz.save_png(path, _colormap(sim), cell)


def first_stage_dictionary(encoder_params: Mapping[str, Any]) -> np.ndarray:
    """The first-stage dictionary (HWIO) of a CTRL encoder's parameters.

    ``encoder_params`` is the encoder's ``params`` tree (or ``{'params': …}``): ``csc1/dictionary``
    for CSC-CTRL, ``conv1/kernel`` for the DCGAN baseline.
    """
    params = encoder_params.get("params", encoder_params)
    for layer, leaf in (("csc1", "dictionary"), ("conv1", "kernel")):
        if layer in params and leaf in params[layer]:
            return np.asarray(params[layer][leaf])
    raise KeyError(f"no csc1/dictionary or conv1/kernel in parameters with keys {list(params)}.")


def save_atoms(
    path: str | os.PathLike[str], dictionary: Any, scale: int = 4, columns: int | None = None
) -> np.ndarray:
    """Saves the atoms of an HWIO dictionary ``(kh, kw, C_in, n)`` via :func:`sdnet_jax.viz.atom_grid`.

    Each atom is scaled to ``[0, 1]`` on its own; colour for ``C_in = 3``, else the channel mean in
    grey. ``ceil(√n)`` columns by default, upscaled ``scale``×: the PNG is
    ``scale·(rows·(kh+1)+1) × scale·(cols·(kw+1)+1)``. Returns the saved ``uint8`` array.
    """
    d = np.asarray(dictionary)
    if d.ndim != 4:
        raise ValueError(f"dictionary must be HWIO (kh, kw, C_in, n), got shape {d.shape}.")
    return viz.save_png(path, atom_grid(d, columns), scale)


def save_atom_grid(
    path: str | os.PathLike[str], encoder_params: Mapping[str, Any], scale: int = 8
) -> np.ndarray:
    """Saves the encoder's first-stage atoms (:func:`first_stage_dictionary`) as a PNG grid, each
    atom scaled to [0, 1] and upscaled ``scale``× (nearest). Returns the saved ``uint8`` array."""
    return viz.save_png(path, atom_grid(first_stage_dictionary(encoder_params)), scale)
