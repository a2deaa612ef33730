"""Prints Markdown tables of finished training runs: ``python -m benchmarks.summarize DIR...``.

Each DIR is a workdir with ``results.json`` and ``config.json`` (and ``wall_time.json`` from
``benchmarks/train_configs.sh``). Classifier runs: final and best-on-validation test accuracy;
CTRL runs: the test-split reconstruction PSNR, nearest-subspace accuracy, Fréchet distance and ΔR.
"""

from __future__ import annotations

import json
import os
import sys


def _load(workdir: str, name: str) -> dict | None:
    path = os.path.join(workdir, name)
    return json.load(open(path)) if os.path.exists(path) else None


def _wall(workdir: str) -> str:
    wall = _load(workdir, "wall_time.json")
    return f"{wall['wall_seconds'] / 60:.1f}" if wall else ""


def classifier_row(workdir: str, config: dict, results: dict) -> str:
    final, best = results["final"], results.get("best", results["final"])
    model = config["model"]
    return (
        f"| {model['name']} (width {model['width']}) | {config['data']['name']} | {final['step']} | "
        f"{100 * final['test']['accuracy']:.2f} | {best['step']} | "
        f"{100 * best['test']['accuracy']:.2f} | {_wall(workdir)} |"
    )


def ctrl_row(workdir: str, config: dict, results: dict) -> str:
    test = results["final"]["test"]
    (fd_key,) = [k for k in test if k.startswith("frechet_distance[")]
    return (
        f"| {config['model']['name']} {tuple(config['model']['channels'])} | "
        f"{config['data']['name']} | {results['final']['step']} | {test['psnr']:.2f} | "
        f"{100 * test['nearest_subspace_accuracy']:.2f} | {test[fd_key]:.4g} "
        f"({fd_key[len('frechet_distance[') : -1]}) | {test['delta_r_z']:.3f} | {_wall(workdir)} |"
    )


def main(argv: list[str]) -> None:
    rows: dict[str, list[str]] = {"classifier": [], "ctrl": []}
    for workdir in (w.rstrip("/") for w in argv):
        config, results = _load(workdir, "config.json"), _load(workdir, "results.json")
        if results is None:
            print(f"(no results.json in {workdir}: unfinished)")
            continue
        make = classifier_row if config["task"] == "classifier" else ctrl_row
        rows[config["task"]].append(make(workdir, config, results))
    if rows["classifier"]:
        print(
            "| model | data | steps | final test acc % | best-val step | its test acc % | wall min |"
        )
        print("|---|---|---|---|---|---|---|")
        print("\n".join(rows["classifier"]))
    if rows["ctrl"]:
        print("| CTRL model | data | steps | test PSNR dB | nearest-subspace acc % | Fréchet distance "
              "(feature net) | ΔR(Z) | wall min |")  # fmt: skip
        print("|---|---|---|---|---|---|---|---|")
        print("\n".join(rows["ctrl"]))


if __name__ == "__main__":
    main(sys.argv[1:])
