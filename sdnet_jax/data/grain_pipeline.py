"""The Grain loader: the training examples read and decoded to stored uint8 images by worker
processes (or in this process, ``num_workers=0``), for data sets too large to hold on the devices
(ImageNet) or variable in size.

:func:`train_iterator` yields this process's slice of each step's global batch, as the sampling
contract orders it (:mod:`sdnet_jax.data.sampling`): a ``grain.MapDataset`` whose element ``e`` is
the example at position ``lo + e % B_p`` of step ``start_step + e // B_p`` (``B_p`` the examples
at this process's positions ``[lo, hi)``), read from the data set's source and turned into its
stored image (:func:`sdnet_jax.data.decode.stored_image`), batched, and spread over worker
processes (``mp_prefetch``) that work ahead of the training loop. No augmentation here: it runs
in the train step (:mod:`sdnet_jax.data.augment`) on whatever loader delivered the batch.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np

from sdnet_jax.data import datasets, decode, sampling

DEFAULT_WORKERS = min(os.cpu_count() or 1, 16)
_LENGTH = 2**50  # "infinite": steps are never exhausted


class _Example:
    """Position ``e`` of this process's stream -> the stored uint8 image and its label.

    Picklable (the data source is opened lazily in each worker, not pickled)."""

    def __init__(self, name, data_dir, validation_size, image_size, batch, seed, start, lo, hi,
                 train_classes=None):  # fmt: skip
        self.args = dict(name=name, data_dir=data_dir, validation_size=validation_size)
        self.train_classes = train_classes
        self.image_size, self.batch, self.seed = image_size, batch, seed
        self.start, self.lo, self.hi = start, lo, hi
        self._opened = None

    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "_opened": None}

    def _open(self):
        if self._opened is None:
            splits = datasets.open_splits(
                self.args["name"], self.args["data_dir"], self.train_classes
            )
            train_indices, _ = sampling.train_validation_indices(
                len(splits.train), self.args["validation_size"]
            )
            self._opened = splits, train_indices
        return self._opened

    def __call__(self, element: int) -> dict[str, Any]:
        splits, train_indices = self._open()
        per_process = self.hi - self.lo
        step = self.start + element // per_process
        position = self.lo + element % per_process
        order = sampling.stream_order(
            self.seed, step, np.array([position]), self.batch, len(train_indices)
        )
        example = splits.train[int(train_indices[order[0]])]
        image = decode.stored_image(example["image"], splits.spec, self.image_size)
        return {"image": image, "label": int(example["label"])}


def _stack(examples) -> dict[str, np.ndarray]:
    """A step's examples -> its feed: ``image`` uint8 ``(1, B_p, H, W, C)``, ``label`` int32
    ``(1, B_p)`` (one step per feed)."""
    return {
        "image": np.stack([e["image"] for e in examples])[None],
        "label": np.asarray([e["label"] for e in examples], np.int32)[None],
    }


def train_iterator(
    name: str,
    *,
    data_dir: str | os.PathLike[str] | None,
    global_batch_size: int,
    seed: int,
    validation_size: int | float,
    start_step: int = 0,
    process_index: int | None = None,
    process_count: int | None = None,
    image_size: int | None = None,
    num_workers: int = DEFAULT_WORKERS,
    prefetch: int = 2,
    train_classes: Sequence[int] | None = None,
) -> Iterator[dict[str, np.ndarray]]:
    """This process's feeds from ``start_step`` (see the module docstring), made by
    ``num_workers`` worker processes (0: in this process), each ``prefetch`` batches ahead;
    ``train_classes``: only those classes' examples (:func:`datasets.open_splits`). Arguments are
    checked (and the data opened) when called."""
    import grain  # imported here: only this loader needs it
    from absl import flags

    if not flags.FLAGS.is_parsed():  # Grain reads its absl flags (parsed by the entrypoints)
        flags.FLAGS.mark_as_parsed()

    image_size = decode.check_image_size(image_size)
    if start_step < 0:
        raise ValueError(f"start_step must be >= 0, got {start_step}")
    if num_workers < 0:
        raise ValueError(f"num_workers must be >= 0, got {num_workers}")
    lo, hi = sampling.process_slice(global_batch_size, process_index, process_count)
    splits = datasets.open_splits(name, data_dir, train_classes)  # fail here, when missing
    if splits.train is None:
        raise ValueError(f"{name!r} has no training split (it is an evaluation-only data set)")
    example = _Example(
        name, None if data_dir is None else os.fspath(data_dir), validation_size, image_size,
        global_batch_size, int(seed) % 2**64, start_step, lo, hi,
        None if train_classes is None else tuple(train_classes),
    )  # fmt: skip
    dataset = (
        grain.MapDataset.range(0, _LENGTH)
        .map(example)
        .batch(hi - lo, drop_remainder=True, batch_fn=_stack)
        .to_iter_dataset(grain.ReadOptions(num_threads=1, prefetch_buffer_size=prefetch))
    )
    if num_workers > 0:
        dataset = dataset.mp_prefetch(
            grain.MultiprocessingOptions(num_workers=num_workers, per_worker_buffer_size=prefetch)
        )
    return iter(dataset)
