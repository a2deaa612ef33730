"""The on-device training input: same batches as the host pipeline, the (seed, step) contract,
process slices, the in-step augmentations, the cache, and the choice of the path."""

from __future__ import annotations

import itertools
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from sdnet_jax.data import datasets, on_device
from sdnet_jax.data import input_pipeline as ip
from sdnet_jax.runtime import parallel


def _digits_arrays(augment="none", seed=3, mean=None, std=None):
    arrays = on_device.train_arrays(
        "digits",
        data_dir=None,
        validation_size=200,
        image_size=None,
        seed=seed,
        augment=augment,
        cache_dir=None,
    )
    make = on_device.make_batch_fn(
        seed=seed, augment=augment, mean=mean or (0.3050,), std=std or (0.3755,), steps_per_feed=4
    )
    return on_device.TrainArrays(arrays.arrays, make, steps_per_feed=4)


def _batches(train_arrays, *, start_step, count, batch_size=64, seed=3):
    mesh = parallel.data_mesh()
    placed = {k: parallel.shard_rows(v, mesh) for k, v in train_arrays.arrays.items()}
    make = jax.jit(train_arrays.make_batch)
    feeds = on_device.feed_iterator(
        len(train_arrays.arrays["label"]),
        global_batch_size=batch_size,
        seed=seed,
        start_step=start_step,
        steps_per_feed=4,
        process_index=0,
        process_count=1,
    )
    sharding = jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec(None, "data"))
    out, feed = [], None
    for step in range(start_step, start_step + count):
        if feed is None or step % 4 == 0:
            feed = parallel.shard_batch(next(feeds), mesh, sharding)
        out.append(jax.tree.map(np.asarray, make(placed, feed, step)))
    return out


def test_without_augmentation_the_device_batches_are_the_host_batches():
    # 1238 training examples, batch 64: steps 18-21 cross the first epoch boundary
    device = _batches(_digits_arrays(), start_step=18, count=4)
    host = ip.train_iterator(
        "digits",
        data_dir=None,
        global_batch_size=64,
        seed=3,
        augment="none",
        validation_size=200,
        start_step=18,
        process_index=0,
        process_count=1,
    )
    for a, b in zip(device, itertools.islice(host, 4), strict=True):
        np.testing.assert_allclose(a["image"], b["image"], atol=1e-6)
        np.testing.assert_array_equal(a["label"], b["label"])


@pytest.mark.parametrize("augment", ["cifar", "imagenet"])
def test_batch_of_a_step_is_the_same_from_start_or_resumed(augment):
    arrays = _digits_arrays(augment)
    straight = _batches(arrays, start_step=0, count=5)
    resumed = _batches(arrays, start_step=3, count=2)
    for a, b in zip(straight[3:], resumed, strict=True):
        np.testing.assert_array_equal(a["image"], b["image"])
        np.testing.assert_array_equal(a["label"], b["label"])
    assert not np.array_equal(straight[0]["image"], straight[1]["image"])


def test_process_slices_of_the_feeds_concatenate_to_the_one_process_feed():
    def feeds(index, count):
        it = on_device.feed_iterator(
            100, global_batch_size=12, seed=5, start_step=7, steps_per_feed=5,
            process_index=index, process_count=count,
        )  # fmt: skip
        return list(itertools.islice(it, 3))

    whole = feeds(0, 1)
    parts = [feeds(i, 3) for i in range(3)]
    for chunk, feed in enumerate(whole):
        assert feed["index"].shape == (5, 12) and feed["index"].dtype == np.int32
        joined = np.concatenate([parts[i][chunk]["index"] for i in range(3)], axis=1)
        np.testing.assert_array_equal(joined, feed["index"])


def test_feed_rows_are_the_host_pipeline_order_from_the_chunk_of_the_start_step():
    feeds = on_device.feed_iterator(
        100, global_batch_size=150, seed=2, start_step=7, steps_per_feed=3
    )
    first, second = itertools.islice(feeds, 2)
    positions = np.arange(150)
    for row, step in enumerate(range(6, 9)):  # the chunk of steps 6-8 holds step 7
        np.testing.assert_array_equal(
            first["index"][row], ip.stream_order(2, step, positions, 150, 100)
        )
    np.testing.assert_array_equal(second["index"][0], ip.stream_order(2, 9, positions, 150, 100))


def _bits(n, seed=0, step=4):
    return on_device.example_bits(seed, jnp.int32(step), n)


def _keys(n, seed=0, step=4):
    return on_device.example_keys(_bits(n, seed, step))


def test_pad_crop_flip_is_a_shift_of_the_padded_image_and_flips_half():
    rng = np.random.default_rng(0)
    images = rng.integers(1, 256, size=(256, 6, 5, 2), dtype=np.uint8)  # no zero pixel
    out = np.asarray(jax.jit(jax.vmap(on_device.pad_crop_flip))(images, _bits(256)))
    assert out.shape == images.shape and out.dtype == np.uint8
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
    rng = np.random.default_rng(1)
    images = rng.integers(0, 256, size=(64, 16, 12, 3), dtype=np.uint8)
    fn = jax.jit(jax.vmap(lambda x, k: on_device.random_resized_crop_flip(x, k, size=(16, 12))))
    out = np.asarray(fn(images, _keys(64)))
    assert out.shape == (64, 16, 12, 3) and out.dtype == np.float32
    assert out.min() >= 0.0 and out.max() <= 255.0
    assert not np.allclose(out, images)
    # scale (1, 1) and ratio (12/16, 12/16): the crop is the whole image, so only the flip is left
    whole = jax.jit(
        jax.vmap(
            lambda x, k: on_device.random_resized_crop_flip(
                x, k, size=(16, 12), scale=(1.0, 1.0), ratio=(0.75, 0.75)
            )
        )
    )
    for image, got in zip(images, np.asarray(whole(images, _keys(64))), strict=True):
        ok = np.allclose(got, image, atol=1e-3) or np.allclose(got, image[:, ::-1], atol=1e-3)
        assert ok


def test_random_words_depend_on_seed_step_and_position():
    bits = np.asarray(jax.jit(_bits, static_argnums=(0, 1))(64, 0, 4))
    assert bits.shape == (64, 4) and bits.dtype == np.uint32
    assert len({tuple(row) for row in bits}) == 64  # every position its own words
    np.testing.assert_array_equal(bits, np.asarray(_bits(64, 0, 4)))  # jit or not
    assert not np.array_equal(bits, np.asarray(_bits(64, 1, 4)))  # seed
    assert not np.array_equal(bits, np.asarray(_bits(64, 0, 5)))  # step
    big_seed = np.asarray(_bits(8, 2**40 + 3, 4))
    assert not np.array_equal(big_seed, np.asarray(_bits(8, 3, 4)))  # all 64 bits of the seed


def test_normalisation_matches_the_host_pipeline():
    arrays = _digits_arrays("none")
    (batch,) = _batches(arrays, start_step=0, count=1)
    images = arrays.arrays["image"]
    assert batch["image"].dtype == np.float32
    spec = datasets.SPECS["digits"]
    raw = batch["image"] * np.float32(spec.std[0]) + np.float32(spec.mean[0])
    assert np.abs(raw * 255 - np.round(raw * 255)).max() < 1e-3
    assert images.dtype == np.uint8 and images.shape[1:] == (8, 8, 1)


def test_decoded_split_is_cached_and_reused(fashion_mnist_dir, tmp_path, monkeypatch):
    data_dir = fashion_mnist_dir.data_dir
    kwargs = {"data_dir": data_dir, "validation_size": 10, "cache_dir": os.fspath(tmp_path)}
    images, labels = on_device.load_train_arrays("fashion_mnist", **kwargs)
    info = ip.get_info("fashion_mnist", data_dir=data_dir, validation_size=10)
    assert images.shape == (info.num_train, 28, 28, 1) and images.dtype == np.uint8
    assert labels.dtype == np.int32
    (cached,) = os.listdir(tmp_path)
    assert cached.endswith(".npz")

    def no_reading(*args, **kwargs):
        raise AssertionError("the cache was not used")

    monkeypatch.setattr(datasets, "open_splits", no_reading)
    again_images, again_labels = on_device.load_train_arrays("fashion_mnist", **kwargs)
    np.testing.assert_array_equal(again_images, images)
    np.testing.assert_array_equal(again_labels, labels)
    # another holdout is another file
    with pytest.raises(AssertionError, match="cache was not used"):
        on_device.load_train_arrays("fashion_mnist", **{**kwargs, "validation_size": 11})


def test_cache_dir_is_the_tfds_folder_of_the_data_set(fashion_mnist_dir):
    folder = on_device.default_cache_dir("fashion_mnist", fashion_mnist_dir.data_dir)
    assert folder is not None and folder.startswith(fashion_mnist_dir.data_dir)
    assert os.path.isdir(folder)
    assert on_device.default_cache_dir("digits", None) is None


def _info(num_train, shape=(32, 32, 3)):
    return ip.DatasetInfo("x", 10, shape, num_train, 0, 10, (0.5,) * 3, (0.5,) * 3)


def test_auto_choice_by_size_and_the_override():
    small, large = _info(50_000), _info(1_281_167, (224, 224, 3))
    assert on_device.choose("auto", small, augment="cifar") == "device"
    assert on_device.choose("auto", large, augment="imagenet") == "grain"
    assert on_device.choose("grain", small, augment="cifar") == "grain"
    assert on_device.choose("host", small, augment="cifar") == "host"
    assert on_device.choose("device", large, augment="none") == "device"
    assert on_device.choose("auto", _info(0), augment="none") == "host"
    with pytest.raises(ValueError, match=r"config\.data\.pipeline"):
        on_device.choose("grpc", small, augment="none")
    with pytest.raises(ValueError, match=r"config\.data\.pipeline"):
        on_device.choose("device", _info(0), augment="none")
