"""Passes over a split: cached batches, the corruption × λ sweeps, the adaptive λ rule fitted on
validation, and PGD."""

from __future__ import annotations

import dataclasses
import math
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Any

import jax
import ml_collections
import numpy as np
from absl import logging

from sdnet_jax.data import input_pipeline
from sdnet_jax.evaluation import masked
from sdnet_jax.evaluation.robustness.config import CACHE_BYTES, CLEAN, Batch, Cell
from sdnet_jax.evaluation.robustness.programs import Evaluator
from sdnet_jax.runs import TrainState, data_source
from sdnet_jax.runtime import parallel


class SplitBatches:
    """A re-iterable over one split's masked, fixed-shape batches (this process's slices).

    At most ``max_examples`` examples (0: all) count: the masks of later ones are zeroed and batches
    past them are not read. Batches are cached on the host when the split is small enough.
    """

    def __init__(
        self,
        config: ml_collections.ConfigDict,
        split: str,
        *,
        batch_size: int,
        max_examples: int,
        data_dir: str | None,
    ) -> None:
        self.config, self.split = config, split
        self.batch_size, self.max_examples, self.data_dir = batch_size, max_examples, data_dir
        self.source = {**data_source(config.data), "data_dir": data_dir}
        info = input_pipeline.get_info(config.data.name, **self.source)
        total = info.num_test if split == "test" else info.num_validation
        self.num_examples = min(total, max_examples) if max_examples else total
        batch_bytes = 4 * batch_size * math.prod(info.image_shape)
        num_batches = math.ceil(self.num_examples / batch_size)
        self._cache: list[Batch] | None = None
        if num_batches * batch_bytes <= CACHE_BYTES:
            self._cache = list(self._read())

    def _read(self) -> Iterator[Batch]:
        batches = input_pipeline.eval_iterator(
            self.config.data.name, self.split, global_batch_size=self.batch_size, **self.source
        )
        per_process = self.batch_size // jax.process_count()
        offset = jax.process_index() * per_process + np.arange(per_process)
        for index, batch in enumerate(batches):
            start = index * self.batch_size
            if start >= self.num_examples:
                break
            batch["mask"] = batch["mask"] * (start + offset < self.num_examples)
            yield batch

    def __iter__(self) -> Iterator[Batch]:
        return iter(self._cache) if self._cache is not None else self._read()


def _one_pass(
    fn: Callable[..., dict[str, jax.Array]],
    state: TrainState,
    batches: Iterable[Batch],
    mesh: jax.sharding.Mesh,
    *args: Any,
    **kwargs: Any,
) -> dict[str, float]:
    outputs = [
        fn(
            state.params,
            state.model_state,
            parallel.shard_batch(b, mesh),
            np.int32(i),
            *args,
            **kwargs,
        )
        for i, b in enumerate(batches)
    ]
    return masked.means(masked.accumulate(outputs))


def log(message: str, *args: Any) -> None:
    if parallel.is_main_process():
        logging.info(message, *args)


def cells_of(corruption_names: Sequence[str], severities: Sequence[int]) -> list[Cell]:
    """The clean cell, then every (corruption, severity)."""
    return [(CLEAN, 0)] + [(n, int(s)) for n in corruption_names for s in severities]


@dataclasses.dataclass(frozen=True)
class Sweep:
    """Metrics of every (cell, λ) on one split.

    Attributes:
      split: ``'validation'`` or ``'test'``.
      lams: the λ values evaluated (the grid, plus the default λ).
      default_lam: the trained λ (``None`` for a model without CSC layers).
      num_examples: examples counted per cell.
      records: one dict per (cell, λ): ``corruption``, ``severity``, ``lam`` and the metrics.
    """

    split: str
    lams: tuple[float, ...]
    default_lam: float | None
    num_examples: int
    records: tuple[dict[str, Any], ...]

    def get(self, cell: Cell, lam: float | None) -> dict[str, Any]:
        for r in self.records:
            if (r["corruption"], r["severity"]) == tuple(cell) and r["lam"] == lam:
                return r
        raise KeyError((cell, lam))


def run_sweep(
    evaluator: Evaluator,
    state: TrainState,
    batches: SplitBatches,
    cells: Sequence[Cell],
    lams: Sequence[float | None],
    mesh: jax.sharding.Mesh,
) -> Sweep:
    """Evaluates every cell at every λ (``None``: the default λ, recorded as ``lam: None``)."""
    records = []
    total, done, start = len(cells) * len(lams), 0, time.perf_counter()
    for cell in cells:
        for lam in lams:
            value = evaluator.default_lam if lam is None else lam
            metrics = _one_pass(
                evaluator.cell_sums,
                state,
                batches,
                mesh,
                np.int32(evaluator.corruption_index(cell)),
                np.int32(cell[1]),
                np.float32(value),
            )
            records.append({"corruption": cell[0], "severity": cell[1], "lam": lam, **metrics})
            done += 1
        log(
            "%s sweep %d/%d  %s/%d  accuracy(λ)=%s  (%.0fs)",
            batches.split, done, total, cell[0], cell[1],
            [round(r["accuracy"], 3) for r in records[-len(lams):]],
            time.perf_counter() - start,
        )  # fmt: skip
    return Sweep(
        split=batches.split,
        lams=tuple(lams),
        default_lam=evaluator.default_lam,
        num_examples=batches.num_examples,
        records=tuple(records),
    )


# ----------------------------------------------------------------------------- adaptive λ


@dataclasses.dataclass(frozen=True)
class AdaptiveRule:
    """``λ(x) = clip(a·recon_error(x) + b, lam_min, lam_max)``, fitted on ``fitted_on``.

    ``points`` are the fitted cells: ``corruption``, ``severity``, ``recon_error`` (x) and
    ``best_lam`` (y), with ``best_accuracy``.
    """

    a: float
    b: float
    lam_min: float
    lam_max: float
    fitted_on: str
    num_examples: int
    points: tuple[dict[str, Any], ...]

    def __call__(self, recon_error: np.ndarray | float) -> np.ndarray:
        return np.clip(self.a * np.asarray(recon_error) + self.b, self.lam_min, self.lam_max)

    def as_array(self) -> np.ndarray:
        return np.asarray([self.a, self.b, self.lam_min, self.lam_max], np.float32)


def fit_adaptive_rule(validation: Sweep, grid: Sequence[float]) -> AdaptiveRule:
    """Least-squares fit of ``best λ ≈ a·recon_error + b`` over the cells of a validation sweep,
    clipped to the range of the cells' best λs.

    Args:
      validation: a :class:`Sweep` of the **validation** split holding, for every cell, the
        default λ (``lam=None``) and every λ of ``grid``.
      grid: the candidate λ values.

    Raises:
      ValueError: for a sweep of any other split (the rule must never see test data).
    """
    if validation.split != "validation":
        raise ValueError(
            f"the adaptive λ rule is fitted on the validation split only; got a sweep of the "
            f"{validation.split!r} split."
        )
    grid = sorted(float(v) for v in grid)
    cells = list(dict.fromkeys((r["corruption"], r["severity"]) for r in validation.records))
    points = []
    for cell in cells:
        candidates = [validation.get(cell, lam) for lam in grid]
        best = max(candidates, key=lambda r: (r["accuracy"], -r["loss"], -r["lam"]))
        points.append(
            {
                "corruption": cell[0],
                "severity": cell[1],
                "recon_error": validation.get(cell, None)["recon_error"],
                "best_lam": best["lam"],
                "best_accuracy": best["accuracy"],
            }
        )
    x = np.asarray([p["recon_error"] for p in points], np.float64)
    y = np.asarray([p["best_lam"] for p in points], np.float64)
    if len(x) < 2 or np.ptp(x) <= 1e-12 * max(1.0, np.abs(x).max()):
        a, b = 0.0, float(np.mean(y))  # one distinct x: the best constant λ
    else:
        (a, b), *_ = np.linalg.lstsq(np.stack([x, np.ones_like(x)], 1), y, rcond=None)
    # Clip to the λs that were best on validation: the line is fitted on cell means but applied
    # per input, whose errors spread far wider, so an unclipped line extrapolates (on Fashion-MNIST
    # it sent λ to 0.4 where every fitted cell preferred λ <= 0.1).
    return AdaptiveRule(
        a=float(a),
        b=float(b),
        lam_min=float(y.min()),
        lam_max=float(y.max()),
        fitted_on=validation.split,
        num_examples=validation.num_examples,
        points=tuple(points),
    )


def run_adaptive(
    evaluator: Evaluator,
    state: TrainState,
    batches: SplitBatches,
    cells: Sequence[Cell],
    rule: AdaptiveRule,
    mesh: jax.sharding.Mesh,
) -> list[dict[str, Any]]:
    """Accuracy (and the mean λ used) of the per-input adaptive λ in every cell."""
    records = []
    for cell in cells:
        metrics = _one_pass(
            evaluator.adaptive_sums,
            state,
            batches,
            mesh,
            np.int32(evaluator.corruption_index(cell)),
            np.int32(cell[1]),
            rule.as_array(),
        )
        metrics["mean_lam"] = metrics.pop("lam")
        records.append({"corruption": cell[0], "severity": cell[1], **metrics})
        log("adaptive λ  %s/%d  accuracy=%.3f", cell[0], cell[1], metrics["accuracy"])
    return records


# ----------------------------------------------------------------------------- PGD


def run_pgd(
    evaluator: Evaluator,
    state: TrainState,
    batches: Iterable[Batch],
    lams: Sequence[float | None],
    epsilons: dict[str, Sequence[float]],
    step_size: float,
    mesh: jax.sharding.Mesh,
) -> list[dict[str, Any]]:
    """Accuracy under PGD for every norm (key of ``epsilons``), ε and λ (``None``: default)."""
    records = []
    for norm, eps_values in epsilons.items():
        for lam in lams:
            value = evaluator.default_lam if lam is None else lam
            for eps in eps_values:
                metrics = _one_pass(
                    evaluator.pgd_sums,
                    state,
                    batches,
                    mesh,
                    np.float32(value),
                    np.float32(eps),
                    np.float32(step_size),
                    norm=norm,
                )
                records.append({"norm": norm, "epsilon": float(eps), "lam": lam, **metrics})
                log(
                    "PGD %s  λ=%s  ε=%.4g  accuracy=%.3f",
                    norm, "default" if lam is None else lam, eps, metrics["accuracy"],
                )  # fmt: skip
    return records
