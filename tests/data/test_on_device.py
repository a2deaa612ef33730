"""The two loaders give the same global batches — the device-resident one, Grain in this process
and Grain in worker processes, for every augmentation (it runs in the step, on whatever loader
delivered the batch) — and the device loader's decoded-split cache."""

from __future__ import annotations

import os

import numpy as np
import pytest

from sdnet_jax.data import datasets, grain_pipeline, on_device
from sdnet_jax.data import input_pipeline as ip
from tests.data.test_input_pipeline import global_batches


def _inputs(data_dir, **kwargs):
    args = dict(data_dir=data_dir, validation_size=10, image_size=None, global_batch_size=8,
                seed=3, augment="cifar")  # fmt: skip
    args.update(kwargs)
    return {
        "device": ip.train_input("fashion_mnist", pipeline="device", **args),
        "grain, this process": ip.train_input("fashion_mnist", pipeline="host", **args),
        "grain, 2 workers": ip.train_input(
            "fashion_mnist", pipeline="grain", num_workers=2, **args
        ),
    }


@pytest.mark.parametrize(
    "overrides", [{"augment": "none"}, {}, {"augment": "imagenet", "image_size": 16}]
)
def test_every_loader_gives_the_same_global_batches(fashion_mnist_dir, overrides):
    # 50 training examples, batch 8: steps 5-7 cross the first epoch boundary
    inputs = _inputs(fashion_mnist_dir.data_dir, **overrides)
    assert [i.pipeline for i in inputs.values()] == ["device", "host", "grain"]
    assert [i.steps_per_feed for i in inputs.values()] == [on_device.STEPS_PER_FEED, 1, 1]
    batches = {name: global_batches(i, 5, 3) for name, i in inputs.items()}
    reference = batches.pop("device")
    for name, got in batches.items():
        for a, b in zip(reference, got, strict=True):
            np.testing.assert_array_equal(a["image"], b["image"], err_msg=name)
            np.testing.assert_array_equal(a["label"], b["label"], err_msg=name)
    if overrides.get("augment") != "none":  # the augmentation did something
        plain = global_batches(_inputs(fashion_mnist_dir.data_dir, **{**overrides,
                               "augment": "none"})["device"], 5, 3)  # fmt: skip
        assert not np.array_equal(plain[0]["image"], reference[0]["image"])


def test_grain_argument_errors(tmp_path):
    args = dict(data_dir=None, global_batch_size=8, seed=0, validation_size=0)
    with pytest.raises(ValueError, match="start_step"):
        grain_pipeline.train_iterator("digits", start_step=-1, **args)
    with pytest.raises(ValueError, match="num_workers"):
        grain_pipeline.train_iterator("digits", num_workers=-1, **args)
    with pytest.raises(datasets.DatasetNotFoundError):
        grain_pipeline.train_iterator("cifar10", **{**args, "data_dir": os.fspath(tmp_path)})


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


def test_cache_folder_is_the_tfds_folder_else_the_fallback(fashion_mnist_dir, tmp_path):
    folder = on_device.cache_folder("fashion_mnist", fashion_mnist_dir.data_dir, "fallback")
    assert folder.startswith(fashion_mnist_dir.data_dir) and os.path.isdir(folder)
    assert on_device.cache_folder("digits", None, "fallback") is None  # nothing to decode
    assert on_device.cache_folder("cifar10", os.fspath(tmp_path), "fallback") == "fallback"
    assert on_device.cache_folder("cifar10", os.fspath(tmp_path), None) is None


def test_decoded_arrays_are_taken_as_they_are(monkeypatch):
    def no_decoding(*args, **kwargs):
        raise AssertionError("decoded again")

    monkeypatch.setattr(on_device.decode, "stored_image", no_decoding)
    images, labels = on_device.load_train_arrays("digits", data_dir=None, validation_size=100)
    train, _ = datasets.digits_splits()
    kept, _ = ip.sampling.train_validation_indices(len(train), 100)
    np.testing.assert_array_equal(images, train.images[kept])
    np.testing.assert_array_equal(labels, train.labels[kept])
    assert labels.dtype == np.int32
