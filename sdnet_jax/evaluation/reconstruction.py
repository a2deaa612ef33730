"""Reconstruction metrics of CSC-CTRL (``X̂ = g(f(X))``), NumPy on host arrays (JAX arrays are
converted with ``np.asarray``); images NHWC in ``[-1, 1]``.

:func:`mse` and :func:`psnr` per image, ``PSNR = 10 log₁₀(data_range² / MSE)`` with
``data_range = 2`` for ``[-1, 1]`` images. A PSNR alone does not tell a reconstruction from a
collapsed decoder that outputs one image for every input, so :func:`collapse_metrics` puts it
beside the PSNR of the mean image (:func:`mean_image_psnr`) and the per-pixel spread of ``X̂``
across inputs beside ``X``'s (:func:`pixel_spread`).
"""

from __future__ import annotations

from typing import Any, NamedTuple

import numpy as np


def _images_pair(x: Any, x_hat: Any) -> tuple[np.ndarray, np.ndarray]:
    x = np.asarray(x, np.float64)
    x_hat = np.asarray(x_hat, np.float64)
    if x.shape != x_hat.shape or x.ndim < 2:
        raise ValueError(
            f"x and x_hat must be batches of images of the same shape (N, ...), got {x.shape} "
            f"and {x_hat.shape}."
        )
    return x, x_hat


def mse(x: Any, x_hat: Any) -> np.ndarray:
    """Per-image mean squared error ``MSE_i = mean_{pixels} (x_i − x̂_i)²``, shape ``(N,)``, float64."""
    x, x_hat = _images_pair(x, x_hat)
    return np.mean(np.square(x - x_hat).reshape(x.shape[0], -1), axis=1)


class PSNR(NamedTuple):
    """Per-image PSNR in dB, ``(N,)``, and their mean (``inf`` if any image is reproduced exactly)."""

    per_image: np.ndarray
    mean: float


def psnr(x: Any, x_hat: Any, data_range: float = 2.0) -> PSNR:
    """Peak signal-to-noise ratio per image, ``PSNR_i = 10 log₁₀(data_range² / MSE_i)`` dB.

    Args:
      x: reference images ``(N, H, W, C)`` (any ``(N, ...)``).
      x_hat: reconstructions, same shape.
      data_range: peak-to-peak range of the pixel values: 2 for images in ``[-1, 1]`` (the CTRL
        convention), 1 for ``[0, 1]``, 255 for bytes.

    Returns:
      :class:`PSNR` ``(per_image, mean)``; an exact reconstruction (``MSE_i = 0``) has ``+inf``.
      The mean is the mean of the per-image values (not the PSNR of the mean MSE).
    """
    if not data_range > 0:
        raise ValueError(f"data_range must be > 0, got {data_range!r}.")
    err = mse(x, x_hat)
    with np.errstate(divide="ignore"):
        per_image = 10.0 * np.log10(float(data_range) ** 2 / err)
    return PSNR(per_image, float(np.mean(per_image)))


def mean_image_psnr(x: Any, mean_image: Any | None = None, data_range: float = 2.0) -> float:
    """PSNR of the constant predictor ``x̂_i = mean_image`` for every image of ``x``, in dB.

    The baseline every reconstruction must beat: a decoder that ignores its input can reach it by
    outputting one image. ``mean_image`` (shape ``x.shape[1:]``) defaults to ``x``'s own mean over
    the batch (the split's mean image; pass the mean *training* image to use that instead). Same
    per-image mean of ``10 log₁₀(data_range² / MSE_i)`` as :func:`psnr`.
    """
    x = np.asarray(x, np.float64)
    if x.ndim < 2 or x.shape[0] == 0:
        raise ValueError(f"x must be a non-empty batch of images (N, ...), got shape {x.shape}.")
    mean = x.mean(axis=0) if mean_image is None else np.asarray(mean_image, np.float64)
    if mean.shape != x.shape[1:]:
        raise ValueError(f"mean_image must have shape {x.shape[1:]}, got {mean.shape}.")
    return psnr(x, np.broadcast_to(mean, x.shape), data_range).mean


def pixel_spread(images: Any) -> float:
    """Mean over pixels (and channels) of the standard deviation across the batch, ``(N, ...)``.

    ``mean_p std_i images[i, p]``: 0 for a batch of identical images (a collapsed decoder that maps
    every input to one output); compare ``pixel_spread(X̂)`` with ``pixel_spread(X)``.
    """
    x = np.asarray(images, np.float64)
    if x.ndim < 2 or x.shape[0] == 0:
        raise ValueError(f"images must be a non-empty batch (N, ...), got shape {x.shape}.")
    return float(np.mean(np.std(x.reshape(x.shape[0], -1), axis=0)))


def collapse_metrics(x: Any, x_hat: Any, mean_image: Any | None = None) -> dict[str, float]:
    """The numbers that tell a reconstruction from a collapse, for images in ``[-1, 1]``.

    ``psnr`` of ``x_hat`` against ``x``; ``psnr_mean_image``, the PSNR of always outputting
    ``mean_image`` (default: ``x``'s mean; :func:`mean_image_psnr`); ``psnr_gain_over_mean_image``
    their difference; ``spread_x_hat`` and ``spread_x``, the per-pixel spread across inputs
    (:func:`pixel_spread`).
    """
    x, x_hat = _images_pair(x, x_hat)
    value, baseline = psnr(x, x_hat).mean, mean_image_psnr(x, mean_image)
    return {
        "psnr": value,
        "psnr_mean_image": baseline,
        "psnr_gain_over_mean_image": value - baseline,
        "spread_x_hat": pixel_spread(x_hat),
        "spread_x": pixel_spread(x),
    }
