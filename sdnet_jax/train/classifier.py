"""Classifier training (ResNet / SDNet): config validation, the train state, pure train/eval steps.

``train_and_evaluate(config, workdir)`` validates the config (before anything compiles), builds the
model and the input pipeline and hands pure functions to :func:`sdnet_jax.train.loop.run`.

One train step: forward in training mode (batch statistics; the CSC layers' power-iteration state is
updated), softmax cross-entropy, the optax update (SGD with Nesterov momentum and coupled weight decay
in the papers' recipes), then the projection of every CSC dictionary onto unit-norm atoms.
"""

from __future__ import annotations

import dataclasses
import math
import os
from collections.abc import Callable, Iterator
from typing import Any

import flax
import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax

from sdnet_jax import models, ops
from sdnet_jax.data import grain_pipeline, input_pipeline, on_device
from sdnet_jax.train import checkpoint, loop, optim, parallel
from sdnet_jax.viz import atom_grid

DTYPES = {"float32": jnp.float32, "bfloat16": jnp.bfloat16}


@flax.struct.dataclass
class TrainState:
    step: jax.Array
    params: Any
    model_state: Any  # non-parameter collections: batch_stats, power_iteration
    opt_state: Any


# ----------------------------------------------------------------------------- config


def _check(condition: bool, message: str) -> None:
    if not condition:
        raise ValueError(message)


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def validate_csc(csc: Any, where: str = "config.model.csc") -> None:
    """Checks CSC layer options (keys and values) with errors naming the field."""
    unknown = sorted(set(csc.keys()) - set(models.CSC_OPTIONS))
    _check(not unknown, f"{where} has unknown option(s) {unknown}; valid: {models.CSC_OPTIONS}.")
    if "lam" in csc:
        _check(csc.lam >= 0, f"{where}.lam must be >= 0, got {csc.lam!r}.")
    if "mu" in csc:
        _check(csc.mu >= 0, f"{where}.mu must be >= 0, got {csc.mu!r}.")
    for name, minimum in [("num_iters", 1), ("power_iters", 0), ("init_power_iters", 1)]:
        if name in csc:
            value = csc[name]
            _check(
                _is_int(value) and value >= minimum,
                f"{where}.{name} must be an integer >= {minimum}, got {value!r}.",
            )
    if "method" in csc:
        _check(csc.method in ops.METHODS, f"{where}.method must be one of {ops.METHODS}.")
    if "grad" in csc:
        _check(csc.grad in ops.GRAD_MODES, f"{where}.grad must be one of {ops.GRAD_MODES}.")


def validate_schedule(config: Any) -> None:
    """Checks the fields shared by every training config (steps, batch, intervals, seed)."""
    _check(
        _is_int(config.batch_size) and config.batch_size > 0,
        f"config.batch_size must be a positive integer, got {config.batch_size!r}.",
    )
    parallel.check_batch_size(config.batch_size, "config.batch_size")
    parallel.check_batch_size(config.eval_batch_size, "config.eval_batch_size")
    _check(
        config.num_train_steps > 0 or config.num_epochs > 0,
        "set config.num_train_steps or config.num_epochs to a positive value.",
    )
    for name in ("log_every_steps", "checkpoint_every_steps", "max_to_keep"):
        value = config[name]
        _check(_is_int(value) and value >= 1, f"config.{name} must be an integer >= 1.")
    _check(
        _is_int(config.eval_every_steps) and config.eval_every_steps >= 0,
        "config.eval_every_steps must be an integer >= 0 (0: evaluate only at the end).",
    )


def data_source(data: Any) -> dict[str, Any]:
    """Keyword arguments locating ``config.data`` for ``input_pipeline`` (``get_info`` and the
    iterators): ``data_dir`` ('' = TFDS default), ``validation_size`` and ``image_size`` (0 or
    absent = native size)."""
    return {
        "data_dir": data.data_dir or None,
        "validation_size": data.validation_size,
        "image_size": data.get("image_size") or None,
    }


def validate_config(config: ml_collections.ConfigDict) -> input_pipeline.DatasetInfo:
    """Raises a ``ValueError`` naming the first bad field; returns the data set's info.

    Runs before anything is compiled; opening the data set is a file check, so missing data is
    reported here with the command that prepares it.
    """
    _check(config.task == "classifier", f"config.task must be 'classifier', got {config.task!r}.")
    m = config.model
    _check(
        m.name in models.MODELS,
        f"config.model.name {m.name!r} is not one of {list(models.MODELS)}.",
    )
    _check(m.stem in ("cifar", "imagenet"), "config.model.stem must be 'cifar' or 'imagenet'.")
    _check(m.dtype in DTYPES, f"config.model.dtype must be one of {list(DTYPES)}.")
    _check(_is_int(m.width) and m.width >= 1, "config.model.width must be a positive integer.")
    _check(
        all(_is_int(n) and n >= 1 for n in m.stage_sizes),
        f"config.model.stage_sizes must be positive integers (or empty), got {m.stage_sizes!r}.",
    )
    validate_csc(m.csc)
    d = config.data
    base = d.name.split("/")[0]
    _check(
        base in input_pipeline.SUPPORTED,
        f"config.data.name {d.name!r} is not one of {list(input_pipeline.SUPPORTED)}.",
    )
    _check(
        d.augment in input_pipeline.AUGMENTATIONS,
        f"config.data.augment must be one of {input_pipeline.AUGMENTATIONS}.",
    )
    _check(
        d.get("pipeline", "auto") in on_device.PIPELINES,
        f"config.data.pipeline must be one of {on_device.PIPELINES}, got {d.get('pipeline')!r}.",
    )
    optim.validate(config.optim, "config.optim")
    validate_schedule(config)
    return input_pipeline.get_info(d.name, **data_source(d))


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


def num_train_steps(config: Any, info: input_pipeline.DatasetInfo) -> int:
    if config.num_train_steps > 0:
        return int(config.num_train_steps)
    return math.ceil(config.num_epochs * info.num_train / config.batch_size)


def make_optimizer(config: Any, info: input_pipeline.DatasetInfo):
    """``(learning-rate schedule, optax optimizer)`` of ``config.optim`` over the run's steps
    (step-schedule boundaries in epochs)."""
    steps_per_epoch = info.num_train / config.batch_size
    learning_rate = optim.schedule(config.optim, num_train_steps(config, info), steps_per_epoch)
    return learning_rate, optim.make_optimizer(config.optim, learning_rate)


def build_model(config: Any, info: input_pipeline.DatasetInfo) -> nn.Module:
    """The registered model of ``config.model`` (``stage_sizes`` overrides its depth when set)."""
    stage_sizes = config.model.get("stage_sizes") or ()  # absent in configs saved before it existed
    depth = {"stage_sizes": tuple(stage_sizes)} if stage_sizes else {}
    return models.get_model(
        config.model.name,
        num_classes=info.num_classes,
        stem=config.model.stem,
        csc=dict(config.model.csc),
        width=config.model.width,
        dtype=DTYPES[config.model.dtype],
        **depth,
    )


# ----------------------------------------------------------------------------- steps


def cross_entropy(logits: jax.Array, labels: jax.Array) -> jax.Array:
    return optax.softmax_cross_entropy_with_integer_labels(logits, labels)


def make_init_state(model: nn.Module, tx: optax.GradientTransformation, image_shape):
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


def make_train_step(model: nn.Module, tx: optax.GradientTransformation):
    def train_step(state: TrainState, batch: dict[str, jax.Array]):
        def loss_fn(params):
            logits, new_model_state = model.apply(
                {"params": params, **state.model_state},
                batch["image"],
                train=True,
                mutable=list(state.model_state),
            )
            return jnp.mean(cross_entropy(logits, batch["label"])), (logits, new_model_state)

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
    def eval_step(params, model_state, batch, lam=None):
        logits = model.apply({"params": params, **model_state}, batch["image"], lam=lam)
        mask = batch["mask"]
        correct = (jnp.argmax(logits, -1) == batch["label"]) * mask
        loss = cross_entropy(logits, batch["label"]) * mask
        return {"correct": jnp.sum(correct), "loss": jnp.sum(loss), "count": jnp.sum(mask)}

    return eval_step


def evaluate_batches(eval_step, params, model_state, batches, mesh) -> dict[str, float]:
    """Accuracy and mean loss of a jitted ``eval_step`` over an iterator of masked batches."""
    totals = {"correct": 0.0, "loss": 0.0, "count": 0.0}
    for batch in batches:
        sums = jax.device_get(eval_step(params, model_state, parallel.shard_batch(batch, mesh)))
        for k in totals:
            totals[k] += float(sums[k])
    count = max(totals["count"], 1.0)
    return {"accuracy": totals["correct"] / count, "loss": totals["loss"] / count}


def stem_atoms(params: Any) -> dict[str, np.ndarray]:
    """The stem CSC layer's atoms as an image grid (CSC models only)."""
    stem = params.get("stem_csc")
    if stem is None:
        return {}
    return {"stem_atoms": atom_grid(np.asarray(jax.device_get(stem["dictionary"])))}


# ----------------------------------------------------------------------------- job


def load_trained(
    workdir: str, *, which: str | int = "best", data_dir: str | None = None
) -> tuple[ml_collections.ConfigDict, nn.Module, TrainState, input_pipeline.DatasetInfo]:
    """Restores a trained classifier from ``workdir`` (its ``config.json`` and checkpoints).

    Args:
      workdir: the training run's directory.
      which: ``'best'`` (best on validation, else the latest), ``'latest'`` or a step number.
      data_dir: overrides ``config.data.data_dir`` (e.g. when the run was trained elsewhere).

    Returns:
      ``(config, model, state, info)`` with the state's arrays replicated over the data mesh.
    """
    config = checkpoint.read_run_config(
        workdir, "classifier", command="restore it (classifier.load_trained / sdnet_jax.evaluate)"
    )
    if data_dir is not None:
        config.data.data_dir = data_dir
    info = input_pipeline.get_info(config.data.name, **data_source(config.data))
    model = build_model(config, info)
    _, tx = make_optimizer(config, info)
    init_state = make_init_state(model, tx, info.image_shape)
    shapes = jax.eval_shape(init_state, jax.random.key(0))
    sharding = parallel.tree_replicated(shapes, parallel.data_mesh())
    manager = checkpoint.make_manager(workdir, max_to_keep=config.max_to_keep)
    if which == "best":
        step = checkpoint.best_step(manager, "validation_accuracy") or manager.latest_step()
    elif which == "latest":
        step = manager.latest_step()
    else:
        step = int(which)
    try:
        state = checkpoint.restore(manager, step, checkpoint.abstract_like(shapes, sharding))
    finally:
        manager.close()
    return config, model, state, info


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
    train_input = training_input(config, info, workdir)

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
