"""The robustness job: restore a trained classifier, run the sweeps, the adaptive rule and PGD,
write the report."""

from __future__ import annotations

import dataclasses
import os
import time
from typing import Any

import jax
import ml_collections
import numpy as np

from sdnet_jax.evaluation.robustness.config import STEM, validate_eval_config
from sdnet_jax.evaluation.robustness.programs import Evaluator
from sdnet_jax.evaluation.robustness.report import write_plots, write_report
from sdnet_jax.evaluation.robustness.sweeps import (
    AdaptiveRule,
    SplitBatches,
    Sweep,
    cells_of,
    fit_adaptive_rule,
    log,
    run_adaptive,
    run_pgd,
    run_sweep,
)
from sdnet_jax.models.csc import CSCConv
from sdnet_jax.runs import load_classifier
from sdnet_jax.runtime import parallel


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
    log(
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
        log("wrote %s", output_dir)
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
