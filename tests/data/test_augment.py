"""The training augmentations (JAX, in the train step) and the host's decoding to stored images."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from sdnet_jax.data import augment, datasets, decode, sampling


def _image(h: int, w: int, c: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, size=(h, w, c), dtype=np.uint8)


def _bits(n, seed=0, step=4):
    return sampling.example_bits(seed, jnp.int32(step), n)


def _keys(n, seed=0, step=4):
    return sampling.example_keys(_bits(n, seed, step))


def test_pad_crop_flip_is_a_window_of_the_padded_image_and_flips_half():
    rng = np.random.default_rng(0)
    images = rng.integers(1, 256, size=(256, 6, 5, 2), dtype=np.uint8)  # no zero pixel
    out = np.asarray(jax.jit(augment.augment_images, static_argnums=2)(images, _bits(256), "cifar"))
    assert out.shape == images.shape and out.dtype == np.float32
    out = np.round(out * 255).astype(np.uint8)
    flips, shifts = 0, set()
    for image, got in zip(images, out, strict=True):
        padded = np.pad(image, ((4, 4), (4, 4), (0, 0)))
        matches = [
            (top, left, flip)
            for top in range(9)
            for left in range(9)
            for flip in (False, True)
            if np.array_equal(
                got, padded[top : top + 6, left : left + 5][:, ::-1] if flip else
                padded[top : top + 6, left : left + 5]
            )
        ]  # fmt: skip
        assert matches, "not a window of the zero-padded image"
        flips += matches[0][2]
        shifts.add(matches[0][:2])
    assert 90 < flips < 166  # about half (binomial(256, 1/2): 5 sigma)
    assert len(shifts) > 40  # offsets spread over the 9 x 9 grid


def test_random_resized_crop_keeps_shape_and_range_and_a_full_crop_is_the_image():
    images = np.random.default_rng(1).integers(0, 256, size=(64, 16, 12, 3), dtype=np.uint8)
    out = np.asarray(augment.augment_images(images, _bits(64), "imagenet"))
    assert out.shape == (64, 16, 12, 3) and out.dtype == np.float32
    assert out.min() >= 0.0 and out.max() <= 1.0
    assert not np.allclose(out * 255, images)
    # scale (1, 1) and ratio (12/16, 12/16): the crop is the whole image, so only the flip is left
    whole = jax.jit(jax.vmap(lambda x, k: augment.random_resized_crop_flip(
        x, k, size=(16, 12), scale=(1.0, 1.0), ratio=(0.75, 0.75))))  # fmt: skip
    seen = set()
    for image, got in zip(images, np.asarray(whole(images / 255.0, _keys(64))), strict=True):
        same = np.allclose(got * 255, image, atol=1e-3)
        flipped = np.allclose(got * 255, image[:, ::-1], atol=1e-3)
        assert same or flipped
        seen.add(same)
    assert seen == {True, False}


def test_no_augmentation_is_the_stored_image_in_unit_range_and_names_are_checked():
    images = np.random.default_rng(2).integers(0, 256, size=(4, 3, 3, 1), dtype=np.uint8)
    out = np.asarray(augment.augment_images(images, _bits(4), "none"))
    np.testing.assert_allclose(out, images / 255.0, atol=1e-7)
    with pytest.raises(ValueError, match="unknown augment"):
        augment.augment_images(images, _bits(4), "autoaugment")


def test_augmentation_depends_on_the_keys_only():
    images = np.random.default_rng(3).integers(0, 256, size=(32, 8, 8, 1), dtype=np.uint8)
    a = augment.augment_images(images, _bits(32, step=4), "flip_crop")
    np.testing.assert_array_equal(a, augment.augment_images(images, _bits(32, step=4), "flip_crop"))
    assert not np.array_equal(a, augment.augment_images(images, _bits(32, step=5), "flip_crop"))


def test_resize_shorter_center_crop():
    for shape in [(300, 500, 3), (500, 300, 3), (20, 10, 3), (256, 256, 3)]:
        out = decode.resize_shorter_center_crop(_image(*shape))
        assert out.shape == (224, 224, 3) and out.dtype == np.uint8
    constant = np.full((100, 300, 3), 77, dtype=np.uint8)
    assert np.all(decode.resize_shorter_center_crop(constant) == 77)
    # The centre is kept: a 256x256 image loses 16 pixels on each side.
    image = _image(256, 256, 3)
    np.testing.assert_array_equal(decode.resize_shorter_center_crop(image), image[16:240, 16:240])


def test_channels():
    grey = _image(4, 4, 1)
    assert decode.as_channels(grey, 3).shape == (4, 4, 3)
    assert decode.as_channels(grey[..., 0], 1).shape == (4, 4, 1)
    with pytest.raises(ValueError, match="channels"):
        decode.as_channels(_image(4, 4, 4), 3)


def test_center_crop_resize():
    for shape, size in [((218, 178, 3), 64), ((300, 500, 1), 32), ((20, 10, 3), 128)]:
        out = decode.center_crop_resize(_image(*shape), size)
        assert out.shape == (size, size, shape[-1]) and out.dtype == np.uint8
    square = _image(96, 96, 3)
    np.testing.assert_array_equal(decode.center_crop_resize(square, 96), square)
    # CelebA: rows 0..19 and 198..217 fall outside the central 178 x 178 square.
    celeba = np.full((218, 178, 3), 200, dtype=np.uint8)
    celeba[:20], celeba[198:] = 0, 255
    assert np.all(decode.center_crop_resize(celeba, 64) == 200)
    np.testing.assert_array_equal(
        decode.center_crop_resize(_image(218, 178, 3), 89)[None],
        decode.center_crop_resize(_image(218, 178, 3)[20:198], 89)[None],
    )
    # Same size after cropping: a pure crop of the centre (odd margins round down).
    wide = _image(10, 15, 1)
    np.testing.assert_array_equal(decode.center_crop_resize(wide, 10), wide[:, 2:12])
    with pytest.raises(ValueError, match="size"):
        decode.center_crop_resize(square, 0)


def test_stored_image():
    imagenet = datasets.SPECS["imagenet2012"]
    assert decode.stored_image(_image(300, 400, 3), imagenet, None).shape == (224, 224, 3)
    assert decode.stored_image(_image(300, 400, 3), imagenet, 32).shape == (32, 32, 3)
    fm = datasets.SPECS["fashion_mnist"]
    grey = _image(28, 28, 1)
    np.testing.assert_array_equal(decode.stored_image(grey[..., 0], fm, None), grey)
    with pytest.raises(ValueError, match="expected"):
        decode.stored_image(_image(27, 28, 1), fm, None)
