"""The device-resident loader: a small data set's training split decoded once and held on every
device, so a training step reads its examples by index and the host sends only indices.

For a data set whose decoded training split fits in memory (digits, Fashion-MNIST, CIFAR-10/100,
STL-10, CelebA-64, ...):

1. :func:`load_train_arrays` decodes the training examples once into uint8 ``(N, H, W, C)``
   stored images (:func:`sdnet_jax.data.decode.stored_image`) and int32 labels, in the order of
   :func:`sdnet_jax.data.sampling.train_validation_indices`, and caches them in an ``.npz`` file,
   so a second run loads them in a second;
2. the training loop places them on every device (replicated: Fashion-MNIST is 47 MB, CIFAR-10
   150 MB), so a step's gather is local to each device and moves no image data between them;
3. :func:`feed_iterator` computes on the host, :data:`STEPS_PER_FEED` steps at a time, the row
   indices of this process's positions of each step (the sampling contract's order); the step
   picks its row of the feed from its step number and gathers its examples
   (:class:`sdnet_jax.data.input_pipeline.TrainInput`), so most steps transfer nothing at all.
"""

from __future__ import annotations

import hashlib
import itertools
import math
import os
from collections.abc import Iterator, Sequence

import numpy as np

from sdnet_jax.data import datasets, decode, sampling

# 'auto' keeps a training split on the devices when its decoded uint8 array takes at most this
# (on every device: the split is replicated).
DEVICE_BYTES_LIMIT = 4 * 2**30
CACHE_FORMAT = 1  # bump when the cached array's meaning changes
STEPS_PER_FEED = 64  # steps whose row indices travel to the devices together


def cache_folder(
    name: str, data_dir: str | os.PathLike[str] | None, fallback: str | None
) -> str | None:
    """Where the decoded split of ``name`` is cached: nowhere for the embedded ``digits`` (nothing
    to decode), the data set's TFDS folder (``<data_dir>/<name>[/<config>]/<version>``) when it
    exists and is writable, else ``fallback`` (``None``: not cached)."""
    base, config = datasets.parse_name(name)
    if base == "digits":
        return None
    if base == "cifar10_corrupted" and config is None:
        config = datasets.tfds_configs(base)[0]
    folder = os.path.join(
        datasets.resolved_data_dir(data_dir),
        base,
        *([config] if config else []),
        datasets.tfds_version(base),
    )
    return folder if os.path.isdir(folder) and os.access(folder, os.W_OK) else fallback


def cache_path(
    cache_dir: str,
    name: str,
    validation_size: int | float,
    image_size: int | None,
    train_classes: Sequence[int] | None = None,
) -> str:
    """The ``.npz`` file holding the decoded training split of ``name`` (of ``train_classes``
    only, when given) in ``cache_dir``."""
    key = f"{name}|{validation_size!r}|{image_size}|{CACHE_FORMAT}"
    if train_classes is not None:
        key += "|classes=" + ",".join(str(int(c)) for c in sorted(train_classes))
    digest = hashlib.sha1(key.encode()).hexdigest()[:10]
    return os.path.join(cache_dir, f"sdnet_jax_train_uint8_{digest}.npz")


def train_bytes(num_train: int, image_shape: tuple[int, int, int]) -> int:
    """Bytes of a decoded uint8 training split."""
    return num_train * math.prod(image_shape)


def _decode(
    splits: datasets.Splits, indices: np.ndarray, image_size: int | None
) -> tuple[np.ndarray, np.ndarray]:
    """The stored images and labels of the training examples ``indices`` (one read each; decoded
    arrays already at the stored size are taken as they are)."""
    spec, source = splits.spec, splits.train
    shape = decode.image_shape(spec, image_size)
    if (
        isinstance(source, datasets.ArraySource)
        and source.images.shape[1:] == shape
        and image_size is None
        and not spec.resize_eval
    ):
        return source.images[indices], source.labels[indices].astype(np.int32)
    images = np.empty((len(indices), *shape), np.uint8)
    labels = np.empty((len(indices),), np.int32)
    for row, index in enumerate(indices):
        example = source[int(index)]
        images[row] = decode.stored_image(example["image"], spec, image_size)
        labels[row] = int(example["label"])
    return images, labels


def load_train_arrays(
    name: str,
    *,
    data_dir: str | os.PathLike[str] | None,
    validation_size: int | float,
    image_size: int | None = None,
    cache_dir: str | None = None,
    train_classes: Sequence[int] | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """``(images uint8 (N, H, W, C), labels int32 (N,))``: the training split (validation held
    out) as stored images, in :func:`sampling.train_validation_indices` order. Read from /
    written to an ``.npz`` in ``cache_dir`` when given (written atomically, so concurrent
    processes and interrupted runs never leave a partial file). ``train_classes``: only those
    classes' examples (:func:`datasets.open_splits`), cached under their own name."""
    image_size = decode.check_image_size(image_size)
    path = None
    if cache_dir is not None:
        path = cache_path(cache_dir, name, validation_size, image_size, train_classes)
    if path is not None and os.path.exists(path):
        try:
            with np.load(path) as cached:
                return cached["image"], cached["label"]
        except (OSError, ValueError, KeyError):
            pass  # unreadable: decode again and overwrite it
    splits = datasets.open_splits(name, data_dir, train_classes)
    if splits.train is None:
        raise ValueError(f"{name!r} has no training split (it is an evaluation-only data set)")
    train_indices, _ = sampling.train_validation_indices(len(splits.train), validation_size)
    images, labels = _decode(splits, train_indices, image_size)
    if path is not None:
        os.makedirs(cache_dir, exist_ok=True)
        partial = f"{path}.{os.getpid()}.tmp.npz"
        np.savez(partial, image=images, label=labels)
        os.replace(partial, path)
    return images, labels


def feed_iterator(
    num_examples: int,
    *,
    global_batch_size: int,
    seed: int,
    start_step: int = 0,
    steps_per_feed: int = STEPS_PER_FEED,
    process_index: int | None = None,
    process_count: int | None = None,
) -> Iterator[dict[str, np.ndarray]]:
    """This process's slices of the feeds, from the one covering ``start_step``: feed ``c`` is
    ``{'index': int32 (steps_per_feed, global_batch_size // process_count)}``, row ``k`` the rows
    (of :func:`load_train_arrays`' arrays) at this process's positions of step
    ``c * steps_per_feed + k`` (:func:`sampling.stream_order`)."""
    if start_step < 0:
        raise ValueError(f"start_step must be >= 0, got {start_step}")
    if num_examples < 1:
        raise ValueError("the training split is empty")
    if steps_per_feed < 1:
        raise ValueError(f"steps_per_feed must be >= 1, got {steps_per_feed}")
    lo, hi = sampling.process_slice(global_batch_size, process_index, process_count)
    positions = np.arange(lo, hi)
    for first in itertools.count(start_step - start_step % steps_per_feed, steps_per_feed):
        steps = first + np.arange(steps_per_feed)
        order = sampling.stream_order(
            seed, steps[:, None], positions[None, :], global_batch_size, num_examples
        )
        yield {"index": order.astype(np.int32)}
