"""The supported data sets: their constants, and random-access readers of their raw splits.

A reader ("source") is a sequence of examples ``{'image': uint8 (H, W, C), 'label': int, ...}``:

* ``digits`` is embedded (scikit-learn's digits, the file ``load_digits`` reads), split here into
  ``train`` / ``test``;
* every other data set is read from ``data_dir``, in one of two formats that
  ``python -m sdnet_jax.data.prepare`` writes offline: a TFDS data set read with
  ``tfds.data_source`` (array_record files, random access, no TensorFlow), or its decoded
  *arrays* (``<data_dir>/<name>[/<config>]/arrays/<split>.npz``: uint8 images of one size and
  int labels, in the TFDS split's order; ``--format=arrays``), which need nothing but NumPy to
  read and are preferred when both are there. Meant for data sets of fixed-size images that fit
  in memory (a host without TFDS's files, e.g. a GPU node without internet, gets Fashion-MNIST
  as 30 MB). When neither is there, :func:`open_splits` raises :class:`DatasetNotFoundError`
  with the command that prepares it.

``stl10`` uses TFDS's labelled ``train`` (5000) and ``test`` (8000) splits (the ``unlabelled``
split is prepared when present but not read here). ``celeb_a`` has no class label: its ``label``
is the binary ``Male`` attribute (0 / 1, ``num_classes`` 2), which the CTRL configs do not train
on (``ctrl.objective='binary'``) and only use to probe the features; TFDS's ``validation`` split
of CelebA is prepared but, as for every data set, the pipeline carves its validation split out
of ``train``.

The held-out validation split is carved from ``train`` by the input pipeline, not here.
"""

from __future__ import annotations

import dataclasses
import functools
import importlib.util
import os
from collections.abc import Mapping, Sequence
from typing import Any, Protocol

import numpy as np
import tensorflow_datasets as tfds

from sdnet_jax.errors import UserError

SUPPORTED = (
    "digits",
    "fashion_mnist",
    "cifar10",
    "cifar100",
    "imagenet2012",
    "cifar10_corrupted",
    "stl10",
    "celeb_a",
)

DIGITS_TEST_FRACTION = 0.2
_DIGITS_SPLIT_SEED = 20240601
_DIGITS_LEVELS = 16  # load_digits pixels are integers in [0, 16]


class DatasetNotFoundError(UserError, ValueError):
    """A TFDS data set's files are not in ``data_dir``; the message says how to prepare them."""

    label = "data error"


@dataclasses.dataclass(frozen=True)
class DatasetSpec:
    """Constants of one data set.

    Attributes:
      num_classes: number of labels.
      image_shape: ``(H, W, C)`` of the images the model sees (after the evaluation transform),
        unless the input pipeline is given an ``image_size`` (then ``(image_size, image_size, C)``).
      mean, std: per-channel normalisation constants on [0, 1] images.
      train_split: split holding the training examples (the validation split is carved from it),
        or ``None`` for evaluation-only data sets.
      test_split: split used as the test set (ImageNet's labelled ``validation`` split).
      resize_eval: whether images have varying sizes and go through the ImageNet evaluation
        transform (shorter side to 256, centre crop 224).
      manual_files: what ``--manual_dir`` must hold for ``python -m sdnet_jax.data.prepare``.
      label_attribute: for data sets without a class label (``celeb_a``), the boolean TFDS
        ``attributes`` entry read as the 0 / 1 ``label``.
    """

    num_classes: int
    image_shape: tuple[int, int, int]
    mean: tuple[float, ...]
    std: tuple[float, ...]
    train_split: str | None = "train"
    test_split: str = "test"
    resize_eval: bool = False
    manual_files: str = ""
    label_attribute: str | None = None


_CIFAR10_MEAN = (0.4914, 0.4822, 0.4465)
_CIFAR10_STD = (0.2023, 0.1994, 0.2010)

SPECS: dict[str, DatasetSpec] = {
    # Mean / std of the 1438 train-split images scaled to [0, 255] (checked by the tests).
    "digits": DatasetSpec(10, (8, 8, 1), (0.3050,), (0.3755,)),
    "fashion_mnist": DatasetSpec(
        10,
        (28, 28, 1),
        (0.2860,),
        (0.3530,),
        manual_files=(
            "train-images-idx3-ubyte.gz, train-labels-idx1-ubyte.gz, t10k-images-idx3-ubyte.gz "
            "and t10k-labels-idx1-ubyte.gz (gzipped or not; on Debian/Ubuntu `apt install "
            "dataset-fashion-mnist` puts them in /usr/share/datasets/fashion-mnist)"
        ),
    ),
    "cifar10": DatasetSpec(
        10,
        (32, 32, 3),
        _CIFAR10_MEAN,
        _CIFAR10_STD,
        manual_files=(
            "cifar-10-python.tar.gz (or its extracted cifar-10-batches-py/ folder), the CIFAR-10 "
            "python version from https://www.cs.toronto.edu/~kriz/cifar.html"
        ),
    ),
    "cifar100": DatasetSpec(
        100,
        (32, 32, 3),
        (0.5071, 0.4865, 0.4409),
        (0.2673, 0.2564, 0.2762),
        manual_files=(
            "cifar-100-python.tar.gz (or its extracted cifar-100-python/ folder), the CIFAR-100 "
            "python version from https://www.cs.toronto.edu/~kriz/cifar.html"
        ),
    ),
    "imagenet2012": DatasetSpec(
        1000,
        (224, 224, 3),
        (0.485, 0.456, 0.406),
        (0.229, 0.224, 0.225),
        test_split="validation",
        resize_eval=True,
        manual_files=(
            "ILSVRC2012_img_train.tar and ILSVRC2012_img_val.tar from https://image-net.org "
            "(the validation labels ship with tensorflow-datasets)"
        ),
    ),
    "cifar10_corrupted": DatasetSpec(
        10,
        (32, 32, 3),
        _CIFAR10_MEAN,
        _CIFAR10_STD,
        train_split=None,
        manual_files=(
            "CIFAR-10-C.tar (or its extracted CIFAR-10-C/ folder: <corruption>.npy and "
            "labels.npy) from https://zenodo.org/record/2535967"
        ),
    ),
    # Train-split mean / global std, as commonly used with torchvision's STL10.
    "stl10": DatasetSpec(
        10,
        (96, 96, 3),
        (0.4467, 0.4398, 0.4066),
        (0.2603, 0.2566, 0.2713),
        manual_files=(
            "stl10_binary.tar.gz (or its extracted stl10_binary/ folder: train_X.bin, "
            "train_y.bin, test_X.bin, test_y.bin, optionally unlabeled_X.bin and "
            "class_names.txt) from https://cs.stanford.edu/~acoates/stl10/"
        ),
    ),
    # No standard constants: [-1, 1] scaling (CTRL maps inputs to [-1, 1] anyway).
    "celeb_a": DatasetSpec(
        2,
        (218, 178, 3),
        (0.5, 0.5, 0.5),
        (0.5, 0.5, 0.5),
        manual_files=(
            "img_align_celeba.zip (or its extracted img_align_celeba/ folder), "
            "list_eval_partition.txt and list_attr_celeba.txt, optionally "
            "list_landmarks_align_celeba.txt and identity_CelebA.txt (else those TFDS features "
            "are written as -1), from https://mmlab.ie.cuhk.edu.hk/projects/CelebA.html"
        ),
        label_attribute="Male",
    ),
}


class Source(Protocol):
    """Random access to the examples of one split."""

    def __len__(self) -> int: ...

    def __getitem__(self, index: int) -> Mapping[str, Any]: ...


@dataclasses.dataclass(frozen=True)
class Splits:
    """The opened raw splits of a data set (``train`` is ``None`` for evaluation-only sets)."""

    name: str
    spec: DatasetSpec
    train: Source | None
    test: Source


def parse_name(name: str) -> tuple[str, str | None]:
    """``'cifar10_corrupted/gaussian_noise_3'`` → ``('cifar10_corrupted', 'gaussian_noise_3')``.

    Raises ``ValueError`` for names outside :data:`SUPPORTED` and for unknown configs.
    """
    base, _, config = name.partition("/")
    if base not in SUPPORTED:
        raise ValueError(f"unknown data set {name!r}; supported: {', '.join(SUPPORTED)}")
    if not config:
        return base, None
    if base != "cifar10_corrupted":
        raise ValueError(f"data set {base!r} has no configs (got {name!r})")
    configs = tfds_configs(base)
    if config not in configs:
        raise ValueError(
            f"unknown config {config!r} of {base!r}; one of: {', '.join(configs)} "
            "(corruption_severity, severity in 1..5)"
        )
    return base, config


def tfds_configs(base: str) -> tuple[str, ...]:
    """Names of the TFDS builder configs of ``base`` (empty when it has none)."""
    return tuple(config.name for config in tfds.builder_cls(base).BUILDER_CONFIGS)


def tfds_version(base: str) -> str:
    """The version TFDS's registered builder reads (and :mod:`.prepare` writes)."""
    return str(tfds.builder_cls(base).VERSION)


def resolved_data_dir(data_dir: str | os.PathLike[str] | None) -> str:
    """``data_dir``, or TFDS's default (``$TFDS_DATA_DIR`` or ``~/tensorflow_datasets``)."""
    if data_dir is not None:
        return os.fspath(data_dir)
    return os.path.expanduser(os.environ.get("TFDS_DATA_DIR", "~/tensorflow_datasets"))


def prepare_command(name: str, data_dir: str) -> str:
    """The command line that builds ``name`` into ``data_dir``."""
    return f"python -m sdnet_jax.data.prepare {name} --manual_dir=DIR --data_dir={data_dir}"


def _not_found_message(name: str, split: str, data_dir: str, error: Exception) -> str:
    base, config = parse_name(name)
    if base == "cifar10_corrupted" and config is None:
        config = tfds_configs(base)[0]  # TFDS's default config
    subdir = os.path.join(data_dir, base, *([config] if config else []), tfds_version(base))
    return (
        f"data set {name!r} (split {split!r}) is not prepared in data_dir {data_dir!r}: "
        f"expected TFDS array_record files under {subdir}/.\n"
        f"Prepare it offline (no download, no TensorFlow needed) with\n"
        f"    {prepare_command(name, data_dir)}\n"
        f"where DIR holds {SPECS[base].manual_files}.\n"
        f"(TFDS said: {type(error).__name__}: {error})"
    )


def open_tfds_split(name: str, split: str, data_dir: str | os.PathLike[str] | None) -> Source:
    """``tfds.data_source(name, split=split, data_dir=data_dir, download=False)``.

    Opening reads only the metadata (no example, nothing compiled); a data set that is missing,
    or was prepared in a format without random access (tfrecord), raises
    :class:`DatasetNotFoundError` saying how to prepare it.
    """
    parse_name(name)
    try:
        return tfds.data_source(name, split=split, data_dir=data_dir, download=False)
    except Exception as error:  # TFDS raises several types (NotImplementedError, KeyError, ...)
        message = _not_found_message(name, split, resolved_data_dir(data_dir), error)
        raise DatasetNotFoundError(message) from error


class AttributeLabelSource:
    """A :class:`Source` over a TFDS source without ``label``: ``{'image', 'label'}`` with the
    label read from the boolean ``attributes[attribute]`` (``celeb_a``)."""

    def __init__(self, source: Source, attribute: str) -> None:
        self.source = source
        self.attribute = attribute

    def __len__(self) -> int:
        return len(self.source)

    def __getitem__(self, index: int) -> Mapping[str, Any]:
        example = self.source[index]
        return {
            "image": example["image"],
            "label": int(bool(example["attributes"][self.attribute])),
        }


class ArraySource:
    """A :class:`Source` over in-memory arrays."""

    def __init__(self, images: np.ndarray, labels: np.ndarray) -> None:
        if len(images) != len(labels):
            raise ValueError(f"{len(images)} images but {len(labels)} labels")
        self.images = np.array(images)
        self.labels = np.array(labels)
        self.images.flags.writeable = False
        self.labels.flags.writeable = False

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, index: int) -> Mapping[str, Any]:
        return {"image": self.images[index], "label": int(self.labels[index])}


def _load_digits() -> tuple[np.ndarray, np.ndarray]:
    """scikit-learn's digits as ``(pixels (1797, 64) in [0, 16], labels)``: the CSV file that
    ``sklearn.datasets.load_digits`` reads, read here without importing scikit-learn (which takes
    about 2 s in every process that opens the data set); ``load_digits`` itself if the file is
    not where scikit-learn ships it."""
    spec = importlib.util.find_spec("sklearn")  # locates the package without importing it
    path = None
    if spec is not None and spec.submodule_search_locations:
        path = os.path.join(spec.submodule_search_locations[0], "datasets", "data", "digits.csv.gz")
    if path is None or not os.path.exists(path):
        from sklearn.datasets import load_digits

        return load_digits(return_X_y=True)
    data = np.loadtxt(path, delimiter=",")
    return data[:, :-1], data[:, -1].astype(int)


@functools.cache
def digits_splits() -> tuple[ArraySource, ArraySource]:
    """The embedded data set: scikit-learn's 1797 8×8 digits as uint8 images in [0, 255].

    A fixed seeded shuffle puts the last ``DIGITS_TEST_FRACTION`` (359 images) in ``test`` and
    the first 1438 in ``train``. Returns ``(train, test)``.
    """
    pixels, target = _load_digits()
    images = np.round(pixels * (255 / _DIGITS_LEVELS)).astype(np.uint8).reshape(-1, 8, 8, 1)
    labels = target.astype(np.int64)
    order = np.random.default_rng(np.random.SeedSequence(_DIGITS_SPLIT_SEED)).permutation(
        len(labels)
    )
    num_train = len(labels) - round(DIGITS_TEST_FRACTION * len(labels))
    train, test = order[:num_train], order[num_train:]
    return ArraySource(images[train], labels[train]), ArraySource(images[test], labels[test])


ARRAYS = "arrays"  # the folder of a data set's decoded splits (see the module docstring)


def arrays_dir(name: str, data_dir: str | os.PathLike[str] | None) -> str:
    """``<data_dir>/<base>[/<config>]/arrays``: where the decoded splits of ``name`` live."""
    base, config = parse_name(name)
    return os.path.join(resolved_data_dir(data_dir), base, *([config] if config else []), ARRAYS)


def write_arrays(source: Source, path: str) -> None:
    """Decodes every example of ``source`` into ``path`` (a compressed ``.npz`` with ``image``
    uint8 ``(N, H, W, C)`` and ``label`` int64 ``(N,)``), atomically."""
    examples = read_examples(source, range(len(source)))
    images = [np.asarray(example["image"]) for example in examples]
    images = [image[..., None] if image.ndim == 2 else image for image in images]
    if len({image.shape for image in images}) > 1:
        raise ValueError(f"the images of {path} differ in size: the arrays format needs one size")
    labels = np.asarray([int(example["label"]) for example in examples], np.int64)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    partial = f"{path}.{os.getpid()}.tmp.npz"
    np.savez_compressed(partial, image=np.stack(images).astype(np.uint8), label=labels)
    os.replace(partial, path)


def _open_arrays(folder: str, split: str) -> ArraySource:
    path = os.path.join(folder, f"{split}.npz")
    try:
        return _load_arrays(path, os.stat(path).st_mtime_ns)
    except (OSError, ValueError, KeyError) as error:
        raise DatasetNotFoundError(
            f"{path} cannot be read ({type(error).__name__}: {error}); write it again with "
            "python -m sdnet_jax.data.prepare <name> --format=arrays --data_dir=..."
        ) from error


@functools.lru_cache(maxsize=4)
def _load_arrays(path: str, mtime_ns: int) -> ArraySource:
    """The decoded split in ``path``, read once per process (and again when the file changes)."""
    with np.load(path) as arrays:
        return ArraySource(arrays["image"], arrays["label"])


def open_splits(
    name: str,
    data_dir: str | os.PathLike[str] | None,
    train_classes: Sequence[int] | None = None,
) -> Splits:
    """Opens the raw train (if any) and test splits of ``name`` (``'base'`` or ``'base/config'``):
    the embedded digits, the decoded arrays when ``data_dir`` has them, else TFDS's files.

    ``train_classes`` (``None``: all) restricts the *train* split to the examples of those classes
    (:func:`restrict_classes`), so the validation split carved from it holds them only; the test
    split stays whole (a model trained on some classes is evaluated on all of them)."""
    base, _ = parse_name(name)
    spec = SPECS[base]
    if base == "digits":
        train, test = digits_splits()
        splits = Splits(name, spec, train, test)
    else:
        folder = arrays_dir(name, data_dir)
        if os.path.isdir(folder):
            train = None if spec.train_split is None else _open_arrays(folder, spec.train_split)
            splits = Splits(name, spec, train, _open_arrays(folder, spec.test_split))
        else:
            splits = open_tfds_splits(name, data_dir)
    if train_classes is None or splits.train is None:
        return splits
    classes = check_classes(train_classes, spec.num_classes)
    labels = None
    if not isinstance(splits.train, ArraySource):  # TFDS's files: the labels read once per process
        labels = _tfds_train_labels(name, resolved_data_dir(data_dir))
    return dataclasses.replace(splits, train=restrict_classes(splits.train, classes, labels))


def check_classes(classes: Sequence[int], num_classes: int) -> tuple[int, ...]:
    """``classes`` as a sorted tuple of distinct class indices in ``[0, num_classes)``; raises
    ``ValueError`` otherwise (or when empty)."""
    values = tuple(int(c) for c in classes)
    if not values or len(set(values)) != len(values):
        raise ValueError(f"train_classes must be distinct class indices, got {tuple(classes)}.")
    if min(values) < 0 or max(values) >= num_classes:
        raise ValueError(f"train_classes must lie in [0, {num_classes}), got {values}.")
    return tuple(sorted(values))


class SubsetSource:
    """A :class:`Source` over the examples ``indices`` of another source, in that order."""

    def __init__(self, source: Source, indices: np.ndarray) -> None:
        self.source = source
        self.indices = np.asarray(indices, np.int64)

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, index: int) -> Mapping[str, Any]:
        return self.source[int(self.indices[index])]


def restrict_classes(
    source: Source, classes: Sequence[int], labels: np.ndarray | None = None
) -> Source:
    """The examples of ``source`` whose label is in ``classes``, in ``source``'s order: an
    :class:`ArraySource` for in-memory arrays, else a :class:`SubsetSource` (``labels``: every
    label of ``source``, read from it when not given)."""
    if isinstance(source, ArraySource):
        keep = np.isin(source.labels, np.asarray(classes))
        return ArraySource(source.images[keep], source.labels[keep])
    if labels is None:
        labels = read_labels(source)
    return SubsetSource(source, np.flatnonzero(np.isin(labels, np.asarray(classes))))


def read_labels(source: Source) -> np.ndarray:
    """Every label of ``source``, int64 (one read of each example)."""
    return np.asarray([int(source[i]["label"]) for i in range(len(source))], np.int64)


@functools.lru_cache(maxsize=8)
def _tfds_train_labels(name: str, data_dir: str) -> np.ndarray:
    """The labels of ``name``'s TFDS train split (Fashion-MNIST: 60 000 reads, ~10-30 s on 2
    cores), once per process."""
    labels = read_labels(open_tfds_splits(name, data_dir).train)
    labels.flags.writeable = False
    return labels


def open_tfds_splits(name: str, data_dir: str | os.PathLike[str] | None) -> Splits:
    """The raw splits of a TFDS data set ``name`` in ``data_dir`` (their ``label`` read from the
    attribute of data sets without one)."""
    spec = SPECS[parse_name(name)[0]]
    train = None if spec.train_split is None else open_tfds_split(name, spec.train_split, data_dir)
    test = open_tfds_split(name, spec.test_split, data_dir)
    if spec.label_attribute is not None:
        train = None if train is None else AttributeLabelSource(train, spec.label_attribute)
        test = AttributeLabelSource(test, spec.label_attribute)
    return Splits(name, spec, train, test)


def read_examples(source: Source, indices: Sequence[int] | np.ndarray) -> list[Mapping[str, Any]]:
    """``[source[i] for i in indices]`` (one read per example; TFDS's mocked sources lack a working
    ``__getitems__``)."""
    return [source[int(i)] for i in indices]
