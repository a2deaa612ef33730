"""Data parallelism with global-view ``jax.jit``: a 1-D ``'data'`` mesh over every device of every host.

The batch is sharded along its leading axis over ``'data'``; parameters and optimizer state are
replicated. Each host feeds only its own slice of the global batch
(``jax.make_array_from_process_local_data``); XLA inserts the cross-device reductions (batch-norm
statistics, gradient means), so one program serves one CPU, eight GPUs or a TPU pod slice.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Iterator
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


def shard_batch(
    batch: dict[str, np.ndarray], mesh: Mesh, sharding: NamedSharding | None = None
) -> dict[str, jax.Array]:
    """This process's slice of a batch -> global arrays sharded over ``'data'`` (along the
    leading axis, or as ``sharding`` says)."""
    sharding = batch_sharded(mesh) if sharding is None else sharding
    return {k: jax.make_array_from_process_local_data(sharding, v) for k, v in batch.items()}


def shard_rows(array: np.ndarray, mesh: Mesh) -> jax.Array:
    """A host array that every process holds in full -> a global array sharded over ``'data'``
    along its leading axis, padded with zero rows to a multiple of the device count (each
    process places only its own devices' rows)."""
    rows = -(-len(array) // mesh.size) * mesh.size
    if rows != len(array):
        padding = np.zeros((rows - len(array), *array.shape[1:]), array.dtype)
        array = np.concatenate([array, padding])
    sharding = batch_sharded(mesh)
    return jax.make_array_from_callback(array.shape, sharding, lambda index: array[index])


class Prefetcher:
    """Iterates over ``shard_batch(b, mesh, sharding)`` for the batches ``b`` of ``batches``, by a
    background thread up to ``size`` batches ahead: reading, decoding and the host-to-device
    transfer of the next batches overlap the current step, and the loop only takes a ready batch
    from a queue. An exception of the producer is raised by ``next``. Call :meth:`close` (or use
    it as a context manager) to stop the thread."""

    _DONE = object()

    def __init__(
        self,
        batches: Iterator[dict[str, np.ndarray]],
        mesh: Mesh,
        size: int = 2,
        sharding: NamedSharding | None = None,
    ):
        if size < 1:
            raise ValueError(f"prefetch size must be >= 1, got {size}")
        self._queue: queue.Queue = queue.Queue(maxsize=size)
        self._stop = threading.Event()
        self._thread = threading.Thread(
            target=self._produce, args=(batches, mesh, sharding), name="prefetch", daemon=True
        )
        self._thread.start()

    def _put(self, item: Any) -> bool:
        while not self._stop.is_set():
            try:
                self._queue.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def _produce(self, batches, mesh, sharding) -> None:
        try:
            for batch in batches:
                if not self._put(shard_batch(batch, mesh, sharding)):
                    return
            self._put(self._DONE)
        except BaseException as error:  # handed to the consumer
            self._put(error)

    def __iter__(self):
        return self

    def __next__(self) -> dict[str, jax.Array]:
        item = self._queue.get()
        if item is self._DONE:
            self._queue.put(item)
            raise StopIteration
        if isinstance(item, BaseException):
            self._queue.put(item)
            raise item
        return item

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=10)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


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
