"""The GPU reproduction suite, run here at toy size so the first accelerator run is not its first
run: every part writes its report, a budget cuts parts without losing what they measured, and a
part that fails (missing data) leaves the others running."""

from __future__ import annotations

import json
import math
import os

import pytest

from benchmarks.reproduce import PARTS, suite

pytestmark = pytest.mark.slow  # the benchmark scripts


def _report(out) -> dict:
    with open(os.path.join(out, "report.json")) as f:
        return json.load(f)


def _positive(value) -> bool:
    return isinstance(value, int | float) and math.isfinite(value) and value > 0


@pytest.fixture(scope="module")
def smoke(tmp_path_factory):
    out = tmp_path_factory.mktemp("reproduce")
    suite.main(["--smoke", f"--out={out}"])
    return out


def test_smoke_run_reports_every_part(smoke):
    report = _report(smoke)
    assert {"device", *PARTS} <= set(report)
    assert report["device"]["jax"] and report["device"]["devices"]
    assert report["suite"]["scale"] == "smoke"

    loop = report["loop"]
    assert loop["status"] == "done", loop
    assert [r["model"] for r in loop["rows"]] == [
        "resnet18", "sdnet18", "sdnet18_all", "ctrl_csc", "ctrl_dcgan",
    ]  # fmt: skip
    for row in loop["rows"]:
        for key in ("bare_steps_per_s", "loop_steps_per_s", "ratio", "first_step_s", "input_ms"):
            assert _positive(row[key]), (key, row)
        assert row["loop_steps"] >= 8 and row["input_path"] == "device"

    accuracy = report["accuracy"]
    assert accuracy["status"] == "done", accuracy
    assert accuracy["epochs"] == 1 and accuracy["chance"] == pytest.approx(0.1)
    for model in ("resnet18", "sdnet18"):
        run = accuracy["runs"][model]
        assert run["status"] == "done"
        # digits (in Fashion-MNIST's layout), 1 epoch at width 4: well above chance
        assert run["best_test"]["accuracy"] > 2 * accuracy["chance"], run
        assert run["final_test_accuracy"] == run["best_test"]["accuracy"]  # one evaluation
    gap = 100 * (
        accuracy["runs"]["sdnet18"]["best_test"]["accuracy"]
        - accuracy["runs"]["resnet18"]["best_test"]["accuracy"]
    )
    assert accuracy["sdnet_minus_resnet_points"] == pytest.approx(gap)

    robustness = report["robustness"]
    assert robustness["status"] == "done", robustness
    sdnet = robustness["models"]["sdnet18"]
    assert set(sdnet["mean_accuracy_by_corruption"]) == {"gaussian_noise", "impulse_noise"}
    assert set(sdnet["mean_corrupted_accuracy_by_lam"]) == {"0.1", "0.3"}
    assert "mean_corrupted_accuracy_by_lam" not in robustness["models"]["resnet18"]
    protocol = sdnet["sdnet_protocol"]
    assert set(protocol) == {"running_statistics", "stem_bn_re_estimated"}
    for run in protocol.values():
        assert run["status"] == "done", run
        assert set(run["trained_lam"]) == {"clean", "gaussian", "impulse"}
        oracle = run["oracle_best_lam_on_test_labels"]
        for noise, accuracy in run["trained_lam"].items():  # the oracle's grid holds λ 0.1
            assert oracle[noise] >= accuracy - 1e-9
    assert protocol["stem_bn_re_estimated"]["bn_recalibration"]["scope"] == "stem"
    assert "line_mean_test_accuracy_over_cells" in protocol["running_statistics"]
    resnet = robustness["models"]["resnet18"]["sdnet_protocol"]["running_statistics"]
    assert "oracle_best_lam_on_test_labels" not in resnet and resnet["trained_lam"]["clean"] > 0

    ctrl = report["ctrl"]
    assert ctrl["status"] == "done", ctrl
    for pair in ("csc", "dcgan"):
        points = ctrl["runs"][pair]["points"]
        assert [p["step"] for p in points] == [8, 16, 24]  # evaluations at a third of the run
        for point in points:
            assert _positive(point["psnr"]) and _positive(point["psnr_mean_image"])
            assert 0 <= point["nearest_subspace_accuracy"] <= 1

    assert report["layer"]["status"].startswith(("skipped", "done"))
    text = open(os.path.join(smoke, "report.md")).read()
    for title in ("Loop vs bare step: done", "accuracy: done", "Robustness: done",
                  "CTRL reference recipe: done", "| resnet18 | 16 | device |",
                  "SDNet's protocol, stem_bn_re_estimated", "oracle (best λ per level"):  # fmt: skip
        assert title in text


def test_budget_cuts_parts_and_keeps_what_they_measured(smoke, tmp_path):
    suite.main(["--smoke", f"--out={tmp_path}", "--budget_s=0.5", "--parts=loop,accuracy"])
    report = _report(tmp_path)
    loop = report["loop"]
    assert loop["status"] == "cut after 1 of 5 models (budget)"
    assert len(loop["rows"]) == 1 and _positive(loop["rows"][0]["ratio"])
    accuracy = report["accuracy"]
    for model in ("resnet18", "sdnet18"):
        run = accuracy["runs"][model]
        assert run["status"] == f"cut at step 1 of {accuracy['steps']}"
        assert run["best_test"]["step"] == 1 and 0 <= run["best_test"]["accuracy"] <= 1
    assert accuracy["status"].startswith("resnet18: cut at step 1")
    for part in ("robustness", "ctrl", "layer"):
        assert report[part]["status"] == "skipped: not asked for (--parts)"


def test_missing_data_fails_each_part_alone(tmp_path):
    suite.main([f"--out={tmp_path}", f"--data_dir={tmp_path / 'nothing'}", "--budget_s=60"])
    report = _report(tmp_path)
    for part in ("loop", "accuracy", "ctrl"):
        assert report[part]["status"].startswith("failed: DatasetNotFoundError"), report[part]
        assert "sdnet_jax.data.prepare fashion_mnist" in report[part]["status"]
    assert report["robustness"]["status"] == "skipped: needs the models of the accuracy part"
    assert "## Loop vs bare step: failed" in open(os.path.join(tmp_path, "report.md")).read()


def test_bad_arguments_are_refused(tmp_path):
    with pytest.raises(SystemExit):
        suite.main([f"--out={tmp_path}", "--parts=loop,speed"])
    with pytest.raises(SystemExit):
        suite.main([f"--out={tmp_path}", "--budget_s=0"])
