"""SDNet's noise (``robustness.sdnet_noise``) against a NumPy transcription of SDNet's
``robust_inference.py``, fed the same random numbers."""

from __future__ import annotations

import jax
import numpy as np
import pytest

from sdnet_jax.data import pixels
from sdnet_jax.evaluation.robustness import sdnet_noise


def sdnet_numpy(images: np.ndarray, family: str, c: float, draws: dict) -> np.ndarray:
    """SDNet's functions on uint8 images (float64, as NumPy computes them), then its
    ``x.astype(np.uint8)``; the random numbers come from ``draws`` instead of ``np.random``."""
    if family == "gaussian":
        out = np.clip(images / 255 + draws["z"] * c, 0, 1) * 255
    elif family == "shot":
        out = np.clip(draws["counts"] / float(c), 0, 1) * 255
    elif family == "speckle":
        out = np.clip(images / 255 * (1 + draws["z"] * c), 0, 1) * 255
    else:  # skimage.util.random_noise(images / 255., mode='s&p', amount=c): its two masks
        out = images / 255.0
        flipped, salted = draws["u"] <= c, draws["v"] <= 0.5
        out = np.where(flipped & salted, 1.0, np.where(flipped & ~salted, 0.0, out))
        out = np.clip(out, 0, 1) * 255
    return out, out.astype(np.uint8)


def draws_of(key: jax.Array, images: np.ndarray, family: str, c: float) -> dict:
    """The random numbers ``noise_255`` draws from ``key``, drawn again here."""
    shape = images.shape
    if family in ("gaussian", "speckle"):
        return {"z": np.asarray(jax.random.normal(key, shape), np.float64)}
    if family == "shot":
        rate = np.asarray(images, np.float32) / np.float32(255) * np.float32(c)
        return {"counts": np.asarray(jax.random.poisson(key, rate, shape), np.float64)}
    flip_key, salt_key = jax.random.split(key)
    return {
        "u": np.asarray(jax.random.uniform(flip_key, shape), np.float64),
        "v": np.asarray(jax.random.uniform(salt_key, shape), np.float64),
    }


@pytest.mark.parametrize("family", sdnet_noise.FAMILIES)
def test_matches_sdnet_formulas_with_the_uint8_truncation(family):
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, size=(6, 12, 12, 3)).astype(np.uint8)
    images[0] = 0  # a black and a white image: the clipping at both ends
    images[1] = 255
    key = jax.random.key(3)
    noisy = jax.jit(sdnet_noise.noise_255, static_argnums=2)
    checked = 0
    for c in sdnet_noise.LEVELS[family]:
        ours = np.asarray(noisy(images.astype(np.float32), key, family, c))
        before, theirs = sdnet_numpy(images.astype(np.float64), family, c, draws_of(
            key, images, family, c))  # fmt: skip
        assert ours.shape == images.shape
        np.testing.assert_array_equal(ours, np.floor(ours))  # whole grey levels in [0, 255]
        assert ours.min() >= 0 and ours.max() <= 255
        if family == "impulse":  # SDNet's (p/255)*255 is exactly p: no rounding to allow for
            np.testing.assert_array_equal(ours, theirs)
            checked += ours.size
            continue
        # Equal, except by one level where SDNet's float64 value is within rounding of a whole
        # level (its (k/c)*255 may land a hair below an integer and truncate one level lower).
        near_integer = np.abs(before - np.round(before)) < 1e-6
        differ = ours != theirs
        assert np.all(np.abs(ours - theirs.astype(np.float32))[differ] <= 1)
        assert np.all(near_integer[differ]), (family, c, before[differ & ~near_integer][:5])
        checked += np.sum(~near_integer)
        if family != "shot":  # a continuous draw: SDNet's value is almost never a whole level
            assert np.mean(differ) < 1e-3
    assert checked > 1000  # the comparison was not vacuous


def test_truncation_is_not_rounding():
    """SDNet truncates (``astype(np.uint8)``): mid-level values go down, on average by half a
    grey level; rounding would be unbiased."""
    images = np.full((1, 256, 256, 1), 100.0, np.float32)
    out = np.asarray(sdnet_noise.noise_255(images, jax.random.key(0), "gaussian", 0.02))
    np.testing.assert_allclose(out.mean() - 100.0, -0.5, atol=0.1)  # std of the mean 0.02


def test_levels_and_lams_are_sdnets():
    expected = {
        "gaussian": np.arange(0.02, 0.21, 0.02),
        "shot": np.arange(60, 3, -6),
        "speckle": np.arange(0.1, 0.7, 0.1),
        "impulse": np.arange(0.03, 0.3, 0.03),  # ten levels: 0.30 is inside
    }
    assert list(sdnet_noise.LEVELS) == list(expected)
    for family, levels in expected.items():
        np.testing.assert_allclose(sdnet_noise.LEVELS[family], levels, rtol=1e-12)
    np.testing.assert_allclose(sdnet_noise.LAMS, np.linspace(0.1, 1.4, 14), rtol=1e-12)


def test_impulse_flips_about_the_amount_half_salt_half_pepper():
    images = np.full((4, 50, 50, 3), 128.0, np.float32)
    out = np.asarray(sdnet_noise.noise_255(images, jax.random.key(1), "impulse", 0.3))
    assert abs(np.mean(out != 128) - 0.3) < 0.01
    assert abs(np.mean(out == 255) - 0.15) < 0.01 and abs(np.mean(out == 0) - 0.15) < 0.01


def test_on_normalised_images_works_on_whole_grey_levels():
    mean, std = np.float32(0.3), np.float32(0.4)
    levels = np.random.default_rng(1).integers(0, 256, size=(3, 8, 8, 1)).astype(np.float32)
    images = pixels.normalised_from_unit(levels / 255.0, mean, std)
    key = jax.random.key(2)
    out = sdnet_noise.corrupt_normalised(images, key, 0.1, family="gaussian", mean=mean, std=std)
    back = np.asarray(pixels.unit_from_normalised(out, mean, std)) * 255.0
    np.testing.assert_allclose(back, np.round(back), atol=1e-3)
    expected = sdnet_noise.noise_255(levels, key, "gaussian", 0.1)
    np.testing.assert_allclose(back, expected, atol=1e-3)
    with pytest.raises(ValueError, match="unknown SDNet noise"):
        sdnet_noise.noise_255(levels, key, "fog", 0.1)
