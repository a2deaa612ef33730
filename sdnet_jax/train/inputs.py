"""The training input of a job (classifier or CTRL): ``config.data`` -> the data layer's
:class:`~sdnet_jax.data.input_pipeline.TrainInput`, and the loop's train step built from a task's
step on batches."""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

import jax

from sdnet_jax.data import input_pipeline
from sdnet_jax.runs.common import data_source
from sdnet_jax.runtime import parallel

Step = Callable[[Any, dict[str, jax.Array]], tuple[Any, dict[str, jax.Array]]]


def training_input(
    config: Any, info: input_pipeline.DatasetInfo, workdir: str
) -> input_pipeline.TrainInput:
    """The training input of ``config`` (``data``, ``batch_size``, ``seed``): the loader
    ``config.data.pipeline`` chooses; the device loader caches the decoded split next to the TFDS
    data when that folder is writable, else in ``config.data.cache_dir`` (default
    ``<workdir>/data_cache``)."""
    data = config.data
    return input_pipeline.train_input(
        data.name,
        global_batch_size=config.batch_size,
        seed=config.seed,
        augment=data.augment,
        pipeline=data.pipeline,
        cache_dir=data.cache_dir or os.path.join(os.path.abspath(workdir), "data_cache"),
        **data_source(data),
    )


def fed(
    step: Step, train_input: input_pipeline.TrainInput, to_model: Callable[[jax.Array], jax.Array]
) -> Callable:
    """The loop's ``(state, resident, feed) -> (state, metrics)``: ``step`` on the batch of
    ``state.step`` (:meth:`TrainInput.batch`), its ``[0, 1]`` pixels mapped by ``to_model`` to the
    model's input space, the batch sharded over ``'data'``."""

    def train_step(state, resident, feed):
        batch = train_input.batch(resident, feed, state.step)
        batch = {"image": to_model(batch["image"]), "label": batch["label"]}
        batch = jax.lax.with_sharding_constraint(
            batch, parallel.batch_sharded(parallel.data_mesh())
        )
        return step(state, batch)

    return train_step
