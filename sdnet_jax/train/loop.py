"""The training loop shared by every job (classifier, CSC-CTRL): a task supplies pure functions,
this module runs them data-parallel with checkpoints, resume, preemption handling and logging.

Per run, in ``workdir``: ``checkpoints/`` (Orbax), ``tensorboard/``, ``metrics.jsonl``,
``config.json`` and, at the end, ``results.json``.

* The state is initialised by a jitted ``init_state`` with replicated ``out_shardings`` (from
  ``jax.eval_shape``) or, when ``checkpoints/`` has one, restored from the latest checkpoint.
* ``train_step(state, resident, feed)`` is jitted over the ``'data'`` mesh with the state donated.
* Input. A task's ``train_feeds`` come from a background thread (:class:`parallel.Prefetcher`)
  that reads them and transfers them to the devices ``PREFETCH`` feeds ahead, so the loop only
  dispatches; a feed covers ``steps_per_feed`` steps (its arrays' leading axis; axis 1, the
  batch, is sharded over ``'data'``). ``Task.resident`` arrays are placed on every device once.
  The task's step turns ``(resident, feed, step)`` into its batch inside the jitted program
  (gather, augmentation, pixel range: the data layer's business, not the loop's), so most steps
  transfer nothing. Nothing in the step path waits on the devices: no ``device_get``,
  ``block_until_ready`` or host collective per step.
* Checkpoints every ``checkpoint_every_steps``, at every evaluation (with the validation metrics, so
  the best one is kept), at the end, and on SIGTERM/SIGINT — after which the loop stops cleanly; a
  restart with the same ``workdir`` resumes from the newest readable checkpoint and, since the input
  pipeline is a function of (seed, step), continues exactly as an uninterrupted run would.
* Metrics and the non-finite guard: the jitted step adds its metrics (the tasks return their
  loss(es) and gradient norm(s)) to an accumulator on device (sums, a count, and the first step
  whose metrics were not all finite). It stays on device until the log cadence — or a
  checkpoint, an evaluation or a stop, which fetch it first — so no step waits on the host.
  The first non-finite step raises :class:`~sdnet_jax.errors.NonFiniteError` naming it; nothing is
  saved after the last finite step, so the latest checkpoint stays good.
* Multi-process: SIGTERM on any host stops all of them at the same step; the hosts agree on it at
  the log cadence (one small all-gather per ``log_every_steps``, not per step).
"""

from __future__ import annotations

import dataclasses
import json
import os
import signal
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from absl import logging
from jax.experimental import multihost_utils
from jax.sharding import NamedSharding, PartitionSpec

from sdnet_jax.errors import NonFiniteError
from sdnet_jax.runtime import checkpoint, metrics, parallel

State = Any
Batch = dict[str, np.ndarray]


@dataclasses.dataclass
class Task:
    """What a training job provides to :func:`run`.

    Attributes:
      init_state: ``key -> state`` (pure; the state is a pytree with an integer ``step`` field).
      train_step: ``(state, resident, feed) -> (state, metrics)`` (pure; jitted here): one step on
        the batch the feed and the resident arrays give for ``state.step``. The metrics are
        scalars and include the loss(es) and gradient norm(s): all of them are checked for
        finiteness.
      train_feeds: ``start_step -> iterator`` over this process's feeds, from the one covering
        ``start_step``; each array of a feed has a leading axis of ``steps_per_feed`` steps and a
        batch axis (axis 1) sharded over the devices.
      evaluate: ``(state, split) -> {name: float}`` for ``'validation'`` / ``'test'``.
      num_train_steps: total steps.
      examples_per_step: global batch size (for throughput).
      selection_metric: validation metric to maximise for model selection (None: no selection).
      eval_splits: splits evaluated at the end; the first one is also evaluated periodically.
      summaries: optional ``state -> {name: HWC image in [0, 1]}`` written at each evaluation.
      learning_rate: optional ``step -> lr`` for logging.
      resident: host arrays placed once on every device (replicated) and passed to every step.
      steps_per_feed: the steps one feed covers (the loop takes a new feed when
        ``step % steps_per_feed == 0``).
    """

    init_state: Callable[[jax.Array], State]
    train_step: Callable[..., tuple[State, dict[str, jax.Array]]]
    train_feeds: Callable[[int], Iterator[Batch]]
    evaluate: Callable[[State, str], dict[str, float]]
    num_train_steps: int
    examples_per_step: int
    selection_metric: str | None = "accuracy"
    eval_splits: tuple[str, ...] = ("validation", "test")
    summaries: Callable[[State], dict[str, np.ndarray]] | None = None
    learning_rate: Callable[[int], Any] | None = None
    resident: dict[str, np.ndarray] = dataclasses.field(default_factory=dict)
    steps_per_feed: int = 1


PREFETCH = 2  # batches (or feeds) read and transferred ahead of the steps that use them


class _StopSignal:
    """Turns SIGTERM/SIGINT into a flag; the loop checks it after every step (one process) or at
    the log cadence (several processes, which must agree on the step they stop at)."""

    def __init__(self, deadline: float | None = None):
        self.requested = False
        self.signum = 0  # the signal received (0: none, or the deadline)
        self.deadline = deadline  # a time.monotonic() value; reaching it is a request to stop
        self._previous = {}

    def __enter__(self):
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGTERM, signal.SIGINT):
                self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def _handle(self, signum, frame):
        logging.warning("received signal %d: checkpointing and stopping", signum)
        self.requested, self.signum = True, signum

    def __exit__(self, *exc):
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)

    def agreed(self) -> bool:
        """True when any process was asked to stop or reached the deadline (all processes must
        stop at the same step)."""
        if self.deadline is not None and time.monotonic() >= self.deadline:
            self.requested = True
        if jax.process_count() == 1:
            return self.requested
        # each process's signal (-1: asked to stop without one): every process learns both
        mine = np.array(self.signum or (-1 if self.requested else 0), np.int32)
        signals = np.asarray(multihost_utils.process_allgather(mine))
        self.signum = int(signals.max()) if signals.max() > 0 else self.signum
        self.requested = bool(np.any(signals != 0))
        return self.requested


def _prefixed(prefix: str, values: dict[str, Any]) -> dict[str, Any]:
    return {f"{prefix}/{k}": v for k, v in values.items()}


def run(
    task: Task,
    *,
    workdir: str,
    config_json: str,
    seed: int,
    log_every_steps: int,
    eval_every_steps: int,
    checkpoint_every_steps: int,
    max_to_keep: int,
    stop_after_steps: int | None = None,
    deadline: float | None = None,
) -> dict[str, Any]:
    """Trains ``task`` to ``task.num_train_steps`` (resuming from ``workdir``) and evaluates it.

    ``stop_after_steps`` ends the run early as a preemption would (a checkpoint, no final
    evaluation); tests use it to compare interrupted-and-resumed with uninterrupted training.
    ``deadline`` (a :func:`time.monotonic` value) does the same at the first step that ends after
    it (time-boxed benchmarks; several processes agree on the step at the log cadence).

    Returns the results dict also written to ``workdir/results.json`` (``{'interrupted': True,
    'step': ..., 'signal': ...}`` when the run stopped early: the signal's number, 0 for the
    deadline or ``stop_after_steps``). A run that has nothing left to do (restarted after its
    last step, its ``results.json`` written) returns those results without evaluating again.
    """
    metrics.quiet_library_logs()
    workdir = os.path.abspath(workdir)
    os.makedirs(workdir, exist_ok=True)
    mesh = parallel.data_mesh()
    writer = metrics.MetricWriter(workdir)
    if parallel.is_main_process():
        with open(os.path.join(workdir, "config.json"), "w") as f:
            f.write(config_json)
        writer.write_config(config_json)

    key = jax.random.key(seed)
    shapes = jax.eval_shape(task.init_state, key)
    state_sharding = parallel.tree_replicated(shapes, mesh)
    manager = checkpoint.make_manager(
        workdir, max_to_keep=max_to_keep, best_metric=_selection_key(task)
    )
    restored = checkpoint.restore_newest_readable(
        manager, checkpoint.abstract_like(shapes, state_sharding), set_aside=True
    )
    if restored is None:
        state = jax.jit(task.init_state, out_shardings=state_sharding)(key)
    else:
        logging.info("resuming from %s at step %d", manager.directory, restored[0])
        state = restored[1]
    start_step = int(jax.device_get(state.step))
    total = task.num_train_steps
    finished = _finished_results(workdir, start_step, total)
    if finished is not None:
        logging.info("%s finished at step %d already: nothing to do", workdir, start_step)
        manager.close()
        writer.close()
        return finished
    device_arrays = place_resident(task, mesh)
    program = compile_program(task, mesh, state_sharding)
    feed_sharding, steps_per_feed = program.feed_sharding, task.steps_per_feed
    batches = parallel.Prefetcher(
        task.train_feeds(start_step), mesh, size=PREFETCH, sharding=feed_sharding
    )
    feed = None
    throughput = metrics.Throughput(start_step, total, task.examples_per_step)
    acc = new_acc = None  # the metrics accumulated on device since the last log line
    step = start_step
    interrupted = False
    with _StopSignal(deadline) as stop, batches:
        while step < total:
            if feed is None or step % steps_per_feed == 0:
                feed = next(batches)
            if acc is None:  # the metrics' names, from the first batch's shapes
                new_acc = program.accumulator(state, device_arrays, feed)
                acc = new_acc()
            state, acc = program.step(state, acc, device_arrays, feed)
            step += 1
            at_log = step % log_every_steps == 0 or step == total
            at_eval = bool(eval_every_steps) and step % eval_every_steps == 0 and step < total
            at_checkpoint = at_eval or step % checkpoint_every_steps == 0
            stopping = (stop_after_steps is not None and step >= stop_after_steps) or (
                (at_log or jax.process_count() == 1) and stop.agreed()
            )
            if at_log or at_checkpoint or stopping:
                try:
                    scalars = _fetch_metrics(acc)
                except NonFiniteError as err:
                    manager.wait_until_finished()  # the last good checkpoint is complete
                    writer.close()
                    raise NonFiniteError(f"{err} {_after_divergence(manager)}") from None
            if at_log:
                acc = new_acc()
                scalars.update(throughput(step))
                if task.learning_rate is not None:
                    scalars["learning_rate"] = task.learning_rate(step - 1)
                writer.write_scalars(step, _prefixed("train", scalars))
                metrics.console(step, total, scalars)
            val = _evaluate(task, state, task.eval_splits[0], step, writer) if at_eval else None
            if at_checkpoint:
                checkpoint.save(manager, step, state, _checkpoint_metrics(task, val))
            if stopping:
                interrupted = step < total
                break
    del device_arrays  # frees the devices' copy of the training split before evaluating
    if interrupted:
        checkpoint.save(manager, step, state)
        manager.wait_until_finished()
        writer.close()
        logging.info("stopped at step %d; rerun with the same workdir to resume", step)
        return {"interrupted": True, "step": step, "signal": stop.signum}

    results = _final_evaluation(task, state, manager, writer, step, shapes, state_sharding)
    manager.wait_until_finished()
    manager.close()
    writer.close()
    if parallel.is_main_process():
        with open(os.path.join(workdir, "results.json"), "w") as f:
            json.dump(results, f, indent=2)
    return results


@dataclasses.dataclass(frozen=True)
class Program:
    """The loop's jitted step for one task on one mesh (:func:`compile_program`).

    Attributes:
      step: ``(state, acc, resident, feed) -> (state, acc)``, jitted with the state replicated
        and donated, the feed's axis 1 sharded over ``'data'``: one train step whose metrics are
        added to the on-device accumulator (the non-finite guard included).
      step_fn: the task's ``train_step``, jitted (``step`` calls it, so its trace is shared).
      feed_sharding: how a feed is placed (its axis 1 over ``'data'``).
      replicated: the mesh's replicated sharding (the resident arrays, the accumulator).
    """

    step: Callable
    step_fn: Callable
    feed_sharding: NamedSharding
    replicated: NamedSharding

    def accumulator(self, state: State, resident: dict[str, jax.Array], feed: Any):
        """``() -> acc``, jitted: the empty accumulator of the metrics ``step_fn`` returns for
        these inputs' shapes (their names come from one abstract trace of the step)."""
        shapes = jax.eval_shape(self.step_fn, state, resident, feed)[1]
        return jax.jit(_accumulator(shapes), out_shardings=self.replicated)


def place_resident(task: Task, mesh) -> dict[str, jax.Array]:
    """``task.resident`` on every device of ``mesh`` (replicated)."""
    return {k: jax.device_put(v, parallel.replicated(mesh)) for k, v in task.resident.items()}


def compile_program(task: Task, mesh, state_sharding: Any) -> Program:
    """The jitted step :func:`run` runs, for ``task`` on ``mesh`` (benchmarks time the same
    program back to back to measure what the loop costs beyond it)."""
    feed_sharding = NamedSharding(mesh, PartitionSpec(None, parallel.DATA_AXIS))
    # jitted inside the accumulating step too: the trace that gives the metrics' names
    # (Program.accumulator) is reused there instead of tracing the model twice
    step_fn = jax.jit(task.train_step)
    replicated = parallel.replicated(mesh)
    step = jax.jit(
        _accumulating(step_fn),
        in_shardings=(state_sharding, replicated, replicated, feed_sharding),
        out_shardings=(state_sharding, replicated),
        donate_argnums=(0, 1),
    )
    return Program(step, step_fn, feed_sharding, replicated)


def run_with_config(
    task: Task,
    config: Any,
    workdir: str,
    *,
    stop_after_steps: int | None = None,
    deadline: float | None = None,
) -> dict[str, Any]:
    """:func:`run` with the schedule fields every training config has (``seed``,
    ``log_every_steps``, ``eval_every_steps``, ``checkpoint_every_steps``, ``max_to_keep``); the
    config is saved as ``workdir/config.json``."""
    return run(
        task,
        workdir=workdir,
        config_json=config.to_json_best_effort(indent=2),
        seed=config.seed,
        log_every_steps=config.log_every_steps,
        eval_every_steps=config.eval_every_steps,
        checkpoint_every_steps=config.checkpoint_every_steps,
        max_to_keep=config.max_to_keep,
        stop_after_steps=stop_after_steps,
        deadline=deadline,
    )


def _finished_results(workdir: str, step: int, total: int) -> dict[str, Any] | None:
    """The results of a run restored at its last step whose ``results.json`` was written."""
    path = os.path.join(workdir, "results.json")
    results = None
    if step >= total and os.path.exists(path):
        with open(path) as f:
            results = json.load(f)
        if results.get("final", {}).get("step") != step:
            results = None
    if jax.process_count() > 1:  # every process evaluates, or none (process 0 wrote the file)
        found = multihost_utils.process_allgather(np.array(results is not None))
        results = results if bool(np.all(found)) else None
    return results


def _accumulator(metric_shapes: dict[str, Any]):
    """``() -> acc``: the empty on-device accumulator of metrics named as ``metric_shapes``:
    ``sum`` (float32 per metric), ``count``, ``first_bad`` (the first step whose metrics were not
    all finite, -1 if none) and ``bad`` (which metrics were not finite at that step)."""
    names = sorted(metric_shapes)

    def new():
        return {
            "sum": {k: jnp.zeros((), jnp.float32) for k in names},
            "count": jnp.zeros((), jnp.int32),
            "first_bad": jnp.full((), -1, jnp.int32),
            "bad": {k: jnp.zeros((), bool) for k in names},
        }

    return new


def _accumulating(step_fn):
    """``(state, acc, resident, feed) -> (state, acc)``: one step of ``step_fn`` whose metrics are
    added to the accumulator (:func:`_accumulator`) on device, with the non-finite guard: whether
    every metric the step returns is finite, and the first step where one was not."""

    def step(state, acc, resident, feed):
        number = jnp.asarray(state.step, jnp.int32) + 1
        state, values = step_fn(state, resident, feed)
        finite = {k: jnp.all(jnp.isfinite(v)) for k, v in values.items()}
        first = (acc["first_bad"] < 0) & ~jnp.all(jnp.stack(list(finite.values())))
        return state, {
            "sum": {k: acc["sum"][k] + jnp.mean(v).astype(jnp.float32) for k, v in values.items()},
            "count": acc["count"] + 1,
            "first_bad": jnp.where(first, number, acc["first_bad"]),
            "bad": {k: jnp.where(first, ~finite[k], acc["bad"][k]) for k in values},
        }

    return step


def _fetch_metrics(acc: dict[str, Any]) -> dict[str, float]:
    """The accumulated metrics' means on the host (one small transfer); raises
    :class:`NonFiniteError` naming the first step whose metrics were not all finite."""
    values = jax.device_get(acc)
    if int(values["first_bad"]) >= 0:
        bad = sorted(k for k, v in values["bad"].items() if v)
        raise NonFiniteError(f"{', '.join(bad)} not finite at step {int(values['first_bad'])}.")
    count = max(int(values["count"]), 1)
    return {k: float(v) / count for k, v in values["sum"].items()}


def _after_divergence(manager) -> str:
    latest = manager.latest_step()
    saved = (
        f"its latest checkpoint, step {latest}, is the last good state"
        if latest is not None
        else "no checkpoint had been written yet"
    )
    return (
        f"Stopped without saving this or any later step: {saved}. Lower config.optim.lr (or "
        "check the data), then rerun with the same workdir to resume, or a new one to start over."
    )


def _selection_key(task: Task) -> str | None:
    return f"{task.eval_splits[0]}_{task.selection_metric}" if task.selection_metric else None


def _checkpoint_metrics(task: Task, val: dict[str, float] | None) -> dict[str, float] | None:
    key = _selection_key(task)
    if val is None or key is None or task.selection_metric not in val:
        return None
    return {key: float(val[task.selection_metric])}


def _evaluate(task: Task, state: State, split: str, step: int, writer) -> dict[str, float]:
    values = task.evaluate(state, split)
    writer.write_scalars(step, _prefixed(split, values))
    metrics.console(step, task.num_train_steps, _prefixed(split, values))
    if task.summaries is not None:
        writer.write_images(step, task.summaries(state))
    writer.flush()
    return values


def _final_evaluation(task, state, manager, writer, step, shapes, state_sharding) -> dict:
    final = {split: _evaluate(task, state, split, step, writer) for split in task.eval_splits}
    checkpoint.save(manager, step, state, _checkpoint_metrics(task, final.get(task.eval_splits[0])))
    manager.wait_until_finished()
    results: dict[str, Any] = {"final": {"step": step, **final}}
    key = _selection_key(task)
    best = checkpoint.best_step(manager, key) if key else None
    if best is not None:
        if best == step:
            best_state = state
        else:
            best_state = checkpoint.restore(
                manager, best, checkpoint.abstract_like(shapes, state_sharding)
            )
        results["best"] = {
            "step": best,
            "selected_by": key,
            **{split: task.evaluate(best_state, split) for split in task.eval_splits},
        }
    return results
