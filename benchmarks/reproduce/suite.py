"""The command: arguments, the budget shared out among the parts, the device record, and the
report written after every part (see :mod:`benchmarks.reproduce`)."""

from __future__ import annotations

import argparse
import importlib.metadata
import json
import os
import platform
import sys
import time
import traceback
from typing import Any

# Before JAX starts a backend: PyTorch shares the GPU in the layer part (JAX takes 75 % by default).
os.environ.setdefault("XLA_PYTHON_CLIENT_MEM_FRACTION", "0.6")

import jax

from benchmarks import common  # noqa: F401  (the CPU convolution option, before any computation)
from benchmarks.reproduce import PARTS, markdown, parts, plan

# The default budget: 10 minutes of one H100, of which about 2 go to starting the machine,
# installing the wheels and importing.
DEFAULT_BUDGET_S = 480.0
SHARES = {"loop": 0.15, "accuracy": 0.5, "robustness": 0.1, "ctrl": 0.2, "layer": 0.05}


def device_record() -> dict[str, Any]:
    """jax, jaxlib, the CUDA plugin and runtime versions, Python, and the devices."""
    record: dict[str, Any] = {
        "date": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
        "python": platform.python_version(),
        "jax": jax.__version__,
        "backend": jax.default_backend(),
        "device_count": jax.device_count(),
        "process_count": jax.process_count(),
        "devices": sorted({d.device_kind for d in jax.devices()}),
    }
    for dist in ("jaxlib", "jax-cuda12-plugin", "jax-cuda13-plugin", "jax-cuda12-pjrt",
                 "jax-cuda13-pjrt", "torch"):  # fmt: skip
        try:
            record[dist] = importlib.metadata.version(dist)
        except importlib.metadata.PackageNotFoundError:
            pass
    try:  # e.g. "cuda 12080" on a GPU; public but young API, so guarded
        from jax.extend import backend

        record["platform_version"] = " ".join(str(backend.get_backend().platform_version).split())
    except Exception as error:
        record["platform_version"] = f"unknown ({type(error).__name__})"
    try:
        record["environment"] = jax.print_environment_info(return_string=True)
    except Exception as error:
        record["environment"] = f"unknown ({type(error).__name__})"
    return record


class Report:
    """``report.json`` and ``report.md`` in ``out``, written again at every change (atomically)."""

    def __init__(self, out: str, header: dict[str, Any]):
        self.out = out
        self.data: dict[str, Any] = {"suite": header}
        os.makedirs(out, exist_ok=True)

    def set(self, key: str, value: dict[str, Any]) -> None:
        self.data[key] = value
        self.write()

    def write(self) -> None:
        for name, text in (
            ("report.json", json.dumps(self.data, indent=2, default=str)),
            ("report.md", markdown.render(self.data)),
        ):
            path = os.path.join(self.out, name)
            with open(f"{path}.tmp", "w") as f:
                f.write(text)
            os.replace(f"{path}.tmp", path)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.reproduce", description=__doc__.splitlines()[0]
    )
    parser.add_argument("--out", required=True, help="folder of report.json and report.md")
    parser.add_argument("--smoke", action="store_true", help="every part at toy size, on CPU")
    parser.add_argument("--budget_s", type=float, default=None,
                        help=f"seconds for all parts (default {DEFAULT_BUDGET_S:.0f}; smoke: no "
                        "limit that matters)")  # fmt: skip
    parser.add_argument(
        "--data_dir",
        default="",
        help="holds Fashion-MNIST (TFDS files or decoded arrays); smoke: unused",
    )
    parser.add_argument("--parts", default=",".join(PARTS), help=f"a subset of {','.join(PARTS)}")
    parser.add_argument("--workdir_root", default="", help="runs' workdirs (default OUT/runs)")
    args = parser.parse_args(argv)
    args.argv = list(sys.argv[1:] if argv is None else argv)
    asked = [p for p in args.parts.split(",") if p]
    unknown = sorted(set(asked) - set(PARTS))
    if unknown:
        parser.error(f"unknown part(s) {unknown}; choose from {','.join(PARTS)}")
    args.parts = [p for p in PARTS if p in asked]
    if args.budget_s is None:
        args.budget_s = 3600.0 if args.smoke else DEFAULT_BUDGET_S
    if args.budget_s <= 0:
        parser.error(f"--budget_s must be > 0, got {args.budget_s}")
    return args


def _use_compilation_cache(folder: str) -> None:
    """Compiled programs on disk: a program compiled twice (the loop part's bare step and its
    loop, the CTRL step of the loop and ctrl parts) is compiled once. Left alone when the
    process already has a cache (the tests)."""
    if not jax.config.jax_compilation_cache_dir:
        jax.config.update("jax_compilation_cache_dir", folder)


def run(args: argparse.Namespace) -> dict[str, Any]:
    started = time.monotonic()
    workdir_root = os.path.abspath(args.workdir_root or os.path.join(args.out, "runs"))
    os.makedirs(workdir_root, exist_ok=True)
    _use_compilation_cache(os.path.join(workdir_root, "xla_cache"))
    scale = plan.SMOKE if args.smoke else plan.FULL
    data_dir = args.data_dir
    if scale.smoke:
        data_dir = plan.write_smoke_data(os.path.join(workdir_root, "data"))
    header = {
        "command": " ".join(["python -m benchmarks.reproduce", *args.argv]),
        "scale": "smoke" if scale.smoke else "full",
        "budget_s": args.budget_s,
        "data_dir": data_dir,
        "parts": args.parts,
    }
    report = Report(args.out, header)
    report.set("device", device_record())
    for part in PARTS:
        if part not in args.parts:
            report.set(part, {"status": "skipped: not asked for (--parts)"})
    ctx = parts.Context(scale, data_dir, workdir_root, report.data)
    end = started + args.budget_s
    for i, part in enumerate(args.parts):
        later = sum(SHARES[p] for p in args.parts[i:])
        now = time.monotonic()
        allotted = max(end - now, 0.0) * SHARES[part] / later
        ctx.progress = lambda result, part=part, allotted=allotted: report.set(
            part, {**result, "budget_s": allotted}
        )
        print(f"[reproduce] {part}: {allotted:.0f} s of the budget", flush=True)
        try:
            result = parts.PARTS[part](ctx, now + allotted)
        except Exception as error:  # one part's failure does not cost the others
            result = {
                "status": f"failed: {type(error).__name__}: {' '.join(str(error).split())[:500]}",
                "traceback": traceback.format_exc()[-4000:],
                **{k: v for k, v in report.data.get(part, {}).items() if k != "status"},
            }
        result.update(budget_s=allotted, wall_s=time.monotonic() - now)
        report.set(part, result)
        print(f"[reproduce] {part}: {result['status']} ({result['wall_s']:.0f} s)", flush=True)
    report.data["suite"]["wall_s"] = time.monotonic() - started
    report.write()
    print(f"[reproduce] wrote {os.path.join(args.out, 'report.md')}", flush=True)
    return report.data


def main(argv: list[str] | None = None) -> dict[str, Any]:
    return run(parse_args(argv))
