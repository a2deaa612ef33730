"""What the jobs get from the data layer: the training input's global batches (determinism,
resumption, epochs, the held-out split), the evaluation batches (padding, splits), data set
info, and the errors."""

from __future__ import annotations

import itertools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import tensorflow_datasets as tfds

from sdnet_jax.data import datasets, grain_pipeline, on_device
from sdnet_jax.data import input_pipeline as ip

# ------------------------------------------------------------------ an "indexed" fake data set
# Its images encode their own index (pixel 0: index % 256, pixel 1: index // 256).

_INDEXED_SPEC = datasets.DatasetSpec(10, (2, 2, 1), (0.0,), (1.0,))


def _indexed_source(num_examples: int) -> datasets.ArraySource:
    index = np.arange(num_examples)
    images = np.zeros((num_examples, 2, 2, 1), dtype=np.uint8)
    images[:, 0, 0, 0] = index % 256
    images[:, 0, 1, 0] = index // 256
    return datasets.ArraySource(images, index % 10)


def _decode(images: np.ndarray) -> np.ndarray:
    """The indices of indexed images (uint8, or [0, 1] floats)."""
    raw = np.asarray(images)
    if raw.dtype != np.uint8:
        raw = np.round(raw * 255.0)
    raw = raw.astype(np.int64)
    return raw[:, 0, 0, 0] + 256 * raw[:, 0, 1, 0]


@pytest.fixture
def indexed(monkeypatch):
    """Replaces every data set by an indexed one: ``train`` of 100, ``test`` of 37 examples."""

    def open_splits(name, data_dir, train_classes=None):
        assert train_classes is None, "the indexed data sets have no class subsets"
        return datasets.Splits(name, _INDEXED_SPEC, _indexed_source(100), _indexed_source(37))

    monkeypatch.setattr(datasets, "open_splits", open_splits)


def _input(name="digits", **kwargs) -> ip.TrainInput:
    args = {"data_dir": None, "validation_size": 0, "image_size": None, "global_batch_size": 16,
            "seed": 0, "augment": "none", "pipeline": "device"}  # fmt: skip
    return ip.train_input(name, **{**args, **kwargs})


def global_batches(train_input: ip.TrainInput, start: int, count: int) -> list[dict]:
    """The global batches of steps ``start .. start + count - 1`` as the train step sees them."""
    batch = jax.jit(train_input.batch)
    resident = {k: jnp.asarray(v) for k, v in train_input.resident.items()}
    feeds, feed, out = train_input.feeds(start), None, []
    for step in range(start, start + count):
        if feed is None or step % train_input.steps_per_feed == 0:
            feed = {k: jnp.asarray(v) for k, v in next(feeds).items()}
        out.append(jax.tree.map(np.asarray, batch(resident, feed, step)))
    return out


def _eval(split, name="digits", **kwargs):
    args = {"data_dir": None, "global_batch_size": 8, "validation_size": 0, "process_index": 0,
            "process_count": 1}  # fmt: skip
    return list(ip.eval_iterator(name, split, **{**args, **kwargs}))


def _assert_batches_equal(a, b):
    assert len(a) == len(b)
    for x, y in zip(a, b, strict=True):
        assert x.keys() == y.keys()
        for key in x:
            np.testing.assert_array_equal(x[key], y[key])


# ------------------------------------------------------------------ determinism / resumption


@pytest.mark.parametrize("pipeline", ["device", "host"])
def test_same_seed_same_batches_and_resume(pipeline):
    kwargs = {"global_batch_size": 256, "augment": "cifar", "validation_size": 0.1, "seed": 7}
    train_input = _input(pipeline=pipeline, **kwargs)
    full = global_batches(train_input, 0, 8)  # 1294 training digits: epochs turn over inside
    _assert_batches_equal(full[5:], global_batches(_input(pipeline=pipeline, **kwargs), 5, 3))
    other = global_batches(_input(pipeline=pipeline, **{**kwargs, "seed": 8}), 0, 1)[0]
    assert not np.array_equal(other["image"], full[0]["image"])
    assert full[0]["image"].shape == (256, 8, 8, 1) and full[0]["image"].dtype == np.float32
    assert 0.0 <= full[0]["image"].min() and full[0]["image"].max() <= 1.0
    assert full[0]["label"].shape == (256,) and full[0]["label"].dtype == np.int32


@pytest.mark.parametrize("pipeline", ["device", "host"])
def test_epochs_are_seeded_permutations_of_the_training_split(indexed, pipeline):
    # 100 examples of which 20 held out, batch 16: 5 steps are one epoch of the 80
    train_input = _input(pipeline=pipeline, validation_size=20, seed=1)
    stream = np.concatenate([_decode(b["image"]) for b in global_batches(train_input, 0, 10)])
    epochs = stream.reshape(2, 80)
    validation = np.concatenate([_decode(b["image"])[b["mask"] == 1]
                                 for b in _eval("validation", validation_size=20)])  # fmt: skip
    for epoch in epochs:
        assert len(set(epoch)) == 80 and not set(epoch) & set(validation)
        np.testing.assert_array_equal(np.sort(np.concatenate([epoch, validation])), np.arange(100))
    assert not np.array_equal(epochs[0], epochs[1])  # a new order each epoch
    # the device loader's feeds hold the training split's rows; its resident images, in order
    if pipeline == "device":
        np.testing.assert_array_equal(
            _decode(train_input.resident["image"]),
            np.setdiff1d(np.arange(100), validation),
        )


def test_feeds_of_the_processes_are_slices_of_the_one_process_feed():
    def device(index, count):
        it = on_device.feed_iterator(
            100, global_batch_size=12, seed=5, start_step=7, steps_per_feed=5,
            process_index=index, process_count=count,
        )  # fmt: skip
        return list(itertools.islice(it, 3))

    def grain(index, count):
        it = grain_pipeline.train_iterator(
            "digits", data_dir=None, global_batch_size=12, seed=5, validation_size=0,
            start_step=7, process_index=index, process_count=count, num_workers=0,
        )  # fmt: skip
        return list(itertools.islice(it, 3))

    for feeds, key in ((device, "index"), (grain, "image"), (grain, "label")):
        whole, parts = feeds(0, 1), [feeds(i, 3) for i in range(3)]
        for chunk, feed in enumerate(whole):
            joined = np.concatenate([parts[i][chunk][key] for i in range(3)], axis=1)
            np.testing.assert_array_equal(joined, feed[key])
    assert whole[0]["image"].shape == (1, 12, 8, 8, 1) and whole[0]["image"].dtype == np.uint8


def test_device_feed_rows_follow_the_stream_from_the_chunk_of_the_start_step():
    feeds = on_device.feed_iterator(
        100, global_batch_size=150, seed=2, start_step=7, steps_per_feed=3
    )
    first, second = itertools.islice(feeds, 2)
    assert first["index"].shape == (3, 150) and first["index"].dtype == np.int32
    positions = np.arange(150)
    for row, step in enumerate(range(6, 9)):  # the chunk of steps 6-8 holds step 7
        np.testing.assert_array_equal(
            first["index"][row], ip.sampling.stream_order(2, step, positions, 150, 100)
        )
    np.testing.assert_array_equal(
        second["index"][0], ip.sampling.stream_order(2, 9, positions, 150, 100)
    )


# ------------------------------------------------------------------ evaluation


@pytest.mark.parametrize("process_count", [1, 2])
def test_eval_padding_covers_every_example_once(indexed, process_count):
    seen = []
    for p in range(process_count):
        batches = _eval("test", global_batch_size=8, process_index=p, process_count=process_count)
        assert len(batches) == 5  # ceil(37 / 8) on every process
        for batch in batches:
            assert batch["image"].shape == (8 // process_count, 2, 2, 1)
            assert batch["image"].dtype == np.uint8 and batch["label"].dtype == np.int32
            assert batch["mask"].dtype == np.float32 and set(np.unique(batch["mask"])) <= {0, 1}
            pad = batch["mask"] == 0
            assert np.all(batch["image"][pad] == 0) and np.all(batch["label"][pad] == 0)
            seen.extend(_decode(batch["image"])[~pad])
    np.testing.assert_array_equal(np.sort(seen), np.arange(37))


def test_the_train_split_in_order_and_the_fixed_holdout(indexed):
    train = np.concatenate([_decode(b["image"])[b["mask"] == 1]
                            for b in _eval("train", validation_size=10)])  # fmt: skip
    validation = [_decode(b["image"]) for b in _eval("validation", validation_size=10)]
    again = [_decode(b["image"]) for b in _eval("validation", validation_size=10)]
    _assert_batches_equal([{"i": a} for a in validation], [{"i": b} for b in again])
    assert len(train) == 90 and np.all(np.diff(train) > 0)
    np.testing.assert_array_equal(train, ip.sampling.train_validation_indices(100, 10)[0])


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
    "fashion_mnist", "cifar10", "cifar100", "imagenet2012", "cifar10_corrupted",
    "cifar10_corrupted/fog_5", "stl10", "celeb_a",
]  # fmt: skip


@pytest.mark.parametrize("name", MOCKED)
def test_mock_data_works_with_the_training_input_and_evaluation(name):
    with tfds.testing.mock_data(num_examples=6):
        info = ip.get_info(name, data_dir="/does/not/matter", validation_size=2)
        shape = info.image_shape
        assert info.num_test == 6
        test = _eval("test", name, global_batch_size=4, validation_size=2)
        assert [b["image"].shape for b in test] == [(4, *shape)] * 2
        assert sum(b["mask"].sum() for b in test) == 6
        if name.startswith("cifar10_corrupted"):
            return
        assert (info.num_train, info.num_validation) == (4, 2)
        augment = "imagenet" if name == "imagenet2012" else "cifar"
        train_input = _input(name, pipeline="host", global_batch_size=4, validation_size=2,
                             augment=augment)  # fmt: skip
        (batch,) = global_batches(train_input, 0, 1)
        assert batch["image"].shape == (4, *shape) and batch["image"].dtype == np.float32
        assert np.all((batch["label"] >= 0) & (batch["label"] < info.num_classes))


@pytest.mark.parametrize(
    ("name", "image_size", "augment"),
    [("imagenet2012", 32, "imagenet"), ("imagenet2012", 24, "none"), ("celeb_a", 64, "cifar"),
     ("stl10", 48, "flip_crop")],
)  # fmt: skip
def test_image_size_with_mock_data(name, image_size, augment):
    with tfds.testing.mock_data(num_examples=6):
        info = ip.get_info(name, data_dir=None, validation_size=2, image_size=image_size)
        assert info.image_shape == (image_size, image_size, 3)
        for split in ("validation", "test"):
            for batch in _eval(split, name, global_batch_size=4, validation_size=2,
                               image_size=image_size):  # fmt: skip
                assert batch["image"].shape == (4, image_size, image_size, 3)
        kwargs = dict(global_batch_size=4, validation_size=2, image_size=image_size, seed=5,
                      augment=augment)  # fmt: skip
        train = global_batches(_input(name, pipeline="device", **kwargs), 0, 3)
        again = global_batches(_input(name, pipeline="host", **kwargs), 1, 2)
    assert train[0]["image"].shape == (4, image_size, image_size, 3)
    _assert_batches_equal(train[1:], again)
    if name == "celeb_a":  # the Male attribute
        assert info.num_classes == 2 and set(np.unique(train[0]["label"])) <= {0, 1}


def test_image_size_on_digits():
    kwargs = {"global_batch_size": 16, "augment": "cifar", "seed": 4}
    whole = global_batches(_input(image_size=16, **kwargs), 0, 2)
    assert whole[0]["image"].shape == (16, 16, 16, 1)
    native = global_batches(_input(image_size=8, **kwargs), 0, 1)  # digits are 8 x 8 already
    _assert_batches_equal(native, global_batches(_input(image_size=None, **kwargs), 0, 1))
    assert _eval("test", image_size=12)[0]["image"].shape == (8, 12, 12, 1)
    info = ip.get_info("digits", data_dir=None, validation_size=0, image_size=12)
    assert info.image_shape == (12, 12, 1)


# ------------------------------------------------------------------ the choice, errors


def _info(num_train, shape=(32, 32, 3)):
    return ip.DatasetInfo("x", 10, shape, num_train, 0, 10, (0.5,) * 3, (0.5,) * 3)


def test_auto_choice_by_size_and_the_override():
    small, large = _info(50_000), _info(1_281_167, (224, 224, 3))
    assert ip.choose("auto", small) == "device"
    assert ip.choose("auto", large) == "grain"
    assert ip.choose("grain", small) == "grain"
    assert ip.choose("host", small) == "host"
    assert ip.choose("device", large) == "device"
    assert ip.choose("auto", _info(0)) == "grain"
    with pytest.raises(ValueError, match=r"config\.data\.pipeline"):
        ip.choose("grpc", small)
    with pytest.raises(ValueError, match=r"config\.data\.pipeline"):
        ip.choose("device", _info(0))


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
        command = f"python -m sdnet_jax.data.prepare {name} --manual_dir=DIR --data_dir={missing}"
        assert command in message and needs in message
    assert issubclass(ip.DatasetNotFoundError, ValueError)
    with pytest.raises(ip.DatasetNotFoundError):  # raised at the call, not at the first batch
        _input("cifar10", data_dir=str(missing), pipeline="host")
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
        _eval("test", global_batch_size=0)
    with pytest.raises(ValueError, match="positive multiple"):
        _input(global_batch_size=0)
    with pytest.raises(ValueError, match="unknown augment"):
        _input(augment="autoaugment")
    with pytest.raises(ValueError, match="unknown split"):
        _eval("training")
    with pytest.raises(ValueError, match="start_step"):
        next(on_device.feed_iterator(10, global_batch_size=2, seed=0, start_step=-1))
    with pytest.raises(ValueError, match="validation split of 'digits' is empty"):
        _eval("validation", validation_size=0)
    for bad in (1438, -1, 1.0, -0.1):
        with pytest.raises(ValueError, match="validation_size"):
            ip.get_info("digits", data_dir=None, validation_size=bad)
    for bad, error in ((0, ValueError), (-3, ValueError), (32.0, TypeError), (True, TypeError)):
        with pytest.raises(error, match="image_size"):
            ip.get_info("digits", data_dir=None, validation_size=0, image_size=bad)
        with pytest.raises(error, match="image_size"):
            _input(image_size=bad)
        with pytest.raises(error, match="image_size"):
            _eval("test", image_size=bad)
