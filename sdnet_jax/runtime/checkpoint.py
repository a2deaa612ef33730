"""Orbax checkpointing shared by every training job: one ``CheckpointManager`` per run.

Checkpoints live in ``<workdir>/checkpoints/<step>``. Orbax writes each one into a temporary
directory and renames it when complete, so a crash or a kill never leaves a half-written checkpoint
that looks complete; leftover temporary directories are ignored and cleaned up on the next start.
Kept: the latest ``max_to_keep`` checkpoints, plus the one with the best validation metric (when the
metric is given). A restore targets an abstract state (``jax.eval_shape`` + shardings), so arrays come
back directly with the run's shardings.

Resuming restores the newest checkpoint that can be read: an unreadable one (damaged files) is
reported, moved aside to ``<workdir>/damaged_checkpoints/<step>`` (kept for inspection, out of the
way of the step being saved again) and the next newest is tried. Opening a run for evaluation
(:func:`read_run_config`) reports a missing, empty or other-task workdir as one :class:`RunError`
naming the command that makes it.
"""

from __future__ import annotations

import gc
import json
import logging as pylogging
import os
import shutil
from collections.abc import Sequence
from typing import Any

import jax
import ml_collections
import orbax.checkpoint as ocp
from absl import logging
from jax.experimental import multihost_utils
from orbax.checkpoint import checkpoint_managers as policies

from sdnet_jax.errors import RunError

TRAIN_COMMAND = "python -m sdnet_jax.main --config=configs/<experiment>.py --workdir={workdir}"


def make_manager(
    workdir: str, *, max_to_keep: int, best_metric: str | None = None
) -> ocp.CheckpointManager:
    """A manager for ``<workdir>/checkpoints``; ``best_metric`` (maximised) marks the best one."""
    keep = [policies.LatestN(n=max_to_keep)]
    best_fn = None
    if best_metric:
        best_fn = lambda metrics: metrics[best_metric]
        keep.append(
            policies.BestN(get_metric_fn=best_fn, n=1, keep_checkpoints_without_metrics=False)
        )
    options = ocp.CheckpointManagerOptions(
        best_fn=best_fn,  # makes the manager record metrics; ``keep`` decides what is deleted
        preservation_policy=policies.AnyPreservationPolicy(keep),
        cleanup_tmp_directories=True,
        enable_async_checkpointing=True,
    )
    # Orbax needs an absolute directory; a relative --workdir is relative to the current one.
    directory = os.path.join(os.path.abspath(workdir), "checkpoints")
    return ocp.CheckpointManager(directory, options=options)


def save(
    manager: ocp.CheckpointManager, step: int, state: Any, metrics: dict | None = None
) -> bool:
    """Saves ``state`` at ``step`` (asynchronously) unless that step is already saved."""
    if step in manager.all_steps():
        return False
    return manager.save(step, args=ocp.args.StandardSave(state), metrics=metrics, force=True)


def abstract_like(state_shapes: Any, shardings: Any) -> Any:
    """``ShapeDtypeStruct``s with shardings: the target of a restore."""
    return jax.tree_util.tree_map(
        lambda s, sh: jax.ShapeDtypeStruct(s.shape, s.dtype, sharding=sh), state_shapes, shardings
    )


def restore(manager: ocp.CheckpointManager, step: int, abstract_state: Any) -> Any:
    """Restores ``step``; a missing or unreadable checkpoint is a :class:`RunError` naming it."""
    kept = list(manager.all_steps())
    if step not in kept:
        raise RunError(f"no checkpoint at step {step} in {manager.directory}; kept steps: {kept}.")
    try:
        return manager.restore(step, args=ocp.args.StandardRestore(abstract_state))
    except Exception as err:  # Orbax / TensorStore raise many types for damaged files
        _collect_failed_reads()
        raise RunError(
            f"checkpoint {step} in {manager.directory} cannot be read "
            f"({type(err).__name__}: {_first_line(err)})."
        ) from err


def restore_newest_readable(
    manager: ocp.CheckpointManager, abstract_state: Any, *, set_aside: bool
) -> tuple[int, Any] | None:
    """``(step, state)`` of the newest checkpoint that restores; None when there is none.

    An unreadable checkpoint is logged as a warning naming it and the next newest is tried; with
    ``set_aside`` (training, which will save those steps again) it is moved to
    ``<workdir>/damaged_checkpoints/<step>`` by process 0. Raises :class:`RunError` when
    checkpoints exist but none can be read.
    """
    steps = sorted(manager.all_steps(), reverse=True)
    if not steps:
        return None
    damaged: list[int] = []
    found = None
    for step in steps:
        try:
            found = step, restore(manager, step, abstract_state)
            break
        except RunError as err:
            logging.warning("%s Trying the previous checkpoint.", err)
            damaged.append(step)
    if damaged and set_aside:
        _set_aside(manager, damaged)
    if found is None:
        raise RunError(
            f"no checkpoint in {manager.directory} can be read (tried steps {steps}); move the "
            "folder away to start the run from scratch."
        )
    return found


def _set_aside(manager: ocp.CheckpointManager, steps: Sequence[int]) -> None:
    directory = os.fspath(manager.directory)
    aside = os.path.join(os.path.dirname(directory), "damaged_checkpoints")
    if jax.process_index() == 0:
        os.makedirs(aside, exist_ok=True)
        for step in steps:
            target = os.path.join(aside, str(step))
            shutil.rmtree(target, ignore_errors=True)
            shutil.move(os.path.join(directory, str(step)), target)
            logging.warning("moved unreadable checkpoint %d to %s", step, target)
    if jax.process_count() > 1:
        multihost_utils.sync_global_devices("sdnet_jax: damaged checkpoints set aside")
    manager.reload()


def _collect_failed_reads() -> None:
    """A damaged checkpoint fails many concurrent reads; each leaves an asyncio future that logs
    a traceback ('exception was never retrieved') when collected. Collect them now, quietly: the
    :class:`RunError` already says what happened."""
    log = pylogging.getLogger("asyncio")
    level = log.level
    log.setLevel(pylogging.CRITICAL)
    try:
        gc.collect()
    finally:
        log.setLevel(level)


def _first_line(err: Exception) -> str:
    text = str(err).strip().splitlines()
    return text[0][:300] if text else ""


def read_run_config(workdir: str, task: str, *, command: str) -> ml_collections.ConfigDict:
    """The training config saved in ``workdir`` after checking the workdir is a ``task`` run with
    at least one checkpoint; otherwise one :class:`RunError` saying what is missing and which
    command makes it (``command``: what the caller would run next, for the message)."""
    train = TRAIN_COMMAND.format(workdir=workdir)
    if not os.path.isdir(workdir):
        raise RunError(
            f"workdir {workdir} does not exist: train a {task} run there first ({train}), "
            f"then {command}."
        )
    path = os.path.join(workdir, "config.json")
    if not os.path.exists(path):
        raise RunError(
            f"{workdir} has no config.json, so it is not a training run's workdir: train a {task} "
            f"run there first ({train})."
        )
    with open(path) as f:
        config = ml_collections.ConfigDict(json.load(f))
    found = config.get("task")
    if found != task:
        raise RunError(
            f"{workdir} holds a {found!r} run but {command} needs a {task!r} run: point it at "
            f"the workdir of a {task} training run."
        )
    checkpoints = os.path.join(workdir, "checkpoints")
    if not os.path.isdir(checkpoints) or not any(p.isdigit() for p in os.listdir(checkpoints)):
        raise RunError(
            f"{workdir} has no checkpoint yet: rerun its training ({train}); it resumes and "
            "writes one every config.checkpoint_every_steps steps."
        )
    return config


def best_step(manager: ocp.CheckpointManager, metric: str) -> int | None:
    """The kept step with the highest ``metric`` (None when no checkpoint has metrics)."""
    scored = []
    for step in manager.all_steps():
        metrics = manager.metrics(step)
        if metrics and metric in metrics:
            scored.append((float(metrics[metric]), step))
    return max(scored)[1] if scored else None
