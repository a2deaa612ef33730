"""Renders the JSON written by the benchmarks as the README's markdown tables.

    python -m benchmarks.report [bench_out]

Reads ``layer_cost.json``, ``model_cost.json``, ``backprop_memory.json``, ``torch_reference.json`` and
``solver_accuracy.json`` from the directory (missing files are skipped) and prints one section each.
"""

from __future__ import annotations

import json
import os
import sys


def _table(header: list[str], rows: list[list]) -> str:
    fmt = lambda v: f"{v:.2f}" if isinstance(v, float) else str(v)
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(fmt(v) for v in row) + " |" for row in rows]
    return "\n".join(lines)


def _context(d: dict) -> str:
    return f"jax {d.get('jax')} on {d.get('platform')}, {d.get('date')}"


def layer_cost(d: dict) -> str:
    rows = [
        [r["shape"], r["batch"], r["K"], r["floor"]]
        + [
            f"{r[f'{mode}_{kind}_ratio']:.2f} ({r[f'{mode}_{kind}_flops_ratio']:.2f})"
            for mode in ("eval", "train")
            for kind in ("fwd", "fwd_bwd")
        ]
        for r in d["rows"]
    ]
    header = ["shape", "batch", "K", "floor 2K−1", "eval fwd", "eval fwd+bwd", "train fwd"]
    return (
        f"**Layer cost** (`benchmarks.layer_cost`; {_context(d)}): `CSCConv` time / the same-shape "
        "`nn.Conv` time, XLA's FLOP ratio in brackets; eval = power-iteration state frozen, train = "
        "updated (2 warm-started iterations on a batch-1 vector)\n\n"
        + _table([*header, "train fwd+bwd"], rows)
    )


def model_cost(d: dict) -> str:
    rows = [
        [r["setup"], r["batch"], r["model"], r["time_ratio"], r["flops_ratio"], r["peak_mem_ratio"]]
        for r in d["rows"]
    ]
    return (
        f"**Train step vs ResNet-18** (`benchmarks.model_cost`; {_context(d)}): ratios to ResNet-18's "
        "step, same train-step code and shapes; peak memory from the compiled step's "
        "memory_analysis()\n\n"
        + _table(["setup", "batch", "model", "time", "FLOPs", "peak memory"], rows)
    )


def backprop_memory(d: dict) -> str:
    rows = [
        [r["K"]]
        + [
            f"{r[f'{m}_bytes'] / 2**20:.1f} ({r[f'{m}_ratio']:.2f})"
            for m in ("unrolled", "remat", "implicit")
        ]
        for r in d["rows"]
    ]
    return (
        f"**Backprop memory vs K** (`benchmarks.backprop_memory`; {_context(d)}; "
        f"{d['channels']}→{d['channels']}, {d['size']}x{d['size']}, batch {d['batch']}): compiled "
        "temp MiB of forward+backward (ratio to K = 1)\n\n"
        + _table(["K", "unrolled", "jax.checkpoint", "implicit"], rows)
    )


def torch_reference(d: dict) -> str:
    rows = [
        [r["shape"], r["batch"], r["fwd_op_ratio"], r["fwd_bwd_op_ratio"], r["fwd_layer_ratio"],
         r["fwd_bwd_layer_ratio"], f"{r['fwd_bwd_torch_ms']:.0f}"]
        for r in d["rows"]
    ]  # fmt: skip
    return (
        f"**Against SDNet's PyTorch layer** (`benchmarks.torch_reference`; {_context(d)}, torch "
        f"{d.get('torch')} with {d.get('torch_threads')} threads; {d['num_iters']} iterations, "
        "non-negative, λ 0.1, step 0.9/L): our time / PyTorch's (below 1: ours is faster)\n\n"
        + _table(
            [
                "shape",
                "batch",
                "op fwd",
                "op fwd+bwd",
                "CSCConv fwd",
                "CSCConv fwd+bwd",
                "PyTorch fwd+bwd ms",
            ],
            rows,
        )
    )


def solver_accuracy(d: dict) -> str:
    parts = [f"**Solver time-to-accuracy** (`benchmarks.solver_accuracy`; {_context(d)}): "
             "iterations / seconds to a relative objective gap, compilation excluded"]  # fmt: skip
    for case in d["cases"]:
        tols = [str(t) for t in d["tols"]]
        rows = []
        for r in case["rows"]:
            cells = [
                f"{r[t]['iters']} / {r[t]['seconds']:.2f}"
                if (r.get(t) or {}).get("iters")
                else f"> {r.get('max_iters')}"
                for t in tols
            ]
            rows.append([r["solver"], *cells])
        shape = "x".join(map(str, case["shape"]))
        parts.append(
            f"{case['case']} ({shape}, dictionary {'x'.join(map(str, case['dictionary']))}):\n\n"
            + _table(["solver", *(f"gap {t}" for t in tols)], rows)
        )
    return "\n\n".join(parts)


SECTIONS = {
    "layer_cost": layer_cost,
    "model_cost": model_cost,
    "backprop_memory": backprop_memory,
    "torch_reference": torch_reference,
    "solver_accuracy": solver_accuracy,
}


def main(argv: list[str] | None = None) -> str:
    argv = sys.argv[1:] if argv is None else argv
    folder = argv[0] if argv else "bench_out"
    out = []
    for name, render in SECTIONS.items():
        path = os.path.join(folder, f"{name}.json")
        if os.path.exists(path):
            with open(path) as f:
                out.append(render(json.load(f)))
    text = "\n\n".join(out)
    print(text)
    return text


if __name__ == "__main__":
    main()
