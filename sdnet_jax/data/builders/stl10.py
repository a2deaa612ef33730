"""The STL-10 builder: ``stl10_binary.tar.gz`` or its extracted folder."""

from __future__ import annotations

import contextlib
import os
import tarfile
from collections.abc import Iterator
from typing import IO, Any

import numpy as np
import tensorflow_datasets as tfds

from sdnet_jax.data import datasets
from sdnet_jax.data.builders.common import KeyedExamples, missing, png_bytes

# --------------------------------------------------------------------------- STL-10

STL10_ARCHIVE = "stl10_binary.tar.gz"
STL10_FOLDER = "stl10_binary"
STL10_CLASS_NAMES = (
    "airplane", "bird", "car", "cat", "deer", "dog", "horse", "monkey", "ship", "truck",
)  # fmt: skip
STL10_IMAGE_BYTES = 3 * 96 * 96
_STL10_SPLITS = {  # split: (images, labels or None)
    "train": ("train_X.bin", "train_y.bin"),
    "test": ("test_X.bin", "test_y.bin"),
    "unlabelled": ("unlabeled_X.bin", None),
}
_STL10_CHUNK = 1024  # images decoded at a time


def stl10_images(raw: bytes | np.ndarray) -> np.ndarray:
    """``(N, 96, 96, 3)`` images from STL-10's column-major ``(N, 3, 96, 96)`` bytes (as TFDS)."""
    array = np.frombuffer(raw, dtype=np.uint8) if isinstance(raw, bytes) else raw
    return array.reshape(-1, 3, 96, 96).transpose(0, 3, 2, 1)


class Stl10Files:
    """The STL-10 binary files, in the extracted ``stl10_binary/`` folder or the archive."""

    def __init__(self, manual_dir: str) -> None:
        self.folder = os.path.join(manual_dir, STL10_FOLDER)
        self.archive = os.path.join(manual_dir, STL10_ARCHIVE)
        if os.path.isdir(self.folder):
            self.archive = None
            for images, labels in (_STL10_SPLITS["train"], _STL10_SPLITS["test"]):
                for filename in (images, labels):
                    if not os.path.isfile(os.path.join(self.folder, filename)):
                        raise missing("stl10", manual_dir, f"{STL10_FOLDER}/{filename}")
        elif not os.path.isfile(self.archive):
            raise missing("stl10", manual_dir, f"{STL10_ARCHIVE} or {STL10_FOLDER}/")

    def has(self, filename: str) -> bool:
        """Whether ``filename`` is there (always true for the archive, which is not scanned: the
        official one holds every file, and reading a missing member raises)."""
        return self.archive is not None or os.path.isfile(os.path.join(self.folder, filename))

    @contextlib.contextmanager
    def open(self, filename: str) -> Iterator[tuple[IO[bytes], int] | None]:
        """``(file, size in bytes)`` of ``filename``, or ``None`` when it is not there."""
        if self.archive is None:
            path = os.path.join(self.folder, filename)
            if not os.path.isfile(path):
                yield None
                return
            with open(path, "rb") as f:
                yield f, os.path.getsize(path)
            return
        with tarfile.open(self.archive, "r:*") as tar:
            try:
                member = tar.getmember(f"{STL10_FOLDER}/{filename}")
            except KeyError:
                yield None
                return
            f = tar.extractfile(member)
            yield None if f is None else (f, member.size)

    def read(self, filename: str) -> bytes | None:
        with self.open(filename) as opened:
            return None if opened is None else opened[0].read()


_TfdsStl10 = tfds.builder_cls("stl10")


class Stl10(_TfdsStl10, skip_registration=True):
    """``stl10`` (``train``, ``test``, and ``unlabelled`` when present) from the binary version."""

    name = "stl10"
    pkg_dir_path = _TfdsStl10._get_pkg_dir_path()
    MANUAL_DOWNLOAD_INSTRUCTIONS = datasets.SPECS["stl10"].manual_files

    @staticmethod
    def find_inputs(manual_dir: str) -> Stl10Files:
        """The files; raises ``FileNotFoundError`` when neither folder nor archive exist, or the
        folder lacks a ``train`` / ``test`` file (the archive is checked when read)."""
        return Stl10Files(manual_dir)

    def _split_generators(self, dl_manager: Any) -> dict[str, KeyedExamples]:
        files = self.find_inputs(os.fspath(dl_manager.manual_dir))
        class_names = files.read("class_names.txt")
        names = [line.strip() for line in (class_names or b"").decode().splitlines()]
        names = [name for name in names if name] or list(STL10_CLASS_NAMES)
        self.info.features["label"].names = names
        generators = {}
        for split, (images, labels) in _STL10_SPLITS.items():
            if files.has(images):
                generators[split] = self._generate_examples(files, images, labels)
            elif split != "unlabelled":
                raise missing("stl10", os.fspath(dl_manager.manual_dir), f"{STL10_FOLDER}/{images}")
        return generators

    def _generate_examples(
        self, files: Stl10Files, images_file: str, labels_file: str | None
    ) -> KeyedExamples:
        labels = None
        if labels_file is not None:
            raw_labels = files.read(labels_file)
            if raw_labels is None:
                raise FileNotFoundError(f"stl10: {STL10_FOLDER}/{labels_file} not found")
            labels = np.frombuffer(raw_labels, dtype=np.uint8).astype(np.int64) - 1  # 1..10
        with files.open(images_file) as opened:
            if opened is None:
                raise FileNotFoundError(f"stl10: {STL10_FOLDER}/{images_file} not found")
            f, size = opened
            if size % STL10_IMAGE_BYTES or (
                labels is not None and size // STL10_IMAGE_BYTES != len(labels)
            ):
                raise ValueError(
                    f"stl10: {images_file} has {size} bytes for "
                    f"{'?' if labels is None else len(labels)} images of {STL10_IMAGE_BYTES} bytes"
                )
            index = 0
            while chunk := f.read(STL10_IMAGE_BYTES * _STL10_CHUNK):
                for image in stl10_images(chunk):
                    label = -1 if labels is None else int(labels[index])
                    yield index, {"image": png_bytes(image), "label": label}
                    index += 1
