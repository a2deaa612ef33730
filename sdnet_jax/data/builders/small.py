"""Builders of the small data sets: Fashion-MNIST (IDX files), CIFAR-10 / -100 (python pickles),
CIFAR-10-C (``.npy`` arrays)."""

from __future__ import annotations

import gzip
import io
import os
import pickle
import struct
import tarfile
from collections.abc import Callable
from typing import Any

import numpy as np
import tensorflow_datasets as tfds

from sdnet_jax.data import datasets
from sdnet_jax.data.builders.common import KeyedExamples, missing, png_bytes

# --------------------------------------------------------------------------- Fashion-MNIST

_IDX_UBYTE = 0x08


def read_idx(path: str) -> np.ndarray:
    """Reads a uint8 IDX file (gzipped or not: detected from its first bytes)."""
    with open(path, "rb") as f:
        data = f.read()
    if data[:2] == b"\x1f\x8b":
        data = gzip.decompress(data)
    if len(data) < 4 or data[:2] != b"\x00\x00" or data[2] != _IDX_UBYTE:
        raise ValueError(f"{path} is not a uint8 IDX file")
    ndim = data[3]
    shape = struct.unpack(f">{ndim}I", data[4 : 4 + 4 * ndim])
    array = np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * ndim)
    if array.size != int(np.prod(shape)):
        raise ValueError(f"{path}: {array.size} bytes of data for shape {shape}")
    return array.reshape(shape)


def _find_idx(manual_dir: str, stem: str) -> str:
    for filename in (f"{stem}.gz", stem):
        path = os.path.join(manual_dir, filename)
        if os.path.isfile(path):
            return path
    raise missing("fashion_mnist", manual_dir, f"{stem}.gz (or {stem})")


_TfdsFashionMnist = tfds.builder_cls("fashion_mnist")


class FashionMnist(_TfdsFashionMnist, skip_registration=True):
    """``fashion_mnist`` from local IDX files (e.g. Debian's ``dataset-fashion-mnist``)."""

    name = "fashion_mnist"
    pkg_dir_path = _TfdsFashionMnist._get_pkg_dir_path()
    MANUAL_DOWNLOAD_INSTRUCTIONS = datasets.SPECS["fashion_mnist"].manual_files

    @staticmethod
    def find_inputs(manual_dir: str) -> dict[str, str]:
        """Paths of the four IDX files; raises ``FileNotFoundError`` naming a missing one."""
        return {
            f"{split}_{kind}": _find_idx(manual_dir, f"{prefix}-{kind}-{suffix}-ubyte")
            for split, prefix in (("train", "train"), ("test", "t10k"))
            for kind, suffix in (("images", "idx3"), ("labels", "idx1"))
        }

    def _split_generators(self, dl_manager: Any) -> dict[str, KeyedExamples]:
        paths = self.find_inputs(os.fspath(dl_manager.manual_dir))
        return {
            split: self._generate_examples(paths[f"{split}_images"], paths[f"{split}_labels"])
            for split in ("train", "test")
        }

    def _generate_examples(self, images_path: str, labels_path: str) -> KeyedExamples:
        images, labels = read_idx(images_path), read_idx(labels_path)
        if images.ndim != 3 or images.shape[1:] != (28, 28) or len(images) != len(labels):
            raise ValueError(f"{images_path}, {labels_path}: shapes {images.shape}, {labels.shape}")
        for index, (image, label) in enumerate(zip(images, labels, strict=True)):
            yield index, {"image": png_bytes(image), "label": int(label)}


# --------------------------------------------------------------------------- CIFAR-10 / 100


def _cifar_reader(manual_dir: str, archive: str, folder: str) -> Callable[[str], Any]:
    """``read(member)`` → the unpickled ``folder/member`` from the extracted folder or archive."""
    extracted = os.path.join(manual_dir, folder)
    archive_path = os.path.join(manual_dir, archive)
    if os.path.isdir(extracted):

        def read(member: str) -> Any:
            with open(os.path.join(extracted, member), "rb") as f:
                return pickle.load(f, encoding="bytes")

        return read
    if os.path.isfile(archive_path):

        def read(member: str) -> Any:
            with tarfile.open(archive_path, "r:*") as tar:
                f = tar.extractfile(f"{folder}/{member}")
                if f is None:
                    raise FileNotFoundError(f"{archive_path} has no file {folder}/{member}")
                return pickle.load(f, encoding="bytes")

        return read
    raise FileNotFoundError(f"neither {archive} nor {folder}/ found in manual_dir {manual_dir!r}")


def _cifar_images(batch: dict[bytes, Any]) -> np.ndarray:
    """The ``(N, 32, 32, 3)`` images of an unpickled CIFAR python batch."""
    return np.asarray(batch[b"data"], dtype=np.uint8).reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1)


def _names(raw: list[bytes]) -> list[str]:
    return [name.decode() if isinstance(name, bytes) else str(name) for name in raw]


_TfdsCifar10 = tfds.builder_cls("cifar10")
_TfdsCifar100 = tfds.builder_cls("cifar100")


class Cifar10(_TfdsCifar10, skip_registration=True):
    """``cifar10`` from the CIFAR-10 python version."""

    name = "cifar10"
    pkg_dir_path = _TfdsCifar10._get_pkg_dir_path()
    MANUAL_DOWNLOAD_INSTRUCTIONS = datasets.SPECS["cifar10"].manual_files
    ARCHIVE = "cifar-10-python.tar.gz"
    FOLDER = "cifar-10-batches-py"

    @classmethod
    def find_inputs(cls, manual_dir: str) -> Callable[[str], Any]:
        """The pickle reader; raises ``FileNotFoundError`` when neither archive nor folder exist."""
        return _cifar_reader(manual_dir, cls.ARCHIVE, cls.FOLDER)

    def _split_generators(self, dl_manager: Any) -> dict[str, KeyedExamples]:
        read = self.find_inputs(os.fspath(dl_manager.manual_dir))
        self.info.features["label"].names = _names(read("batches.meta")[b"label_names"])
        train = [read(f"data_batch_{i}") for i in range(1, 6)]
        test = [read("test_batch")]
        return {
            "train": self._generate_examples("train_", train),
            "test": self._generate_examples("test_", test),
        }

    def _generate_examples(self, prefix: str, batches: list[dict[bytes, Any]]) -> KeyedExamples:
        index = 0  # TFDS's keys: the example index in file order
        for batch in batches:
            for image, label in zip(_cifar_images(batch), batch[b"labels"], strict=True):
                yield (
                    index,
                    {"id": f"{prefix}{index:05d}", "image": png_bytes(image), "label": int(label)},
                )
                index += 1


class Cifar100(_TfdsCifar100, skip_registration=True):
    """``cifar100`` (fine ``label`` and ``coarse_label``) from the CIFAR-100 python version."""

    name = "cifar100"
    pkg_dir_path = _TfdsCifar100._get_pkg_dir_path()
    MANUAL_DOWNLOAD_INSTRUCTIONS = datasets.SPECS["cifar100"].manual_files
    ARCHIVE = "cifar-100-python.tar.gz"
    FOLDER = "cifar-100-python"

    @classmethod
    def find_inputs(cls, manual_dir: str) -> Callable[[str], Any]:
        """The pickle reader; raises ``FileNotFoundError`` when neither archive nor folder exist."""
        return _cifar_reader(manual_dir, cls.ARCHIVE, cls.FOLDER)

    def _split_generators(self, dl_manager: Any) -> dict[str, KeyedExamples]:
        read = self.find_inputs(os.fspath(dl_manager.manual_dir))
        meta = read("meta")
        self.info.features["label"].names = _names(meta[b"fine_label_names"])
        self.info.features["coarse_label"].names = _names(meta[b"coarse_label_names"])
        return {
            "train": self._generate_examples("train_", read("train")),
            "test": self._generate_examples("test_", read("test")),
        }

    def _generate_examples(self, prefix: str, batch: dict[bytes, Any]) -> KeyedExamples:
        images = _cifar_images(batch)
        labels = zip(batch[b"fine_labels"], batch[b"coarse_labels"], strict=True)
        for index, (image, (fine, coarse)) in enumerate(zip(images, labels, strict=True)):
            yield (
                index,
                {
                    "id": f"{prefix}{index:05d}",
                    "image": png_bytes(image),
                    "label": int(fine),
                    "coarse_label": int(coarse),
                },
            )


# --------------------------------------------------------------------------- CIFAR-10-C

CIFAR10C_ARCHIVE = "CIFAR-10-C.tar"
CIFAR10C_FOLDER = "CIFAR-10-C"
_CIFAR10C_FILES = {"frosted_glass_blur": "glass_blur", "elastic": "elastic_transform"}


def _cifar10c_loader(manual_dir: str) -> Callable[[str], np.ndarray]:
    """``load(file_name)`` → the array in ``CIFAR-10-C/<file_name>`` (folder or archive)."""
    folder = os.path.join(manual_dir, CIFAR10C_FOLDER)
    archive = os.path.join(manual_dir, CIFAR10C_ARCHIVE)
    if os.path.isdir(folder):
        return lambda filename: np.load(os.path.join(folder, filename))
    if os.path.isfile(archive):

        def load(filename: str) -> np.ndarray:
            with tarfile.open(archive, "r:*") as tar:
                f = tar.extractfile(f"{CIFAR10C_FOLDER}/{filename}")
                if f is None:
                    raise FileNotFoundError(f"{archive} has no file {CIFAR10C_FOLDER}/{filename}")
                return np.load(io.BytesIO(f.read()))

        return load
    raise missing("cifar10_corrupted", manual_dir, f"{CIFAR10C_ARCHIVE} or {CIFAR10C_FOLDER}/")


_TfdsCifar10Corrupted = tfds.builder_cls("cifar10_corrupted")


class Cifar10Corrupted(_TfdsCifar10Corrupted, skip_registration=True):
    """``cifar10_corrupted/<corruption>_<severity>`` (``test`` only) from CIFAR-10-C."""

    name = "cifar10_corrupted"
    pkg_dir_path = _TfdsCifar10Corrupted._get_pkg_dir_path()
    MANUAL_DOWNLOAD_INSTRUCTIONS = datasets.SPECS["cifar10_corrupted"].manual_files

    @staticmethod
    def find_inputs(manual_dir: str) -> Callable[[str], np.ndarray]:
        """The ``.npy`` loader; raises ``FileNotFoundError`` when neither archive nor folder exist."""
        return _cifar10c_loader(manual_dir)

    def _split_generators(self, dl_manager: Any) -> dict[str, KeyedExamples]:
        load = self.find_inputs(os.fspath(dl_manager.manual_dir))
        return {"test": self._generate_examples(load)}

    def _generate_examples(self, load: Callable[[str], np.ndarray]) -> KeyedExamples:
        corruption, severity = self.builder_config.corruption, self.builder_config.severity
        labels = load("labels.npy")
        num_images = len(labels) // 5  # labels are repeated for the 5 severities
        images = load(f"{_CIFAR10C_FILES.get(corruption, corruption)}.npy")
        images = images[(severity - 1) * num_images : severity * num_images]
        for index, (image, label) in enumerate(zip(images, labels[:num_images], strict=True)):
            yield index, {"image": png_bytes(image), "label": int(label)}
