"""The real TFDS path: fake source files → ``prepare`` → ``tfds.data_source`` → the iterators."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import tensorflow_datasets as tfds

from sdnet_jax.data import builders, datasets, decode, prepare
from sdnet_jax.data import input_pipeline as ip
from tests.data import fakes
from tests.data.test_input_pipeline import global_batches

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
    got = test["image"][..., 0]
    assert fakes.multiset(got, test["label"]) == fakes.multiset(test_images, test_labels)

    # Train split (in order) + validation = the written train split.
    train = _all_eval("fashion_mnist", "train", data_dir, batch=8, validation_size=10)
    assert train["image"].dtype == np.uint8 and train["label"].dtype == np.int32
    validation = _all_eval("fashion_mnist", "validation", data_dir, batch=4, validation_size=10)
    got = np.concatenate([train["image"], validation["image"]])[..., 0]
    got_labels = np.concatenate([train["label"], validation["label"]])
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
    got = test["image"]
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
    train_input = ip.train_input(
        "imagenet2012", data_dir=os.fspath(data_dir), validation_size=1, image_size=None,
        global_batch_size=2, seed=0, augment="imagenet", pipeline="host",
    )  # fmt: skip
    (batch,) = global_batches(train_input, 0, 1)
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
    got = test["image"]
    labels = np.load(manual_dir / "CIFAR-10-C" / "labels.npy")[:6]
    assert fakes.multiset(got, test["label"]) == fakes.multiset(images[2], labels)
    with pytest.raises(ValueError, match="no training split"):
        ip.train_input(
            name, data_dir=os.fspath(data_dir), validation_size=0, image_size=None,
            global_batch_size=2, seed=0, augment="none",
        )  # fmt: skip


def _read_split(name: str, split: str, data_dir) -> list[dict]:
    source = tfds.data_source(name, split=split, data_dir=data_dir)
    return [source[i] for i in range(len(source))]


def test_stl10_round_trip(tmp_path):
    manual_dir, data_dir = tmp_path / "manual", tmp_path / "data"
    manual_dir.mkdir()
    written = fakes.write_stl10(os.fspath(manual_dir))  # the .tar.gz, with unlabeled_X.bin
    prepare.main(["stl10", f"--manual_dir={manual_dir}", f"--data_dir={data_dir}"])
    builder = tfds.builder("stl10", data_dir=data_dir)
    assert builder.info.file_format.value == "array_record"
    assert builder.info.features["label"].names[:3] == ["airplane", "bird", "car"]
    for split in ("train", "test", "unlabelled"):  # TFDS's image layout: image[r, c] = raw[:, c, r]
        examples = _read_split("stl10", split, data_dir)
        got = fakes.multiset([e["image"] for e in examples], [e["label"] + 1 for e in examples])
        images, labels = written[split]
        assert got == fakes.multiset(images, labels + 1)  # unlabelled: -1

    info = ip.get_info("stl10", data_dir=os.fspath(data_dir), validation_size=2)
    assert (info.num_classes, info.image_shape) == (10, (96, 96, 3))
    assert (info.num_train, info.num_validation, info.num_test) == (4, 2, 4)
    test = _all_eval("stl10", "test", os.fspath(data_dir), batch=3, validation_size=2)
    got = test["image"]
    assert fakes.multiset(got, test["label"]) == fakes.multiset(*written["test"])


def test_stl10_from_folder_without_unlabelled(tmp_path):
    manual_dir, data_dir = tmp_path / "manual", tmp_path / "data"
    manual_dir.mkdir()
    written = fakes.write_stl10(os.fspath(manual_dir), archive=False)
    os.remove(manual_dir / "stl10_binary" / "unlabeled_X.bin")
    prepare.prepare("stl10", manual_dir=os.fspath(manual_dir), data_dir=os.fspath(data_dir))
    assert set(tfds.builder("stl10", data_dir=data_dir).info.splits) == {"train", "test"}
    examples = _read_split("stl10", "train", data_dir)
    got = fakes.multiset([e["image"] for e in examples], [e["label"] for e in examples])
    assert got == fakes.multiset(*written["train"])
    os.remove(manual_dir / "stl10_binary" / "test_y.bin")
    with pytest.raises(FileNotFoundError, match=r"test_y\.bin"):
        prepare.prepare("stl10", manual_dir=os.fspath(manual_dir), data_dir=os.fspath(data_dir))


def _by_attributes(examples: list[dict], written: dict) -> dict[str, dict]:
    """File name → example (the fake's attribute rows are unique)."""
    key = lambda attributes: tuple(bool(attributes[k]) for k in fakes.CELEBA_ATTRIBUTES)
    names = {key(w["attributes"]): name for name, w in written.items()}
    return {names[key(e["attributes"])]: e for e in examples}


@pytest.mark.parametrize("optional_files", [True, False])
def test_celeb_a_round_trip(tmp_path, optional_files):
    manual_dir, data_dir = tmp_path / "manual", tmp_path / "data"
    manual_dir.mkdir()
    written = fakes.write_celeb_a(os.fspath(manual_dir), landmarks=optional_files)
    prepare.main(["celeb_a", f"--manual_dir={manual_dir}", f"--data_dir={data_dir}"])
    builder = tfds.builder("celeb_a", data_dir=data_dir)
    assert builder.info.version == datasets.tfds_version("celeb_a")
    for split, count in (("train", 5), ("validation", 1), ("test", 2)):
        examples = _by_attributes(_read_split("celeb_a", split, data_dir), written)
        assert sorted(examples) == sorted(n for n, w in written.items() if w["split"] == split)
        assert builder.info.splits[split].num_examples == count
        for name, example in examples.items():
            expected = written[name]
            assert example["image"].shape == (218, 178, 3)  # the grey JPEG too
            if name == "000003.jpg":  # grey: re-encoded as an RGB JPEG
                error = np.abs(example["image"].astype(int) - expected["image"])
                assert error.mean() < 2 and np.ptp(example["image"], axis=-1).max() <= 2
            else:  # the JPEG bytes are stored unchanged
                np.testing.assert_array_equal(example["image"], expected["image"])
            assert example["landmarks"] == expected["landmarks"]
            assert example["identity"] == {"Identity_No": expected["identity"]}

    # The pipeline: label = Male, 64 x 64 = central 178 x 178 square resized.
    data_dir = os.fspath(data_dir)
    info = ip.get_info("celeb_a", data_dir=data_dir, validation_size=1, image_size=64)
    assert (info.num_classes, info.image_shape) == (2, (64, 64, 3))
    assert (info.num_train, info.num_validation, info.num_test) == (4, 1, 2)
    test = _all_eval("celeb_a", "test", data_dir, batch=4, validation_size=1)  # native size
    assert test["image"].shape == (2, 218, 178, 3)
    batches = ip.eval_iterator(
        "celeb_a", "test", data_dir=data_dir, global_batch_size=2, validation_size=1,
        process_index=0, process_count=1, image_size=64,
    )  # fmt: skip
    (batch,) = list(batches)
    got = batch["image"]
    tests = [w for w in written.values() if w["split"] == "test"]
    assert sorted(batch["label"].tolist()) == sorted(int(w["attributes"]["Male"]) for w in tests)
    source = tfds.data_source("celeb_a", split="test", data_dir=data_dir)
    expected = [decode.center_crop_resize(source[i]["image"], 64) for i in range(2)]
    np.testing.assert_array_equal(got, np.stack(expected))


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
    with pytest.raises(FileNotFoundError, match=r"stl10_binary\.tar\.gz"):
        prepare.prepare("stl10", manual_dir=os.fspath(tmp_path), data_dir=None)
    with pytest.raises(FileNotFoundError, match=r"img_align_celeba\.zip"):
        prepare.prepare("celeb_a", manual_dir=os.fspath(tmp_path), data_dir=None)
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


def _batches(name: str, data_dir: str) -> dict[str, np.ndarray]:
    """Three training batches (augmented), and the validation and test splits."""
    train_input = ip.train_input(
        name, data_dir=data_dir, validation_size=10, image_size=None, global_batch_size=8,
        seed=5, augment="cifar", pipeline="device",
    )  # fmt: skip
    out = {f"train{i}_{k}": v for i, b in enumerate(global_batches(train_input, 0, 3))
           for k, v in b.items()}  # fmt: skip
    for split in ("validation", "test"):
        out.update({f"{split}_{k}": v for k, v in _all_eval(name, split, data_dir, 8, 10).items()})
    return out


def test_arrays_format_reads_like_the_tfds_files_and_alone(fashion_mnist_dir, tmp_path):
    data_dir = os.fspath(tmp_path / "data")
    shutil.copytree(fashion_mnist_dir.data_dir, data_dir)
    prepare.main(["fashion_mnist", "--format=arrays", f"--data_dir={data_dir}"])
    folder = datasets.arrays_dir("fashion_mnist", data_dir)
    assert folder == os.path.join(data_dir, "fashion_mnist", "arrays")
    assert sorted(os.listdir(folder)) == ["test.npz", "train.npz"]
    with np.load(os.path.join(folder, "train.npz")) as train:
        assert train["image"].dtype == np.uint8 and train["image"].shape == (60, 28, 28, 1)
    expected = _batches("fashion_mnist", fashion_mnist_dir.data_dir)  # the TFDS files
    assert isinstance(datasets.open_splits("fashion_mnist", data_dir).train, datasets.ArraySource)
    shutil.rmtree(os.path.join(data_dir, "fashion_mnist", datasets.tfds_version("fashion_mnist")))
    got = _batches("fashion_mnist", data_dir)  # the arrays alone
    assert got.keys() == expected.keys()
    for key in expected:
        np.testing.assert_array_equal(got[key], expected[key], err_msg=key)

    with open(os.path.join(folder, "test.npz"), "wb") as f:
        f.write(b"not an npz")
    with pytest.raises(datasets.DatasetNotFoundError, match="--format=arrays"):
        datasets.open_splits("fashion_mnist", data_dir)


def test_arrays_format_needs_the_data_or_the_source_files(tmp_path, capsys):
    with pytest.raises(SystemExit):
        prepare.main(["fashion_mnist", "--format=arrays", f"--data_dir={tmp_path}"])
    assert "sdnet_jax.data.prepare fashion_mnist --manual_dir" in capsys.readouterr().err
