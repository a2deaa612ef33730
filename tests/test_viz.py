"""The NumPy display helpers of ``sdnet_jax.viz`` (SDNet's hidden-feature display)."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image, ImageOps

from sdnet_jax import viz


def test_equalize_is_pils_equalize_per_image_and_channel():
    rng = np.random.default_rng(0)
    images = rng.beta(2.0, 5.0, size=(3, 20, 17, 2)).astype(np.float32)
    images[2, :, :, 1] = 0.4  # a constant channel: PIL leaves it as it is
    ours = viz.equalize(images)
    for i in range(3):
        for c in range(2):
            grey = Image.fromarray(np.floor(images[i, :, :, c] * 255).astype(np.uint8), mode="L")
            expected = np.asarray(ImageOps.equalize(grey), np.float32) / 255
            np.testing.assert_allclose(ours[i, :, :, c], expected, atol=1e-6)
    # it spreads a narrow histogram over the whole range
    assert ours[0].max() == 1.0 and np.ptp(images[0]) < 0.9


def test_minmax_per_channel():
    x = np.stack([np.linspace(-3, 5, 16).reshape(4, 4), np.full((4, 4), 2.0)], -1)[None]
    out = viz.minmax_per_channel(np.concatenate([x, 10 * x]))
    np.testing.assert_allclose(out[:, :, :, 0].min(axis=(1, 2)), 0.0)
    np.testing.assert_allclose(out[:, :, :, 0].max(axis=(1, 2)), 1.0)
    np.testing.assert_allclose(out[0], out[1], atol=1e-6)  # per image: scale-free
    np.testing.assert_array_equal(out[:, :, :, 1], 0.0)  # a constant channel


def test_save_png_round_trips(tmp_path):
    image = np.random.default_rng(1).uniform(size=(5, 7, 3)).astype(np.float32)
    data = viz.save_png(tmp_path / "a" / "x.png", image, scale=2)
    read = np.asarray(Image.open(tmp_path / "a" / "x.png"))
    assert read.shape == (10, 14, 3)
    np.testing.assert_array_equal(read, data)
    with pytest.raises(ValueError, match="scale"):
        viz.save_png(tmp_path / "y.png", image, scale=0)
