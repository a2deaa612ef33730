"""Robustness of trained classifiers: input corruptions, test-time λ, an adaptive λ rule, PGD.

SDNet's second claim is that a network of convolutional-sparse-coding layers becomes much more
robust to noise and to adversarial perturbations when its sparsity weight λ is raised at test time,
without retraining. This module measures it on a checkpoint written by
:func:`sdnet_jax.train.classifier.train_and_evaluate` (ResNet baselines too, where λ does nothing).

Design. Everything that touches the model is a pure function of ``(params, model_state, batch,
scalars)`` jitted once per evaluated model by :class:`Evaluator`; the corruption (an index into
the configured list, dispatched with ``lax.switch``), its severity, λ, ε and the PGD step size are
traced arguments, so a whole sweep compiles four programs: the corruption/λ cells, the adaptive
rule, and one PGD program per norm. Batches are sharded over the data mesh exactly like
training's (global-view ``jax.jit``, :func:`sdnet_jax.runtime.parallel.shard_batch`); each call
returns masked sums (correct, loss, statistics) that the host adds up.

Pixel space. The input pipeline yields normalised images ``(x − mean) / std``. Corruptions and
attacks act on ``[0, 1]`` pixels: the image is un-normalised (``x·std + mean``), corrupted or
perturbed, clipped to ``[0, 1]`` and re-normalised before the model sees it. PGD's ε is therefore an
ε in ``[0, 1]`` pixel space (``8/255`` means 8 grey levels), and its gradient is taken w.r.t. the
pixels, i.e. through the normalisation (the normalised-space gradient divided by ``std``).

Cells. A *cell* is ``('clean', 0)`` or ``(corruption, severity)``. The noise of a cell is drawn from
a key that depends only on the seed, the corruption and the batch index, so every λ (and the
adaptive rule) sees the very same corrupted images (common random numbers), and the severities of
one corruption share their random numbers too (see :mod:`sdnet_jax.data.corruptions`).

λ. ``lam_scope='stem'`` overrides λ of the stem's CSC layer only (``stem_lam``), ``'all'`` of every
CSC layer (``lam``). The *default* λ is the trained one (``config.model.csc.lam``). The sparsity and
reconstruction statistics are those of the stem's CSC layer (``stem_csc``), per example and then
averaged over examples: ``recon_error = ‖x − A z‖²`` (summed over pixels, normalised input space),
``l1 = ‖z‖₁`` and ``nonzero_fraction`` (the fraction of non-zero code entries).

Adaptive λ (SDNet). Noisier inputs are reconstructed worse at the trained λ and want a larger λ.
The rule is ``λ(x) = clip(a·e(x) + b, min(lams), max(lams))`` where ``e(x)`` is the stem's
reconstruction error of ``x`` at the default λ; it is applied **per input** at test time (λ is
broadcast per example through the solver). ``(a, b)`` are fitted by least squares on the
**validation split only** — :func:`fit_adaptive_rule` accepts only a :class:`Sweep` of the
validation split and records that split in the rule — over *cells*: for each cell (clean and every
corruption × severity), x = the cell's mean reconstruction error at the default λ and y = the grid λ
with the best validation accuracy in that cell (ties broken by the lower mean loss). Per-cell
targets are used rather than per-example ones because per example almost every λ classifies equally
(correctly or not), so a per-example argmax is mostly ties. With a single distinct x (one cell) the
rule is the constant best λ (``a = 0``). Beside it the report gives, per test cell, the accuracy at
the default λ and at the best *fixed* grid λ (the best mean validation accuracy over the cells).

PGD. White-box projected gradient ascent on the summed cross-entropy, through the whole network
including the unrolled sparse-coding solver (``jax.grad`` w.r.t. the input), ℓ∞ (signed steps) or
ℓ2 (normalised steps), step ``step_size · ε``, optional random start (ℓ∞: uniform in the box; ℓ2:
a random direction at radius ``ε·U[0, 1]``), each step projected onto the ε-ball and then onto the
valid pixel range ``[0, 1]``. The attack is run separately at every evaluated λ (the attacker knows
the λ in use). Batch norm runs on its running statistics, so examples are attacked independently.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import math
import os
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
from absl import logging

from sdnet_jax import checks
from sdnet_jax.data import corruptions as corruptions_lib
from sdnet_jax.data import input_pipeline
from sdnet_jax.models.csc import CSCConv
from sdnet_jax.runs import TrainState, data_source, load_classifier
from sdnet_jax.runtime import parallel

__all__ = [
    "CLEAN",
    "NORMS",
    "SCOPES",
    "AdaptiveRule",
    "Cell",
    "Evaluator",
    "SplitBatches",
    "Sweep",
    "default_config",
    "default_eval_config",
    "evaluate_checkpoint",
    "fit_adaptive_rule",
    "run_adaptive",
    "run_pgd",
    "run_sweep",
    "validate_eval_config",
    "write_plots",
    "write_report",
]

CLEAN = "clean"
SCOPES = ("stem", "all")
NORMS = ("linf", "l2")
STATS = ("recon_error", "l1", "nonzero_fraction")
STEM = "stem_csc"
_PGD_TAG = 7919  # keeps the PGD random starts apart from the corruption noise
_CACHE_BYTES = 2**31  # host-side cache of a split's batches up to this size

Cell = tuple[str, int]
"""``(corruption, severity)``, or ``('clean', 0)``."""
Batch = dict[str, np.ndarray]


# ----------------------------------------------------------------------------- config


def default_eval_config() -> ml_collections.ConfigDict:
    """The evaluation options (``config.eval`` of the entrypoint), with their defaults."""
    e = ml_collections.ConfigDict()
    e.corruptions = tuple(corruptions_lib.CORRUPTIONS)  # names in sdnet_jax.data.corruptions
    e.severities = (1, 2, 3, 4, 5)
    e.table = "cifar10"  # corruption parameters: 'cifar10' (CIFAR-10-C) or 'imagenet'
    e.lams = (0.0, 0.05, 0.1, 0.2, 0.3, 0.5, 1.0)  # test-time λ grid (CSC models); () = no sweep
    e.lam_scope = "stem"  # 'stem': the stem's CSC layer only; 'all': every CSC layer
    e.adaptive = True  # fit the adaptive λ rule on validation, report it on test
    e.pgd_norms = ("linf", "l2")  # () = no attack
    e.pgd_linf_epsilons = (0.0, 1 / 255, 2 / 255, 4 / 255, 8 / 255)  # in [0, 1] pixel units
    e.pgd_l2_epsilons = (0.0, 0.125, 0.25, 0.5, 1.0)  # in [0, 1] pixel units
    e.pgd_steps = 10
    e.pgd_step_size = 0.25  # per step, as a fraction of ε
    e.pgd_random_start = True
    e.pgd_lams = (0.3,)  # attacked besides the default (trained) λ; CSC models only
    e.batch_size = 250  # global batch size
    e.max_examples = 0  # per split (test, validation); 0 = all
    e.pgd_max_examples = 0  # test examples attacked; 0 = as max_examples
    e.checkpoint = "best"  # 'best' (validation), 'latest' or a step number
    e.data_dir = ""  # overrides the run's config.data.data_dir when set
    e.output_dir = ""  # '' = <workdir>/robustness
    e.seed = 0
    e.plots = True
    return e


def default_config() -> ml_collections.ConfigDict:
    """The entrypoint's config: ``{'eval': default_eval_config()}``."""
    config = ml_collections.ConfigDict()
    config.eval = default_eval_config()
    return config


def _check_numbers(e: Any, name: str, *, allow_empty: bool = True) -> None:
    values = e[name]
    where = f"config.eval.{name}"
    checks.require(
        isinstance(values, list | tuple), f"{where} must be a tuple of numbers, got {values!r}."
    )
    checks.require(allow_empty or len(values) > 0, f"{where} must not be empty.")
    checks.require(
        all(checks.is_number(v) and v >= 0 for v in values),
        f"{where} must hold finite numbers >= 0, got {tuple(values)!r}.",
    )


def validate_eval_config(e: Any) -> None:
    """Raises a ``ValueError`` naming the first bad field of ``config.eval``; compiles nothing."""
    unknown = sorted(set(e.keys()) - set(default_eval_config().keys()))
    checks.require(not unknown, f"config.eval has unknown field(s) {unknown}.")
    names = e.corruptions
    checks.require(
        isinstance(names, list | tuple) and all(n in corruptions_lib.CORRUPTIONS for n in names),
        f"config.eval.corruptions must be names among {list(corruptions_lib.CORRUPTIONS)}, "
        f"got {names!r}.",
    )
    checks.require(len(set(names)) == len(names), "config.eval.corruptions has duplicates.")
    severities = e.severities
    checks.require(
        isinstance(severities, list | tuple)
        and all(checks.is_int(s) and 1 <= s <= corruptions_lib.NUM_SEVERITIES for s in severities),
        f"config.eval.severities must be integers in 1..{corruptions_lib.NUM_SEVERITIES}, "
        f"got {severities!r}.",
    )
    checks.require(
        e.table in corruptions_lib.TABLES,
        f"config.eval.table must be one of {corruptions_lib.TABLES}, got {e.table!r}.",
    )
    _check_numbers(e, "lams")
    checks.require(e.lam_scope in SCOPES, f"config.eval.lam_scope must be one of {SCOPES}.")
    checks.require(isinstance(e.adaptive, bool), "config.eval.adaptive must be a bool.")
    checks.require(
        not e.adaptive or len(set(e.lams)) >= 2,
        "config.eval.adaptive needs at least 2 distinct values in config.eval.lams (or set it "
        "False).",
    )
    norms = e.pgd_norms
    checks.require(
        isinstance(norms, list | tuple) and all(n in NORMS for n in norms),
        f"config.eval.pgd_norms must be names among {NORMS}, got {norms!r}.",
    )
    for norm in norms:
        _check_numbers(e, f"pgd_{norm}_epsilons", allow_empty=False)
    checks.require(
        checks.is_int(e.pgd_steps) and e.pgd_steps >= 1,
        f"config.eval.pgd_steps must be an integer >= 1, got {e.pgd_steps!r}.",
    )
    checks.require(
        checks.is_number(e.pgd_step_size) and e.pgd_step_size > 0,
        f"config.eval.pgd_step_size must be > 0 (a fraction of ε), got {e.pgd_step_size!r}.",
    )
    checks.require(
        isinstance(e.pgd_random_start, bool), "config.eval.pgd_random_start must be a bool."
    )
    _check_numbers(e, "pgd_lams")
    checks.require(
        checks.is_int(e.batch_size) and e.batch_size > 0,
        f"config.eval.batch_size must be a positive integer, got {e.batch_size!r}.",
    )
    parallel.check_batch_size(e.batch_size, "config.eval.batch_size")
    for name in ("max_examples", "pgd_max_examples"):
        checks.require(
            checks.is_int(e[name]) and e[name] >= 0,
            f"config.eval.{name} must be an integer >= 0 (0 = all), got {e[name]!r}.",
        )
    which = str(e.checkpoint)
    checks.require(
        which in ("best", "latest") or which.isdigit(),
        f"config.eval.checkpoint must be 'best', 'latest' or a step number, got {which!r}.",
    )
    checks.require(checks.is_int(e.seed), f"config.eval.seed must be an integer, got {e.seed!r}.")
    checks.require(isinstance(e.plots, bool), "config.eval.plots must be a bool.")


# ----------------------------------------------------------------------------- pure functions


def to_pixels(images: jax.Array, mean: Any, std: Any) -> jax.Array:
    """Normalised images -> ``[0, 1]`` pixels (``x·std + mean``)."""
    return images * std + mean


def to_normalised(pixels: jax.Array, mean: Any, std: Any) -> jax.Array:
    """``[0, 1]`` pixels -> the model's normalised input (``(x − mean) / std``)."""
    return (pixels - mean) / std


def corrupt_normalised(
    images: jax.Array,
    key: jax.Array,
    severity: int | jax.Array,
    *,
    name: str,
    mean: Any,
    std: Any,
    table: str,
) -> jax.Array:
    """Corrupts normalised images: un-normalise, corrupt in ``[0, 1]`` (clipped), re-normalise."""
    pixels = jnp.clip(to_pixels(images, mean, std), 0.0, 1.0)
    noisy = corruptions_lib.corrupt(pixels, key, name, severity, table=table)
    return to_normalised(noisy, mean, std)


def _lam_kwargs(lam: Any, scope: str) -> dict[str, Any]:
    return {"stem_lam": lam} if scope == "stem" else {"lam": lam}


def _is_stem(module: nn.Module, method_name: str) -> bool:
    return module.name == STEM and method_name == "__call__"


def forward(
    model: nn.Module, variables: Any, images: jax.Array, lam: Any, scope: str
) -> tuple[jax.Array, dict[str, jax.Array]]:
    """Logits and the stem CSC layer's per-example statistics (empty without a CSC stem).

    ``lam`` (a scalar, or ``(N, 1, 1, 1)`` for a per-example λ) replaces λ of the stem's CSC layer
    (``scope='stem'``) or of every CSC layer (``scope='all'``).
    """
    logits, collections = model.apply(
        variables,
        images,
        train=False,
        mutable=["csc_stats", "intermediates"],
        capture_intermediates=_is_stem,
        **_lam_kwargs(lam, scope),
    )
    stats = collections.get("csc_stats", {})
    if STEM not in stats:
        return logits, {}
    codes = collections["intermediates"][STEM]["__call__"][0]
    return logits, {
        "recon_error": stats[STEM]["recon_error"][0],
        "l1": stats[STEM]["l1"][0],
        "nonzero_fraction": jnp.mean((codes != 0).astype(jnp.float32), axis=(1, 2, 3)),
    }


def masked_sums(
    logits: jax.Array, batch: dict[str, jax.Array], stats: dict[str, jax.Array]
) -> dict[str, jax.Array]:
    """Masked totals of a batch: ``count``, ``correct``, ``loss`` and every statistic."""
    mask = batch["mask"]
    correct = (jnp.argmax(logits, -1) == batch["label"]) * mask
    loss = optax.softmax_cross_entropy_with_integer_labels(logits, batch["label"]) * mask
    sums = {"count": jnp.sum(mask), "correct": jnp.sum(correct), "loss": jnp.sum(loss)}
    for name, value in stats.items():
        sums[name] = jnp.sum(value * mask)
    return sums


def pgd_direction(grad: jax.Array, norm: str) -> jax.Array:
    """The steepest-ascent direction of unit ``norm`` per example."""
    if norm == "linf":
        return jnp.sign(grad)
    length = jnp.sqrt(jnp.sum(jnp.square(grad), axis=(1, 2, 3), keepdims=True))
    return grad / jnp.maximum(length, 1e-12)


def pgd_project(delta: jax.Array, pixels: jax.Array, eps: jax.Array, norm: str) -> jax.Array:
    """Projects a perturbation onto the ε-ball of ``norm``, then onto ``pixels + delta ∈ [0, 1]``.

    The box clip only shrinks entries towards zero, so the result stays in the ball.
    """
    if norm == "linf":
        delta = jnp.clip(delta, -eps, eps)
    else:
        length = jnp.sqrt(jnp.sum(jnp.square(delta), axis=(1, 2, 3), keepdims=True))
        delta = delta * jnp.minimum(1.0, eps / jnp.maximum(length, 1e-12))
    return jnp.clip(pixels + delta, 0.0, 1.0) - pixels


def pgd_random_start(key: jax.Array, shape: Sequence[int], eps: jax.Array, norm: str) -> jax.Array:
    """A random point of the ε-ball: uniform in the ℓ∞ box; ℓ2: random direction, radius ε·U."""
    if norm == "linf":
        return jax.random.uniform(key, shape, minval=-1.0, maxval=1.0) * eps
    k_dir, k_rad = jax.random.split(key)
    direction = pgd_direction(jax.random.normal(k_dir, shape), "l2")
    return direction * eps * jax.random.uniform(k_rad, (shape[0], 1, 1, 1))


# ----------------------------------------------------------------------------- the jitted model


class Evaluator:
    """The jitted evaluation programs of one trained model.

    Args:
      model: the classifier (``load_classifier``'s).
      info: its data set's info (``mean``/``std`` map between pixels and the model's input).
      corruption_names: the corruptions cells may use (indices 1.. in that order).
      table: the corruption parameters, ``'cifar10'`` or ``'imagenet'``.
      scope: ``'stem'`` or ``'all'``: which CSC layers λ replaces.
      default_lam: the trained λ (the adaptive rule reads the recon error at it).
      seed: seeds the corruption noise and the PGD random starts.
      pgd_steps: PGD iterations.
      random_start: start PGD at a random point of the ε-ball.

    Attributes:
      cell_sums: ``(params, model_state, batch, batch_index, corruption_index, severity, lam)``
        -> masked sums of the batch corrupted as the cell says (index 0 = clean, ``i`` = the
        ``i``-th of ``corruption_names``) and classified at λ.
      adaptive_sums: ``(..., severity, rule)`` with ``rule = [a, b, lam_min, lam_max]``: the same
        with a per-example λ from the adaptive rule (also sums the λ used, ``lam``).
      pgd_sums: ``(params, model_state, batch, batch_index, lam, eps, step_size, norm=...)`` ->
        masked sums on the PGD adversarial examples of the clean batch.
    """

    def __init__(
        self,
        model: nn.Module,
        info: input_pipeline.DatasetInfo,
        *,
        corruption_names: Sequence[str],
        table: str,
        scope: str,
        default_lam: float,
        seed: int,
        pgd_steps: int,
        random_start: bool,
    ) -> None:
        self.model = model
        self.corruption_names = tuple(corruption_names)
        self.scope = scope
        self.default_lam = float(default_lam)
        mean = np.asarray(info.mean, np.float32)
        std = np.asarray(info.std, np.float32)
        base_key = jax.random.key(seed)

        def prepare(
            images: jax.Array, batch_index: Any, corruption_index: Any, severity: Any
        ) -> jax.Array:
            """The cell's (normalised) images; the clean branch returns them unchanged."""
            key = jax.random.fold_in(jax.random.fold_in(base_key, corruption_index), batch_index)
            branches = [lambda x, k, s: x] + [
                functools.partial(corrupt_normalised, name=n, mean=mean, std=std, table=table)
                for n in self.corruption_names
            ]
            return jax.lax.switch(corruption_index, branches, images, key, severity)

        def cell_sums(
            params: Any,
            model_state: Any,
            batch: dict[str, jax.Array],
            batch_index: Any,
            corruption_index: Any,
            severity: Any,
            lam: Any,
        ) -> dict[str, jax.Array]:
            variables = {"params": params, **model_state}
            images = prepare(batch["image"], batch_index, corruption_index, severity)
            logits, stats = forward(model, variables, images, lam, scope)
            return masked_sums(logits, batch, stats)

        def adaptive_sums(
            params: Any,
            model_state: Any,
            batch: dict[str, jax.Array],
            batch_index: Any,
            corruption_index: Any,
            severity: Any,
            rule: Any,
        ) -> dict[str, jax.Array]:
            variables = {"params": params, **model_state}
            images = prepare(batch["image"], batch_index, corruption_index, severity)
            _, stats = forward(model, variables, images, self.default_lam, scope)
            lam = jnp.clip(rule[0] * stats["recon_error"] + rule[1], rule[2], rule[3])
            logits, stats = forward(model, variables, images, lam[:, None, None, None], scope)
            sums = masked_sums(logits, batch, stats)
            sums["lam"] = jnp.sum(lam * batch["mask"])
            return sums

        def pgd_sums(
            params: Any,
            model_state: Any,
            batch: dict[str, jax.Array],
            batch_index: Any,
            lam: Any,
            eps: Any,
            step_size: Any,
            norm: str,
        ) -> dict[str, jax.Array]:
            variables = {"params": params, **model_state}
            pixels = to_pixels(batch["image"], mean, std)

            def loss_fn(x: jax.Array) -> jax.Array:
                logits = model.apply(
                    variables, to_normalised(x, mean, std), train=False, **_lam_kwargs(lam, scope)
                )
                return jnp.sum(
                    optax.softmax_cross_entropy_with_integer_labels(logits, batch["label"])
                    * batch["mask"]
                )

            delta = jnp.zeros_like(pixels)
            if random_start:
                key = jax.random.fold_in(jax.random.fold_in(base_key, _PGD_TAG), batch_index)
                delta = pgd_random_start(key, pixels.shape, eps, norm)
            delta = pgd_project(delta, pixels, eps, norm)

            def step(_: Any, delta: jax.Array) -> jax.Array:
                grad = jax.grad(loss_fn)(pixels + delta)
                return pgd_project(
                    delta + step_size * eps * pgd_direction(grad, norm), pixels, eps, norm
                )

            delta = jax.lax.fori_loop(0, pgd_steps, step, delta)
            adversarial = to_normalised(pixels + delta, mean, std)
            logits, stats = forward(model, variables, adversarial, lam, scope)
            return masked_sums(logits, batch, stats)

        self.cell_sums = jax.jit(cell_sums)
        self.adaptive_sums = jax.jit(adaptive_sums)
        self.pgd_sums = jax.jit(pgd_sums, static_argnames="norm")

    def corruption_index(self, cell: Cell) -> int:
        """0 for the clean cell, ``i + 1`` for the ``i``-th configured corruption."""
        return 0 if cell[0] == CLEAN else self.corruption_names.index(cell[0]) + 1


# ----------------------------------------------------------------------------- data and passes


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
        if num_batches * batch_bytes <= _CACHE_BYTES:
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


def _accumulate(outputs: list[dict[str, jax.Array]]) -> dict[str, float]:
    totals: dict[str, float] = {}
    for sums in jax.device_get(outputs):
        for k, v in sums.items():
            totals[k] = totals.get(k, 0.0) + float(v)
    return totals


def _metrics(totals: dict[str, float]) -> dict[str, float]:
    """Means over the counted examples: ``accuracy``, ``loss`` and every statistic."""
    count = max(totals["count"], 1.0)
    out = {"accuracy": totals["correct"] / count, "loss": totals["loss"] / count}
    for k, v in totals.items():
        if k not in ("count", "correct", "loss"):
            out[k] = v / count
    return out


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
    return _metrics(_accumulate(outputs))


def _log(message: str, *args: Any) -> None:
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
        _log(
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
        _log("adaptive λ  %s/%d  accuracy=%.3f", cell[0], cell[1], metrics["accuracy"])
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
                _log(
                    "PGD %s  λ=%s  ε=%.4g  accuracy=%.3f",
                    norm, "default" if lam is None else lam, eps, metrics["accuracy"],
                )  # fmt: skip
    return records


# ----------------------------------------------------------------------------- the job


def _default_lam(config: ml_collections.ConfigDict) -> float:
    return float(config.model.csc.get("lam", CSCConv.lam))


def evaluate_checkpoint(workdir: str, eval_config: ml_collections.ConfigDict) -> dict[str, Any]:
    """Evaluates the robustness of the classifier trained in ``workdir``; writes the report.

    Validates ``eval_config`` first (nothing is compiled before), restores the checkpoint, runs the
    corruption cells (every λ of the grid for CSC models), fits the adaptive rule on validation
    and reports it on test, attacks with PGD, then writes ``robustness.json`` and the plots
    (process 0) to ``eval_config.output_dir`` (default ``<workdir>/robustness``).

    Returns:
      The report (see :func:`write_report`).
    """
    validate_eval_config(eval_config)
    e = eval_config
    started = time.perf_counter()
    which = e.checkpoint if e.checkpoint in ("best", "latest") else int(e.checkpoint)
    data_dir = e.data_dir or None
    config, model, state, info = load_classifier(workdir, which=which, data_dir=data_dir)
    data_dir = config.data.data_dir or None
    mesh = parallel.data_mesh()
    has_csc = STEM in state.params
    default_lam = _default_lam(config) if has_csc else None
    evaluator = Evaluator(
        model,
        info,
        corruption_names=e.corruptions,
        table=e.table,
        scope=e.lam_scope,
        default_lam=default_lam or 0.0,
        seed=e.seed,
        pgd_steps=e.pgd_steps,
        random_start=e.pgd_random_start,
    )
    cells = cells_of(e.corruptions, e.severities)
    grid = sorted({float(v) for v in e.lams}) if has_csc else []
    test = SplitBatches(
        config, "test", batch_size=e.batch_size, max_examples=e.max_examples, data_dir=data_dir
    )
    _log(
        "robustness of %s (step %d) on %d test examples",
        workdir,
        int(state.step),
        test.num_examples,
    )

    report: dict[str, Any] = {
        "workdir": os.path.abspath(workdir),
        "checkpoint_step": int(jax.device_get(state.step)),
        "model": config.model.name,
        "dataset": config.data.name,
        "has_csc_layers": has_csc,
        "default_lam": default_lam,
        "lam_scope": e.lam_scope if has_csc else None,
        "num_test_examples": test.num_examples,
        "eval": e.to_dict(),
    }
    sweep = run_sweep(evaluator, state, test, cells, [None, *grid], mesh)
    report["corruption_accuracy"] = [r for r in sweep.records if r["lam"] is None]
    if has_csc and grid:
        report["lam_sweep"] = {"split": "test", "lams": grid, "records": list(sweep.records)}

    report["adaptive"] = None
    if has_csc and e.adaptive and len(grid) >= 2:
        if info.num_validation == 0:
            report["adaptive"] = {"skipped": "the run has no validation split"}
        else:
            validation = SplitBatches(
                config, "validation", batch_size=e.batch_size, max_examples=e.max_examples,
                data_dir=data_dir,
            )  # fmt: skip
            val_sweep = run_sweep(evaluator, state, validation, cells, [None, *grid], mesh)
            rule = fit_adaptive_rule(val_sweep, grid)
            report["adaptive"] = _adaptive_report(
                rule,
                val_sweep,
                sweep,
                run_adaptive(evaluator, state, test, cells, rule, mesh),
                grid,
            )

    report["pgd"] = None
    if e.pgd_norms:
        pgd_batches = test
        if e.pgd_max_examples and e.pgd_max_examples < test.num_examples:
            pgd_batches = SplitBatches(
                config, "test", batch_size=e.batch_size, max_examples=e.pgd_max_examples,
                data_dir=data_dir,
            )  # fmt: skip
        lams = [None, *sorted({float(v) for v in e.pgd_lams})] if has_csc else [None]
        epsilons = {norm: [float(v) for v in e[f"pgd_{norm}_epsilons"]] for norm in e.pgd_norms}
        report["pgd"] = {
            "steps": e.pgd_steps,
            "step_size": e.pgd_step_size,
            "random_start": e.pgd_random_start,
            "num_examples": pgd_batches.num_examples,
            "records": run_pgd(
                evaluator, state, pgd_batches, lams, epsilons, e.pgd_step_size, mesh
            ),
        }
    report["elapsed_s"] = time.perf_counter() - started
    if parallel.is_main_process():
        output_dir = e.output_dir or os.path.join(workdir, "robustness")
        write_report(report, output_dir)
        if e.plots:
            write_plots(report, output_dir)
        _log("wrote %s", output_dir)
    return report


def _adaptive_report(
    rule: AdaptiveRule, validation: Sweep, test: Sweep, records: list[dict[str, Any]], grid: list
) -> dict[str, Any]:
    """The rule, and its test accuracy per cell beside the default λ and the best fixed λ (the
    grid λ with the best mean validation accuracy over the cells)."""
    cells = [(r["corruption"], r["severity"]) for r in records]
    best_fixed = max(
        grid, key=lambda lam: np.mean([validation.get(c, lam)["accuracy"] for c in cells])
    )
    rows = []
    for r, cell in zip(records, cells, strict=True):
        rows.append(
            {
                **r,
                "default_lam_accuracy": test.get(cell, None)["accuracy"],
                "best_fixed_lam_accuracy": test.get(cell, best_fixed)["accuracy"],
            }
        )
    return {
        "rule": dataclasses.asdict(rule),
        "best_fixed_lam": best_fixed,
        "test": rows,
        "mean_test_accuracy": {
            "adaptive": float(np.mean([r["accuracy"] for r in rows])),
            "default_lam": float(np.mean([r["default_lam_accuracy"] for r in rows])),
            "best_fixed_lam": float(np.mean([r["best_fixed_lam_accuracy"] for r in rows])),
        },
    }


# ----------------------------------------------------------------------------- report


def write_report(report: dict[str, Any], output_dir: str) -> str:
    """Writes ``robustness.json`` into ``output_dir``; returns its path.

    Contents: the checkpoint (``workdir``, ``checkpoint_step``, ``model``, ``dataset``,
    ``has_csc_layers``, ``default_lam``, ``lam_scope``), ``eval`` (the options used),
    ``corruption_accuracy`` (per cell at the default λ: accuracy, loss and, for CSC models, the
    stem's recon_error / l1 / nonzero_fraction), ``lam_sweep`` (the same per cell and λ; CSC
    models), ``adaptive`` (the rule fitted on validation, its test accuracy per cell beside the
    default and the best fixed λ), ``pgd`` (accuracy per norm, ε and λ) and ``elapsed_s``. A ``lam``
    of ``null`` is the default (trained) λ; severity 0 is the clean cell.
    """
    os.makedirs(output_dir, exist_ok=True)
    path = os.path.join(output_dir, "robustness.json")
    with open(path, "w") as f:
        json.dump(report, f, indent=2)
    return path


def _label(lam: float | None) -> str:
    return "default λ" if lam is None else f"λ={lam:g}"


def write_plots(report: dict[str, Any], output_dir: str) -> list[str]:
    """PNG plots of a report (Agg backend): ``corruption_accuracy.png`` (accuracy vs severity per
    corruption), ``lam_sweep.png`` (accuracy, recon error and non-zero fraction vs λ per cell; CSC
    models) and ``pgd.png`` (accuracy vs ε per norm and λ). Returns the paths written."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    os.makedirs(output_dir, exist_ok=True)
    paths = []
    names = list(report["eval"]["corruptions"])
    colors = {n: plt.get_cmap("tab10")(i) for i, n in enumerate(names)}

    def save(fig: Any, name: str) -> None:
        path = os.path.join(output_dir, name)
        fig.tight_layout()
        fig.savefig(path, dpi=100)
        plt.close(fig)
        paths.append(path)

    fig, ax = plt.subplots(figsize=(6, 4))
    rows = report["corruption_accuracy"]
    clean = next(r["accuracy"] for r in rows if r["corruption"] == CLEAN)
    adaptive = (report.get("adaptive") or {}).get("test") or []
    for n in names:
        pts = [(0, clean)] + [(r["severity"], r["accuracy"]) for r in rows if r["corruption"] == n]
        ax.plot(*zip(*pts, strict=True), "o-", color=colors[n], label=n)
        pts = [(r["severity"], r["accuracy"]) for r in adaptive if r["corruption"] in (n, CLEAN)]
        if pts:
            ax.plot(*zip(*pts, strict=True), "x--", color=colors[n], label=f"{n} (adaptive λ)")
    ax.set(xlabel="severity (0 = clean)", ylabel="test accuracy", title=report["model"])
    ax.legend(fontsize=7)
    save(fig, "corruption_accuracy.png")

    if report.get("lam_sweep"):
        sweep = report["lam_sweep"]["records"]
        fig, axes = plt.subplots(1, 3, figsize=(15, 4))
        cells = list(dict.fromkeys((r["corruption"], r["severity"]) for r in sweep))
        max_severity = max([c[1] for c in cells] + [1])
        for cell in cells:
            pts = sorted(
                (r["lam"], r)
                for r in sweep
                if (r["corruption"], r["severity"]) == cell and r["lam"] is not None
            )
            lams = [p[0] for p in pts]
            style = (
                {"color": "black", "lw": 2}
                if cell[0] == CLEAN
                else {"color": colors[cell[0]], "alpha": 0.3 + 0.7 * cell[1] / max_severity}
            )
            label = CLEAN if cell[0] == CLEAN else f"{cell[0]} {cell[1]}"
            for ax, key in zip(axes, ("accuracy", "recon_error", "nonzero_fraction"), strict=True):
                ax.plot(lams, [p[1][key] for p in pts], "o-", label=label, **style)
        for ax, key in zip(
            axes, ("test accuracy", "stem ‖x − Az‖²", "stem non-zero fraction"), strict=True
        ):
            ax.axvline(report["default_lam"], color="grey", ls=":")
            ax.set(xlabel=f"λ ({report['lam_scope']})", ylabel=key)
        axes[0].legend(fontsize=6, ncol=2)
        save(fig, "lam_sweep.png")

    if report.get("pgd"):
        records = report["pgd"]["records"]
        norms = list(dict.fromkeys(r["norm"] for r in records))
        fig, axes = plt.subplots(1, len(norms), figsize=(5 * len(norms), 4), squeeze=False)
        for ax, norm in zip(axes[0], norms, strict=True):
            lams = list(dict.fromkeys(r["lam"] for r in records if r["norm"] == norm))
            for lam in lams:
                pts = [
                    (r["epsilon"], r["accuracy"])
                    for r in records
                    if (r["norm"], r["lam"]) == (norm, lam)
                ]
                ax.plot(*zip(*pts, strict=True), "o-", label=_label(lam))
            ax.set(xlabel=f"ε ({norm}, [0, 1] pixels)", ylabel="test accuracy", title=f"PGD {norm}")
            ax.legend(fontsize=7)
        save(fig, "pgd.png")
    return paths
