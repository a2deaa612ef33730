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

from sdnet_jax import checks, models, ops
from sdnet_jax.data import input_pipeline, on_device
from sdnet_jax.evaluation import masked
from sdnet_jax.runs.classifier import TrainState, build_model, make_init_state, make_optimizer
from sdnet_jax.runs.common import DTYPES, data_source, num_train_steps
from sdnet_jax.runtime import optim, parallel
from sdnet_jax.train import inputs, loop
from sdnet_jax.viz import atom_grid

# ----------------------------------------------------------------------------- config


def validate_csc(csc: Any, where: str = "config.model.csc") -> None:
    """Checks CSC layer options (keys and values) with errors naming the field."""
    unknown = sorted(set(csc.keys()) - set(models.CSC_OPTIONS))
    checks.require(
        not unknown, f"{where} has unknown option(s) {unknown}; valid: {models.CSC_OPTIONS}."
    )
    if "lam" in csc:
        checks.require(csc.lam >= 0, f"{where}.lam must be >= 0, got {csc.lam!r}.")
    if "mu" in csc:
        checks.require(csc.mu >= 0, f"{where}.mu must be >= 0, got {csc.mu!r}.")
    for name, minimum in [("num_iters", 1), ("power_iters", 0), ("init_power_iters", 1)]:
        if name in csc:
            value = csc[name]
            checks.require(
                checks.is_int(value) and value >= minimum,
                f"{where}.{name} must be an integer >= {minimum}, got {value!r}.",
            )
    if "method" in csc:
        checks.require(csc.method in ops.METHODS, f"{where}.method must be one of {ops.METHODS}.")
    if "grad" in csc:
        checks.require(csc.grad in ops.GRAD_MODES, f"{where}.grad must be one of {ops.GRAD_MODES}.")


def validate_schedule(config: Any) -> None:
    """Checks the fields shared by every training config (steps, batch, intervals, seed)."""
    checks.require(
        checks.is_int(config.batch_size) and config.batch_size > 0,
        f"config.batch_size must be a positive integer, got {config.batch_size!r}.",
    )
    parallel.check_batch_size(config.batch_size, "config.batch_size")
    parallel.check_batch_size(config.eval_batch_size, "config.eval_batch_size")
    checks.require(
        config.num_train_steps > 0 or config.num_epochs > 0,
        "set config.num_train_steps or config.num_epochs to a positive value.",
    )
    for name in ("log_every_steps", "checkpoint_every_steps", "max_to_keep"):
        value = config[name]
        checks.require(
            checks.is_int(value) and value >= 1, f"config.{name} must be an integer >= 1."
        )
    checks.require(
        checks.is_int(config.eval_every_steps) and config.eval_every_steps >= 0,
        "config.eval_every_steps must be an integer >= 0 (0: evaluate only at the end).",
    )


def validate_config(config: ml_collections.ConfigDict) -> input_pipeline.DatasetInfo:
    """Raises a ``ValueError`` naming the first bad field; returns the data set's info.

    Runs before anything is compiled; opening the data set is a file check, so missing data is
    reported here with the command that prepares it.
    """
    checks.require(
        config.task == "classifier", f"config.task must be 'classifier', got {config.task!r}."
    )
    m = config.model
    checks.require(
        m.name in models.MODELS,
        f"config.model.name {m.name!r} is not one of {list(models.MODELS)}.",
    )
    checks.require(
        m.stem in ("cifar", "imagenet"), "config.model.stem must be 'cifar' or 'imagenet'."
    )
    checks.require(m.dtype in DTYPES, f"config.model.dtype must be one of {list(DTYPES)}.")
    checks.require(
        checks.is_int(m.width) and m.width >= 1, "config.model.width must be a positive integer."
    )
    checks.require(
        all(checks.is_int(n) and n >= 1 for n in m.stage_sizes),
        f"config.model.stage_sizes must be positive integers (or empty), got {m.stage_sizes!r}.",
    )
    validate_csc(m.csc)
    d = config.data
    base = d.name.split("/")[0]
    checks.require(
        base in input_pipeline.SUPPORTED,
        f"config.data.name {d.name!r} is not one of {list(input_pipeline.SUPPORTED)}.",
    )
    checks.require(
        d.augment in input_pipeline.AUGMENTATIONS,
        f"config.data.augment must be one of {input_pipeline.AUGMENTATIONS}.",
    )
    checks.require(
        d.get("pipeline", "auto") in on_device.PIPELINES,
        f"config.data.pipeline must be one of {on_device.PIPELINES}, got {d.get('pipeline')!r}.",
    )
    optim.validate(config.optim, "config.optim")
    validate_schedule(config)
    return input_pipeline.get_info(d.name, **data_source(d))


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


def make_eval_step(model: nn.Module):
    """``(params, model_state, batch, lam=None) -> masked sums`` (:mod:`sdnet_jax.evaluation.masked`)."""

    def eval_step(params, model_state, batch, lam=None):
        logits = model.apply({"params": params, **model_state}, batch["image"], lam=lam)
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
    config: ml_collections.ConfigDict, workdir: str, *, stop_after_steps: int | None = None
) -> dict[str, Any]:
    """Trains and evaluates the classifier described by ``config`` in ``workdir``."""
    info = validate_config(config)
    mesh = parallel.data_mesh()
    model = build_model(config, info)
    total = num_train_steps(config, info)
    learning_rate, tx = make_optimizer(config, info)
    data = config.data
    eval_step = jax.jit(make_eval_step(model))
    train_input = inputs.training_input(config, info, workdir)

    def evaluate(state: TrainState, split: str) -> dict[str, float]:
        batches = input_pipeline.eval_iterator(
            data.name, split, global_batch_size=config.eval_batch_size, **data_source(data)
        )
        return evaluate_batches(eval_step, state.params, state.model_state, batches, mesh)

    has_validation = info.num_validation > 0
    task = loop.Task(
        init_state=make_init_state(model, tx, info.image_shape),
        train_step=make_train_step(model, tx),
        train_batches=train_input.train_batches,
        train_arrays=train_input.train_arrays,
        evaluate=evaluate,
        num_train_steps=total,
        examples_per_step=config.batch_size,
        selection_metric="accuracy" if has_validation else None,
        eval_splits=("validation", "test") if has_validation else ("test",),
        summaries=lambda state: stem_atoms(state.params),
        learning_rate=learning_rate,
    )
    return loop.run_with_config(task, config, workdir, stop_after_steps=stop_after_steps)
