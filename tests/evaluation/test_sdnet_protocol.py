"""SDNet's robust-inference protocol (``--config.eval.protocol=sdnet``) on the session's tiny trained
digits SDNet and ResNet: the sweep, the oracle row, the line fitted on validation and applied per
input, the batch-norm recalibration control, the command."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from sdnet_jax.data import pixels
from sdnet_jax.evaluation import robustness
from sdnet_jax.evaluation.robustness import sdnet_noise
from sdnet_jax.runtime import parallel
from tests.helpers import ROOT, set_fields

pytestmark = pytest.mark.xdist_group("trained_tiny_models")

LAMS = (0.1, 0.5, 1.4)
NOISES = ("gaussian", "impulse")


def sdnet_eval(output_dir: str, **overrides: Any):
    defaults = {"protocol": "sdnet", "sdnet_noises": NOISES, "sdnet_lams": LAMS, "batch_size": 64}
    defaults.update(max_examples=128, output_dir=output_dir)
    return set_fields(robustness.default_eval_config(), {**defaults, **overrides})


@pytest.fixture(scope="module")
def report(sdnet_dir: str, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    out = os.fspath(tmp_path_factory.mktemp("sdnet_protocol"))
    report = robustness.evaluate_checkpoint(sdnet_dir, sdnet_eval(out))
    report["output_dir"] = out
    return report


def by_cell(rows: list[dict]) -> dict:
    return {(r["noise"], r["level"]): r for r in rows}


def test_every_noise_level_and_lambda_is_measured(report):
    cells = [("clean", 0)] + [(n, c) for n in NOISES for c in sdnet_noise.LEVELS[n]]
    assert len(cells) == 1 + 10 + 10
    records = report["records"]
    assert [(r["noise"], r["level"], r["lam"]) for r in records] == [
        (*cell, lam) for cell in cells for lam in (None, *LAMS)
    ]
    assert report["protocol"] == "sdnet" and report["lams"] == list(LAMS)
    for r in records:
        assert 0 <= r["accuracy"] <= 1 and r["recon_error"] > 0
    # the error is per (λ, level): it grows with λ in every cell (no running mean over cells)
    for cell in cells:
        errors = [
            by_cell([r for r in records if r["lam"] == lam])[cell]["recon_error"] for lam in LAMS
        ]
        assert np.all(np.diff(errors) > 0), (cell, errors)
    # impulse noise raises it with the level (more salt and pepper to reconstruct)
    at_default = by_cell([r for r in records if r["lam"] is None])
    impulse = [at_default["impulse", c]["recon_error"] for c in sdnet_noise.LEVELS["impulse"]]
    assert np.all(np.diff(impulse) > 0), impulse
    assert at_default["impulse", 0.3]["accuracy"] < at_default["clean", 0]["accuracy"]


def test_the_oracle_row_is_the_argmax_over_the_grid_with_test_labels(report):
    oracle = report["oracle"]
    assert "TEST labels" in oracle["label"]
    for row in oracle["rows"]:
        cell = (row["noise"], row["level"])
        accuracies = [
            by_cell([r for r in report["records"] if r["lam"] == lam])[cell]["accuracy"]
            for lam in LAMS
        ]
        assert row["best_lam"] == LAMS[int(np.argmax(accuracies))]
        assert row["accuracy"] == max(accuracies)


def test_oracle_ties_go_to_the_first_lambda_as_numpys_argmax():
    rows = []
    for lam, accuracy in ((None, 0.5), (0.1, 0.6), (0.2, 0.8), (0.3, 0.8), (0.4, 0.7)):
        rows.append({"corruption": "gaussian", "severity": 0.1, "lam": lam, "accuracy": accuracy,
                     "loss": 1.0 if lam != 0.3 else 0.1})  # fmt: skip
    sweep = robustness.Sweep("test", (None, 0.1, 0.2, 0.3, 0.4), 0.1, 10, tuple(rows))
    (row,) = robustness.oracle_rows(sweep, [0.1, 0.2, 0.3, 0.4])
    assert (row["best_lam"], row["accuracy"], row["default_lam_accuracy"]) == (0.2, 0.8, 0.5)


def test_the_line_is_fitted_on_validation_and_reported_beside_the_oracle(report):
    line = report["line"]
    rule = line["rule"]
    assert rule["fitted_on"] == "validation"
    validation = by_cell([r for r in report["validation_records"] if r["lam"] is None])
    test = by_cell([r for r in report["records"] if r["lam"] is None])
    for point in rule["points"]:
        cell = (point["corruption"], point["severity"])
        assert point["recon_error"] == validation[cell]["recon_error"] != test[cell]["recon_error"]
        assert point["recon_error_at_best_lam"] > 0  # SDNet's x, recorded beside
    rows = line["test"]
    assert len(rows) == 21
    for row in rows:
        assert rule["lam_min"] - 1e-6 <= row["mean_lam"] <= rule["lam_max"] + 1e-6
        assert row["oracle_accuracy"] >= row["default_lam_accuracy"]
    assert set(line["mean_test_accuracy"]) == {"line", "default_lam", "oracle"}
    for name in ("sdnet_gaussian.png", "sdnet_impulse.png", "sdnet_summary.png", "sdnet_line.png"):
        with open(os.path.join(report["output_dir"], name), "rb") as f:
            assert f.read(8) == b"\x89PNG\r\n\x1a\n"
    saved = json.load(open(os.path.join(report["output_dir"], "sdnet_protocol.json")))
    assert saved["oracle"] == report["oracle"]


@pytest.fixture(scope="module")
def restored(sdnet_dir: str):
    e = sdnet_eval("", max_examples=64)
    return robustness.restore(sdnet_dir, e, corruption_names=NOISES, table="sdnet")


def test_the_line_is_applied_per_input(restored):
    """A steep line gives every test input its own λ from its own reconstruction error; the
    mean λ used is the mean of those, not the line at the mean error."""
    evaluator, state, test, mesh = restored.evaluator, restored.state, restored.test, restored.mesh
    errors = []
    for batch in test:
        images = pixels.normalised_from_uint8(
            parallel.shard_batch(batch, mesh)["image"], restored.info.mean, restored.info.std
        )
        variables = {"params": state.params, **state.model_state}
        _, stats = robustness.forward(evaluator.model, variables, images, 0.1, "stem")
        errors.append(np.asarray(stats["recon_error"])[batch["mask"] > 0])
    errors = np.concatenate(errors)
    a = 1.0 / np.ptp(errors)
    b = 0.2 - a * np.min(errors)  # λ from 0.2 (the cleanest input) up, clipped at 0.8
    rule = robustness.AdaptiveRule(a, b, 0.2, 0.8, "validation", 64, ())
    (row,) = robustness.run_adaptive(evaluator, state, test, [("clean", 0)], rule, mesh)
    per_input = np.clip(a * errors + b, 0.2, 0.8)
    assert np.std(per_input) > 0.05
    np.testing.assert_allclose(row["mean_lam"], per_input.mean(), rtol=1e-4)
    assert abs(row["mean_lam"] - np.clip(a * errors.mean() + b, 0.2, 0.8)) > 1e-3
    # a flat line at λ is the fixed λ of the sweep
    flat = robustness.AdaptiveRule(0.0, 1.4, 1.4, 1.4, "validation", 64, ())
    cells = [("clean", 0), ("impulse", 0.3)]
    fixed = robustness.run_sweep(evaluator, state, test, cells, [1.4], mesh)
    adaptive = robustness.run_adaptive(evaluator, state, test, cells, flat, mesh)
    for row, cell in zip(adaptive, cells, strict=True):
        assert row["accuracy"] == fixed.get(cell, 1.4)["accuracy"]


def test_recalibrated_batch_norm_statistics_are_the_batch_s_own(restored):
    evaluator, state, mesh = restored.evaluator, restored.state, restored.mesh
    batch = parallel.shard_batch(next(iter(restored.test)), mesh)
    stats = evaluator.recalibrated_stats(
        state.params, state.model_state, batch, np.int32(0), np.float32(0), np.float32(0.5)
    )
    assert jax.tree_util.tree_structure(stats) == jax.tree_util.tree_structure(
        state.model_state["batch_stats"]
    )
    codes = evaluator.model.apply(
        {"params": state.params, **state.model_state},
        pixels.normalised_from_uint8(batch["image"], restored.info.mean, restored.info.std),
        stem_lam=0.5,
        capture_intermediates=lambda m, f: f == "__call__" and m.name == "stem_csc",
        mutable=["intermediates"],
    )[1]["intermediates"]["stem_csc"]["__call__"][0]  # fmt: skip
    np.testing.assert_allclose(stats["stem_bn"]["mean"], jnp.mean(codes, (0, 1, 2)), rtol=1e-4)
    np.testing.assert_allclose(
        stats["stem_bn"]["var"], jnp.var(codes, (0, 1, 2)), rtol=1e-3, atol=1e-9
    )
    running = state.model_state["batch_stats"]["stem_bn"]["var"]
    assert not np.allclose(stats["stem_bn"]["var"], running, rtol=0.05)  # λ 0.5 ≠ trained 0.1


def test_recalibration_scope_stem_re_estimates_the_stem_only(restored, monkeypatch):
    evaluator, state, mesh = restored.evaluator, restored.state, restored.mesh
    seen, cell_sums = [], evaluator.cell_sums

    def spy(params, model_state, *args):
        seen.append(jax.device_get(model_state["batch_stats"]))
        return cell_sums(params, model_state, *args)

    monkeypatch.setattr(evaluator, "cell_sums", spy)
    batch = next(iter(restored.test))
    for scope in ("stem", "all"):
        robustness.run_sweep(
            evaluator, state, restored.test, [("clean", 0)], [0.5], mesh, batch, scope
        )
    stem_only, every = seen[0], seen[-1]
    running = jax.device_get(state.model_state["batch_stats"])
    for name in running:
        expected = every[name] if name == "stem_bn" else running[name]
        for a, b in zip(jax.tree_util.tree_leaves(stem_only[name]),
                        jax.tree_util.tree_leaves(expected), strict=True):  # fmt: skip
            np.testing.assert_allclose(a, b, rtol=1e-6)
    assert not np.allclose(every["stage1_block1"]["bn1"]["var"],
                           running["stage1_block1"]["bn1"]["var"])  # fmt: skip


def test_recalibration_control_runs_and_skips_the_line(sdnet_dir, report, tmp_path):
    e = sdnet_eval(os.fspath(tmp_path), sdnet_noises=("gaussian",), sdnet_lams=(0.1, 1.4),
                   bn_recalibration_examples=64, plots=False)  # fmt: skip
    recalibrated = robustness.evaluate_checkpoint(sdnet_dir, e)
    assert recalibrated["bn_recalibration"] == {
        "examples": 64,
        "split": "validation",
        "scope": "all",
    }
    assert "skipped" in recalibrated["line"]
    running = {(r["noise"], r["level"], r["lam"]): r for r in report["records"]}
    changed = [
        r["accuracy"] != running[r["noise"], r["level"], r["lam"]]["accuracy"]
        for r in recalibrated["records"]
    ]
    assert any(changed)
    with pytest.raises(ValueError, match="bn_recalibration_examples=400 is more than"):
        robustness.evaluate_checkpoint(sdnet_dir, sdnet_eval("", bn_recalibration_examples=400))


def test_a_resnet_gets_the_same_noise_without_a_lambda_sweep(resnet_dir, tmp_path):
    report = robustness.evaluate_checkpoint(resnet_dir, sdnet_eval(os.fspath(tmp_path)))
    assert not report["has_csc_layers"] and report["lams"] == []
    assert report["oracle"] is None and report["line"] is None
    assert {r["lam"] for r in report["records"]} == {None} and len(report["records"]) == 21
    assert "recon_error" not in report["records"][0]
    assert os.path.exists(tmp_path / "sdnet_summary.png")
    assert not os.path.exists(tmp_path / "sdnet_gaussian.png")


@pytest.mark.slow  # a subprocess
def test_command_selects_sdnets_protocol(sdnet_dir, tmp_path):
    flags = [
        "--config.eval.protocol=sdnet",
        "--config.eval.sdnet_noises=('shot',)",
        "--config.eval.sdnet_lams=(0.1, 0.3)",
        "--config.eval.max_examples=64",
        "--config.eval.batch_size=32",
        f"--config.eval.output_dir={tmp_path}",
    ]
    command = [sys.executable, "-m", "sdnet_jax.evaluate", f"--workdir={sdnet_dir}", *flags]
    proc = subprocess.run(command, cwd=ROOT, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr[-3000:]
    # the log names the λ of each accuracy
    assert "shot/6  accuracy at λ = {default(0.1): " in proc.stderr
    report = json.load(open(tmp_path / "sdnet_protocol.json"))
    assert report["noise_levels"] == {"shot": list(sdnet_noise.LEVELS["shot"])}
    assert len(report["records"]) == 11 * 3


# ----------------------------------------------------------------------------- benchmarks


def test_the_summary_reads_the_report(report, tmp_path):
    from benchmarks import summarize_sdnet_protocol as summary

    path = os.path.join(report["output_dir"], "sdnet_protocol.json")
    lines = summary.table(path)
    trained = [
        r["accuracy"] for r in report["records"] if r["noise"] == "impulse" and r["lam"] is None
    ]
    row = next(line for line in lines if line.startswith("| impulse |"))
    assert row.split("|")[2].strip() == f"{100 * np.mean(trained):.1f}"
    summary.figure([path, path], [], os.fspath(tmp_path / "figure.png"))
    assert (tmp_path / "figure.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_stem_error_vs_noise_separates_the_clipping(sdnet_dir):
    from benchmarks import stem_error_vs_noise

    x = jnp.linspace(0.0, 1.0, 11)
    samples = jnp.clip(x + 0.2 * jax.random.normal(jax.random.key(0), (200_000, 1)), 0.0, 1.0)
    np.testing.assert_allclose(
        stem_error_vs_noise.expected_clip(x, 0.2), samples.mean(0), atol=2e-3
    )
    table = stem_error_vs_noise.measure(sdnet_dir, 64, sigmas=(0.0, 0.2))
    rows = {(r["sigma"], r["variant"]): r for r in table["rows"]}
    clean = rows[0.0, "unclipped"]
    assert rows[0.0, "clipped"]["total"] == pytest.approx(clean["total"], rel=1e-5)
    assert rows[0.2, "unclipped"]["total"] > clean["total"]  # zero-mean noise adds error
    assert rows[0.2, "mean shift"]["input_mean"] > clean["input_mean"] + 0.05  # brighter
    for r in table["rows"]:
        assert r["background"] + r["foreground"] == pytest.approx(r["total"], rel=1e-5)
