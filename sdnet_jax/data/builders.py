"""TFDS builders that prepare the supported data sets offline, from files the user already has.

Each builder subclasses TFDS's own registered builder (same name, version, configs, features and
split names, so ``tfds.data_source(<name>, data_dir=...)`` reads the result with TFDS's reader)
and replaces only the generation: it reads local archives instead of downloading, verifies no
registered checksum (Debian re-gzips Fashion-MNIST, for one), and encodes images with PIL, so it
runs without TensorFlow. Examples keep TFDS's keys, hence TFDS's on-disk order.

Inputs (``manual_dir``):

* ``fashion_mnist``: ``{train,t10k}-{images-idx3,labels-idx1}-ubyte[.gz]`` (IDX files);
* ``cifar10`` / ``cifar100``: ``cifar-10-python.tar.gz`` / ``cifar-100-python.tar.gz`` or their
  extracted folders (the python pickles; TFDS itself reads the binary version);
* ``imagenet2012``: ``ILSVRC2012_img_train.tar`` and/or ``ILSVRC2012_img_val.tar`` (validation
  labels: the list shipped with TFDS). The unlabelled test archive is not prepared. Images that
  are not RGB or grey JPEGs (a few CMYK JPEGs, one PNG) are re-encoded as RGB JPEGs;
* ``cifar10_corrupted``: ``CIFAR-10-C.tar`` or its extracted ``CIFAR-10-C/`` folder;
* ``stl10``: ``stl10_binary.tar.gz`` or its extracted ``stl10_binary/`` folder (``train`` and
  ``test`` are required, ``unlabelled`` is prepared when ``unlabeled_X.bin`` is there; reading
  the ``.tar.gz`` decompresses it once per file, so extracting it first is faster);
* ``celeb_a``: ``img_align_celeba.zip`` (or the extracted ``img_align_celeba/`` folder),
  ``list_eval_partition.txt`` and ``list_attr_celeba.txt``; ``list_landmarks_align_celeba.txt``
  and ``identity_CelebA.txt`` are optional (TFDS's ``landmarks`` / ``identity`` features are
  written as -1 without them). All three TFDS splits (``train``, ``validation``, ``test``).

Use them through ``python -m sdnet_jax.data.prepare`` (:mod:`sdnet_jax.data.prepare`).
"""

from __future__ import annotations

import contextlib
import gzip
import io
import os
import pickle
import struct
import tarfile
import zipfile
from collections.abc import Callable, Iterator
from typing import IO, Any

import numpy as np
import tensorflow_datasets as tfds
from PIL import Image

from sdnet_jax.data import datasets

Example = dict[str, Any]
KeyedExamples = Iterator[tuple[str | int, Example]]


def png_bytes(image: np.ndarray) -> bytes:
    """Lossless PNG encoding of a uint8 ``(H, W)``, ``(H, W, 1)`` or ``(H, W, 3)`` image."""
    array = np.asarray(image, dtype=np.uint8)
    if array.ndim == 3 and array.shape[-1] == 1:
        array = array[..., 0]
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format="png")
    return buffer.getvalue()


def _missing(name: str, manual_dir: str, what: str) -> FileNotFoundError:
    return FileNotFoundError(f"{name}: {what} not found in manual_dir {manual_dir!r}")


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
    raise _missing("fashion_mnist", manual_dir, f"{stem}.gz (or {stem})")


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


# --------------------------------------------------------------------------- ImageNet 2012

IMAGENET_TRAIN_TAR = "ILSVRC2012_img_train.tar"
IMAGENET_VAL_TAR = "ILSVRC2012_img_val.tar"


def rgb_or_grey_jpeg(data: bytes) -> bytes:
    """``data`` unchanged if it is an RGB or grey JPEG, else re-encoded as an RGB JPEG."""
    with Image.open(io.BytesIO(data)) as image:
        if image.format == "JPEG" and image.mode in ("RGB", "L"):
            return data
        buffer = io.BytesIO()
        image.convert("RGB").save(buffer, format="JPEG", quality=95)
        return buffer.getvalue()


def imagenet_validation_labels(val_tar: str) -> dict[str, str]:
    """File name → synset of the validation images, from TFDS's label list (one synset per image,
    in the sorted order of the file names)."""
    labels_path = tfds.core.tfds_path("datasets/imagenet2012/validation_labels.txt")
    labels = labels_path.read_text().strip().splitlines()
    with tarfile.open(val_tar, "r:") as tar:
        names = sorted(os.path.basename(n) for n in tar.getnames())
    if len(names) > len(labels):
        raise ValueError(f"{val_tar} has {len(names)} files but there are {len(labels)} labels")
    return dict(zip(names, labels, strict=False))


def _tar_files(path_or_fileobj: str | io.BytesIO) -> Iterator[tuple[str, bytes]]:
    """``(base name, bytes)`` of the regular files of a tar, streamed in archive order."""
    kwargs = (
        {"fileobj": path_or_fileobj}
        if isinstance(path_or_fileobj, io.BytesIO)
        else {"name": path_or_fileobj}
    )
    with tarfile.open(mode="r|", **kwargs) as tar:
        for member in tar:
            f = tar.extractfile(member) if member.isfile() else None
            if f is not None:
                yield os.path.basename(member.name), f.read()


_TfdsImagenet = tfds.builder_cls("imagenet2012")


class Imagenet2012(_TfdsImagenet, skip_registration=True):
    """``imagenet2012`` (``train``, ``validation``) from the ILSVRC2012 archives."""

    name = "imagenet2012"
    pkg_dir_path = _TfdsImagenet._get_pkg_dir_path()
    MANUAL_DOWNLOAD_INSTRUCTIONS = datasets.SPECS["imagenet2012"].manual_files

    @staticmethod
    def find_inputs(manual_dir: str) -> dict[str, str]:
        """The archives present (``train`` / ``validation``); raises if there is neither."""
        paths = {
            split: os.path.join(manual_dir, filename)
            for split, filename in (("train", IMAGENET_TRAIN_TAR), ("validation", IMAGENET_VAL_TAR))
        }
        paths = {split: path for split, path in paths.items() if os.path.isfile(path)}
        if not paths:
            raise _missing(
                "imagenet2012", manual_dir, f"{IMAGENET_TRAIN_TAR} or {IMAGENET_VAL_TAR}"
            )
        return paths

    def _split_generators(self, dl_manager: Any) -> dict[str, KeyedExamples]:
        paths = self.find_inputs(os.fspath(dl_manager.manual_dir))
        generators = {}
        if "train" in paths:
            generators["train"] = self._generate_examples(paths["train"], None)
        if "validation" in paths:
            labels = imagenet_validation_labels(paths["validation"])
            generators["validation"] = self._generate_examples(paths["validation"], labels)
        return generators

    def _generate_examples(
        self, path: str, validation_labels: dict[str, str] | None
    ) -> KeyedExamples:
        for filename, data in _tar_files(path):
            if validation_labels is not None:  # a flat archive of JPEGs
                yield filename, self._record(filename, data, validation_labels[filename])
                continue
            synset = filename.removesuffix(".tar")  # the train archive holds one tar per synset
            for image_name, image in _tar_files(io.BytesIO(data)):
                yield image_name, self._record(image_name, image, synset)

    @staticmethod
    def _record(filename: str, data: bytes, synset: str) -> Example:
        return {"file_name": filename, "image": rgb_or_grey_jpeg(data), "label": synset}


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
    raise _missing("cifar10_corrupted", manual_dir, f"{CIFAR10C_ARCHIVE} or {CIFAR10C_FOLDER}/")


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
                        raise _missing("stl10", manual_dir, f"{STL10_FOLDER}/{filename}")
        elif not os.path.isfile(self.archive):
            raise _missing("stl10", manual_dir, f"{STL10_ARCHIVE} or {STL10_FOLDER}/")

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
                raise _missing(
                    "stl10", os.fspath(dl_manager.manual_dir), f"{STL10_FOLDER}/{images}"
                )
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


# --------------------------------------------------------------------------- CelebA

CELEBA_IMAGES_ZIP = "img_align_celeba.zip"
CELEBA_IMAGES_FOLDER = "img_align_celeba"
CELEBA_PARTITION = "list_eval_partition.txt"
CELEBA_ATTRIBUTES = "list_attr_celeba.txt"
CELEBA_LANDMARKS = "list_landmarks_align_celeba.txt"
CELEBA_IDENTITY = "identity_CelebA.txt"
_CELEBA_SPLITS = {"train": 0, "validation": 1, "test": 2}


def read_celeba_table(path: str, *, header: bool) -> tuple[list[str] | None, dict[str, list[int]]]:
    """``(column names, {file name: int values})`` of a CelebA list file.

    With ``header`` the file starts with the number of rows and a line of column names (the
    attribute and landmark lists); without it, rows start at the first line (identities).
    """
    with open(path) as f:
        lines = [line.split() for line in f.read().splitlines()]
    lines = [line for line in lines if line]
    keys = None
    if header:
        keys, lines = lines[1], lines[2:]
    return keys, {row[0]: [int(v) for v in row[1:]] for row in lines}


def rgb_jpeg(data: bytes) -> bytes:
    """``data`` unchanged if it is an RGB JPEG, else re-encoded as one."""
    with Image.open(io.BytesIO(data)) as image:
        if image.format == "JPEG" and image.mode == "RGB":
            return data
        buffer = io.BytesIO()
        image.convert("RGB").save(buffer, format="JPEG", quality=95)
        return buffer.getvalue()


@contextlib.contextmanager
def _celeba_image_reader(path: str) -> Iterator[Callable[[str], bytes]]:
    """``read(file name)`` → the JPEG bytes, from the zip or the extracted folder ``path``."""
    if os.path.isdir(path):

        def read_file(filename: str) -> bytes:
            with open(os.path.join(path, filename), "rb") as f:
                return f.read()

        yield read_file
        return
    with zipfile.ZipFile(path) as archive:
        members = {
            os.path.basename(name): name for name in archive.namelist() if not name.endswith("/")
        }

        def read_member(filename: str) -> bytes:
            if filename not in members:
                raise FileNotFoundError(f"{path} has no image {filename}")
            return archive.read(members[filename])

        yield read_member


_TfdsCelebA = tfds.builder_cls("celeb_a")


class CelebA(_TfdsCelebA, skip_registration=True):
    """``celeb_a`` (``train``, ``validation``, ``test``) from the aligned-and-cropped images and
    the CelebA list files."""

    name = "celeb_a"
    pkg_dir_path = _TfdsCelebA._get_pkg_dir_path()
    MANUAL_DOWNLOAD_INSTRUCTIONS = datasets.SPECS["celeb_a"].manual_files

    @staticmethod
    def find_inputs(manual_dir: str) -> dict[str, str]:
        """Paths of the inputs (``images``, ``partition``, ``attributes``, and ``landmarks`` /
        ``identity`` when present); raises ``FileNotFoundError`` naming a missing required one."""
        paths = {}
        folder = os.path.join(manual_dir, CELEBA_IMAGES_FOLDER)
        archive = os.path.join(manual_dir, CELEBA_IMAGES_ZIP)
        if os.path.isdir(folder):
            paths["images"] = folder
        elif os.path.isfile(archive):
            paths["images"] = archive
        else:
            raise _missing("celeb_a", manual_dir, f"{CELEBA_IMAGES_ZIP} or {CELEBA_IMAGES_FOLDER}/")
        for key, filename, required in (
            ("partition", CELEBA_PARTITION, True),
            ("attributes", CELEBA_ATTRIBUTES, True),
            ("landmarks", CELEBA_LANDMARKS, False),
            ("identity", CELEBA_IDENTITY, False),
        ):
            path = os.path.join(manual_dir, filename)
            if os.path.isfile(path):
                paths[key] = path
            elif required:
                raise _missing("celeb_a", manual_dir, filename)
        return paths

    def _split_generators(self, dl_manager: Any) -> dict[str, KeyedExamples]:
        paths = self.find_inputs(os.fspath(dl_manager.manual_dir))
        _, partition = read_celeba_table(paths["partition"], header=False)
        tables = {
            key: read_celeba_table(paths[key], header=key != "identity")
            for key in ("attributes", "landmarks", "identity")
            if key in paths
        }
        features = self.info.features
        expected = {
            "attributes": list(features["attributes"].keys()),
            "landmarks": list(features["landmarks"].keys()),
        }
        for key, names in expected.items():
            if key in tables and set(tables[key][0] or ()) != set(names):
                raise ValueError(f"celeb_a: the columns of {paths[key]} are not {names}")
        return {
            split: self._generate_examples(
                paths["images"],
                sorted(name for name, (split_id, *_) in partition.items() if split_id == file_id),
                tables,
            )
            for split, file_id in _CELEBA_SPLITS.items()
        }

    def _generate_examples(
        self,
        images_path: str,
        filenames: list[str],
        tables: dict[str, tuple[list[str] | None, dict[str, list[int]]]],
    ) -> KeyedExamples:
        features = self.info.features
        (identity_key,) = features["identity"].keys()
        missing_landmarks = dict.fromkeys(features["landmarks"].keys(), -1)

        def columns(key: str, filename: str) -> dict[str, int] | None:
            """``{column: value}`` of ``filename`` in table ``key``; ``None`` without the table."""
            if key not in tables:
                return None
            names, rows = tables[key]
            if filename not in rows:
                raise ValueError(f"celeb_a: no {key} row for {filename}")
            return dict(zip(names or [identity_key], rows[filename], strict=True))

        with _celeba_image_reader(images_path) as read:
            for filename in filenames:  # sorted, keyed by file name, as TFDS
                attributes = columns("attributes", filename)
                assert attributes is not None
                landmarks = columns("landmarks", filename)
                identity = columns("identity", filename)
                yield (
                    filename,
                    {
                        "image": rgb_jpeg(read(filename)),
                        "attributes": {k: v > 0 for k, v in attributes.items()},  # 1 / -1
                        "landmarks": missing_landmarks if landmarks is None else landmarks,
                        "identity": {identity_key: -1} if identity is None else identity,
                    },
                )


BUILDERS: dict[str, type[tfds.core.GeneratorBasedBuilder]] = {
    "fashion_mnist": FashionMnist,
    "cifar10": Cifar10,
    "cifar100": Cifar100,
    "imagenet2012": Imagenet2012,
    "cifar10_corrupted": Cifar10Corrupted,
    "stl10": Stl10,
    "celeb_a": CelebA,
}
