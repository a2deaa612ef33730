"""Prints a Markdown table of finished training runs: ``python -m benchmarks.summarize DIR...``.

Each DIR is a workdir with ``results.json`` (and, from ``benchmarks/fashion_mnist.sh``,
``wall_time.json``): the model, the final and best-on-validation test accuracy, steps and wall time.
"""

from __future__ import annotations

import json
import os
import sys


def row(workdir: str) -> str:
    results = json.load(open(os.path.join(workdir, "results.json")))
    config = json.load(open(os.path.join(workdir, "config.json")))
    wall_file = os.path.join(workdir, "wall_time.json")
    wall = json.load(open(wall_file))["wall_seconds"] / 60 if os.path.exists(wall_file) else None
    final, best = results["final"], results.get("best", results["final"])
    model = config["model"]
    return (
        f"| {model['name']} (width {model['width']}) | {final['step']} | "
        f"{100 * final['test']['accuracy']:.2f} | {best['step']} | "
        f"{100 * best['test']['accuracy']:.2f} | "
        f"{'' if wall is None else f'{wall:.1f}'} |"
    )


def main(argv: list[str]) -> None:
    print("| model | steps | final test acc % | best-val step | its test acc % | wall min |")
    print("|---|---|---|---|---|---|")
    for workdir in argv:
        print(row(workdir.rstrip("/")))


if __name__ == "__main__":
    main(sys.argv[1:])
