"""Tables and a figure from SDNet-protocol reports (``python -m sdnet_jax.evaluate
--config.eval.protocol=sdnet``, ``<workdir>/robustness/sdnet_protocol.json``).

    python -m benchmarks.summarize_sdnet_protocol REPORT.json [REPORT.json ...] \\
        [--figure=FILE.png --sdnet=REPORT.json --resnet=REPORT.json]

Prints, per report, the mean test accuracy over each noise family's levels at the trained λ, at
the oracle λ (best per level with the test labels, over SDNet's grid 0.1 … 1.4 and over the whole
grid evaluated) and with the line fitted on validation, then the accuracy at every λ of the grid
for each family's strongest level. ``--figure`` draws SDNet's form (accuracy against λ, one curve
per level) for each ``--sdnet`` report (one row each), with the matching ``--resnet`` report's
accuracy at each level as a dashed line of the same colour.
"""

from __future__ import annotations

import json
import sys
from typing import Any

import numpy as np
from absl import app, flags

FLAGS = flags.FLAGS
flags.DEFINE_string("figure", "", "write the SDNet-form figure here")
flags.DEFINE_string(
    "sdnet", "", "SDNet reports drawn in the figure, one row each (comma-separated)"
)
flags.DEFINE_string("resnet", "", "the ResNet report drawn beside each row (as many, or none)")
SDNET_GRID = (0.1, 1.4)  # the range of SDNet's own λ grid


def _load(path: str) -> dict[str, Any]:
    with open(path) as f:
        return json.load(f)


def _accuracy(report: dict[str, Any], noise: str, level: float, lam: float | None) -> float:
    for r in report["records"]:
        if (r["noise"], r["level"], r["lam"]) == (noise, level, lam):
            return r["accuracy"]
    raise KeyError((noise, level, lam))


def _pct(values: list[float]) -> str:
    return f"{100 * float(np.mean(values)):.1f}"


def table(path: str) -> list[str]:
    r = _load(path)
    recal = r.get("bn_recalibration")
    name = f"{r['model']}@{r['dataset']} step {r['checkpoint_step']}, {r['num_test_examples']} test"
    where = "the stem's BN" if recal and recal.get("scope") == "stem" else "every BN"
    name += (
        f", {where} re-estimated on {recal['examples']} noisy validation images" if recal else ""
    )
    out = [f"**{name}** (`{path}`)", ""]
    grid = r["lams"]
    sdnet_grid = [lam for lam in grid if SDNET_GRID[0] - 1e-9 <= lam <= SDNET_GRID[1] + 1e-9]
    line = {(x["noise"], x["level"]): x for x in (r.get("line") or {}).get("test", [])}
    head = "| noise (mean over levels) | trained λ |"
    if grid:
        head += " oracle λ ∈ [0.1, 1.4] | oracle λ, whole grid | line (validation) |"
    out += [head, "|---" * (head.count("|") - 1) + "|"]
    for noise, levels in r["noise_levels"].items():
        row = [_pct([_accuracy(r, noise, c, None) for c in levels])]
        if grid:
            for lams in (sdnet_grid, grid):
                best = [max(_accuracy(r, noise, c, lam) for lam in lams) for c in levels]
                row.append(_pct(best) if lams else "–")
            row.append(_pct([line[noise, c]["accuracy"] for c in levels]) if line else "–")
        out.append(f"| {noise} | " + " | ".join(row) + " |")
    clean = [_accuracy(r, "clean", 0, None)]
    out.append("| clean | " + _pct(clean) + (" | | | |" if grid else " |"))
    if grid:
        out += ["", "| strongest level: accuracy at λ | " + " | ".join(f"{v:g}" for v in grid)]
        out[-1] += " |"
        out.append("|---" * (len(grid) + 1) + "|")
        for noise, levels in [("clean", [0]), *r["noise_levels"].items()]:
            c = levels[-1]
            accs = [f"{100 * _accuracy(r, noise, c, lam):.1f}" for lam in grid]
            out.append(f"| {noise} {c:g} | " + " | ".join(accs) + " |")
        errors = {
            (x["noise"], x["level"]): x["recon_error"] for x in r["records"] if x["lam"] is None
        }
        out += ["", "stem ‖x − Az‖² at the trained λ, clean and per level:"]
        out.append(f"clean {errors['clean', 0]:.2f}; " + "; ".join(
            f"{noise} " + " ".join(f"{errors[noise, c]:.2f}" for c in levels)
            for noise, levels in r["noise_levels"].items()
        ))  # fmt: skip
    return [*out, ""]


def figure(sdnet_paths: list[str], resnet_paths: list[str], path: str) -> None:
    """One row per SDNet report: accuracy against λ per level and noise (SDNet's form), the
    matching ResNet report's accuracy per level dashed in the same colour."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = [(_load(s), _load(r) if r else None) for s, r in zip(
        sdnet_paths, resnet_paths or [""] * len(sdnet_paths), strict=True)]  # fmt: skip
    noises = list(rows[0][0]["noise_levels"])
    fig, axes = plt.subplots(
        len(rows), len(noises), figsize=(4.2 * len(noises), 3.4 * len(rows)), squeeze=False
    )
    for ax_row, (sdnet, resnet) in zip(axes, rows, strict=True):
        grid = sdnet["lams"]
        recal = sdnet.get("bn_recalibration")
        scope = "stem BN" if recal and recal.get("scope") == "stem" else "all BN"
        stats = (
            f"{scope} re-estimated ({recal['examples']} images)" if recal else "BN running stats"
        )
        for ax, noise in zip(ax_row, noises, strict=True):
            levels = sdnet["noise_levels"][noise]
            colors = plt.get_cmap("viridis")(np.linspace(0.0, 0.9, len(levels)))
            for c, color in zip(levels, colors, strict=True):
                ax.plot(grid, [_accuracy(sdnet, noise, c, lam) for lam in grid], "-",
                        color=color, label=f"c={c:g}")  # fmt: skip
                if resnet is not None:
                    ax.axhline(_accuracy(resnet, noise, c, None), color=color, ls="--", lw=0.8)
            ax.axvline(sdnet["default_lam"], color="grey", ls=":")
            ax.set(title=f"{noise}, {stats}", xlabel="SDNet stem λ at test time",
                   ylabel="test accuracy", ylim=(0.1, 0.95))  # fmt: skip
        ax_row[0].legend(fontsize=6, ncol=2)
    sdnet, resnet = rows[0]
    title = f"{sdnet['model']} (solid, against λ)"
    if resnet is not None:
        title += f" vs {resnet['model']} (dashed, no λ)"
    fig.suptitle(f"{sdnet['dataset']}, SDNet's protocol: {title}")
    fig.tight_layout()
    fig.savefig(path, dpi=70)
    plt.close(fig)


def main(argv: list[str]) -> None:
    for path in argv[1:]:
        print("\n".join(table(path)))
    if FLAGS.figure:
        resnets = FLAGS.resnet.split(",") if FLAGS.resnet else []
        figure(FLAGS.sdnet.split(","), resnets, FLAGS.figure)
        print(f"wrote {FLAGS.figure}", file=sys.stderr)


if __name__ == "__main__":
    app.run(main)
