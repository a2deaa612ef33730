"""Robustness evaluation on tiny trained digits models (SDNet-18 and ResNet-18, width 8).

The models are trained once per session (about 40 s on 2 CPU cores together); every evaluation uses
at most 128 examples and few cells, so the whole module stays around a minute and a half.
"""

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

from sdnet_jax import runs
from sdnet_jax.data import input_pipeline, pixels
from sdnet_jax.evaluation import robustness
from sdnet_jax.runtime import parallel
from tests.helpers import ROOT

# These tests share the session's trained tiny models: one pytest-xdist worker trains them once.
pytestmark = pytest.mark.xdist_group("trained_tiny_models")

LAMS = (0.05, 0.1, 0.3, 1.0)  # the digits SDNet is trained at λ = 0.1
LARGE_EPS = 0.3  # ℓ∞ in [0, 1] pixels: far beyond what the tiny model resists


def test_the_group_reaches_pytest_xdist(request: pytest.FixtureRequest):
    """Under ``make test`` (``--dist loadgroup``) this group's tests run on one worker, so the
    session's tiny models are trained once; pytest-xdist marks that in the test's id (pytest 9.2
    broke it: pyproject.toml pins pytest below 9.2)."""
    if getattr(request.config.option, "loadgroup", False):
        assert request.node.nodeid.endswith("@trained_tiny_models"), request.node.nodeid


def tiny_eval(output_dir: str, **overrides: Any):
    e = robustness.default_eval_config()
    e.corruptions = ("gaussian_noise",)
    e.severities = (5,)
    e.lams = LAMS
    e.batch_size = 64
    e.max_examples = 128
    e.pgd_norms = ("linf",)
    e.pgd_linf_epsilons = (0.0, LARGE_EPS)
    e.pgd_steps = 3
    e.pgd_lams = (0.3,)
    e.output_dir = output_dir
    for key, value in overrides.items():
        e[key] = value
    return e


@pytest.fixture(scope="session")
def sdnet_run(sdnet_dir: str, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """The SDNet evaluated in-process, with spies on the splits read and on the rule's fit."""
    reads: list[str] = []
    fits: list[robustness.Sweep] = []
    eval_iterator, fit = input_pipeline.eval_iterator, robustness.fit_adaptive_rule

    def spy_iterator(name: str, split: str, **kw: Any) -> Any:
        reads.append(split)
        return eval_iterator(name, split, **kw)

    def spy_fit(sweep: robustness.Sweep, grid: Any) -> robustness.AdaptiveRule:
        fits.append(sweep)
        return fit(sweep, grid)

    output_dir = os.fspath(tmp_path_factory.mktemp("sdnet_report"))
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(input_pipeline, "eval_iterator", spy_iterator)
        mp.setattr(robustness.job, "fit_adaptive_rule", spy_fit)
        report = robustness.evaluate_checkpoint(sdnet_dir, tiny_eval(output_dir, plots=False))
    return {"report": report, "reads": reads, "fits": fits, "output_dir": output_dir}


def records(report: dict[str, Any], corruption: str, severity: int) -> dict[float, dict]:
    """The λ sweep of one cell by λ (the grid only)."""
    return {
        r["lam"]: r
        for r in report["lam_sweep"]["records"]
        if (r["corruption"], r["severity"]) == (corruption, severity) and r["lam"] is not None
    }


# ----------------------------------------------------------------------------- λ and statistics


@pytest.mark.parametrize("cell", [("clean", 0), ("gaussian_noise", 5)])
def test_higher_lam_gives_sparser_codes_and_larger_recon_error(sdnet_run, cell):
    by_lam = records(sdnet_run["report"], *cell)
    assert sorted(by_lam) == list(LAMS)
    for key in ("l1", "nonzero_fraction"):
        values = [by_lam[lam][key] for lam in LAMS]
        assert np.all(np.diff(values) < 0), (key, values)
    recon = [by_lam[lam]["recon_error"] for lam in LAMS]
    assert np.all(np.diff(recon) > 0), recon
    assert by_lam[1.0]["nonzero_fraction"] < 0.5 * by_lam[0.05]["nonzero_fraction"]
    # the default-λ row is the trained λ = 0.1
    default = next(
        r
        for r in sdnet_run["report"]["lam_sweep"]["records"]
        if (r["corruption"], r["severity"]) == cell and r["lam"] is None
    )
    assert default["accuracy"] == by_lam[0.1]["accuracy"]
    np.testing.assert_allclose(default["recon_error"], by_lam[0.1]["recon_error"], rtol=1e-6)


def test_scope_all_equals_scope_stem_when_only_the_stem_is_csc(sdnet_dir, sdnet_run):
    """The digits SDNet has one CSC layer (the stem), so both scopes must agree; run through the
    library's pieces directly (Evaluator, SplitBatches, run_sweep) on the sharded mesh."""
    config, model, state, info = runs.load_classifier(sdnet_dir)
    evaluator = robustness.Evaluator(
        model, info, corruption_names=("gaussian_noise",), table="cifar10", scope="all",
        default_lam=0.1, seed=0, pgd_steps=1, random_start=False,
    )  # fmt: skip
    batches = robustness.SplitBatches(
        config, "test", batch_size=64, max_examples=128, data_dir=None
    )
    cells = [("clean", 0), ("gaussian_noise", 5)]
    sweep = robustness.run_sweep(evaluator, state, batches, cells, [0.3, 1.0], parallel.data_mesh())
    assert sweep.split == "test" and sweep.num_examples == 128
    for cell in cells:
        stem = records(sdnet_run["report"], *cell)
        for lam in (0.3, 1.0):
            got = sweep.get(cell, lam)
            assert got["accuracy"] == stem[lam]["accuracy"]
            np.testing.assert_allclose(got["recon_error"], stem[lam]["recon_error"], rtol=1e-5)


def test_corruptions_act_on_pixels_and_return_normalised_images():
    mean, std = np.float32(0.3), np.float32(0.4)
    unit = jax.random.uniform(jax.random.key(0), (8, 6, 6, 1))
    images = pixels.normalised_from_unit(unit, mean, std)
    noisy = robustness.corrupt_normalised(
        images, jax.random.key(1), 5, name="impulse_noise", mean=mean, std=std, table="cifar10"
    )
    noisy_pixels = pixels.unit_from_normalised(noisy, mean, std)
    changed = np.abs(np.asarray(noisy_pixels - unit)) > 1e-6
    assert 0.01 < changed.mean() < 0.2  # salt and pepper, amount 0.07
    np.testing.assert_allclose(np.unique(np.asarray(noisy_pixels)[changed]), [0.0, 1.0], atol=1e-6)


# ----------------------------------------------------------------------------- adaptive λ


def test_adaptive_rule_is_fitted_on_validation_only(sdnet_run):
    report, fits = sdnet_run["report"], sdnet_run["fits"]
    assert len(fits) == 1 and fits[0].split == "validation"
    assert set(sdnet_run["reads"]) == {"test", "validation"}
    rule = report["adaptive"]["rule"]
    assert rule["fitted_on"] == "validation"
    best = [p["best_lam"] for p in rule["points"]]  # clipped to the λs best on validation
    assert (rule["lam_min"], rule["lam_max"]) == (min(best), max(best))
    # the fitted points are the validation sweep's cells, not the test ones
    validation_defaults = {
        (r["corruption"], r["severity"]): r["recon_error"]
        for r in fits[0].records
        if r["lam"] is None
    }
    test_defaults = {
        (r["corruption"], r["severity"]): r["recon_error"] for r in report["corruption_accuracy"]
    }
    for point in rule["points"]:
        cell = (point["corruption"], point["severity"])
        assert point["recon_error"] == validation_defaults[cell] != test_defaults[cell]
    # its test accuracy is reported beside the fixed λ ones, for every cell
    rows = report["adaptive"]["test"]
    assert [(r["corruption"], r["severity"]) for r in rows] == [("clean", 0), ("gaussian_noise", 5)]
    for row in rows:
        assert 0.0 <= row["accuracy"] <= 1.0
        assert min(LAMS) - 1e-6 <= row["mean_lam"] <= max(LAMS) + 1e-6
        assert {"default_lam_accuracy", "best_fixed_lam_accuracy"} <= set(row)


def test_fit_refuses_test_data_and_recovers_a_line():
    def sweep(split: str) -> robustness.Sweep:
        rows = []
        for i, best in enumerate((0.1, 0.3, 0.5)):  # best λ = 0.1 + 0.2 * recon_error
            cell = ("gaussian_noise", i + 1)
            rows.append({"corruption": cell[0], "severity": cell[1], "lam": None, "recon_error": i})
            for lam in (0.1, 0.3, 0.5):
                accuracy = 0.9 if lam == best else 0.5
                rows.append(
                    {
                        "corruption": cell[0],
                        "severity": cell[1],
                        "lam": lam,
                        "accuracy": accuracy,
                        "loss": 1.0,
                    }
                )
        return robustness.Sweep(split, (0.1, 0.3, 0.5), 0.1, 10, tuple(rows))

    with pytest.raises(ValueError, match="validation split only"):
        robustness.fit_adaptive_rule(sweep("test"), (0.1, 0.3, 0.5))
    rule = robustness.fit_adaptive_rule(sweep("validation"), (0.1, 0.3, 0.5))
    assert rule.fitted_on == "validation" and rule.num_examples == 10
    np.testing.assert_allclose([rule.a, rule.b], [0.2, 0.1], atol=1e-9)
    np.testing.assert_allclose(rule([0.0, 1.0, 100.0]), [0.1, 0.3, 0.5])


# ----------------------------------------------------------------------------- PGD


def test_pgd_at_zero_eps_changes_nothing_and_large_eps_breaks_the_model(sdnet_run):
    report = sdnet_run["report"]
    pgd = {(r["lam"], r["epsilon"]): r["accuracy"] for r in report["pgd"]["records"]}
    assert set(pgd) == {(lam, eps) for lam in (None, 0.3) for eps in (0.0, LARGE_EPS)}
    clean = {None: report["corruption_accuracy"][0]["accuracy"]}
    clean[0.3] = records(report, "clean", 0)[0.3]["accuracy"]
    for lam in (None, 0.3):
        assert clean[lam] > 0.8
        assert pgd[lam, 0.0] == clean[lam]
        assert pgd[lam, LARGE_EPS] < 0.5 * clean[lam]


def test_pgd_projection_stays_in_the_ball_and_the_pixel_range():
    key = jax.random.key(0)
    pixels = jax.random.uniform(key, (4, 5, 5, 2))
    delta = 3.0 * jax.random.normal(jax.random.key(1), pixels.shape)
    for norm, eps in [("linf", 0.1), ("l2", 0.5)]:
        out = robustness.pgd_project(delta, pixels, jnp.float32(eps), norm)
        assert float(jnp.min(pixels + out)) >= 0.0 and float(jnp.max(pixels + out)) <= 1.0
        flat = out.reshape(4, -1)
        size = jnp.max(jnp.abs(flat), 1) if norm == "linf" else jnp.linalg.norm(flat, axis=1)
        assert float(jnp.max(size)) <= eps + 1e-6
        start = robustness.pgd_random_start(key, pixels.shape, jnp.float32(eps), norm)
        assert (
            float(jnp.max(jnp.abs(robustness.pgd_project(start, pixels, eps, norm)))) <= eps + 1e-6
        )


# ----------------------------------------------------------------------------- corruptions


def check_corruption_accuracy(report: dict[str, Any]) -> None:
    rows = report["corruption_accuracy"]
    assert [(r["corruption"], r["severity"]) for r in rows] == [("clean", 0), ("gaussian_noise", 5)]
    assert all(0.0 <= r["accuracy"] <= 1.0 and np.isfinite(r["loss"]) for r in rows)
    assert rows[0]["accuracy"] > 0.5  # the tiny models have learnt something
    assert report["num_test_examples"] == 128


def test_corruption_accuracy_of_sdnet(sdnet_run):
    report = sdnet_run["report"]
    check_corruption_accuracy(report)
    assert report["has_csc_layers"] and report["default_lam"] == pytest.approx(0.1)
    assert {"recon_error", "l1", "nonzero_fraction"} <= set(report["corruption_accuracy"][0])
    saved = json.load(open(os.path.join(sdnet_run["output_dir"], "robustness.json")))
    assert saved["corruption_accuracy"] == report["corruption_accuracy"]


def test_corruption_accuracy_of_resnet(resnet_dir, tmp_path):
    e = tiny_eval(os.fspath(tmp_path), pgd_norms=(), plots=False)
    report = robustness.evaluate_checkpoint(resnet_dir, e)
    check_corruption_accuracy(report)
    assert not report["has_csc_layers"] and report["default_lam"] is None
    assert "recon_error" not in report["corruption_accuracy"][0]
    assert "lam_sweep" not in report and report["adaptive"] is None and report["pgd"] is None
    assert os.path.exists(tmp_path / "robustness.json")


# ----------------------------------------------------------------------------- entrypoint


def evaluate_command(workdir: str, *flags: str) -> list[str]:
    return [sys.executable, "-m", "sdnet_jax.evaluate", f"--workdir={workdir}", *flags]


@pytest.mark.slow  # a subprocess
def test_entrypoint_end_to_end_on_two_devices(sdnet_dir, tmp_path):
    output_dir = tmp_path / "out"
    flags = [
        "--config.eval.corruptions=('impulse_noise',)",
        "--config.eval.severities=(3,)",
        "--config.eval.lams=(0.1, 0.5)",
        "--config.eval.max_examples=64",
        "--config.eval.batch_size=32",
        "--config.eval.pgd_norms=('l2',)",
        "--config.eval.pgd_l2_epsilons=(0.0, 2.0)",
        "--config.eval.pgd_steps=2",
        "--config.eval.pgd_lams=(0.5,)",
        f"--config.eval.output_dir={output_dir}",
    ]
    xla_flags = f"{os.environ.get('XLA_FLAGS', '')} --xla_force_host_platform_device_count=2"
    env = dict(os.environ, XLA_FLAGS=xla_flags.strip())
    proc = subprocess.run(
        evaluate_command(sdnet_dir, *flags), cwd=ROOT, env=env, capture_output=True, text=True
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "test sweep" in proc.stderr and "PGD l2" in proc.stderr  # progress lines
    assert "impulse_noise/3  accuracy at λ = {default(0.1): " in proc.stderr  # λ of each value
    report = json.load(open(output_dir / "robustness.json"))
    assert report["eval"]["lams"] == [0.1, 0.5]
    assert report["num_test_examples"] == 64
    assert {(r["corruption"], r["severity"]) for r in report["corruption_accuracy"]} == {
        ("clean", 0),
        ("impulse_noise", 3),
    }
    assert len(report["lam_sweep"]["records"]) == 2 * 3  # 2 cells x (default + 2 λs)
    assert report["adaptive"]["rule"]["fitted_on"] == "validation"
    assert {(r["lam"], r["epsilon"]) for r in report["pgd"]["records"]} == {
        (lam, eps) for lam in (None, 0.5) for eps in (0.0, 2.0)
    }
    for name in ("corruption_accuracy.png", "lam_sweep.png", "pgd.png"):
        with open(output_dir / name, "rb") as f:
            assert f.read(8) == b"\x89PNG\r\n\x1a\n"


BAD = [
    ("corruptions", ("fog",), "config.eval.corruptions"),
    ("severities", (0, 6), "config.eval.severities"),
    ("lams", (0.1, -0.2), "config.eval.lams"),
    ("lam_scope", "everything", "config.eval.lam_scope"),
    ("pgd_norms", ("l1",), "config.eval.pgd_norms"),
    ("pgd_linf_epsilons", (), "config.eval.pgd_linf_epsilons"),
    ("pgd_steps", 0, "config.eval.pgd_steps"),
    ("pgd_step_size", 0.0, "config.eval.pgd_step_size"),
    ("batch_size", 0, "config.eval.batch_size"),
    ("max_examples", -1, "config.eval.max_examples"),
    ("checkpoint", "newest", "config.eval.checkpoint"),
    ("table", "mnist", "config.eval.table"),
    ("protocol", "sdnet2", "config.eval.protocol"),
    ("sdnet_noises", ("gaussian_noise",), "config.eval.sdnet_noises"),
    ("sdnet_lams", (), "config.eval.sdnet_lams"),
    ("bn_recalibration_examples", -5, "config.eval.bn_recalibration_examples"),
    ("bn_recalibration_scope", "head", "config.eval.bn_recalibration_scope"),
]


@pytest.mark.parametrize("field,value,message", BAD)
def test_bad_eval_config_is_a_clear_error_before_compiling(field, value, message, tmp_path):
    compiles: list[str] = []

    def listener(event: str, duration: float, **kw: Any) -> None:
        if "compile" in event:
            compiles.append(event)

    jax.monitoring.register_event_duration_secs_listener(listener)
    try:
        e = tiny_eval(os.fspath(tmp_path))
        e[field] = value
        with pytest.raises(ValueError, match=message.replace(".", r"\.")):
            robustness.evaluate_checkpoint(os.fspath(tmp_path / "no_run_needed"), e)
    finally:
        jax.monitoring.unregister_event_duration_listener(listener)
    assert compiles == []


@pytest.mark.slow  # a subprocess
def test_entrypoint_reports_a_bad_eval_config_in_one_line(tmp_path):
    proc = subprocess.run(
        evaluate_command(os.fspath(tmp_path), "--config.eval.lam_scope=everything"),
        cwd=ROOT, capture_output=True, text=True,
    )  # fmt: skip
    assert proc.returncode != 0
    assert "config.eval.lam_scope" in proc.stderr and "Traceback" not in proc.stderr
