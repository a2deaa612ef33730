"""Input pipeline of the classifier training job: deterministic, resumable, multi-process batches.

Data come from random-access sources (:mod:`sdnet_jax.data.datasets`: the embedded ``digits``
set, or TFDS array_record files read with ``tfds.data_source``, no TensorFlow). Every batch is a
dict of numpy arrays holding *this process's* slice of the global batch: ``image`` float32 NHWC,
normalised as ``(x / 255 - mean) / std``; ``label`` int32; and, from :func:`eval_iterator`,
``mask`` float32 (1 for real examples, 0 for padding). A process reads only its own examples.

Splits. The held-out ``validation`` split is carved from the TFDS ``train`` split by a fixed
seeded permutation (independent of the training seed): ``validation_size`` examples (an int
count, or a fraction of ``train``) go to validation, the rest is what :func:`train_iterator`
trains on; both keep the on-disk order. ``test`` is the data set's test split (ImageNet's
labelled TFDS ``validation`` split). ``cifar10_corrupted[/config]`` has only ``test``.
``celeb_a``'s ``label`` is its binary ``Male`` attribute (see :mod:`sdnet_jax.data.datasets`).

Training order (wrap-around). The training stream is the concatenation of epoch permutations:
epoch ``e`` is ``permutation(num_train)`` seeded by ``(seed, e)``, and the global batch of step
``s`` is stream positions ``[s * B, (s + 1) * B)``. Epochs are therefore not aligned to batches:
no example is dropped, and a batch straddling two epochs takes the end of one permutation and the
start of the next. Augmentation randomness of the example at position ``j`` of the global batch
of step ``s`` is seeded by ``(seed, s, j)``. Hence the global batch of step ``s`` is a function of
``(seed, s)`` only: ``start_step=N`` yields exactly what an uninterrupted run yields from step
``N`` on, and the slices of all processes concatenate (in process order) to the 1-process batch.

Evaluation covers the split once, in order; the last batch is padded (zero images, label 0,
mask 0) to the full size so every batch has the same shape, on every process.

Augmentations (host side, numpy/PIL, per example):
  ``'none'``       the evaluation transform;
  ``'cifar'``      zero-pad 4, random crop back to the original size, random horizontal flip;
  ``'flip_crop'``  the same (meant for small grey images);
  ``'imagenet'``   random-resized crop to ``image_shape`` (scale (0.08, 1), ratio (3/4, 4/3)) and
                   random horizontal flip.
The evaluation transform is the identity, except for ImageNet: shorter side resized to 256 then
the central 224 × 224 crop (``'cifar'`` on ImageNet pads/crops that 224 × 224 image).

Fixed resolution (``image_size=N``, all three public functions; ``None``: the native size). The
evaluation transform becomes "central square, resized to N × N" (:func:`augment.center_crop_resize`:
shorter side to N then the central N × N crop; CelebA's "centre crop 178, resize"), replacing
ImageNet's 256 / 224 transform; ``'none'``, ``'cifar'`` and ``'flip_crop'`` apply their
augmentation to that N × N image, and ``'imagenet'`` draws its random-resized crop from the
original image straight to N × N. :attr:`DatasetInfo.image_shape` is then ``(N, N, C)``. The
batches stay a function of ``(seed, step)``.
"""

from __future__ import annotations

import dataclasses
import functools
import itertools
import math
import numbers
import os
from collections.abc import Iterator

import jax
import numpy as np

from sdnet_jax.data import augment as augment_lib
from sdnet_jax.data import datasets
from sdnet_jax.data.datasets import SUPPORTED, DatasetNotFoundError

__all__ = [
    "AUGMENTATIONS",
    "SUPPORTED",
    "DatasetInfo",
    "DatasetNotFoundError",
    "eval_iterator",
    "get_info",
    "train_iterator",
]

AUGMENTATIONS = ("none", "cifar", "flip_crop", "imagenet")
EVAL_SPLITS = ("validation", "test")

# Fixed entropy of the train / validation partition, and tags that keep the random streams apart.
_HOLDOUT_ENTROPY = 20240602
_EPOCH_TAG = 0
_AUGMENT_TAG = 1

Batch = dict[str, np.ndarray]
PathLike = str | os.PathLike[str]


@dataclasses.dataclass(frozen=True)
class DatasetInfo:
    """What the model and the training loop need to know about a data set."""

    name: str
    num_classes: int
    image_shape: tuple[int, int, int]  # H, W, C of the images the model sees (after eval crop)
    num_train: int  # examples in the training split (after holding out validation)
    num_validation: int
    num_test: int
    mean: tuple[float, ...]  # per-channel normalisation on [0, 1] images
    std: tuple[float, ...]


# --------------------------------------------------------------------------- splits


def num_validation_examples(num_examples: int, validation_size: int | float) -> int:
    """Resolves ``validation_size`` (a count, or a fraction in [0, 1)) against ``num_examples``."""
    if isinstance(validation_size, bool) or not isinstance(validation_size, numbers.Real):
        raise TypeError(f"validation_size must be an int or a float, got {validation_size!r}")
    if isinstance(validation_size, numbers.Integral):
        count = int(validation_size)
    elif 0.0 <= validation_size < 1.0:
        count = round(float(validation_size) * num_examples)
    else:
        raise ValueError(f"a fractional validation_size must be in [0, 1), got {validation_size}")
    if not 0 <= count < num_examples:
        raise ValueError(
            f"validation_size={validation_size} gives {count} validation examples; need "
            f"0 <= count < {num_examples} (the train split's size, so some examples stay to train)"
        )
    return count


def train_validation_indices(
    num_examples: int, validation_size: int | float
) -> tuple[np.ndarray, np.ndarray]:
    """Indices (into the raw train split) of the training and held-out validation examples.

    A fixed seeded permutation picks the validation examples, so the partition depends only on
    ``num_examples`` and ``validation_size``. Both index arrays are sorted, disjoint, and
    together cover ``range(num_examples)``.
    """
    count = num_validation_examples(num_examples, validation_size)
    order = np.random.default_rng(np.random.SeedSequence(_HOLDOUT_ENTROPY)).permutation(
        num_examples
    )
    return np.sort(order[count:]), np.sort(order[:count])


def _split_sizes(splits: datasets.Splits, validation_size: int | float) -> tuple[int, int]:
    """``(num_train, num_validation)``; evaluation-only sets ignore ``validation_size``."""
    if splits.train is None:
        return 0, 0
    num_validation = num_validation_examples(len(splits.train), validation_size)
    return len(splits.train) - num_validation, num_validation


# --------------------------------------------------------------------------- public API


def get_info(
    name: str,
    *,
    data_dir: PathLike | None,
    validation_size: int | float,
    image_size: int | None = None,
) -> DatasetInfo:
    """Constants and split sizes of ``name`` (``'base'`` or ``'cifar10_corrupted/<config>'``).

    ``image_shape`` is ``(image_size, image_size, C)`` when ``image_size`` is given. Opens the
    data (a file check, nothing compiled): raises :class:`DatasetNotFoundError` if a TFDS data set
    is not prepared in ``data_dir``, ``ValueError`` for unknown names or a bad ``image_size``.
    """
    image_size = _check_image_size(image_size)
    splits = datasets.open_splits(name, data_dir)
    num_train, num_validation = _split_sizes(splits, validation_size)
    spec = splits.spec
    return DatasetInfo(
        name=name,
        num_classes=spec.num_classes,
        image_shape=_image_shape(spec, image_size),
        num_train=num_train,
        num_validation=num_validation,
        num_test=len(splits.test),
        mean=spec.mean,
        std=spec.std,
    )


def train_iterator(
    name: str,
    *,
    data_dir: PathLike | None,
    global_batch_size: int,
    seed: int,
    augment: str,
    validation_size: int | float,
    start_step: int = 0,
    process_index: int | None = None,
    process_count: int | None = None,
    image_size: int | None = None,
) -> Iterator[Batch]:
    """Infinite iterator over this process's slices of the training batches, from ``start_step``.

    See the module docstring for the order, the augmentation seeding, the resumption contract and
    ``image_size``. Arguments are checked (and the data opened) when called, before the first
    batch is read. ``seed`` may be any int (it is taken modulo 2**64).
    """
    image_size = _check_image_size(image_size)
    if augment not in AUGMENTATIONS:
        raise ValueError(f"unknown augment {augment!r}; one of {AUGMENTATIONS}")
    if start_step < 0:
        raise ValueError(f"start_step must be >= 0, got {start_step}")
    lo, hi = _process_slice(global_batch_size, process_index, process_count)
    splits = datasets.open_splits(name, data_dir)
    if splits.train is None:
        raise ValueError(f"{name!r} has no training split (it is an evaluation-only data set)")
    train_indices, _ = train_validation_indices(len(splits.train), validation_size)
    return _train_batches(
        splits,
        train_indices,
        global_batch_size=global_batch_size,
        seed=int(seed) % 2**64,
        augment=augment,
        start_step=start_step,
        image_size=image_size,
        lo=lo,
        hi=hi,
    )


def eval_iterator(
    name: str,
    split: str,
    *,
    data_dir: PathLike | None,
    global_batch_size: int,
    validation_size: int | float,
    process_index: int | None = None,
    process_count: int | None = None,
    image_size: int | None = None,
) -> Iterator[Batch]:
    """One pass over ``split`` (``'validation'`` or ``'test'``) in fixed-shape, masked batches.

    Yields ``ceil(n / global_batch_size)`` batches on every process; over all batches and
    processes each example appears exactly once with ``mask == 1``. ``image_size``: see
    :func:`get_info`. Arguments are checked (and the data opened) when called.
    """
    image_size = _check_image_size(image_size)
    if split not in EVAL_SPLITS:
        raise ValueError(f"unknown split {split!r}; one of {EVAL_SPLITS}")
    lo, hi = _process_slice(global_batch_size, process_index, process_count)
    splits = datasets.open_splits(name, data_dir)
    if split == "test":
        source, indices = splits.test, np.arange(len(splits.test))
    else:
        if splits.train is None:
            raise ValueError(f"{name!r} has no train split to hold a validation split out of")
        _, indices = train_validation_indices(len(splits.train), validation_size)
        if len(indices) == 0:
            raise ValueError(
                f"the validation split of {name!r} is empty (validation_size={validation_size})"
            )
        source = splits.train
    return _eval_batches(
        splits,
        source,
        indices,
        global_batch_size=global_batch_size,
        image_size=image_size,
        lo=lo,
        hi=hi,
    )


# --------------------------------------------------------------------------- internals


def _check_image_size(image_size: int | None) -> int | None:
    if image_size is None:
        return None
    if isinstance(image_size, bool) or not isinstance(image_size, numbers.Integral):
        raise TypeError(f"image_size must be an int or None, got {image_size!r}")
    if image_size < 1:
        raise ValueError(f"image_size must be >= 1 (or None for the native size), got {image_size}")
    return int(image_size)


def _image_shape(spec: datasets.DatasetSpec, image_size: int | None) -> tuple[int, int, int]:
    """The ``(H, W, C)`` of the images the model sees."""
    if image_size is None:
        return spec.image_shape
    return (image_size, image_size, spec.image_shape[-1])


def _process_slice(
    global_batch_size: int, process_index: int | None, process_count: int | None
) -> tuple[int, int]:
    """``[lo, hi)``: the positions of this process's examples within each global batch."""
    if process_index is None:
        process_index = jax.process_index()
    if process_count is None:
        process_count = jax.process_count()
    if process_count < 1 or not 0 <= process_index < process_count:
        raise ValueError(
            f"need 0 <= process_index < process_count, got {process_index} and {process_count}"
        )
    if global_batch_size < 1 or global_batch_size % process_count:
        raise ValueError(
            f"global_batch_size={global_batch_size} must be a positive multiple of the number of "
            f"processes ({process_count})"
        )
    per_process = global_batch_size // process_count
    return process_index * per_process, (process_index + 1) * per_process


@functools.lru_cache(maxsize=4)
def _epoch_permutation(seed: int, epoch: int, num_examples: int) -> np.ndarray:
    """The order of epoch ``epoch``: a permutation of ``range(num_examples)`` seeded by (seed, e)."""
    entropy = [seed, _EPOCH_TAG, epoch]
    order = np.random.default_rng(np.random.SeedSequence(entropy)).permutation(num_examples)
    order.flags.writeable = False
    return order


def stream_order(
    seed: int, step: int, positions: np.ndarray, global_batch_size: int, num_examples: int
) -> np.ndarray:
    """Which training example (an index into ``range(num_examples)``) sits at each of the global
    batch ``positions`` of step ``step``: the wrap-around stream of seeded epoch permutations."""
    stream = step * global_batch_size + positions  # positions in the epoch stream
    epochs, offsets = np.divmod(stream, num_examples)
    order = np.empty_like(stream)
    for epoch in np.unique(epochs):
        in_epoch = epochs == epoch
        order[in_epoch] = _epoch_permutation(seed, int(epoch), num_examples)[offsets[in_epoch]]
    return order


def _example_rng(seed: int, step: int, position: int) -> np.random.Generator:
    """The augmentation generator of global-batch position ``position`` at step ``step``."""
    return np.random.default_rng(np.random.SeedSequence([seed, _AUGMENT_TAG, step, position]))


def _eval_transform(
    image: np.ndarray, spec: datasets.DatasetSpec, image_size: int | None
) -> np.ndarray:
    image = augment_lib.as_channels(np.asarray(image), spec.image_shape[-1])
    if image_size is not None:
        return augment_lib.center_crop_resize(image, image_size)
    if spec.resize_eval:
        image = augment_lib.resize_shorter_center_crop(
            image, resize=augment_lib.IMAGENET_RESIZE, crop=spec.image_shape[0]
        )
    return image


def _train_transform(
    image: np.ndarray,
    spec: datasets.DatasetSpec,
    augment: str,
    rng: np.random.Generator,
    image_size: int | None,
) -> np.ndarray:
    if augment == "imagenet":
        image = augment_lib.as_channels(np.asarray(image), spec.image_shape[-1])
        size = _image_shape(spec, image_size)[:2]
        return augment_lib.random_resized_crop_flip(image, rng, size=size)
    image = _eval_transform(image, spec, image_size)
    if augment in ("cifar", "flip_crop"):
        image = augment_lib.pad_crop_flip(image, rng, pad=4)
    return image


def _stack(
    images: list[np.ndarray], labels: list[int], spec: datasets.DatasetSpec, image_size: int | None
) -> Batch:
    shape = _image_shape(spec, image_size)
    for image in images:
        if image.shape != shape:
            raise ValueError(f"got an image of shape {image.shape}, expected {shape}")
    return {
        "image": augment_lib.normalize(np.stack(images), spec.mean, spec.std),
        "label": np.asarray(labels, dtype=np.int32),
    }


def _train_batches(
    splits: datasets.Splits,
    train_indices: np.ndarray,
    *,
    global_batch_size: int,
    seed: int,
    augment: str,
    start_step: int,
    image_size: int | None,
    lo: int,
    hi: int,
) -> Iterator[Batch]:
    assert splits.train is not None
    spec = splits.spec
    num_examples = len(train_indices)
    batch_positions = np.arange(lo, hi)
    for step in itertools.count(start_step):
        order = stream_order(seed, step, batch_positions, global_batch_size, num_examples)
        examples = datasets.read_examples(splits.train, train_indices[order])
        images = [
            _train_transform(
                example["image"], spec, augment, _example_rng(seed, step, int(j)), image_size
            )
            for j, example in zip(batch_positions, examples, strict=True)
        ]
        yield _stack(images, [int(example["label"]) for example in examples], spec, image_size)


def _eval_batches(
    splits: datasets.Splits,
    source: datasets.Source,
    indices: np.ndarray,
    *,
    global_batch_size: int,
    image_size: int | None,
    lo: int,
    hi: int,
) -> Iterator[Batch]:
    spec = splits.spec
    num_examples = len(indices)
    padding = np.zeros(_image_shape(spec, image_size), dtype=np.uint8)
    for batch in range(math.ceil(num_examples / global_batch_size)):
        positions = batch * global_batch_size + np.arange(lo, hi)
        valid = positions < num_examples
        examples = datasets.read_examples(source, indices[positions[valid]])
        images = [_eval_transform(example["image"], spec, image_size) for example in examples]
        labels = [int(example["label"]) for example in examples]
        num_padding = int(np.sum(~valid))
        out = _stack(images + [padding] * num_padding, labels + [0] * num_padding, spec, image_size)
        out["image"][~valid] = 0.0
        out["mask"] = valid.astype(np.float32)
        yield out
