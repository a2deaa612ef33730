"""Seen / unseen-class reconstruction metrics on a constructed case whose values are known."""

from __future__ import annotations

import numpy as np
import pytest

from sdnet_jax.evaluation import fidelity, heldout


def _case():
    """Seen classes 0 and 1: constant images ±0.5 reconstructed 0.1 too bright (MSE 0.01);
    unseen class 2: constant images 0.25 reconstructed 0.2 too dark (MSE 0.04). Mean image 0."""
    shape = (4, 4, 1)
    values = np.array([0.5, 0.25, -0.5, 0.5, 0.25, -0.5])
    labels = np.array([0, 2, 0, 1, 2, 1])
    x = np.stack([np.full(shape, v) for v in values]).astype(np.float32)
    shift = np.where(labels == 2, -0.2, 0.1)[:, None, None, None]
    return x, (x + shift).astype(np.float32), labels, np.zeros(shape, np.float32)


def test_seen_and_unseen_metrics_of_a_constructed_case():
    x, x_hat, labels, mean = _case()
    r = heldout.seen_unseen_metrics(x, x_hat, labels, mean, seen_classes=(0, 1))
    db = lambda mse: 10 * np.log10(4.0 / mse)  # images in [-1, 1]: data range 2
    assert r["seen_psnr"] == pytest.approx(db(0.01)) and r["unseen_psnr"] == pytest.approx(db(0.04))
    assert r["seen_mse"] == pytest.approx(0.01) and r["unseen_mse"] == pytest.approx(0.04)
    # the mean image 0 against ±0.5 (MSE 0.25) and against 0.25 (MSE 0.0625)
    assert r["seen_psnr_mean_image"] == pytest.approx(db(0.25))
    assert r["unseen_psnr_mean_image"] == pytest.approx(db(0.0625))
    assert r["seen_psnr_gain_over_mean_image"] == pytest.approx(db(0.01) - db(0.25))
    assert r["unseen_psnr_gain_over_mean_image"] == pytest.approx(db(0.04) - db(0.0625))
    # per-pixel spread: ±0.5 half and half -> 0.5 (a shift keeps it); identical images -> 0
    assert r["seen_spread_x"] == pytest.approx(0.5) and r["seen_spread_x_hat"] == pytest.approx(0.5)
    assert r["unseen_spread_x"] == pytest.approx(0.0) and r["unseen_spread_x_hat"] == 0.0
    assert r["seen_num_examples"] == 4 and r["unseen_num_examples"] == 2
    seen = labels != 2
    assert r["seen_ssim"] == pytest.approx(fidelity.ssim(x[seen], x_hat[seen]).mean())
    assert not any(k.startswith(("seen_classifier", "unseen_classifier")) for k in r)
    # every key is prefixed; the same numbers for the other choice of classes, swapped
    assert all(k.startswith(("seen_", "unseen_")) for k in r)
    swapped = heldout.seen_unseen_metrics(x, x_hat, labels, mean, seen_classes=(2,))
    assert swapped["seen_psnr"] == r["unseen_psnr"] and swapped["unseen_psnr"] == r["seen_psnr"]


def test_seen_unseen_with_a_classifier_and_an_empty_subset():
    x, x_hat, labels, mean = _case()

    def by_brightness(images):  # class 0 below 0, class 2 in [0, 0.4), class 1 above
        m = np.asarray(images).mean(axis=(1, 2, 3))
        return np.stack([m < 0, m > 0.4, (m >= 0) & (m <= 0.4)], axis=-1).astype(np.float32)

    r = heldout.seen_unseen_metrics(x, x_hat, labels, mean, (0, 1), by_brightness)
    # seen: +0.5 -> class 1, -0.5 -> class 0; of the labels (0, 0, 1, 1) of (+0.5, -0.5, +0.5,
    # -0.5) two are right; X̂ = x + 0.1 (0.6, -0.4) gets the same classes
    assert r["seen_classifier_accuracy_x"] == pytest.approx(0.5)
    assert r["seen_classifier_accuracy_x_hat"] == pytest.approx(0.5)
    assert r["seen_classifier_agreement"] == 1.0
    # unseen: 0.25 -> class 2 (right); X̂ = 0.05 -> class 2 (right)
    assert r["unseen_classifier_accuracy_x"] == 1.0 and r["unseen_classifier_accuracy_x_hat"] == 1.0
    # the mean image (0) is class 2: right for the unseen images, wrong for the seen ones
    assert r["unseen_classifier_accuracy_mean_image"] == 1.0
    assert r["seen_classifier_accuracy_mean_image"] == 0.0
    only_seen = heldout.seen_unseen_metrics(x, x_hat, labels, mean, (0, 1, 2))
    assert "seen_psnr" in only_seen and not any(k.startswith("unseen_") for k in only_seen)
    with pytest.raises(ValueError, match="seen_classes"):
        heldout.seen_unseen_metrics(x, x_hat, labels, mean, ())
    with pytest.raises(ValueError, match="labels"):
        heldout.seen_unseen_metrics(x, x_hat, labels[:3], mean, (0,))
