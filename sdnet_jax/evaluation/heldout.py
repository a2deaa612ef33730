"""Reconstruction on the classes a CTRL model was trained on and on those it never saw
(``config.data.train_classes``): the same numbers as the whole split's, for each subset of the
evaluated images, prefixed ``seen_`` / ``unseen_``.

Per subset (:func:`subset_metrics`): ``psnr``, ``psnr_mean_image`` (the mean *training* image —
of the seen classes only — on that subset), ``psnr_gain_over_mean_image``, ``spread_x_hat`` /
``spread_x`` (:func:`sdnet_jax.evaluation.reconstruction.collapse_metrics`), ``ssim`` /
``ssim_mean_image`` and, with a classifier, its accuracy on X̂ beside X
(:mod:`sdnet_jax.evaluation.fidelity`), ``mse`` and ``num_examples``. A subset with no image in
the evaluated examples is left out (no metric is made up for it).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from sdnet_jax.evaluation import fidelity, reconstruction


def subset_metrics(
    x: Any,
    x_hat: Any,
    labels: Any,
    mean_image: Any,
    logits: fidelity.Logits | None = None,
) -> dict[str, float]:
    """The reconstruction and fidelity metrics of one subset of images (unprefixed)."""
    results = reconstruction.collapse_metrics(x, x_hat, mean_image)
    results.update(fidelity.fidelity_metrics(x, x_hat, labels, mean_image, logits))
    results["mse"] = float(np.mean(reconstruction.mse(x, x_hat)))
    results["num_examples"] = float(len(labels))
    return results


def seen_unseen_metrics(
    x: Any,
    x_hat: Any,
    labels: Any,
    mean_image: Any,
    seen_classes: Sequence[int],
    logits: fidelity.Logits | None = None,
) -> dict[str, float]:
    """:func:`subset_metrics` of the images whose label is in ``seen_classes`` (``seen_…``) and
    of the others (``unseen_…``)."""
    x, x_hat, y = np.asarray(x), np.asarray(x_hat), np.asarray(labels)
    if y.ndim != 1 or y.shape[0] != x.shape[0]:
        raise ValueError(f"labels must be {x.shape[0]} class indices, got shape {y.shape}.")
    if not len(seen_classes):
        raise ValueError("seen_classes is empty: name the classes the model was trained on.")
    seen = np.isin(y, np.asarray(seen_classes))
    results: dict[str, float] = {}
    for prefix, keep in (("seen_", seen), ("unseen_", ~seen)):
        if keep.any():
            part = subset_metrics(x[keep], x_hat[keep], y[keep], mean_image, logits)
            results.update({prefix + k: v for k, v in part.items()})
    return results
