"""A classifier run (ResNet / SDNet): its state, model, optimizer and initial state from a config,
and :func:`load_classifier` to restore a trained one from its workdir."""

from __future__ import annotations

from typing import Any

import flax
import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections
import optax

from sdnet_jax import models
from sdnet_jax.data import input_pipeline
from sdnet_jax.runs.common import DTYPES, num_train_steps, open_run, restore_state
from sdnet_jax.runtime import optim


@flax.struct.dataclass
class TrainState:
    step: jax.Array
    params: Any
    model_state: Any  # non-parameter collections: batch_stats, power_iteration
    opt_state: Any


def make_optimizer(config: Any, info: input_pipeline.DatasetInfo):
    """``(learning-rate schedule, optax optimizer)`` of ``config.optim`` over the run's steps
    (step-schedule boundaries in epochs)."""
    steps_per_epoch = info.num_train / config.batch_size
    learning_rate = optim.schedule(config.optim, num_train_steps(config, info), steps_per_epoch)
    return learning_rate, optim.make_optimizer(config.optim, learning_rate)


def build_model(config: Any, info: input_pipeline.DatasetInfo) -> nn.Module:
    """The registered model of ``config.model`` (``stage_sizes`` overrides its depth when set)."""
    stage_sizes = tuple(config.model.stage_sizes)
    depth = {"stage_sizes": stage_sizes} if stage_sizes else {}
    return models.get_model(
        config.model.name,
        num_classes=info.num_classes,
        stem=config.model.stem,
        csc=dict(config.model.csc),
        width=config.model.width,
        dtype=DTYPES[config.model.dtype],
        **depth,
    )


def make_init_state(model: nn.Module, tx: optax.GradientTransformation, image_shape):
    """``key -> TrainState`` at step 0 (pure; the loop jits it with replicated out_shardings)."""

    def init_state(key: jax.Array) -> TrainState:
        variables = model.init(key, jnp.zeros((1, *image_shape), jnp.float32), train=False)
        params = variables.pop("params")
        return TrainState(
            step=jnp.zeros((), jnp.int32),
            params=params,
            model_state=dict(variables),
            opt_state=tx.init(params),
        )

    return init_state


def load_classifier(
    workdir: str, *, which: str | int = "best", data_dir: str | None = None
) -> tuple[ml_collections.ConfigDict, nn.Module, TrainState, input_pipeline.DatasetInfo]:
    """Restores a trained classifier from ``workdir`` (its ``config.json`` and checkpoints).

    Args:
      workdir: the training run's directory.
      which: ``'best'`` (best on validation, else the latest), ``'latest'`` or a step number.
      data_dir: overrides ``config.data.data_dir`` (e.g. when the run was trained elsewhere).

    Returns:
      ``(config, model, state, info)`` with the state's arrays replicated over the data mesh.

    Raises:
      sdnet_jax.errors.RunError: a missing, empty or other-task workdir, no or unreadable checkpoint.
    """
    config, info = open_run(
        workdir, "classifier", command="restore it (load_classifier / sdnet_jax.evaluate)",
        data_dir=data_dir,
    )  # fmt: skip
    model = build_model(config, info)
    _, tx = make_optimizer(config, info)
    init_state = make_init_state(model, tx, info.image_shape)
    state = restore_state(workdir, config, init_state, which, best_metric="validation_accuracy")
    return config, model, state, info
