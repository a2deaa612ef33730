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

from sdnet_jax.evaluation.robustness import sdnet_noise
from sdnet_jax.evaluation.robustness.config import (
    CLEAN,
    NORMS,
    PROTOCOLS,
    SCOPES,
    Cell,
    default_config,
    default_eval_config,
    validate_eval_config,
)
from sdnet_jax.evaluation.robustness.job import evaluate_checkpoint
from sdnet_jax.evaluation.robustness.programs import (
    Evaluator,
    corrupt_normalised,
    forward,
    pgd_direction,
    pgd_project,
    pgd_random_start,
)
from sdnet_jax.evaluation.robustness.report import write_plots, write_report
from sdnet_jax.evaluation.robustness.restored import Restored, restore
from sdnet_jax.evaluation.robustness.sdnet_protocol import (
    evaluate_sdnet_protocol,
    oracle_rows,
    sdnet_cells,
    write_sdnet_plots,
)
from sdnet_jax.evaluation.robustness.sweeps import (
    AdaptiveRule,
    SplitBatches,
    Sweep,
    cells_of,
    fit_adaptive_rule,
    lam_label,
    run_adaptive,
    run_pgd,
    run_sweep,
)

__all__ = [
    "CLEAN",
    "NORMS",
    "PROTOCOLS",
    "SCOPES",
    "AdaptiveRule",
    "Cell",
    "Evaluator",
    "Restored",
    "SplitBatches",
    "Sweep",
    "cells_of",
    "corrupt_normalised",
    "default_config",
    "default_eval_config",
    "evaluate_checkpoint",
    "evaluate_sdnet_protocol",
    "fit_adaptive_rule",
    "forward",
    "lam_label",
    "oracle_rows",
    "pgd_direction",
    "pgd_project",
    "pgd_random_start",
    "restore",
    "run_adaptive",
    "run_pgd",
    "run_sweep",
    "sdnet_cells",
    "sdnet_noise",
    "validate_eval_config",
    "write_plots",
    "write_report",
    "write_sdnet_plots",
]
