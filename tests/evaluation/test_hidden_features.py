"""The hidden-feature visualisation job and command (``python -m sdnet_jax.visualize``) on a smoke
SDNet-18-All without shortcut and on the session's tiny trained digits SDNet and ResNet."""

from __future__ import annotations

import glob
import json
import os
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from sdnet_jax.data import input_pipeline
from sdnet_jax.errors import ConfigError, RunError
from sdnet_jax.evaluation import hidden_features
from tests.helpers import ROOT, digits_smoke

pytestmark = pytest.mark.xdist_group("trained_tiny_models")


@pytest.fixture(scope="module")
def all_noshortcut_dir(tmp_path_factory: pytest.TempPathFactory) -> str:
    """A smoke SDNet-18-All without shortcut (width 4, one block per stage), 1 step on digits."""
    from sdnet_jax.train import classifier

    workdir = os.fspath(tmp_path_factory.mktemp("all_noshortcut"))
    config = digits_smoke(
        num_train_steps=1, **{"model.name": "sdnet18_all_noshortcut", "model.stage_sizes": (1, 2)}
    )
    classifier.train_and_evaluate(config, workdir)
    return workdir


def png(path: str) -> np.ndarray:
    return np.asarray(Image.open(path))


def test_every_layer_of_a_smoke_all_model(all_noshortcut_dir, tmp_path):
    out = os.fspath(tmp_path / "viz")
    report = hidden_features.visualize_checkpoint(
        all_noshortcut_dir, layers=[(0, 0), (1, 1), (2, 1), (2, 2)], num_images=6, output_dir=out
    )
    assert report["rows"] == ["input", "stem", "stage1_block1", "stage2_block1", "stage2_block2"]
    assert report["labels"] == sorted(report["labels"]) and len(report["labels"]) == 6
    assert [entry["code_shape"] for entry in report["layers"]] == [
        [8, 8, 4], [8, 8, 4], [4, 4, 8], [4, 4, 8]
    ]  # fmt: skip
    # one row of six 8x8 digits per row of the report, 1-pixel white padding
    grid = png(os.path.join(out, "hidden_features.png"))
    assert grid.shape == (5 * 9 + 1, 6 * 9 + 1)
    # the input row is the test split's first six digits (uint8 as stored), sorted by label
    batch = next(
        input_pipeline.eval_iterator(
            "digits", "test", global_batch_size=6, data_dir=None, validation_size=0
        )
    )
    order = np.argsort(batch["label"], kind="stable")
    for i, image in enumerate(batch["image"][order]):
        np.testing.assert_array_equal(grid[1:9, 1 + 9 * i : 9 + 9 * i], image[..., 0])
    assert png(os.path.join(out, "layer_2_2.png")).shape == (2 * 9 + 1, 6 * 9 + 1)
    assert json.load(open(os.path.join(out, "visualize.json")))["rows"] == report["rows"]
    events = glob.glob(os.path.join(all_noshortcut_dir, "tensorboard", "events.*"))
    assert events and max(os.path.getsize(e) for e in events) > 1000  # images went to TensorBoard
    # 'auto' = SDNet's layers this model has: (0, 0), (1, 1), (2, 2) (no stage 3 block 2 here)
    report = hidden_features.visualize_checkpoint(all_noshortcut_dir, num_images=2, output_dir=out)
    assert report["rows"] == ["input", "stem", "stage1_block1", "stage2_block2"]


def test_bad_options_and_layers_are_config_errors(all_noshortcut_dir, resnet_dir):
    assert hidden_features.parse_layers("0:0, 3:2") == [(0, 0), (3, 2)]
    assert hidden_features.parse_layers("auto") is None
    with pytest.raises(ConfigError, match="--layers must be"):
        hidden_features.parse_layers("1-2")
    with pytest.raises(ConfigError, match=r"--layers: .*\(3, 2\) does not exist"):
        hidden_features.visualize_checkpoint(all_noshortcut_dir, layers=[(3, 2)])
    with pytest.raises(ConfigError, match="--num_images"):
        hidden_features.visualize_checkpoint(all_noshortcut_dir, num_images=0)
    with pytest.raises(RunError, match="resnet18, which has no CSC stem"):
        hidden_features.visualize_checkpoint(resnet_dir)


def visualize(workdir: str, *flags: str) -> subprocess.CompletedProcess:
    command = [sys.executable, "-m", "sdnet_jax.visualize", f"--workdir={workdir}", *flags]
    return subprocess.run(command, cwd=ROOT, capture_output=True, text=True)


@pytest.mark.slow  # subprocesses
def test_command_on_the_digits_sdnet_and_one_line_for_a_resnet(sdnet_dir, resnet_dir, tmp_path):
    out = tmp_path / "out"
    proc = visualize(sdnet_dir, "--num_images=4", "--scale=2", f"--output_dir={out}")
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert json.load(open(out / "visualize.json"))["rows"] == ["input", "stem"]  # SDNet-18
    assert png(out / "hidden_features.png").shape == (2 * (2 * 9 + 1), 2 * (4 * 9 + 1))
    proc = visualize(resnet_dir)
    assert proc.returncode == 1
    lines = proc.stderr.strip().splitlines()
    assert lines[-1].startswith("FATAL run error:") and "no CSC stem" in lines[-1], proc.stderr
    assert "Traceback" not in proc.stderr
    proc = visualize(sdnet_dir, "--layers=1:1")  # SDNet-18: only its stem
    assert proc.returncode == 1 and "FATAL config error: --layers" in proc.stderr
