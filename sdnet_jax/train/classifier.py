"""Classifier training (ResNet / SDNet): config validation, the train state, pure train/eval steps.

``train_and_evaluate(config, workdir)`` validates the config (before anything compiles), builds the
model and the input pipeline and hands pure functions to :func:`sdnet_jax.train.loop.run`.

One train step: forward in training mode (batch statistics; the CSC layers' power-iteration state is
updated), softmax cross-entropy, the optax update (SGD with Nesterov momentum and coupled weight decay
in the papers' recipes), then the projection of every CSC dictionary onto unit-norm atoms.
"""

from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax

from sdnet_jax import models
from sdnet_jax.data import input_pipeline, pixels
from sdnet_jax.evaluation import masked
from sdnet_jax.runs.classifier import TrainState, build_model, make_init_state, make_optimizer
from sdnet_jax.runs.common import data_source, num_train_steps
from sdnet_jax.runs.validation import validate_classifier as validate_config
from sdnet_jax.runtime import parallel
from sdnet_jax.train import inputs, loop
from sdnet_jax.viz import atom_grid

# ----------------------------------------------------------------------------- steps


def make_train_step(model: nn.Module, tx: optax.GradientTransformation):
    def train_step(state: TrainState, batch: dict[str, jax.Array]):
        def loss_fn(params):
            logits, new_model_state = model.apply(
                {"params": params, **state.model_state},
                batch["image"],
                train=True,
                mutable=list(state.model_state),
            )
            return jnp.mean(
                optax.softmax_cross_entropy_with_integer_labels(logits, batch["label"])
            ), (logits, new_model_state)

        (loss, (logits, new_model_state)), grads = jax.value_and_grad(loss_fn, has_aux=True)(
            state.params
        )
        updates, opt_state = tx.update(grads, state.opt_state, state.params)
        params = models.project_dictionaries(optax.apply_updates(state.params, updates))
        new_state = TrainState(
            step=state.step + 1,
            params=params,
            model_state=dict(new_model_state),
            opt_state=opt_state,
        )
        accuracy = jnp.mean(jnp.argmax(logits, -1) == batch["label"])
        return new_state, {
            "loss": loss,
            "accuracy": accuracy,
            "grad_norm": optax.tree.norm(grads),
        }

    return train_step


def make_eval_step(model: nn.Module, info: input_pipeline.DatasetInfo):
    """``(params, model_state, batch, lam=None) -> masked sums`` (:mod:`sdnet_jax.evaluation.masked`)
    of an evaluation batch of stored uint8 images (normalised here)."""

    def eval_step(params, model_state, batch, lam=None):
        x = pixels.normalised_from_uint8(batch["image"], info.mean, info.std)
        logits = model.apply({"params": params, **model_state}, x, lam=lam)
        return masked.masked_sums(logits, batch)

    return eval_step


def evaluate_batches(eval_step, params, model_state, batches, mesh) -> dict[str, float]:
    """Accuracy and mean loss of a jitted ``eval_step`` over an iterator of masked batches."""
    sums = (eval_step(params, model_state, parallel.shard_batch(b, mesh)) for b in batches)
    return masked.means(masked.accumulate(sums))


def stem_atoms(params: Any) -> dict[str, np.ndarray]:
    """The stem CSC layer's atoms as an image grid (CSC models only)."""
    stem = params.get("stem_csc")
    if stem is None:
        return {}
    return {"stem_atoms": atom_grid(np.asarray(jax.device_get(stem["dictionary"])))}


# ----------------------------------------------------------------------------- job


def train_and_evaluate(
    config: ml_collections.ConfigDict,
    workdir: str,
    *,
    stop_after_steps: int | None = None,
    deadline: float | None = None,
) -> dict[str, Any]:
    """Trains and evaluates the classifier described by ``config`` in ``workdir`` (``deadline``
    and ``stop_after_steps``: see :func:`loop.run`)."""
    return loop.run_with_config(
        make_task(config, workdir), config, workdir,
        stop_after_steps=stop_after_steps, deadline=deadline,
    )  # fmt: skip


def make_task(config: ml_collections.ConfigDict, workdir: str) -> loop.Task:
    """The training task of ``config`` (validated first): model, optimizer, input, evaluation."""
    info = validate_config(config)
    mesh = parallel.data_mesh()
    model = build_model(config, info)
    total = num_train_steps(config, info)
    learning_rate, tx = make_optimizer(config, info)
    data = config.data
    eval_step = jax.jit(make_eval_step(model, info))
    train_input = inputs.training_input(config, info, workdir)
    normalise = lambda x: pixels.normalised_from_unit(
        x, jnp.asarray(info.mean), jnp.asarray(info.std)
    )

    def evaluate(state: TrainState, split: str) -> dict[str, float]:
        batches = input_pipeline.eval_iterator(
            data.name, split, global_batch_size=config.eval_batch_size, **data_source(data)
        )
        return evaluate_batches(eval_step, state.params, state.model_state, batches, mesh)

    has_validation = info.num_validation > 0
    return loop.Task(
        init_state=make_init_state(model, tx, info.image_shape),
        train_step=inputs.fed(make_train_step(model, tx), train_input, normalise),
        train_feeds=train_input.feeds,
        resident=train_input.resident,
        steps_per_feed=train_input.steps_per_feed,
        evaluate=evaluate,
        num_train_steps=total,
        examples_per_step=config.batch_size,
        selection_metric="accuracy" if has_validation else None,
        eval_splits=("validation", "test") if has_validation else ("test",),
        summaries=lambda state: stem_atoms(state.params),
        learning_rate=learning_rate,
    )
