"""Augmentation and preprocessing: shapes, value ranges, what a crop / flip actually does."""

from __future__ import annotations

import numpy as np
import pytest

from sdnet_jax.data import augment


def _image(height: int, width: int, channels: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (height, width, channels), dtype=np.uint8)


def test_flip_is_a_mirror():
    image = _image(5, 7, 3)
    flipped = augment.flip_left_right(image)
    for j in range(7):
        np.testing.assert_array_equal(flipped[:, j], image[:, 6 - j])
    np.testing.assert_array_equal(augment.flip_left_right(flipped), image)


@pytest.mark.parametrize("shape", [(32, 32, 3), (28, 28, 1), (8, 8, 1)])
def test_pad_crop_flip_is_a_window_of_the_padded_image(shape):
    image = _image(*shape)
    height, width = shape[:2]
    padded = np.pad(image, ((4, 4), (4, 4), (0, 0)))
    offsets, flips = set(), set()
    for seed in range(300):
        out = augment.pad_crop_flip(image, np.random.default_rng(seed))
        assert out.shape == shape and out.dtype == np.uint8
        matches = [
            (top, left, flip)
            for top in range(9)
            for left in range(9)
            for flip in (False, True)
            if np.array_equal(
                out,
                (lambda w: w[:, ::-1] if flip else w)(
                    padded[top : top + height, left : left + width]
                ),
            )
        ]
        assert matches, "output is not a (flipped) window of the zero-padded image"
        offsets.update((top, left) for top, left, _ in matches)
        flips.update(flip for _, _, flip in matches)
    assert {t for t, _ in offsets} == set(range(9)) and {left for _, left in offsets} == set(
        range(9)
    )
    assert flips == {False, True}


def test_augmentations_are_deterministic_given_the_seed():
    image = _image(40, 60, 3)
    for fn in (
        augment.pad_crop_flip,
        lambda x, r: augment.random_resized_crop_flip(x, r, size=(16, 16)),
    ):
        a = fn(image, np.random.default_rng(5))
        b = fn(image, np.random.default_rng(5))
        np.testing.assert_array_equal(a, b)


def test_random_resized_crop_box_respects_scale_and_ratio():
    for seed in range(200):
        top, left, h, w = augment.random_resized_crop_box(120, 90, np.random.default_rng(seed))
        assert 0 <= top and top + h <= 120 and 0 <= left and left + w <= 90
        assert 0.08 * 0.9 <= h * w / (120 * 90) <= 1.0
        assert 3 / 4 * 0.9 <= w / h <= 4 / 3 * 1.1
    # An extreme strip: every attempt fails, the fallback is a centred crop inside the image.
    top, left, h, w = augment.random_resized_crop_box(
        2, 400, np.random.default_rng(0), scale=(0.9, 1)
    )
    assert (top, h) == (0, 2) and 0 <= left and left + w <= 400 and w == round(2 * 4 / 3)


def test_random_resized_crop_flip_shapes_and_identity():
    image = _image(30, 50, 3)
    for channels in (1, 3):
        out = augment.random_resized_crop_flip(
            _image(30, 50, channels), np.random.default_rng(0), size=(224, 224)
        )
        assert out.shape == (224, 224, channels) and out.dtype == np.uint8
    # Full-image box at the same size: the output is the image or its mirror.
    seen = set()
    for seed in range(20):
        out = augment.random_resized_crop_flip(
            image, np.random.default_rng(seed), size=(30, 50), scale=(1, 1), ratio=(5 / 3, 5 / 3)
        )
        if np.array_equal(out, image):
            seen.add("same")
        elif np.array_equal(out, image[:, ::-1]):
            seen.add("flipped")
        else:
            pytest.fail("full-size crop changed the image")
    assert seen == {"same", "flipped"}


def test_resize_shorter_center_crop():
    for shape in [(300, 500, 3), (500, 300, 3), (20, 10, 3), (256, 256, 3)]:
        out = augment.resize_shorter_center_crop(_image(*shape))
        assert out.shape == (224, 224, 3) and out.dtype == np.uint8
    constant = np.full((100, 300, 3), 77, dtype=np.uint8)
    assert np.all(augment.resize_shorter_center_crop(constant) == 77)
    # The centre is kept: a 256x256 image loses 16 pixels on each side.
    image = _image(256, 256, 3)
    np.testing.assert_array_equal(augment.resize_shorter_center_crop(image), image[16:240, 16:240])


def test_normalize_and_channels():
    images = np.array([[[[0, 255, 51]]]], dtype=np.uint8)
    out = augment.normalize(images, (0.0, 0.5, 0.2), (1.0, 0.5, 0.1))
    assert out.dtype == np.float32
    np.testing.assert_allclose(out[0, 0, 0], [0.0, 1.0, 0.0], atol=1e-6)
    grey = _image(4, 4, 1)
    assert augment.as_channels(grey, 3).shape == (4, 4, 3)
    assert augment.as_channels(grey[..., 0], 1).shape == (4, 4, 1)
    with pytest.raises(ValueError, match="channels"):
        augment.as_channels(_image(4, 4, 4), 3)


def test_center_crop_resize():
    for shape, size in [((218, 178, 3), 64), ((300, 500, 1), 32), ((20, 10, 3), 128)]:
        out = augment.center_crop_resize(_image(*shape), size)
        assert out.shape == (size, size, shape[-1]) and out.dtype == np.uint8
    square = _image(96, 96, 3)
    np.testing.assert_array_equal(augment.center_crop_resize(square, 96), square)
    # CelebA: rows 0..19 and 198..217 fall outside the central 178 x 178 square.
    celeba = np.full((218, 178, 3), 200, dtype=np.uint8)
    celeba[:20], celeba[198:] = 0, 255
    assert np.all(augment.center_crop_resize(celeba, 64) == 200)
    np.testing.assert_array_equal(
        augment.center_crop_resize(_image(218, 178, 3), 89)[None],
        augment.center_crop_resize(_image(218, 178, 3)[20:198], 89)[None],
    )
    # Same size after cropping: a pure crop of the centre (odd margins round down).
    wide = _image(10, 15, 1)
    np.testing.assert_array_equal(augment.center_crop_resize(wide, 10), wide[:, 2:12])
    with pytest.raises(ValueError, match="size"):
        augment.center_crop_resize(square, 0)
