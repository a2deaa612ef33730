"""SDNet's robust-inference protocol (its ``robust_inference.py``), on this package's machinery.

What SDNet's script does (read from its code): for every noise family and level of its own table
(:mod:`.sdnet_noise`: noise on 0–255 images, clipped, truncated to uint8, then normalised), it
sets the stem's λ to each of ``0.1, 0.2, …, 1.4`` (the applied threshold is λ·step), evaluates
the test set with the batch norms' running statistics, and records the accuracy and the stem's
reconstruction error. It then picks, per level, the λ with the best accuracy — **with the test
labels** — and fits a line ``λ = a·r + b`` through (reconstruction error, best λ).

What is run here (``python -m sdnet_jax.evaluate --workdir=W --config.eval.protocol=sdnet``):

* ``records``: accuracy, loss and the stem's statistics for every (noise, level, λ) on test, λ the
  default (trained) one and every λ of ``config.eval.sdnet_lams``, plus the clean cell (level 0);
  the reconstruction error is computed **per (λ, level)**. SDNet's ``r_loss`` list is never
  cleared between λs or levels, so the error it records for a (λ, level) is a running mean over
  every earlier λ and level; its unit is the same as here, ``‖x − A z‖²`` summed over pixels per
  example in the normalised input space (``r_loss = Σ r² / batch``).
* ``oracle``: the best grid λ per (noise, level), chosen with the **test labels** as SDNet does
  (``np.argmax``: the lowest λ among ties), labelled as an oracle: it is not a method.
* ``line``: SDNet's line fitted on the **validation** split instead and applied **per input** on
  test: the adaptive rule of :func:`~sdnet_jax.evaluation.robustness.fit_adaptive_rule` (x = a
  cell's mean reconstruction error at the trained λ, which a test input has before any λ is
  chosen; y = the cell's best λ on validation; clipped to the best λs' range). SDNet's own x, the
  error at the best λ, is recorded beside each fitted point (``recon_error_at_best_lam``) but
  cannot be used per input: it depends on the λ being chosen.
* ``bn_recalibration_examples > 0`` (a control, not SDNet's protocol): before each (cell, λ) the
  batch-norm statistics are re-estimated on that many unlabelled validation images corrupted as
  the cell says — of every batch norm, or with ``bn_recalibration_scope='stem'`` of the stem's
  only; the line is then skipped (a per-input λ has no one set of statistics).
* A model without CSC layers (ResNet) gets the same noise table without a λ sweep.

Output (``<workdir>/robustness`` unless ``config.eval.output_dir``): ``sdnet_protocol.json`` and,
for CSC models, ``sdnet_<noise>.png`` in SDNet's form (accuracy against λ, one curve per level;
the stem's reconstruction error beside it), ``sdnet_line.png`` (the fitted points and line), and
``sdnet_summary.png`` (accuracy against level per noise: trained λ, oracle, line; the only plot
of a ResNet).
"""

from __future__ import annotations

import dataclasses
import os
import time
from typing import Any

import numpy as np

from sdnet_jax.evaluation.robustness import sdnet_noise
from sdnet_jax.evaluation.robustness.config import CLEAN, Cell
from sdnet_jax.evaluation.robustness.report import figure_writer, write_report
from sdnet_jax.evaluation.robustness.restored import report_header, restore
from sdnet_jax.evaluation.robustness.sweeps import (
    AdaptiveRule,
    Sweep,
    fit_adaptive_rule,
    log,
    run_adaptive,
    run_sweep,
)
from sdnet_jax.runtime import parallel

REPORT = "sdnet_protocol.json"
ORACLE_LABEL = "oracle: the best λ per (noise, level) chosen with the TEST labels (SDNet's choice)"
RECALIBRATED_ADAPTIVE = (
    "batch-norm statistics re-estimated per (cell, λ): a per-input λ has no one set of statistics"
)


def sdnet_cells(noises: Any) -> list[Cell]:
    """The clean cell, then every (noise, level) of SDNet's table."""
    return [(CLEAN, 0)] + [(n, c) for n in noises for c in sdnet_noise.LEVELS[n]]


def _rows(records: Any) -> list[dict[str, Any]]:
    """Sweep records in SDNet's vocabulary: ``noise`` and ``level`` (0 = clean)."""
    rows = []
    for r in records:
        row = {k: v for k, v in r.items() if k not in ("corruption", "severity")}
        rows.append({"noise": r["corruption"], "level": r["severity"], **row})
    return rows


def oracle_rows(test: Sweep, grid: list[float]) -> list[dict[str, Any]]:
    """Per cell, the grid λ of the best **test** accuracy (the first maximum, as ``np.argmax``)."""
    cells = list(dict.fromkeys((r["corruption"], r["severity"]) for r in test.records))
    rows = []
    for cell in cells:
        candidates = [test.get(cell, lam) for lam in grid]
        best = candidates[int(np.argmax([c["accuracy"] for c in candidates]))]
        default = test.get(cell, None)
        rows.append(
            {
                "noise": cell[0],
                "level": cell[1],
                "best_lam": best["lam"],
                "accuracy": best["accuracy"],
                "default_lam_accuracy": default["accuracy"],
                "recon_error_at_best_lam": best.get("recon_error"),
                "recon_error_at_default_lam": default.get("recon_error"),
            }
        )
    return rows


def _line_report(
    rule: AdaptiveRule, validation: Sweep, oracle: list[dict[str, Any]], adaptive: list[dict]
) -> dict[str, Any]:
    points = [
        {**p, "recon_error_at_best_lam": validation.get(
            (p["corruption"], p["severity"]), p["best_lam"])["recon_error"]}
        for p in rule.points
    ]  # fmt: skip
    by_cell = {(o["noise"], o["level"]): o for o in oracle}
    rows = []
    for r in adaptive:
        o = by_cell[r["corruption"], r["severity"]]
        rows.append(
            {
                "noise": r["corruption"],
                "level": r["severity"],
                "accuracy": r["accuracy"],
                "mean_lam": r["mean_lam"],
                "default_lam_accuracy": o["default_lam_accuracy"],
                "oracle_accuracy": o["accuracy"],
            }
        )
    mean = lambda key: float(np.mean([row[key] for row in rows]))
    return {
        "rule": {**dataclasses.asdict(rule), "points": points},
        "test": rows,
        "mean_test_accuracy": {
            "line": mean("accuracy"),
            "default_lam": mean("default_lam_accuracy"),
            "oracle": mean("oracle_accuracy"),
        },
    }


def evaluate_sdnet_protocol(workdir: str, e: Any) -> dict[str, Any]:
    """Runs SDNet's protocol on the classifier in ``workdir`` (module docstring); writes
    ``sdnet_protocol.json`` and the plots; returns the report. ``e`` is a validated
    ``config.eval``."""
    started = time.perf_counter()
    noises = tuple(e.sdnet_noises)
    restored = restore(workdir, e, corruption_names=noises, table="sdnet")
    evaluator, state, mesh = restored.evaluator, restored.state, restored.mesh
    cells = sdnet_cells(noises)
    grid = sorted({float(v) for v in e.sdnet_lams}) if restored.has_csc else []
    recalibration = restored.recalibration_batch(e)
    log(
        "SDNet's protocol on %s (step %d): %d cells x %d λs on %d test examples",
        workdir, int(state.step), len(cells), len(grid) + 1, restored.test.num_examples,
    )  # fmt: skip
    report = report_header(workdir, e, restored)
    report.update(
        {
            "protocol": "sdnet",
            "noise_levels": {n: list(sdnet_noise.LEVELS[n]) for n in noises},
            "lams": grid,
            "bn_recalibration": (
                {
                    "examples": e.bn_recalibration_examples,
                    "split": "validation",
                    "scope": e.bn_recalibration_scope,
                }
                if recalibration is not None
                else None
            ),
        }
    )
    test = run_sweep(
        evaluator,
        state,
        restored.test,
        cells,
        [None, *grid],
        mesh,
        recalibration,
        e.bn_recalibration_scope,
    )
    report["records"] = _rows(test.records)
    report["oracle"] = None
    report["line"] = None
    if grid:
        oracle = oracle_rows(test, grid)
        report["oracle"] = {"label": ORACLE_LABEL, "rows": oracle}
        if not e.adaptive or len(grid) < 2:
            pass
        elif restored.info.num_validation == 0:
            report["line"] = {"skipped": "the run has no validation split"}
        elif recalibration is not None:
            report["line"] = {"skipped": RECALIBRATED_ADAPTIVE}
        else:
            validation = restored.batches("validation", e)
            val_sweep = run_sweep(evaluator, state, validation, cells, [None, *grid], mesh)
            rule = fit_adaptive_rule(val_sweep, grid)
            adaptive = run_adaptive(evaluator, state, restored.test, cells, rule, mesh)
            report["line"] = _line_report(rule, val_sweep, oracle, adaptive)
            report["validation_records"] = _rows(val_sweep.records)
    report["elapsed_s"] = time.perf_counter() - started
    if parallel.is_main_process():
        output_dir = e.output_dir or os.path.join(workdir, "robustness")
        write_report(report, output_dir, REPORT)
        if e.plots:
            write_sdnet_plots(report, output_dir)
        log("wrote %s", output_dir)
    return report


def write_sdnet_plots(report: dict[str, Any], output_dir: str) -> list[str]:
    """PNG plots of an SDNet-protocol report (module docstring); returns the paths written."""
    plt, save, paths = figure_writer(output_dir)

    records = report["records"]
    find = lambda noise, level, lam: next(
        r for r in records if (r["noise"], r["level"], r["lam"]) == (noise, level, lam)
    )
    noises = list(report["noise_levels"])
    grid = report["lams"]
    for noise in noises if grid else []:
        fig, axes = plt.subplots(1, 2, figsize=(11, 4))
        levels = report["noise_levels"][noise]
        colors = plt.get_cmap("viridis")(np.linspace(0.0, 0.9, len(levels)))
        for key, ax in zip(("accuracy", "recon_error"), axes, strict=True):
            ax.plot(grid, [find(CLEAN, 0, lam)[key] for lam in grid], "k--", label="clean")
            for level, color in zip(levels, colors, strict=True):
                values = [find(noise, level, lam)[key] for lam in grid]
                ax.plot(grid, values, "o-", ms=3, color=color, label=f"c = {level:g}")
            ax.axvline(report["default_lam"], color="grey", ls=":")
            ax.set(xlabel="stem λ at test time", ylabel="test accuracy" if key == "accuracy"
                   else "stem ‖x − Az‖² per example")  # fmt: skip
        axes[0].set_title(f"{report['model']}: {noise} noise (SDNet's protocol)")
        axes[0].legend(fontsize=7, ncol=2)
        save(fig, f"sdnet_{noise}.png")

    fig, axes = plt.subplots(1, len(noises), figsize=(4 * len(noises), 3.5), squeeze=False)
    oracle = {(o["noise"], o["level"]): o for o in (report.get("oracle") or {}).get("rows", [])}
    line = report.get("line") or {}
    line_rows = {(r["noise"], r["level"]): r for r in line.get("test", [])}
    for ax, noise in zip(axes[0], noises, strict=True):
        levels = [0, *report["noise_levels"][noise]]
        cells = [(CLEAN if level == 0 else noise, level) for level in levels]
        x = np.arange(len(levels))
        trained = "trained λ" if grid else "ResNet (no λ)"
        ax.plot(x, [find(*cell, None)["accuracy"] for cell in cells], "o-", label=trained)
        if oracle:
            ax.plot(x, [oracle[c]["accuracy"] for c in cells], "s--", label="oracle λ (test)")
        if line_rows:
            ax.plot(x, [line_rows[c]["accuracy"] for c in cells], "x-", label="line (validation)")
        ax.set_xticks(x, ["clean", *(f"{v:g}" for v in levels[1:])], rotation=60, fontsize=7)
        ax.set(title=f"{noise}", xlabel="level c", ylabel="test accuracy")
        ax.legend(fontsize=7)
    fig.suptitle(f"{report['model']} (step {report['checkpoint_step']}), SDNet's noise")
    save(fig, "sdnet_summary.png")

    if line.get("rule"):
        rule = line["rule"]
        fig, ax = plt.subplots(figsize=(5, 4))
        points = rule["points"]
        x = np.asarray([p["recon_error"] for p in points])
        ax.plot(x, [p["best_lam"] for p in points], "rx", label="best λ vs error at trained λ")
        ax.plot([p["recon_error_at_best_lam"] for p in points], [p["best_lam"] for p in points],
                "b+", label="best λ vs error at best λ (SDNet's x)")  # fmt: skip
        xs = np.linspace(x.min(), x.max(), 50)
        ax.plot(xs, np.clip(rule["a"] * xs + rule["b"], rule["lam_min"], rule["lam_max"]), "k-",
                label=f"λ = {rule['a']:.3g}·r + {rule['b']:.3g} (clipped)")  # fmt: skip
        ax.set(xlabel="stem reconstruction error r (validation)", ylabel="best λ (validation)")
        ax.legend(fontsize=7)
        save(fig, "sdnet_line.png")
    return paths
