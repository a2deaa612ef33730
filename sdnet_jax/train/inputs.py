"""The training input of a job (classifier or CTRL): on the devices when the data set fits, else the
host pipeline in this process or in Grain worker processes (``config.data.pipeline``)."""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np

from sdnet_jax.data import grain_pipeline, input_pipeline, on_device
from sdnet_jax.runs.common import data_source


@dataclasses.dataclass(frozen=True)
class TrainingInput:
    """The training input of a job, for :class:`loop.Task`: ``train_batches`` and, on the device
    path, ``train_arrays`` (``None`` on the host path); ``pipeline`` is the path taken."""

    pipeline: str
    train_batches: Callable[[int], Iterator[dict[str, np.ndarray]]]
    train_arrays: on_device.TrainArrays | None


def training_input(config: Any, info: input_pipeline.DatasetInfo, workdir: str) -> TrainingInput:
    """The training input of ``config`` (``data``, ``batch_size``, ``seed``): on the devices, or
    the host pipeline's batches in this process or in Grain worker processes, as
    ``config.data.pipeline`` (``'auto'`` | ``'device'`` | ``'host'`` | ``'grain'``; absent in
    configs saved before it existed: ``'auto'``) chooses
    (:func:`on_device.choose`). The device path decodes the training split once and caches it
    next to the TFDS data when that folder is writable, else in ``workdir/data_cache``."""
    data = config.data
    source = data_source(data)
    pipeline = on_device.choose(data.get("pipeline", "auto"), info, augment=data.augment)
    if pipeline in ("host", "grain"):
        read = input_pipeline.train_iterator
        if pipeline == "grain":
            read = grain_pipeline.train_iterator

        def host_batches(start_step: int):
            return read(
                data.name,
                global_batch_size=config.batch_size,
                seed=config.seed,
                augment=data.augment,
                start_step=start_step,
                **source,
            )

        return TrainingInput(pipeline, host_batches, None)
    cache_dir = on_device.default_cache_dir(data.name, source["data_dir"])
    if cache_dir is None and not data.name.startswith("digits"):
        cache_dir = os.path.join(os.path.abspath(workdir), "data_cache")
    arrays = on_device.train_arrays(
        data.name, seed=config.seed, augment=data.augment, cache_dir=cache_dir, **source
    )
    num_examples = len(arrays.arrays["label"])

    def feeds(start_step: int):
        return on_device.feed_iterator(
            num_examples, global_batch_size=config.batch_size, seed=config.seed,
            start_step=start_step, steps_per_feed=arrays.steps_per_feed,
        )  # fmt: skip

    return TrainingInput(pipeline, feeds, arrays)
