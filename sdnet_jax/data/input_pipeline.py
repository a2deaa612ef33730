"""What the jobs get from the data layer: a data set's constants and split sizes
(:func:`get_info`), the training input behind one interface (:func:`train_input`), and evaluation
batches (:func:`eval_iterator`).

Every image that leaves the data layer is a *stored* uint8 image at the model's input size
(:mod:`sdnet_jax.data.decode`); augmentation and the mapping to a model's pixel space happen on
the devices (:mod:`sdnet_jax.data.augment`, :mod:`sdnet_jax.data.pixels`).

**Training input.** Two loaders, one interface (:class:`TrainInput`), chosen by
``config.data.pipeline`` (:func:`choose`):

* ``'device'`` (:mod:`sdnet_jax.data.on_device`): the decoded training split is *resident* on
  every device; each *feed* holds the row indices of :data:`on_device.STEPS_PER_FEED` steps;
* ``'grain'`` (:mod:`sdnet_jax.data.grain_pipeline`): worker processes decode the examples; each
  feed holds one step's uint8 images and labels; ``'host'`` is Grain with no worker process;
* ``'auto'``: ``'device'`` when the decoded split takes at most
  :data:`on_device.DEVICE_BYTES_LIMIT`, else ``'grain'``.

Either way a feed's arrays have a leading steps axis and a batch axis (this process's slice of
the global batch, :mod:`sdnet_jax.data.sampling`), and :meth:`TrainInput.batch`, run inside the
jitted step, turns ``(resident arrays, feed, step)`` into the step's augmented global batch:
float32 pixels in ``[0, 1]`` and int32 labels. The examples and the augmentation of a step are the
sampling contract's, so both loaders give the same batches.

**Evaluation** covers a split (``'validation'``, carved from train, or ``'test'``) once, in order,
in fixed-shape batches: the last is padded (zero images, label 0, mask 0), so every batch has the
same shape on every process; ``{'image': uint8, 'label': int32, 'mask': float32}``.
"""

from __future__ import annotations

import dataclasses
import math
import os
from collections.abc import Callable, Iterator, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from sdnet_jax.data import augment as augment_lib
from sdnet_jax.data import datasets, decode, grain_pipeline, on_device, sampling
from sdnet_jax.data.datasets import SUPPORTED, DatasetNotFoundError

__all__ = [
    "EVAL_SPLITS",
    "PIPELINES",
    "SUPPORTED",
    "DatasetInfo",
    "DatasetNotFoundError",
    "TrainInput",
    "choose",
    "eval_iterator",
    "get_info",
    "train_input",
]

EVAL_SPLITS = ("validation", "test", "train")
PIPELINES = ("auto", "device", "grain", "host")

Batch = dict[str, np.ndarray]
PathLike = str | os.PathLike[str]


@dataclasses.dataclass(frozen=True)
class DatasetInfo:
    """What the model and the training loop need to know about a data set."""

    name: str
    num_classes: int
    image_shape: tuple[int, int, int]  # H, W, C of the stored images the model sees
    num_train: int  # examples in the training split (after holding out validation)
    num_validation: int
    num_test: int
    mean: tuple[float, ...]  # per-channel normalisation on [0, 1] images
    std: tuple[float, ...]


def get_info(
    name: str, *, data_dir: PathLike | None, validation_size: int | float,
    image_size: int | None = None, train_classes: Sequence[int] | None = None,
) -> DatasetInfo:  # fmt: skip
    """Constants and split sizes of ``name`` (``'base'`` or ``'cifar10_corrupted/<config>'``).

    ``image_shape`` is ``(image_size, image_size, C)`` when ``image_size`` is given;
    ``train_classes`` restricts the training and validation splits to those classes
    (:func:`datasets.open_splits`; ``num_classes`` stays the data set's). Opens the data (a file
    check, nothing compiled): raises :class:`DatasetNotFoundError` when it is not prepared in
    ``data_dir``, ``ValueError`` for unknown names or a bad ``image_size``.
    """
    image_size = decode.check_image_size(image_size)
    splits = datasets.open_splits(name, data_dir, train_classes)
    num_train = num_validation = 0
    if splits.train is not None:  # evaluation-only sets ignore validation_size
        num_validation = sampling.num_validation_examples(len(splits.train), validation_size)
        num_train = len(splits.train) - num_validation
    return DatasetInfo(
        name=name,
        num_classes=splits.spec.num_classes,
        image_shape=decode.image_shape(splits.spec, image_size),
        num_train=num_train,
        num_validation=num_validation,
        num_test=len(splits.test),
        mean=splits.spec.mean,
        std=splits.spec.std,
    )


# --------------------------------------------------------------------------- training


def choose(pipeline: str, info: DatasetInfo) -> str:
    """``'device'`` or ``'grain'`` for ``config.data.pipeline`` = ``pipeline`` (``'host'`` is
    ``'grain'`` with no worker process and stays ``'host'``); raises ``ValueError`` naming the
    field for an unknown value, or for ``'device'`` on a data set without a training split."""
    if pipeline not in PIPELINES:
        raise ValueError(f"config.data.pipeline must be one of {PIPELINES}, got {pipeline!r}.")
    if info.num_train == 0:
        if pipeline == "device":
            raise ValueError(
                f"config.data.pipeline='device' needs a training split; {info.name!r} has none."
            )
        return "host" if pipeline == "host" else "grain"
    if pipeline == "auto":
        fits = on_device.train_bytes(info.num_train, info.image_shape)
        return "device" if fits <= on_device.DEVICE_BYTES_LIMIT else "grain"
    return pipeline


@dataclasses.dataclass(frozen=True)
class TrainInput:
    """The training input of a job.

    Attributes:
      pipeline: ``'device'``, ``'grain'`` or ``'host'`` (the loader in use).
      feeds: ``start_step -> iterator`` over this process's feeds from the one covering
        ``start_step``; every array of a feed has a leading axis of ``steps_per_feed`` steps and a
        batch axis (axis 1) that the devices share.
      resident: arrays to hold on every device (``{}`` for Grain).
      steps_per_feed: the steps one feed covers.
      seed, augment: the run's seed and ``config.data.augment``.
    """

    pipeline: str
    feeds: Callable[[int], Iterator[Batch]]
    resident: dict[str, np.ndarray]
    steps_per_feed: int
    seed: int
    augment: str

    def batch(
        self, resident: dict[str, jax.Array], feed: dict[str, jax.Array], step: jax.Array
    ) -> dict[str, jax.Array]:
        """The step's global batch, inside the jitted step: its row of ``feed``, gathered from
        the ``resident`` arrays when the feed holds indices, augmented with the sampling
        contract's random words: ``{'image': float32 [0, 1] (B, H, W, C), 'label': int32 (B,)}``."""
        step = jnp.asarray(step, jnp.int32)
        row = {k: jax.lax.dynamic_index_in_dim(v, step % self.steps_per_feed, 0, keepdims=False)
               for k, v in feed.items()}  # fmt: skip
        if "index" in row:
            images = jnp.take(resident["image"], row["index"], axis=0)
            labels = jnp.take(resident["label"], row["index"], axis=0)
        else:
            images, labels = row["image"], row["label"]
        bits = sampling.example_bits(self.seed, step, images.shape[0])
        return {"image": augment_lib.augment_images(images, bits, self.augment), "label": labels}


def train_input(
    name: str,
    *,
    data_dir: PathLike | None,
    validation_size: int | float,
    image_size: int | None,
    global_batch_size: int,
    seed: int,
    augment: str,
    pipeline: str = "auto",
    cache_dir: str | None = None,
    num_workers: int = grain_pipeline.DEFAULT_WORKERS,
    train_classes: Sequence[int] | None = None,
) -> TrainInput:
    """The training input of ``name`` through the loader ``pipeline`` chooses (:func:`choose`).

    The device loader caches the decoded split in the data set's TFDS folder when writable,
    else in ``cache_dir`` (``None``: no cache); Grain uses ``num_workers`` processes (``'host'``:
    none). ``train_classes``: only those classes' examples (:func:`datasets.open_splits`).
    Arguments are checked and the data opened when called; the device loader decodes (or loads its
    cache) here.
    """
    augment_lib.check_augment(augment)
    seed = int(seed) % 2**64
    source = dict(
        data_dir=data_dir, validation_size=validation_size, image_size=image_size,
        train_classes=train_classes,
    )  # fmt: skip
    info = get_info(name, **source)
    if info.num_train == 0:
        raise ValueError(f"{name!r} has no training split (it is an evaluation-only data set)")
    chosen = choose(pipeline, info)
    if chosen in ("grain", "host"):
        workers = 0 if chosen == "host" else num_workers

        def grain_feeds(start_step: int) -> Iterator[Batch]:
            return grain_pipeline.train_iterator(
                name, global_batch_size=global_batch_size, seed=seed, start_step=start_step,
                num_workers=workers, **source,
            )  # fmt: skip

        sampling.process_slice(global_batch_size)  # checked now, not in the first feed
        return TrainInput(chosen, grain_feeds, {}, 1, seed, augment)
    folder = on_device.cache_folder(name, data_dir, cache_dir)
    images, labels = on_device.load_train_arrays(name, cache_dir=folder, **source)

    def index_feeds(start_step: int) -> Iterator[Batch]:
        return on_device.feed_iterator(
            len(labels), global_batch_size=global_batch_size, seed=seed, start_step=start_step
        )

    sampling.process_slice(global_batch_size)
    resident = {"image": images, "label": labels}
    return TrainInput("device", index_feeds, resident, on_device.STEPS_PER_FEED, seed, augment)


# --------------------------------------------------------------------------- evaluation


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
    train_classes: Sequence[int] | None = None,
) -> Iterator[Batch]:
    """One pass over ``split`` (``'validation'``, ``'test'``, or ``'train'``: the training split
    in order, e.g. to fit a probe on training features) in fixed-shape, masked batches of
    stored images: ``ceil(n / global_batch_size)`` batches on every process; over all batches
    and processes each example appears exactly once with ``mask == 1``. ``train_classes``
    restricts ``'train'`` and ``'validation'`` (not ``'test'``) to those classes. Arguments are
    checked (and the data opened) when called."""
    image_size = decode.check_image_size(image_size)
    if split not in EVAL_SPLITS:
        raise ValueError(f"unknown split {split!r}; one of {EVAL_SPLITS}")
    lo, hi = sampling.process_slice(global_batch_size, process_index, process_count)
    splits = datasets.open_splits(name, data_dir, train_classes)
    if split == "test":
        source, indices = splits.test, np.arange(len(splits.test))
    else:
        if splits.train is None:
            raise ValueError(f"{name!r} has no train split (it is an evaluation-only data set)")
        train, validation = sampling.train_validation_indices(len(splits.train), validation_size)
        indices = train if split == "train" else validation
        if len(indices) == 0:
            raise ValueError(
                f"the validation split of {name!r} is empty (validation_size={validation_size})"
            )
        source = splits.train
    return _eval_batches(splits.spec, source, indices, global_batch_size, image_size, lo, hi)


def _eval_batches(spec, source, indices, global_batch_size, image_size, lo, hi) -> Iterator[Batch]:
    shape = decode.image_shape(spec, image_size)
    for batch in range(math.ceil(len(indices) / global_batch_size)):
        positions = batch * global_batch_size + np.arange(lo, hi)
        valid = positions < len(indices)
        examples = datasets.read_examples(source, indices[positions[valid]])
        images = np.zeros((hi - lo, *shape), np.uint8)
        labels = np.zeros((hi - lo,), np.int32)
        for row, example in zip(np.flatnonzero(valid), examples, strict=True):
            images[row] = decode.stored_image(example["image"], spec, image_size)
            labels[row] = int(example["label"])
        yield {"image": images, "label": labels, "mask": valid.astype(np.float32)}
