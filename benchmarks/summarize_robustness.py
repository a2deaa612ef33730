"""Markdown tables from robustness reports: ``python -m benchmarks.summarize_robustness WORKDIR...``.

Reads ``WORKDIR/robustness/robustness.json`` (written by ``python -m sdnet_jax.evaluate``) and prints
accuracy vs severity per corruption at the trained λ, the λ sweep (CSC models), the adaptive rule's
test accuracy and PGD accuracy vs ε.
"""

from __future__ import annotations

import json
import os
import sys


def _pct(x: float) -> str:
    return f"{100 * x:.1f}"


def _lam(lam) -> str:
    return "trained" if lam is None else f"{lam:g}"


def report(workdir: str) -> list[str]:
    r = json.load(open(os.path.join(workdir, "robustness", "robustness.json")))
    name = (
        f"{r['model']}@{r['dataset']} (step {r['checkpoint_step']}, {r['num_test_examples']} test)"
    )
    out = [f"**{name}**", ""]
    cells = r["corruption_accuracy"]
    severities = sorted({c["severity"] for c in cells})
    out.append(
        "| corruption | " + " | ".join(f"sev {s}" if s else "clean" for s in severities) + " |"
    )
    out.append("|---" * (len(severities) + 1) + "|")
    for corruption in sorted({c["corruption"] for c in cells if c["severity"]}):
        by = {c["severity"]: c for c in cells if c["corruption"] in (corruption, "clean")}
        out.append(
            f"| {corruption} | " + " | ".join(_pct(by[s]["accuracy"]) for s in severities) + " |"
        )
    sweep = [c for c in (r.get("lam_sweep") or {}).get("records", []) if c["lam"] is not None]
    if sweep:
        lams = sorted({c["lam"] for c in sweep})
        out += ["", "| λ sweep (stem) | " + " | ".join(f"λ={lam:g}" for lam in lams) + " |"]
        out.append("|---" * (len(lams) + 1) + "|")
        keys = sorted(
            {(c["corruption"], c["severity"]) for c in sweep}, key=lambda k: (k[0] != "clean", k)
        )
        for corruption, severity in keys:
            by = {
                c["lam"]: c
                for c in sweep
                if (c["corruption"], c["severity"]) == (corruption, severity)
            }
            label = corruption if not severity else f"{corruption}/{severity}"
            accs = " | ".join(
                f"{_pct(by[lam]['accuracy'])} (err {by[lam].get('recon_error', float('nan')):.3g})"
                for lam in lams
            )
            out.append(f"| {label} | {accs} |")
    adaptive = r.get("adaptive")
    if adaptive and "test" in adaptive:
        rule = {k: v for k, v in adaptive["rule"].items() if k != "points"}
        out += ["", f"adaptive rule (fitted on validation): {json.dumps(rule)[:300]}", ""]
        out.append("| cell | adaptive λ acc | mean λ | trained-λ acc | best fixed λ (val) acc |")
        out.append("|---|---|---|---|---|")
        for cell in adaptive.get("test", []):
            out.append(
                f"| {cell['corruption']}/{cell['severity']} | {_pct(cell['accuracy'])} | "
                f"{cell.get('mean_lam', float('nan')):.3g} | {_pct(cell['default_lam_accuracy'])} | "
                f"{_pct(cell['best_fixed_lam_accuracy'])} |"
            )
    pgd = r.get("pgd")
    if pgd:
        out += ["", f"PGD ({pgd['steps']} steps, {pgd['num_examples']} test images):", ""]
        out.append("| norm | ε | λ | accuracy |")
        out.append("|---|---|---|---|")
        for rec in pgd["records"]:
            out.append(
                f"| {rec['norm']} | {rec['epsilon']:.4g} | {_lam(rec['lam'])} | {_pct(rec['accuracy'])} |"
            )
    return [*out, ""]


def main(argv: list[str]) -> None:
    for workdir in argv:
        print("\n".join(report(workdir.rstrip("/"))))


if __name__ == "__main__":
    main(sys.argv[1:])
