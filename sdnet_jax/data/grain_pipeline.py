"""Large data sets through Grain: the host pipeline's batches, decoded and augmented in worker
processes and prefetched.

:func:`train_iterator` yields exactly what :func:`sdnet_jax.data.input_pipeline.train_iterator`
yields (same arguments, same batches: the (seed, step) contract and the per-process slices
included), but reads through ``grain``: a ``grain.MapDataset`` whose element ``e`` is the
example at position ``lo + e % B_p`` of step ``start_step + e // B_p`` of this process's slice
(``B_p`` examples at positions ``[lo, hi)`` of each global batch), read from the TFDS
``data_source`` and transformed by the host pipeline's own functions (so the bytes are the same),
batched, then spread over ``num_workers`` worker processes (``mp_prefetch``) that decode and
augment ahead of the training loop; the main process only receives finished batches.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any

import numpy as np

from sdnet_jax.data import augment as augment_lib
from sdnet_jax.data import datasets
from sdnet_jax.data import input_pipeline as ip

DEFAULT_WORKERS = min(os.cpu_count() or 1, 16)
_LENGTH = 2**50  # "infinite": steps are never exhausted


class _Example:
    """Position ``e`` of this process's stream -> the transformed uint8 image and its label.

    Picklable (the data source is opened lazily in each worker, not pickled)."""

    def __init__(self, name, data_dir, validation_size, image_size, batch, seed, augment, start, lo, hi):  # fmt: skip
        self.args = dict(name=name, data_dir=data_dir, validation_size=validation_size)
        self.image_size, self.batch, self.seed, self.augment = image_size, batch, seed, augment
        self.start, self.lo, self.hi = start, lo, hi
        self._opened = None

    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "_opened": None}

    def _open(self):
        if self._opened is None:
            splits = datasets.open_splits(self.args["name"], self.args["data_dir"])
            train_indices, _ = ip.train_validation_indices(
                len(splits.train), self.args["validation_size"]
            )
            self._opened = splits, train_indices
        return self._opened

    def __call__(self, element: int) -> dict[str, Any]:
        splits, train_indices = self._open()
        per_process = self.hi - self.lo
        step = self.start + element // per_process
        position = self.lo + element % per_process
        order = ip.stream_order(
            self.seed, step, np.array([position]), self.batch, len(train_indices)
        )
        example = splits.train[int(train_indices[order[0]])]
        image = ip._train_transform(
            example["image"],
            splits.spec,
            self.augment,
            ip._example_rng(self.seed, step, position),
            self.image_size,
        )
        return {"image": image, "label": int(example["label"])}


class _Stack:
    """A list of examples -> the host pipeline's batch (normalised float32 images, int32 labels)."""

    def __init__(self, name: str, image_size: int | None):
        self.name, self.image_size = name, image_size

    def __call__(self, examples) -> dict[str, np.ndarray]:
        spec = datasets.SPECS[datasets.parse_name(self.name)[0]]
        shape = ip._image_shape(spec, self.image_size)
        images = np.stack([e["image"] for e in examples])
        if images.shape[1:] != shape:
            raise ValueError(f"got images of shape {images.shape[1:]}, expected {shape}")
        return {
            "image": augment_lib.normalize(images, spec.mean, spec.std),
            "label": np.asarray([e["label"] for e in examples], np.int32),
        }


def train_iterator(
    name: str,
    *,
    data_dir: str | os.PathLike[str] | None,
    global_batch_size: int,
    seed: int,
    augment: str,
    validation_size: int | float,
    start_step: int = 0,
    process_index: int | None = None,
    process_count: int | None = None,
    image_size: int | None = None,
    num_workers: int = DEFAULT_WORKERS,
    prefetch: int = 2,
) -> Iterator[dict[str, np.ndarray]]:
    """:func:`input_pipeline.train_iterator`'s batches through Grain with ``num_workers`` worker
    processes (0: in this process), each ``prefetch`` batches ahead. Arguments are checked (and
    the data opened) when called."""
    import grain  # imported here: only this path needs it
    from absl import flags

    if not flags.FLAGS.is_parsed():  # Grain reads its absl flags (parsed by the entrypoints)
        flags.FLAGS.mark_as_parsed()

    image_size = ip._check_image_size(image_size)
    if augment not in ip.AUGMENTATIONS:
        raise ValueError(f"unknown augment {augment!r}; one of {ip.AUGMENTATIONS}")
    if start_step < 0:
        raise ValueError(f"start_step must be >= 0, got {start_step}")
    lo, hi = ip._process_slice(global_batch_size, process_index, process_count)
    splits = datasets.open_splits(name, data_dir)  # fail here, in the caller, when missing
    if splits.train is None:
        raise ValueError(f"{name!r} has no training split (it is an evaluation-only data set)")
    example = _Example(
        name, None if data_dir is None else os.fspath(data_dir), validation_size, image_size,
        global_batch_size, int(seed) % 2**64, augment, start_step, lo, hi,
    )  # fmt: skip
    dataset = (
        grain.MapDataset.range(0, _LENGTH)
        .map(example)
        .batch(hi - lo, drop_remainder=True, batch_fn=_Stack(name, image_size))
        .to_iter_dataset(grain.ReadOptions(num_threads=1, prefetch_buffer_size=prefetch))
    )
    if num_workers > 0:
        dataset = dataset.mp_prefetch(
            grain.MultiprocessingOptions(num_workers=num_workers, per_worker_buffer_size=prefetch)
        )
    return iter(dataset)
