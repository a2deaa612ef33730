"""Reconstruction fidelity beyond PSNR: SSIM against an independent implementation, a classifier's
accuracy on X̂ beside X on constructed cases, the classifier run restored as logits, and the
CTRL evaluation reporting them."""

from __future__ import annotations

import json
import os

import jax.numpy as jnp
import numpy as np
import pytest
from skimage.metrics import structural_similarity

from benchmarks import classifier_blur, ctrl_evaluate, ctrl_transfer
from sdnet_jax import runs
from sdnet_jax.data import input_pipeline, pixels
from sdnet_jax.evaluation import fidelity
from sdnet_jax.train import ctrl
from tests.helpers import data_context, load_config

# Some tests restore the session's trained tiny classifier: one pytest-xdist worker trains it once.
pytestmark = pytest.mark.xdist_group("trained_tiny_models")


def _smooth_images(rng, n, size):
    """Images in [-1, 1] with structure at several scales (SSIM of white noise is near 0)."""
    x = rng.normal(size=(n, size // 4, size // 4, 1))
    x = np.repeat(np.repeat(x, 4, axis=1), 4, axis=2) + 0.3 * rng.normal(size=(n, size, size, 1))
    return np.tanh(x).astype(np.float32)


def test_ssim_matches_scikit_image():
    """dm_pix's Gaussian-window SSIM on the [0, 1] images equals scikit-image's (σ 1.5, window 11,
    population covariance: Wang et al. 2004), image by image."""
    rng = np.random.default_rng(0)
    x = _smooth_images(rng, 3, 24)
    x_hat = np.clip(x + 0.3 * rng.normal(size=x.shape), -1, 1).astype(np.float32)
    got = fidelity.ssim(x, x_hat)
    want = [
        structural_similarity(
            (a[..., 0] + 1) / 2,
            (b[..., 0] + 1) / 2,
            data_range=1.0,
            gaussian_weights=True,
            sigma=1.5,
            use_sample_covariance=False,
        )
        for a, b in zip(x, x_hat, strict=True)
    ]
    assert got.shape == (3,)
    np.testing.assert_allclose(got, want, atol=2e-4)
    assert np.all((0.05 < got) & (got < 0.95))  # neither identical nor unrelated
    np.testing.assert_allclose(fidelity.ssim(x, x), 1.0, atol=1e-5)


def test_ssim_window_fits_small_images():
    assert fidelity.ssim_window(28, 28) == 11 and fidelity.ssim_window(8, 8) == 7
    assert fidelity.ssim_window(10, 32) == 9
    x = _smooth_images(np.random.default_rng(1), 4, 8)
    np.testing.assert_allclose(fidelity.ssim(x, x), 1.0, atol=1e-5)
    assert np.all(fidelity.ssim(x, -x) < 0.5)


def test_structural_metrics_put_ssim_beside_the_mean_images():
    rng = np.random.default_rng(2)
    x = _smooth_images(rng, 5, 16)
    x_hat = np.clip(x + 0.1 * rng.normal(size=x.shape), -1, 1)
    result = fidelity.structural_metrics(x, x_hat)
    assert result["ssim"] == pytest.approx(fidelity.ssim(x, x_hat).mean())
    mean = x.mean(axis=0)
    want = fidelity.ssim(x, np.broadcast_to(mean, x.shape)).mean()
    assert result["ssim_mean_image"] == pytest.approx(want)
    assert result["ssim"] > result["ssim_mean_image"]
    # a collapsed decoder (every X̂ the mean image) scores exactly the baseline
    collapsed = fidelity.structural_metrics(x, np.broadcast_to(mean, x.shape), mean)
    assert collapsed["ssim"] == pytest.approx(collapsed["ssim_mean_image"])
    other = fidelity.structural_metrics(x, x_hat, np.zeros_like(mean))
    assert other["ssim_mean_image"] != pytest.approx(result["ssim_mean_image"])
    with pytest.raises(ValueError, match="mean_image"):
        fidelity.structural_metrics(x, x_hat, np.zeros((3, 3, 1)))
    with pytest.raises(ValueError, match="same shape"):
        fidelity.ssim(x, x_hat[:, :8])


def _brightness_logits(images):
    """A known classifier: class 1 for images brighter than 0 on average, else class 0."""
    m = np.asarray(images).mean(axis=(1, 2, 3))
    return np.stack([-m, m], axis=-1)


def test_classifier_metrics_on_a_constructed_case():
    bright, dark = np.full((4, 4, 1), 0.5), np.full((4, 4, 1), -0.5)
    x = np.stack([bright, bright, dark, dark, bright]).astype(np.float32)
    labels = np.array([1, 1, 0, 0, 0])  # the last one the classifier gets wrong
    # X̂: the first image turned dark, the fourth turned bright, the last kept
    x_hat = np.stack([dark, bright, dark, bright, bright]).astype(np.float32)
    result = fidelity.classifier_metrics(_brightness_logits, x, x_hat, labels)
    assert result["classifier_accuracy_x"] == pytest.approx(4 / 5)
    assert result["classifier_accuracy_x_hat"] == pytest.approx(2 / 5)
    assert result["classifier_accuracy_ratio"] == pytest.approx(0.5)
    assert result["classifier_agreement"] == pytest.approx(3 / 5)
    # the mean of x is brighter than 0 -> class 1, which 2 of the 5 labels are
    assert result["classifier_accuracy_mean_image"] == pytest.approx(2 / 5)
    dark_mean = fidelity.classifier_metrics(_brightness_logits, x, x_hat, labels, dark)
    assert dark_mean["classifier_accuracy_mean_image"] == pytest.approx(3 / 5)
    both = fidelity.fidelity_metrics(x, x_hat, labels, None, _brightness_logits)
    assert both["classifier_accuracy_x_hat"] == result["classifier_accuracy_x_hat"]
    assert "ssim" in both and "classifier_accuracy_x" not in fidelity.fidelity_metrics(x, x, labels)
    with pytest.raises(ValueError, match="labels"):
        fidelity.classifier_metrics(_brightness_logits, x, x_hat, labels[:3])
    with pytest.raises(ValueError, match="logits"):
        fidelity.classifier_metrics(lambda im: np.zeros(len(im)), x, x_hat, labels)


def test_load_classifier_gives_the_classifier_logits(resnet_dir):
    """The restored run's logits are the model's on the [-1, 1] images mapped to its input."""
    classifier = fidelity.load_classifier(resnet_dir)
    assert classifier.dataset == "digits" and classifier.num_classes == 10
    assert classifier.name.startswith("classifier(resnet18@digits") and "penultimate" not in (
        classifier.name
    )
    x = np.random.default_rng(3).uniform(-1, 1, (5, 8, 8, 1)).astype(np.float32)
    _, model, state, info = runs.load_classifier(resnet_dir)
    variables = {"params": state.params, **state.model_state}
    x_norm = ((x + 1) / 2 - np.asarray(info.mean)) / np.asarray(info.std)
    want = np.asarray(model.apply(variables, jnp.asarray(x_norm), train=False))
    np.testing.assert_allclose(classifier(x), want, rtol=1e-4, atol=1e-4)


def test_ctrl_evaluation_reports_the_classifier_on_x_and_x_hat(resnet_dir, tmp_path):
    """A digits CTRL run, evaluated again with the digits classifier (benchmarks.ctrl_evaluate,
    the training evaluation with config.eval.fidelity_classifier_workdir set): its accuracy on X is
    the classifier's on the first eval.max_examples test images, computed here; the other metrics
    are training's; the transfer benchmark on the run's own data set gives the same numbers."""
    workdir = os.fspath(tmp_path)
    trained = ctrl.train_and_evaluate(load_config("ctrl_digits_csc", "smoke"), workdir)["final"]
    assert "classifier_accuracy_x" not in trained["test"] and "ssim" in trained["test"]
    again = ctrl_evaluate.main([workdir, "--set", f"eval.fidelity_classifier_workdir={resnet_dir}"])
    final = again["test"]
    assert again["step"] == trained["step"] == 2
    assert json.load(open(tmp_path / "evaluation.json"))["test"] == final
    for key, value in trained["test"].items():
        assert final[key] == pytest.approx(value, rel=1e-5, abs=1e-6), key
    for key in ("classifier_accuracy_x", "classifier_accuracy_x_hat", "classifier_agreement"):
        assert 0.0 <= final[key] <= 1.0, key
    xs, ys = [], []
    for batch in input_pipeline.eval_iterator(
        "digits", "test", global_batch_size=16, data_dir=None, validation_size=32
    ):
        keep = np.asarray(batch["mask"], bool)
        xs.append(np.asarray(pixels.symmetric_from_uint8(jnp.asarray(batch["image"])))[keep])
        ys.append(np.asarray(batch["label"])[keep])
    x, y = np.concatenate(xs)[:32], np.concatenate(ys)[:32]
    predicted = np.argmax(fidelity.load_classifier(resnet_dir)(x), axis=-1)
    assert final["classifier_accuracy_x"] == pytest.approx(np.mean(predicted == y))
    assert final["classifier_accuracy_x"] > 0.3  # the tiny classifier is well above chance
    (transfer,) = ctrl_transfer.main(
        [workdir, "digits", "--max_examples", "32", "--classifier_workdir", resnet_dir]
    )
    for key in ("psnr", "ssim", "classifier_accuracy_x", "classifier_accuracy_x_hat"):
        assert transfer[key] == pytest.approx(final[key], rel=1e-4), key
    with pytest.raises(ValueError, match=r"eval\.FIELD"):
        ctrl_evaluate.main([workdir, "--set", "ctrl.code_lam=1"])
    with pytest.raises(ValueError, match="no field"):
        ctrl_evaluate.main([workdir, "--set", "eval.no_such_field=1"])


def test_fidelity_classifier_of_another_data_set_is_a_clear_error(resnet_dir, tmp_path):
    config = load_config("ctrl_fashion_mnist_csc", "smoke")
    config.eval.fidelity_classifier_workdir = resnet_dir  # a digits classifier
    with data_context(config), pytest.raises(ValueError, match="fidelity_classifier_workdir"):
        ctrl.validate_config(config)
    config.eval.fidelity_classifier_workdir = os.fspath(tmp_path / "missing")
    with data_context(config), pytest.raises(ValueError, match="fidelity_classifier_workdir"):
        ctrl.validate_config(config)


def test_classifier_blur_benchmark(resnet_dir):
    """The blur yardstick: σ = 0 is the classifier's accuracy on X itself; blurring lowers PSNR
    and SSIM; a constant image is unchanged by the blur."""
    flat = np.full((2, 6, 6, 1), 0.3, np.float32)
    np.testing.assert_allclose(classifier_blur.blur(flat, 1.5), flat, atol=1e-6)
    rows = classifier_blur.main([resnet_dir, "--sigmas", "0,1", "--max_examples", "32"])
    sharp, blurred = rows
    assert sharp["psnr"] == np.inf and sharp["accuracy_ratio"] == 1.0
    assert sharp["ssim"] == pytest.approx(1.0, abs=1e-5)
    assert np.isfinite(blurred["psnr"]) and blurred["ssim"] < 0.99
    assert json.load(open(os.path.join(resnet_dir, "blur.json")))["rows"] == rows
    with pytest.raises(ValueError, match="sigmas"):
        classifier_blur.main([resnet_dir, "--sigmas", "-1"])
