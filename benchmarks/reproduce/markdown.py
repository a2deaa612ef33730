"""``report.md``: the suite's report as markdown tables (what the README quotes)."""

from __future__ import annotations

from typing import Any


def _fmt(value: Any, digits: int = 3) -> str:
    if value is None:
        return "–"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, float):
        return f"{value:,.0f}" if abs(value) >= 1000 else f"{value:.{digits}g}"
    return str(value)


def _table(header: list[str], rows: list[list[Any]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(_fmt(v) for v in row) + " |" for row in rows]
    return lines


def _pct(value: float | None) -> str:
    return "–" if value is None else f"{100 * value:.2f}"


def _device(d: dict[str, Any]) -> list[str]:
    versions = ", ".join(
        f"{k} {d[k]}"
        for k in ("jax", "jaxlib", "jax-cuda12-plugin", "jax-cuda13-plugin", "torch", "python")
        if k in d
    )
    return [
        f"{d['device_count']} x {', '.join(d['devices'])} ({d['backend']}; "
        f"{d.get('platform_version', '')}), {d['process_count']} process(es); {versions}; "
        f"{d['date']}"
    ]


def _loop(r: dict[str, Any]) -> list[str]:
    rows = [
        [x["model"], x["batch"], x.get("input_path"), x.get("first_step_s"),
         x.get("bare_steps_per_s"), x.get("loop_steps_per_s"), x.get("ratio"), x.get("input_ms"),
         x.get("examples_per_s")]
        for x in r.get("rows", [])
    ]  # fmt: skip
    header = ["model", "batch", "input", "first step s (compile)", "bare step/s", "loop step/s",
              "loop / bare", "in-step input ms", "loop examples/s"]  # fmt: skip
    return [f"Goal: loop / bare {r.get('goal', '>= 0.9')}.", "", *_table(header, rows)]


def _accuracy(r: dict[str, Any]) -> list[str]:
    lines = [
        f"{r.get('epochs')} epochs ({r.get('steps')} steps of batch {r.get('batch')}, validation every "
        f"{r.get('eval_every_steps')} steps); chance {_pct(r.get('chance'))} %."
    ]
    rows = []
    for model, run in r.get("runs", {}).items():
        best = run.get("best_test", {})
        rows.append([model, run["status"], _pct(run.get("final_test_accuracy")),
                     best.get("step"), _pct(best.get("accuracy")), run.get("steps_per_s"),
                     run.get("wall_s")])  # fmt: skip
    header = ["model", "status", "final test acc %", "best-val step", "its test acc %",
              "steps/s", "wall s"]  # fmt: skip
    lines += ["", *_table(header, rows)]
    if "sdnet_minus_resnet_points" in r:
        lines += ["", f"SDNet-18 − ResNet-18: {r['sdnet_minus_resnet_points']:+.2f} points "
                  f"(goal within 0.5: {_fmt(r['goal_within_0_5_points'])})."]  # fmt: skip
    return lines


def _robustness(r: dict[str, Any]) -> list[str]:
    lines: list[str] = []
    for model, m in r.get("models", {}).items():
        corr = m.get("mean_accuracy_by_corruption", {})
        lines += [f"**{model}** (step {m.get('checkpoint_step')}): clean "
                  f"{_pct(m.get('clean_accuracy'))} %; mean over severities at the trained λ: "
                  + ", ".join(f"{k} {_pct(v)} %" for k, v in corr.items())]  # fmt: skip
        by_lam = m.get("mean_corrupted_accuracy_by_lam")
        if by_lam:
            lines.append("stem λ → mean corrupted accuracy: "
                         + ", ".join(f"{k}: {_pct(v)} %" for k, v in by_lam.items()))  # fmt: skip
        adaptive = m.get("adaptive_mean_test_accuracy")
        if adaptive:
            lines.append("adaptive λ rule (fitted on validation), mean test accuracy: "
                         + ", ".join(f"{k} {_pct(v)} %" for k, v in adaptive.items()))  # fmt: skip
        for name, run in m.get("sdnet_protocol", {}).items():
            if run.get("status") != "done":
                lines.append(f"SDNet's protocol, {name}: {run.get('status')}")
                continue
            lines.append(f"SDNet's protocol, {name}, mean over levels at the trained λ: "
                         + ", ".join(f"{k} {_pct(v)} %" for k, v in run["trained_lam"].items()))  # fmt: skip
            oracle = run.get("oracle_best_lam_on_test_labels")
            if oracle:
                lines.append("  oracle (best λ per level, chosen on the test labels): "
                             + ", ".join(f"{k} {_pct(v)} %" for k, v in oracle.items()))  # fmt: skip
            line = run.get("line_mean_test_accuracy_over_cells")
            if line:
                lines.append("  line fitted on validation, mean over all cells: "
                             + ", ".join(f"{k} {_pct(v)} %" for k, v in line.items()))  # fmt: skip
        if m.get("pgd"):
            lines.append("PGD: " + ", ".join(
                f"{p['norm']} ε={p['epsilon']:.3g} λ={_fmt(p['lam'])}: {_pct(p['accuracy'])} %"
                for p in m["pgd"]))  # fmt: skip
        lines.append("")
    return lines


def _ctrl(r: dict[str, Any]) -> list[str]:
    lines: list[str] = []
    for pair, run in r.get("runs", {}).items():
        lines += [f"**{pair}** (batch {run.get('batch')}): {run['status']}, "
                  f"{_fmt(run.get('wall_s'))} s", ""]  # fmt: skip
        rows = [[p["step"], p["psnr"], p["psnr_mean_image"], p["spread_x_hat"], p["spread_x"],
                 _pct(p["nearest_subspace_accuracy"])] for p in run.get("points", [])]  # fmt: skip
        header = ["step", "test PSNR dB", "mean image dB", "spread X̂", "spread X", "NS acc %"]
        lines += [*_table(header, rows), ""]
    return lines


def _layer(r: dict[str, Any]) -> list[str]:
    rows = [
        [x["shape"], x["batch"], x.get("fwd_eager_ratio"), x.get("fwd_compiled_ratio"),
         x.get("fwd_bwd_eager_ratio"), x.get("fwd_bwd_compiled_ratio"), x.get("fwd_ours_ms"),
         x.get("fwd_bwd_ours_ms")]
        for x in r.get("rows", [])
    ]  # fmt: skip
    header = ["shape", "batch", "fwd / eager", "fwd / compiled", "f+b / eager",
              "f+b / compiled", "ours fwd ms", "ours f+b ms"]  # fmt: skip
    return ["Ratios ours / PyTorch (below 1: ours faster).", "", *_table(header, rows)]


SECTIONS = {
    "loop": ("Loop vs bare step", _loop),
    "accuracy": ("SDNet-18 vs ResNet-18 accuracy", _accuracy),
    "robustness": ("Robustness", _robustness),
    "ctrl": ("CTRL reference recipe", _ctrl),
    "layer": ("CSC layer vs SDNet's PyTorch layer", _layer),
}


def render(report: dict[str, Any]) -> str:
    suite = report.get("suite", {})
    lines = [f"# benchmarks.reproduce ({suite.get('scale')})", "", f"`{suite.get('command')}`", ""]
    if "device" in report:
        lines += [*_device(report["device"]), ""]
    for key, (title, section) in SECTIONS.items():
        if key not in report:
            continue
        part = report[key]
        budget = part.get("budget_s")
        wall = part.get("wall_s")
        timing = f" ({_fmt(wall)} s of {_fmt(budget)} s)" if wall is not None else ""
        lines += [f"## {title}: {part['status']}{timing}", ""]
        if not str(part["status"]).startswith("skipped"):
            lines += [*section(part), ""]
    if "wall_s" in suite:
        lines.append(f"Suite: {suite['wall_s']:.0f} s of a {suite['budget_s']:.0f} s budget.")
    return "\n".join(lines) + "\n"
