"""The real TFDS path: fake source files → ``prepare`` → ``tfds.data_source`` → the iterators."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import tensorflow_datasets as tfds

from sdnet_jax.data import builders, datasets, prepare
from sdnet_jax.data import input_pipeline as ip
from tests.data import fakes

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _all_eval(name: str, split: str, data_dir: str, batch: int, validation_size: int) -> dict:
    batches = list(
        ip.eval_iterator(
            name,
            split,
            data_dir=data_dir,
            global_batch_size=batch,
            validation_size=validation_size,
            process_index=0,
            process_count=1,
        )
    )
    mask = np.concatenate([b["mask"] for b in batches]).astype(bool)
    return {
        "image": np.concatenate([b["image"] for b in batches])[mask],
        "label": np.concatenate([b["label"] for b in batches])[mask],
    }


def test_fashion_mnist_round_trip(fashion_mnist_dir):
    data_dir = fashion_mnist_dir.data_dir
    train_images, train_labels = fashion_mnist_dir.written["train"]
    test_images, test_labels = fashion_mnist_dir.written["test"]
    assert os.path.isdir(
        os.path.join(data_dir, "fashion_mnist", datasets.tfds_version("fashion_mnist"))
    )

    info = ip.get_info("fashion_mnist", data_dir=data_dir, validation_size=10)
    assert (info.num_train, info.num_validation, info.num_test) == (50, 10, 20)
    assert (info.image_shape, info.num_classes) == ((28, 28, 1), 10)

    # Test split: every example exactly once, bit-exact, with its label.
    test = _all_eval("fashion_mnist", "test", data_dir, batch=8, validation_size=10)
    got = fakes.unnormalize(test["image"], info.mean, info.std)[..., 0]
    assert fakes.multiset(got, test["label"]) == fakes.multiset(test_images, test_labels)

    # Train split = one wrap-around epoch of train_iterator (50 = 5 x 10) + validation.
    train_iter = ip.train_iterator(
        "fashion_mnist",
        data_dir=data_dir,
        global_batch_size=10,
        seed=3,
        augment="none",
        validation_size=10,
        process_index=0,
        process_count=1,
    )
    epoch = [next(train_iter) for _ in range(5)]
    images = np.concatenate([b["image"] for b in epoch])
    labels = np.concatenate([b["label"] for b in epoch])
    assert images.dtype == np.float32 and labels.dtype == np.int32
    validation = _all_eval("fashion_mnist", "validation", data_dir, batch=4, validation_size=10)
    got = np.concatenate([images, validation["image"]])
    got = fakes.unnormalize(got, info.mean, info.std)[..., 0]
    got_labels = np.concatenate([labels, validation["label"]])
    assert fakes.multiset(got, got_labels) == fakes.multiset(train_images, train_labels)


def test_fashion_mnist_real_tfds_metadata(fashion_mnist_dir):
    """What was written is TFDS's own fashion_mnist: same version, features and splits."""
    builder = tfds.builder("fashion_mnist", data_dir=fashion_mnist_dir.data_dir)
    assert builder.is_prepared()
    assert builder.info.file_format.value == "array_record"
    assert set(builder.info.splits) == {"train", "test"}
    assert builder.info.splits["train"].num_examples == 60
    assert builder.info.features["label"].names[0] == "T-shirt/top"
    example = tfds.data_source("fashion_mnist", split="test", data_dir=fashion_mnist_dir.data_dir)[
        0
    ]
    assert example["image"].shape == (28, 28, 1) and example["image"].dtype == np.uint8


def test_cifar10_round_trip(cifar10_dir):
    data_dir = cifar10_dir.data_dir
    info = ip.get_info("cifar10", data_dir=data_dir, validation_size=0)
    assert (info.num_train, info.num_validation, info.num_test) == (20, 0, 6)
    assert info.image_shape == (32, 32, 3)
    test = _all_eval("cifar10", "test", data_dir, batch=4, validation_size=0)
    got = fakes.unnormalize(test["image"], info.mean, info.std)
    assert fakes.multiset(got, test["label"]) == fakes.multiset(*cifar10_dir.written["test"])

    source = tfds.data_source("cifar10", split="train", data_dir=data_dir)
    examples = [source[i] for i in range(len(source))]
    images, labels = cifar10_dir.written["train"]
    by_id = {ex["id"].decode(): ex for ex in examples}  # Text reads back as bytes
    for index in range(len(labels)):  # ids follow file order, as in TFDS
        example = by_id[f"train_{index:05d}"]
        np.testing.assert_array_equal(example["image"], images[index])
        assert example["label"] == labels[index]
    names = tfds.builder("cifar10", data_dir=data_dir).info.features["label"].names
    assert names[:2] == ["airplane", "automobile"]


def test_cifar100_round_trip(tmp_path):
    manual_dir, data_dir = tmp_path / "manual", tmp_path / "data"
    manual_dir.mkdir()
    written = fakes.write_cifar100(os.fspath(manual_dir))
    prepare.main(["cifar100", f"--manual_dir={manual_dir}", f"--data_dir={data_dir}"])
    info = ip.get_info("cifar100", data_dir=os.fspath(data_dir), validation_size=0.2)
    assert (info.num_classes, info.num_train, info.num_validation, info.num_test) == (100, 8, 2, 5)
    for split in ("train", "test"):
        images, fine, coarse = written[split]
        source = tfds.data_source("cifar100", split=split, data_dir=data_dir)
        for example in (source[i] for i in range(len(source))):
            index = int(example["id"].decode().removeprefix(f"{split}_"))
            np.testing.assert_array_equal(example["image"], images[index])
            assert (example["label"], example["coarse_label"]) == (fine[index], coarse[index])
    features = tfds.builder("cifar100", data_dir=data_dir).info.features
    assert features["coarse_label"].names[3] == "coarse3"


def test_imagenet2012_round_trip(tmp_path):
    manual_dir, data_dir = tmp_path / "manual", tmp_path / "data"
    manual_dir.mkdir()
    written = fakes.write_imagenet(os.fspath(manual_dir))
    prepare.main(["imagenet2012", f"--manual_dir={manual_dir}", f"--data_dir={data_dir}"])

    label_names = tfds.builder("imagenet2012", data_dir=data_dir).info.features["label"].names
    for split in ("train", "validation"):
        source = tfds.data_source("imagenet2012", split=split, data_dir=data_dir)
        got = sorted(
            (source[i]["file_name"].decode(), source[i]["label"]) for i in range(len(source))
        )
        expected = sorted((name, label_names.index(synset)) for name, synset in written[split])
        assert got == expected
        for i in range(len(source)):  # CMYK, PNG and grey inputs all read back as RGB
            assert source[i]["image"].ndim == 3 and source[i]["image"].shape[-1] == 3

    info = ip.get_info("imagenet2012", data_dir=os.fspath(data_dir), validation_size=1)
    assert (info.num_train, info.num_validation, info.num_test) == (3, 1, 3)
    batch = next(
        ip.train_iterator(
            "imagenet2012",
            data_dir=os.fspath(data_dir),
            global_batch_size=2,
            seed=0,
            augment="imagenet",
            validation_size=1,
            process_index=0,
            process_count=1,
        )
    )
    assert batch["image"].shape == (2, 224, 224, 3)
    test = _all_eval("imagenet2012", "test", os.fspath(data_dir), batch=2, validation_size=1)
    assert test["image"].shape == (3, 224, 224, 3)


def test_cifar10_corrupted_round_trip(tmp_path):
    manual_dir, data_dir = tmp_path / "manual", tmp_path / "data"
    manual_dir.mkdir()
    images = fakes.write_cifar10_corrupted(os.fspath(manual_dir))
    name = "cifar10_corrupted/gaussian_noise_3"
    prepare.main([name, f"--manual_dir={manual_dir}", f"--data_dir={data_dir}"])
    info = ip.get_info(name, data_dir=os.fspath(data_dir), validation_size=0.1)
    assert (info.num_train, info.num_validation, info.num_test) == (0, 0, 6)
    test = _all_eval(name, "test", os.fspath(data_dir), batch=4, validation_size=0)
    got = fakes.unnormalize(test["image"], info.mean, info.std)
    labels = np.load(manual_dir / "CIFAR-10-C" / "labels.npy")[:6]
    assert fakes.multiset(got, test["label"]) == fakes.multiset(images[2], labels)
    with pytest.raises(ValueError, match="no training split"):
        ip.train_iterator(
            name,
            data_dir=os.fspath(data_dir),
            global_batch_size=2,
            seed=0,
            augment="none",
            validation_size=0,
            process_count=1,
            process_index=0,
        )


def test_prepare_without_tensorflow(tmp_path):
    """Prepare + read in a fresh interpreter: TensorFlow is never imported."""
    script = textwrap.dedent(
        f"""
        import sys
        from sdnet_jax.data import input_pipeline, prepare
        from tests.data import fakes
        fakes.write_fashion_mnist({os.fspath(tmp_path)!r}, num_train=12, num_test=4)
        prepare.prepare("fashion_mnist", manual_dir={os.fspath(tmp_path)!r},
                        data_dir={os.fspath(tmp_path / "data")!r})
        batches = list(input_pipeline.eval_iterator(
            "fashion_mnist", "test", data_dir={os.fspath(tmp_path / "data")!r},
            global_batch_size=4, validation_size=0, process_index=0, process_count=1))
        assert len(batches) == 1 and batches[0]["mask"].sum() == 4
        assert "tensorflow" not in sys.modules, "TensorFlow was imported"
        print("OK")
        """
    )
    result = subprocess.run(
        [sys.executable, "-c", script], cwd=REPO_ROOT, capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.strip().endswith("OK")


def test_prepare_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="train-images-idx3-ubyte"):
        prepare.prepare("fashion_mnist", manual_dir=os.fspath(tmp_path), data_dir=None)
    with pytest.raises(FileNotFoundError, match=r"cifar-10-python\.tar\.gz"):
        prepare.prepare("cifar10", manual_dir=os.fspath(tmp_path), data_dir=None)
    with pytest.raises(FileNotFoundError, match=r"ILSVRC2012_img_train\.tar"):
        prepare.prepare("imagenet2012", manual_dir=os.fspath(tmp_path), data_dir=None)
    with pytest.raises(FileNotFoundError, match="not a directory"):
        prepare.prepare("cifar100", manual_dir=os.fspath(tmp_path / "nope"), data_dir=None)
    with pytest.raises(ValueError, match="nothing to prepare"):
        prepare.prepare("digits", manual_dir=os.fspath(tmp_path), data_dir=None)
    with pytest.raises(ValueError, match="unknown data set"):
        prepare.prepare("mnist", manual_dir=os.fspath(tmp_path), data_dir=None)
    with pytest.raises(SystemExit):
        prepare.main(["cifar10", f"--manual_dir={tmp_path}"])
    assert not os.listdir(tmp_path)  # nothing written


def test_read_idx_rejects_non_idx(tmp_path):
    path = tmp_path / "bad"
    path.write_bytes(b"\x00\x00\x0d\x01" + b"\x00" * 8)  # float IDX
    with pytest.raises(ValueError, match="not a uint8 IDX"):
        builders.read_idx(os.fspath(path))
