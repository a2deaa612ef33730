"""Does ``X̂ = g(f(X))`` keep what ``X`` is? Reconstruction fidelity beyond PSNR, for images in
``[-1, 1]`` (NHWC, host arrays; JAX arrays are converted):

* :func:`ssim` / :func:`structural_metrics`: the structural similarity of ``X̂`` to ``X``
  (``dm_pix.ssim``: Gaussian window 11, σ 1.5, k₁ 0.01, k₂ 0.03, on the images mapped to
  ``[0, 1]``; the window shrinks to the largest odd size that fits smaller images, 7 for 8x8
  digits), beside the SSIM of always outputting the mean image — the baseline a collapsed decoder
  reaches, as ``psnr_mean_image`` is PSNR's (:func:`sdnet_jax.evaluation.reconstruction.collapse_metrics`).
* :func:`classifier_metrics`: the accuracy of a trained classifier on ``X̂`` beside its accuracy on
  ``X`` (and their ratio; the classifier's accuracy on the mean image, i.e. the frequency of the
  one class it assigns the mean image, is the trivial baseline; ``classifier_agreement`` the
  fraction of inputs whose ``X̂`` gets the class ``X`` gets). The classifier is any
  ``images -> logits`` callable; :func:`load_classifier` restores a classifier run of this project
  (``config.eval.fidelity_classifier_workdir``) as one.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import dm_pix
import jax.numpy as jnp
import numpy as np

SSIM_WINDOW = 11  # dm_pix / tf.image.ssim's default filter size

Logits = Callable[[np.ndarray], Any]  # [-1, 1] NHWC images -> (N, num_classes) logits


def _images(name: str, images: Any) -> np.ndarray:
    x = np.asarray(images, np.float32)
    if x.ndim != 4:
        raise ValueError(f"{name} must be NHWC images, got shape {x.shape}.")
    if x.shape[0] == 0:
        raise ValueError(f"{name} is empty.")
    return x


def _pair(x: Any, x_hat: Any) -> tuple[np.ndarray, np.ndarray]:
    x, x_hat = _images("x", x), _images("x_hat", x_hat)
    if x.shape != x_hat.shape:
        raise ValueError(f"x and x_hat must have the same shape, got {x.shape} and {x_hat.shape}.")
    return x, x_hat


def ssim_window(height: int, width: int) -> int:
    """The SSIM window for ``height × width`` images: 11, or the largest odd size that fits."""
    size = min(SSIM_WINDOW, height, width)
    return size if size % 2 else size - 1


def ssim(x: Any, x_hat: Any) -> np.ndarray:
    """Per-image SSIM of ``x_hat`` against ``x`` (both in ``[-1, 1]``, compared in ``[0, 1]``;
    colour images: the mean over channels, as ``dm_pix.ssim``)."""
    x, x_hat = _pair(x, x_hat)
    window = ssim_window(x.shape[1], x.shape[2])
    unit = lambda a: (jnp.asarray(a) + 1.0) / 2.0
    value = dm_pix.ssim(unit(x), unit(x_hat), max_val=1.0, filter_size=window)
    return np.asarray(value, np.float64)


def structural_metrics(x: Any, x_hat: Any, mean_image: Any | None = None) -> dict[str, float]:
    """``ssim`` (mean over images) and ``ssim_mean_image``: the mean SSIM of outputting
    ``mean_image`` (default: ``x``'s mean) for every input."""
    x, x_hat = _pair(x, x_hat)
    mean = x.mean(axis=0) if mean_image is None else np.asarray(mean_image, np.float32)
    if mean.shape != x.shape[1:]:
        raise ValueError(f"mean_image must have shape {x.shape[1:]}, got {mean.shape}.")
    constant = np.broadcast_to(mean, x.shape)
    return {
        "ssim": float(ssim(x, x_hat).mean()),
        "ssim_mean_image": float(ssim(x, constant).mean()),
    }


def predictions(logits: Logits, images: np.ndarray) -> np.ndarray:
    """The classes ``logits`` assigns ``images`` (argmax), as int64."""
    out = np.asarray(logits(images))
    if out.ndim != 2 or out.shape[0] != images.shape[0]:
        raise ValueError(f"the classifier must return (N, num_classes) logits, got {out.shape}.")
    return np.argmax(out, axis=-1).astype(np.int64)


def classifier_metrics(
    logits: Logits, x: Any, x_hat: Any, labels: Any, mean_image: Any | None = None
) -> dict[str, float]:
    """A classifier's accuracy on ``x`` and on ``x_hat`` against ``labels``.

    ``classifier_accuracy_x`` / ``classifier_accuracy_x_hat``; ``classifier_accuracy_ratio`` the
    second over the first (the issue's goal: ≥ 0.85); ``classifier_agreement``: the fraction whose
    ``x_hat`` gets the class its ``x`` gets; ``classifier_accuracy_mean_image``: the accuracy of
    giving every input the class the classifier assigns ``mean_image`` (default ``x``'s mean), the
    baseline a decoder that outputs the mean image reaches.
    """
    x, x_hat = _pair(x, x_hat)
    y = np.asarray(labels)
    if y.shape != (x.shape[0],) or not np.issubdtype(y.dtype, np.integer):
        raise ValueError(f"labels must be {x.shape[0]} integers, got {y.dtype} {y.shape}.")
    mean = x.mean(axis=0) if mean_image is None else np.asarray(mean_image, np.float32)
    pred_x, pred_x_hat = predictions(logits, x), predictions(logits, x_hat)
    pred_mean = predictions(logits, mean[None])[0]
    acc_x, acc_x_hat = float(np.mean(pred_x == y)), float(np.mean(pred_x_hat == y))
    return {
        "classifier_accuracy_x": acc_x,
        "classifier_accuracy_x_hat": acc_x_hat,
        "classifier_accuracy_ratio": acc_x_hat / acc_x if acc_x > 0 else float("nan"),
        "classifier_agreement": float(np.mean(pred_x == pred_x_hat)),
        "classifier_accuracy_mean_image": float(np.mean(y == pred_mean)),
    }


def fidelity_metrics(
    x: Any,
    x_hat: Any,
    labels: Any,
    mean_image: Any | None = None,
    logits: Logits | None = None,
) -> dict[str, float]:
    """:func:`structural_metrics`, and :func:`classifier_metrics` when a classifier is given."""
    results = structural_metrics(x, x_hat, mean_image)
    if logits is not None:
        results.update(classifier_metrics(logits, x, x_hat, labels, mean_image))
    return results


def load_classifier(workdir: str, *, data_dir: str | None = None) -> Any:
    """A classifier run of this project (its best checkpoint) as an ``images -> logits`` callable
    with ``name``, ``dataset`` and ``num_classes``
    (:class:`sdnet_jax.evaluation.feature_nets.ClassifierFeatures`, which maps ``[-1, 1]`` images to
    the classifier's size, channels and normalisation)."""
    from sdnet_jax.evaluation import feature_nets  # restores a run: Orbax, TFDS (only when used)

    return _Logits(feature_nets.ClassifierFeatures(workdir, data_dir=data_dir))


class _Logits:
    """``ClassifierFeatures.logits`` as a callable that keeps the classifier's description."""

    def __init__(self, net: Any) -> None:
        self.net = net
        self.name = net.name.replace(", penultimate", "")
        self.dataset, self.num_classes = net.dataset, net.num_classes

    def __call__(self, images: np.ndarray) -> np.ndarray:
        return self.net.logits(images)

    def __repr__(self) -> str:
        return self.name
