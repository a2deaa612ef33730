"""The robustness report: ``robustness.json`` and its PNG plots."""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from typing import Any

from sdnet_jax.evaluation.robustness.config import CLEAN


def write_report(report: dict[str, Any], output_dir: str, name: str = "robustness.json") -> str:
    """Writes the report as ``name`` (``robustness.json``) into ``output_dir``; returns its path.

    Contents: the checkpoint (``workdir``, ``checkpoint_step``, ``model``, ``dataset``,
    ``has_csc_layers``, ``default_lam``, ``lam_scope``), ``eval`` (the options used),
    ``corruption_accuracy`` (per cell at the default λ: accuracy, loss and, for CSC models, the
    stem's recon_error / l1 / nonzero_fraction), ``lam_sweep`` (the same per cell and λ; CSC
    models), ``adaptive`` (the rule fitted on validation, its test accuracy per cell beside the
    default and the best fixed λ), ``pgd`` (accuracy per norm, ε and λ) and ``elapsed_s``. A ``lam``
    of ``null`` is the default (trained) λ; severity 0 is the clean cell.
    """
    os.makedirs(output_dir, exist_ok=True)
    path = os.path.join(output_dir, name)
    with open(path, "w") as f:
        json.dump(report, f, indent=2)
    return path


def _label(lam: float | None) -> str:
    return "default λ" if lam is None else f"λ={lam:g}"


def figure_writer(output_dir: str) -> tuple[Any, Callable[[Any, str], None], list[str]]:
    """``(pyplot, save, paths)``: matplotlib's pyplot on the Agg backend, ``save(fig, name)`` that
    writes ``fig`` as ``output_dir/name`` and closes it, and the list of the paths it wrote."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    os.makedirs(output_dir, exist_ok=True)
    paths: list[str] = []

    def save(fig: Any, name: str) -> None:
        path = os.path.join(output_dir, name)
        fig.tight_layout()
        fig.savefig(path, dpi=100)
        plt.close(fig)
        paths.append(path)

    return plt, save, paths


def write_plots(report: dict[str, Any], output_dir: str) -> list[str]:
    """PNG plots of a report (Agg backend): ``corruption_accuracy.png`` (accuracy vs severity per
    corruption), ``lam_sweep.png`` (accuracy, recon error and non-zero fraction vs λ per cell; CSC
    models) and ``pgd.png`` (accuracy vs ε per norm and λ). Returns the paths written."""
    plt, save, paths = figure_writer(output_dir)
    names = list(report["eval"]["corruptions"])
    colors = {n: plt.get_cmap("tab10")(i) for i, n in enumerate(names)}

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
