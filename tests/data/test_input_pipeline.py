"""Semantics of the iterators: determinism, resumption, process slices, splits, padding, errors."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import tensorflow_datasets as tfds

from sdnet_jax.data import datasets
from sdnet_jax.data import input_pipeline as ip

# ------------------------------------------------------------------ an "indexed" fake data set
# Its images encode their own index (pixel 0: index % 256, pixel 1: index // 256), and with
# mean 0 / std 1 the pipeline's output decodes back to the index exactly.

_INDEXED_SPEC = datasets.DatasetSpec(10, (2, 2, 1), (0.0,), (1.0,))


def _indexed_source(num_examples: int) -> datasets.ArraySource:
    index = np.arange(num_examples)
    images = np.zeros((num_examples, 2, 2, 1), dtype=np.uint8)
    images[:, 0, 0, 0] = index % 256
    images[:, 0, 1, 0] = index // 256
    return datasets.ArraySource(images, index % 10)


def _decode(batch: dict[str, np.ndarray]) -> np.ndarray:
    raw = np.round(batch["image"] * 255.0).astype(np.int64)
    return raw[:, 0, 0, 0] + 256 * raw[:, 0, 1, 0]


@pytest.fixture
def indexed(monkeypatch):
    """Replaces every data set by an indexed one: ``train`` of 100, ``test`` of 37 examples."""

    def open_splits(name, data_dir):
        return datasets.Splits(name, _INDEXED_SPEC, _indexed_source(100), _indexed_source(37))

    monkeypatch.setattr(datasets, "open_splits", open_splits)


def _train(name="digits", **kwargs):
    args = {
        "data_dir": None,
        "global_batch_size": 16,
        "seed": 0,
        "augment": "none",
        "validation_size": 0,
        "process_index": 0,
        "process_count": 1,
    }
    return ip.train_iterator(name, **{**args, **kwargs})


def _eval(split, name="digits", **kwargs):
    args = {
        "data_dir": None,
        "global_batch_size": 8,
        "validation_size": 0,
        "process_index": 0,
        "process_count": 1,
    }
    return list(ip.eval_iterator(name, split, **{**args, **kwargs}))


def _take(iterator, count):
    return list(itertools.islice(iterator, count))


def _assert_batches_equal(a, b):
    assert len(a) == len(b)
    for x, y in zip(a, b, strict=True):
        assert x.keys() == y.keys()
        for key in x:
            np.testing.assert_array_equal(x[key], y[key])


# ------------------------------------------------------------------ determinism / resumption


def test_same_seed_same_batches_and_resume():
    kwargs = {"global_batch_size": 256, "augment": "cifar", "validation_size": 0.1, "seed": 7}
    full = _take(_train(**kwargs), 12)  # 1294 training digits: epochs turn over inside the run
    _assert_batches_equal(full, _take(_train(**kwargs), 12))
    _assert_batches_equal(full[7:], _take(_train(start_step=7, **kwargs), 5))
    other = _take(_train(**{**kwargs, "seed": 8}), 1)[0]
    assert not np.array_equal(other["image"], full[0]["image"])
    assert full[0]["image"].shape == (256, 8, 8, 1) and full[0]["image"].dtype == np.float32
    assert full[0]["label"].shape == (256,) and full[0]["label"].dtype == np.int32


def test_epochs_are_seeded_permutations(indexed):
    # 100 train examples, batch 16: the stream wraps around, every epoch covers all once.
    stream = np.concatenate([_decode(b) for b in _take(_train(seed=1), 25)])  # 400 = 4 epochs
    epochs = stream.reshape(4, 100)
    for epoch in epochs:
        np.testing.assert_array_equal(np.sort(epoch), np.arange(100))
    assert len({tuple(e) for e in epochs}) == 4  # a new order each epoch
    other = np.concatenate([_decode(b) for b in _take(_train(seed=2), 7)])
    assert not np.array_equal(other[:100], epochs[0])


@pytest.mark.parametrize("augment", ["none", "cifar"])
def test_process_slices_partition_the_global_batch(augment):
    kwargs = {"global_batch_size": 32, "augment": augment, "validation_size": 100, "seed": 3}
    whole = _take(_train(**kwargs), 3)
    parts = [
        _take(_train(process_index=p, process_count=2, start_step=1, **kwargs), 2) for p in (0, 1)
    ]
    for step in range(2):
        for key in ("image", "label"):
            joined = np.concatenate([parts[0][step][key], parts[1][step][key]])
            np.testing.assert_array_equal(joined, whole[step + 1][key])
        assert parts[0][step]["image"].shape[0] == 16


def test_process_slices_are_disjoint(indexed):
    parts = [_take(_train(process_index=p, process_count=4), 3) for p in range(4)]
    for step in range(3):
        ids = [set(_decode(part[step])) for part in parts]
        assert sum(len(i) for i in ids) == 16 and len(set().union(*ids)) == 16


# ------------------------------------------------------------------ splits, eval padding


@pytest.mark.parametrize("validation_size", [20, 0.2])
def test_train_and_validation_partition_the_train_split(indexed, validation_size):
    info = ip.get_info("digits", data_dir=None, validation_size=validation_size)
    assert (info.num_train, info.num_validation, info.num_test) == (80, 20, 37)
    train = np.concatenate(
        [_decode(b) for b in _take(_train(validation_size=validation_size), 5)]  # one epoch
    )
    batches = _eval("validation", validation_size=validation_size)
    validation = np.concatenate([_decode(b)[b["mask"] == 1] for b in batches])
    assert len(train) == len(set(train)) == 80 and len(validation) == len(set(validation)) == 20
    assert not set(train) & set(validation)
    np.testing.assert_array_equal(np.sort(np.concatenate([train, validation])), np.arange(100))


def test_holdout_is_fixed_and_independent_of_the_seed(indexed):
    first = [_decode(b) for b in _eval("validation", validation_size=10)]
    again = [_decode(b) for b in _eval("validation", validation_size=10)]
    _assert_batches_equal([{"i": a} for a in first], [{"i": b} for b in again])
    train, validation = ip.train_validation_indices(100, 10)
    assert len(validation) == 10 and np.all(np.diff(validation) > 0)
    np.testing.assert_array_equal(np.sort(np.concatenate([train, validation])), np.arange(100))
    np.testing.assert_array_equal(ip.train_validation_indices(100, 10)[1], validation)
    assert ip.train_validation_indices(100, 0)[1].size == 0


@pytest.mark.parametrize("process_count", [1, 2])
def test_eval_padding_covers_every_example_once(indexed, process_count):
    seen = []
    for p in range(process_count):
        batches = _eval("test", global_batch_size=8, process_index=p, process_count=process_count)
        assert len(batches) == 5  # ceil(37 / 8) on every process
        for batch in batches:
            assert batch["image"].shape == (8 // process_count, 2, 2, 1)
            assert batch["mask"].dtype == np.float32 and set(np.unique(batch["mask"])) <= {0, 1}
            pad = batch["mask"] == 0
            assert np.all(batch["image"][pad] == 0) and np.all(batch["label"][pad] == 0)
            seen.extend(_decode(batch)[~pad])
    np.testing.assert_array_equal(np.sort(seen), np.arange(37))


def test_digits_eval_and_constants():
    info = ip.get_info("digits", data_dir=None, validation_size=0.1)
    assert (info.num_train, info.num_validation, info.num_test) == (1294, 144, 359)
    assert (info.image_shape, info.num_classes) == ((8, 8, 1), 10)
    batches = _eval("test", global_batch_size=100)
    assert [int(b["mask"].sum()) for b in batches] == [100, 100, 100, 59]
    train, _ = datasets.digits_splits()
    pixels = train.images.astype(np.float64) / 255.0
    assert set(np.unique(train.images)) <= set(np.round(np.arange(17) * 255 / 16))
    np.testing.assert_allclose(pixels.mean(), info.mean[0], atol=1e-3)
    np.testing.assert_allclose(pixels.std(), info.std[0], atol=1e-3)


def test_digits_file_reader_equals_load_digits(monkeypatch):
    """The embedded data set is read from scikit-learn's CSV without importing scikit-learn: the
    same pixels and labels as ``load_digits``, which is also the fallback."""
    from sklearn.datasets import load_digits

    expected = load_digits(return_X_y=True)
    for found in (True, False):
        if not found:
            monkeypatch.setattr(datasets.importlib.util, "find_spec", lambda name: None)
        pixels, labels = datasets._load_digits()
        np.testing.assert_array_equal(pixels, expected[0])
        np.testing.assert_array_equal(labels, expected[1])


# ------------------------------------------------------------------ tfds.testing.mock_data

MOCKED = [
    "fashion_mnist",
    "cifar10",
    "cifar100",
    "imagenet2012",
    "cifar10_corrupted",
    "cifar10_corrupted/fog_5",
    "stl10",
    "celeb_a",
]


@pytest.mark.parametrize("name", MOCKED)
def test_mock_data_works_with_the_iterators(name):
    with tfds.testing.mock_data(num_examples=6):
        info = ip.get_info(name, data_dir="/does/not/matter", validation_size=2)
        shape = info.image_shape
        assert info.num_test == 6
        kwargs = {"data_dir": None, "global_batch_size": 4, "process_index": 0, "process_count": 1}
        test = list(ip.eval_iterator(name, "test", validation_size=2, **kwargs))
        assert [b["image"].shape for b in test] == [(4, *shape)] * 2
        assert sum(b["mask"].sum() for b in test) == 6
        if name.startswith("cifar10_corrupted"):
            return
        assert (info.num_train, info.num_validation) == (4, 2)
        augment = "imagenet" if name == "imagenet2012" else "cifar"
        batch = next(ip.train_iterator(name, seed=0, augment=augment, validation_size=2, **kwargs))
        assert batch["image"].shape == (4, *shape) and batch["image"].dtype == np.float32
        assert np.all((batch["label"] >= 0) & (batch["label"] < info.num_classes))


@pytest.mark.parametrize(
    ("name", "image_size", "augment"),
    [
        ("imagenet2012", 32, "imagenet"),
        ("imagenet2012", 24, "none"),
        ("celeb_a", 64, "cifar"),
        ("stl10", 48, "flip_crop"),
    ],
)
def test_image_size_with_mock_data(name, image_size, augment):
    kwargs = {"data_dir": None, "validation_size": 2, "image_size": image_size}
    kwargs |= {"global_batch_size": 4, "process_index": 0, "process_count": 1}
    with tfds.testing.mock_data(num_examples=6):
        info = ip.get_info(name, data_dir=None, validation_size=2, image_size=image_size)
        assert info.image_shape == (image_size, image_size, 3)
        for split in ("validation", "test"):
            for batch in ip.eval_iterator(name, split, **kwargs):
                assert batch["image"].shape == (4, image_size, image_size, 3)
        train = _take(ip.train_iterator(name, seed=5, augment=augment, **kwargs), 3)
        again = _take(ip.train_iterator(name, seed=5, augment=augment, start_step=1, **kwargs), 2)
    assert train[0]["image"].shape == (4, image_size, image_size, 3)
    _assert_batches_equal(train[1:], again)
    if name == "celeb_a":  # the Male attribute
        assert info.num_classes == 2 and set(np.unique(train[0]["label"])) <= {0, 1}


def test_image_size_keeps_determinism_and_process_slices():
    kwargs = {"global_batch_size": 16, "augment": "cifar", "seed": 4, "image_size": 16}
    whole = _take(_train(**kwargs), 3)
    assert whole[0]["image"].shape == (16, 16, 16, 1)
    _assert_batches_equal(whole[1:], _take(_train(start_step=1, **kwargs), 2))
    parts = [_take(_train(process_index=p, process_count=2, **kwargs), 3) for p in (0, 1)]
    for step in range(3):
        joined = np.concatenate([parts[0][step]["image"], parts[1][step]["image"]])
        np.testing.assert_array_equal(joined, whole[step]["image"])
    native = _take(_train(**{**kwargs, "image_size": 8}), 1)[0]  # digits are 8 x 8 already
    _assert_batches_equal([native], _take(_train(**{**kwargs, "image_size": None}), 1))
    batches = _eval("test", image_size=12)
    assert batches[0]["image"].shape == (8, 12, 12, 1)
    info = ip.get_info("digits", data_dir=None, validation_size=0, image_size=12)
    assert info.image_shape == (12, 12, 1)


# ------------------------------------------------------------------ errors


def test_missing_data_dir_raises_with_prepare_instructions(tmp_path):
    missing = tmp_path / "no_such_dir"
    for name, needs in [
        ("cifar10", "cifar-10-python.tar.gz"),
        ("fashion_mnist", "t10k-labels-idx1-ubyte.gz"),
        ("imagenet2012", "ILSVRC2012_img_val.tar"),
        ("cifar10_corrupted/fog_5", "CIFAR-10-C.tar"),
        ("stl10", "stl10_binary.tar.gz"),
        ("celeb_a", "list_attr_celeba.txt"),
    ]:
        with pytest.raises(ip.DatasetNotFoundError) as error:
            ip.get_info(name, data_dir=str(missing), validation_size=0)
        message = str(error.value)
        assert (
            f"python -m sdnet_jax.data.prepare {name} --manual_dir=DIR --data_dir={missing}"
            in message
        )
        assert needs in message
    assert issubclass(ip.DatasetNotFoundError, ValueError)
    with pytest.raises(ip.DatasetNotFoundError):  # raised at the call, not at the first batch
        _train("cifar10", data_dir=str(missing))
    with pytest.raises(ip.DatasetNotFoundError):
        ip.eval_iterator(
            "cifar100", "test", data_dir=str(missing), global_batch_size=2, validation_size=0
        )
    assert not missing.exists()


def test_argument_errors():
    with pytest.raises(ValueError, match="unknown data set"):
        ip.get_info("mnist", data_dir=None, validation_size=0)
    with pytest.raises(ValueError, match="has no configs"):
        ip.get_info("cifar10/gaussian_noise_1", data_dir=None, validation_size=0)
    with pytest.raises(ValueError, match="unknown config"):
        ip.get_info("cifar10_corrupted/bogus_9", data_dir=None, validation_size=0)
    with pytest.raises(ValueError, match="multiple of the number of processes"):
        _train(global_batch_size=10, process_index=0, process_count=3)
    with pytest.raises(ValueError, match="multiple of the number of processes"):
        _eval("test", global_batch_size=0)
    with pytest.raises(ValueError, match="process_index"):
        _train(process_index=2, process_count=2)
    with pytest.raises(ValueError, match="unknown augment"):
        _train(augment="autoaugment")
    with pytest.raises(ValueError, match="unknown split"):
        _eval("train")
    with pytest.raises(ValueError, match="start_step"):
        _train(start_step=-1)
    with pytest.raises(ValueError, match="validation split of 'digits' is empty"):
        _eval("validation", validation_size=0)
    for bad in (1438, -1, 1.0, -0.1):
        with pytest.raises(ValueError, match="validation_size"):
            ip.get_info("digits", data_dir=None, validation_size=bad)
    with pytest.raises(TypeError, match="validation_size"):
        ip.get_info("digits", data_dir=None, validation_size=True)
    for bad, error in ((0, ValueError), (-3, ValueError), (32.0, TypeError), (True, TypeError)):
        with pytest.raises(error, match="image_size"):
            ip.get_info("digits", data_dir=None, validation_size=0, image_size=bad)
        with pytest.raises(error, match="image_size"):
            _train(image_size=bad)
        with pytest.raises(error, match="image_size"):
            _eval("test", image_size=bad)


def test_default_process_index_and_count():
    batch = next(
        ip.train_iterator(
            "digits", data_dir=None, global_batch_size=8, seed=0, augment="none", validation_size=0
        )
    )
    assert batch["image"].shape[0] == 8  # one process here
