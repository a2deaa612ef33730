"""Orbax checkpointing shared by every training job: one ``CheckpointManager`` per run.

Checkpoints live in ``<workdir>/checkpoints/<step>``. Orbax writes each one into a temporary
directory and renames it when complete, so a crash or a kill never leaves a half-written checkpoint
that looks complete; leftover temporary directories are ignored and cleaned up on the next start.
Kept: the latest ``max_to_keep`` checkpoints, plus the one with the best validation metric (when the
metric is given). A restore targets an abstract state (``jax.eval_shape`` + shardings), so arrays come
back directly with the run's shardings.
"""

from __future__ import annotations

import os
from typing import Any

import jax
import orbax.checkpoint as ocp
from orbax.checkpoint import checkpoint_managers as policies


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
    return ocp.CheckpointManager(os.path.join(workdir, "checkpoints"), options=options)


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
    return manager.restore(step, args=ocp.args.StandardRestore(abstract_state))


def best_step(manager: ocp.CheckpointManager, metric: str) -> int | None:
    """The kept step with the highest ``metric`` (None when no checkpoint has metrics)."""
    scored = []
    for step in manager.all_steps():
        metrics = manager.metrics(step)
        if metrics and metric in metrics:
            scored.append((float(metrics[metric]), step))
    return max(scored)[1] if scored else None
