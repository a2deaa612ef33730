"""Training on some classes (``train_classes``): the raw train split keeps only their examples, so
training, validation and the device cache see them only; the test split stays whole."""

from __future__ import annotations

import os

import numpy as np
import pytest

from sdnet_jax.data import datasets, on_device
from sdnet_jax.data import input_pipeline as ip
from tests.data.test_input_pipeline import global_batches

SEEN = (0, 2, 3)


def _labels(batches):
    return np.concatenate([b["label"][b["mask"] > 0] for b in batches])


def test_digits_train_split_restricted_to_the_classes():
    full = datasets.open_splits("digits", None)
    part = datasets.open_splits("digits", None, train_classes=(3, 0, 2))
    keep = np.isin(full.train.labels, SEEN)
    assert isinstance(part.train, datasets.ArraySource) and len(part.train) == keep.sum()
    np.testing.assert_array_equal(part.train.images, full.train.images[keep])  # same order
    np.testing.assert_array_equal(part.train.labels, full.train.labels[keep])
    assert part.test is full.test  # the test split stays whole
    info = ip.get_info("digits", data_dir=None, validation_size=20, train_classes=SEEN)
    assert info.num_train + info.num_validation == keep.sum() and info.num_classes == 10
    args = dict(data_dir=None, global_batch_size=64, validation_size=20, train_classes=SEEN)
    assert set(_labels(ip.eval_iterator("digits", "validation", **args))) <= set(SEEN)
    assert set(_labels(ip.eval_iterator("digits", "train", **args))) == set(SEEN)
    assert set(_labels(ip.eval_iterator("digits", "test", **args))) == set(range(10))
    train = ip.train_input("digits", image_size=None, seed=0, augment="none", pipeline="device",
                           **args)  # fmt: skip
    assert set(np.unique(train.resident["label"])) == set(SEEN)
    assert len(train.resident["label"]) == info.num_train


@pytest.mark.parametrize("classes", [(), (0, 0), (10,), (-1, 2)])
def test_bad_classes(classes):
    with pytest.raises(ValueError, match="train_classes"):
        datasets.open_splits("digits", None, train_classes=classes)


def test_tfds_train_split_restricted_and_cached_apart(fashion_mnist_dir, tmp_path):
    data_dir = fashion_mnist_dir.data_dir
    full = datasets.open_splits("fashion_mnist", data_dir)
    part = datasets.open_splits("fashion_mnist", data_dir, train_classes=SEEN)
    labels = datasets.read_labels(full.train)
    assert isinstance(part.train, datasets.SubsetSource)
    np.testing.assert_array_equal(part.train.indices, np.flatnonzero(np.isin(labels, SEEN)))
    for i in (0, len(part.train) - 1):  # the subset's examples are the source's, in its order
        np.testing.assert_array_equal(
            part.train[i]["image"], full.train[int(part.train.indices[i])]["image"]
        )
    assert {int(part.train[i]["label"]) for i in range(len(part.train))} == set(SEEN)
    assert len(part.test) == len(full.test)
    # the device loader's decoded split: only those classes, under its own cache file
    kwargs = {"data_dir": data_dir, "validation_size": 3, "cache_dir": os.fspath(tmp_path)}
    images, got = on_device.load_train_arrays("fashion_mnist", train_classes=SEEN, **kwargs)
    assert set(got) == set(SEEN) and len(got) == len(part.train) - 3 == len(images)
    everything = on_device.load_train_arrays("fashion_mnist", **kwargs)[1]
    assert len(everything) == len(full.train) - 3 and len(os.listdir(tmp_path)) == 2
    assert on_device.cache_path("c", "fashion_mnist", 3, None) != on_device.cache_path(
        "c", "fashion_mnist", 3, None, SEEN
    )
    # both loaders give the same batches of those classes only
    args = dict(data_dir=data_dir, validation_size=3, image_size=None, global_batch_size=4,
                seed=1, augment="none", train_classes=SEEN)  # fmt: skip
    device = global_batches(ip.train_input("fashion_mnist", pipeline="device", **args), 0, 4)
    host = global_batches(ip.train_input("fashion_mnist", pipeline="host", **args), 0, 4)
    for a, b in zip(device, host, strict=True):
        np.testing.assert_array_equal(a["image"], b["image"])
        np.testing.assert_array_equal(a["label"], b["label"])
        assert set(np.asarray(a["label"])) <= set(SEEN)
