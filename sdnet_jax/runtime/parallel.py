"""Data parallelism with global-view ``jax.jit``: a 1-D ``'data'`` mesh over every device of every host.

The batch is sharded along its leading axis over ``'data'``; parameters and optimizer state are
replicated. Each host feeds only its own slice of the global batch
(``jax.make_array_from_process_local_data``); XLA inserts the cross-device reductions (batch-norm
statistics, gradient means), so one program serves one CPU, eight GPUs or a TPU pod slice.
"""

from __future__ import annotations

from typing import Any

import jax
import numpy as np
from jax.sharding import AxisType, Mesh, NamedSharding, PartitionSpec

DATA_AXIS = "data"


def initialize_distributed(
    coordinator_address: str | None = None,
    num_processes: int | None = None,
    process_id: int | None = None,
    auto: bool = False,
) -> None:
    """Starts JAX's multi-process runtime when asked to (a no-op for a single process).

    With explicit ``coordinator_address``/``num_processes``/``process_id`` (GPU hosts, local CPU
    processes) they are passed on; with ``auto`` the cluster is detected (TPU pod slices, SLURM).
    """
    if coordinator_address or auto:
        jax.distributed.initialize(
            coordinator_address=coordinator_address,
            num_processes=num_processes,
            process_id=process_id,
        )


def data_mesh() -> Mesh:
    """A 1-D mesh over all devices of all processes, axis ``'data'`` (automatic sharding mode)."""
    return jax.make_mesh((jax.device_count(),), (DATA_AXIS,), axis_types=(AxisType.Auto,))


def replicated(mesh: Mesh) -> NamedSharding:
    return NamedSharding(mesh, PartitionSpec())


def batch_sharded(mesh: Mesh) -> NamedSharding:
    return NamedSharding(mesh, PartitionSpec(DATA_AXIS))


def shard_batch(batch: dict[str, np.ndarray], mesh: Mesh) -> dict[str, jax.Array]:
    """This process's slice of a batch -> global arrays sharded over ``'data'``."""
    sharding = batch_sharded(mesh)
    return {k: jax.make_array_from_process_local_data(sharding, v) for k, v in batch.items()}


def check_batch_size(global_batch_size: int, what: str = "batch_size") -> None:
    """Raises unless the global batch divides evenly over processes and devices."""
    for count, name in [(jax.process_count(), "processes"), (jax.device_count(), "devices")]:
        if global_batch_size % count:
            raise ValueError(
                f"{what}={global_batch_size} must be divisible by the number of {name} ({count})."
            )


def is_main_process() -> bool:
    return jax.process_index() == 0


def tree_replicated(tree: Any, mesh: Mesh) -> Any:
    """A pytree of replicated shardings shaped like ``tree``."""
    return jax.tree_util.tree_map(lambda _: replicated(mesh), tree)
