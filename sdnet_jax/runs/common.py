"""What every run shares: dtypes, ``config.data`` -> input-pipeline arguments, the step count, and
restoring a workdir's checkpoint against an abstract state."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections

from sdnet_jax.data import input_pipeline
from sdnet_jax.runtime import checkpoint, parallel

DTYPES = {"float32": jnp.float32, "bfloat16": jnp.bfloat16}


# Fields added to the configs after runs were first saved, with the value that reproduces how a
# run saved without them trained: :func:`open_run` fills them in, so code reads every field as is.
ADDED_FIELDS = {
    "data.image_size": 0,
    "data.pipeline": "auto",
    "data.cache_dir": "",
    "data.train_classes": "",
    "model.stage_sizes": (),
    "model.stem_width": 0,
    "optim.warmup_steps": 0,
    "optim.end_lr": 0.0,
    "ctrl.enc_lr_scale": 1.0,
    "ctrl.warmup_steps": 0,
    "ctrl.code_lam": 0.0,
    "ctrl.pair_players": "both",
    "eval.fidelity_classifier_workdir": "",
}


def upgrade_config(config: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
    """A saved run's config with the fields of :data:`ADDED_FIELDS` it lacks (in the sections it
    has: ``ctrl`` only in CTRL runs); returns ``config``, changed in place."""
    for key, value in ADDED_FIELDS.items():
        section, field = key.split(".")
        if section in config and field not in config[section]:
            config[section][field] = value
    return config


def train_classes(data: Any) -> tuple[int, ...] | None:
    """``config.data.train_classes`` ('' = every class: ``None``), a string of comma-separated
    class indices such as ``'0,1,2,3,4,5,6,7'``, as a sorted tuple; a ``ValueError`` naming the
    field for anything else (their range is checked against the data set by the validation)."""
    text = data.train_classes
    field = "config.data.train_classes"
    if not isinstance(text, str):
        raise ValueError(
            f"{field} must be a string of comma-separated class indices, got {text!r}."
        )
    if not text.strip():
        return None
    parts = [part.strip() for part in text.split(",")]
    if not all(part.isdigit() for part in parts):
        raise ValueError(
            f"{field} must be comma-separated class indices like '0,1,2', got {text!r}."
        )
    values = [int(part) for part in parts]
    if len(set(values)) != len(values):
        raise ValueError(f"{field} names a class twice: {text!r}.")
    return tuple(sorted(values))


def data_source(data: Any) -> dict[str, Any]:
    """Keyword arguments locating ``config.data`` for ``input_pipeline`` (``get_info``, the
    training input and the evaluation batches): ``data_dir`` ('' = TFDS default),
    ``validation_size``, ``image_size`` (0 = native size) and ``train_classes``
    (:func:`train_classes`; ``None`` = all)."""
    return {
        "data_dir": data.data_dir or None,
        "validation_size": data.validation_size,
        "image_size": data.image_size or None,
        "train_classes": train_classes(data),
    }


def num_train_steps(config: Any, info: input_pipeline.DatasetInfo) -> int:
    """``config.num_train_steps`` when set, else ``ceil(num_epochs · num_train / batch_size)``."""
    if config.num_train_steps > 0:
        return int(config.num_train_steps)
    return math.ceil(config.num_epochs * info.num_train / config.batch_size)


def open_run(
    workdir: str, task: str, *, command: str, data_dir: str | None
) -> tuple[ml_collections.ConfigDict, input_pipeline.DatasetInfo]:
    """The saved config of a ``task`` run in ``workdir`` (checked: see
    :func:`sdnet_jax.runtime.checkpoint.read_run_config`; upgraded: :func:`upgrade_config`) and
    its data set's info; ``data_dir``
    overrides ``config.data.data_dir`` (e.g. when the run was trained elsewhere)."""
    config = upgrade_config(checkpoint.read_run_config(workdir, task, command=command))
    if data_dir is not None:
        config.data.data_dir = data_dir
    return config, input_pipeline.get_info(config.data.name, **data_source(config.data))


def restore_state(
    workdir: str,
    config: Any,
    init_state: Callable[[jax.Array], Any],
    which: str | int,
    best_metric: str | None = None,
) -> Any:
    """Restores ``which`` checkpoint of ``workdir`` (``'best'`` by ``best_metric``, else the
    latest; ``'latest'``; or a step) into the structure of ``init_state``, replicated over the
    data mesh. A missing or unreadable checkpoint is a :class:`sdnet_jax.errors.RunError`."""
    shapes = jax.eval_shape(init_state, jax.random.key(0))
    sharding = parallel.tree_replicated(shapes, parallel.data_mesh())
    manager = checkpoint.make_manager(workdir, max_to_keep=config.max_to_keep)
    try:
        if which == "best":
            step = (best_metric and checkpoint.best_step(manager, best_metric)) or None
            step = step if step is not None else manager.latest_step()
        elif which == "latest":
            step = manager.latest_step()
        else:
            step = int(which)
        return checkpoint.restore(manager, step, checkpoint.abstract_like(shapes, sharding))
    finally:
        manager.close()
