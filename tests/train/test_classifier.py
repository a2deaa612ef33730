"""Classifier training: smoke runs of every config, resume equivalence, preemption, bad configs."""

from __future__ import annotations

import glob
import json
import os
import signal
import subprocess
import sys

import jax
import numpy as np
import pytest

from sdnet_jax.runtime import checkpoint
from sdnet_jax.train import classifier
from tests.helpers import (
    CONFIGS,
    ROOT,
    TINY_MODEL_FLAGS,
    data_context,
    digits_smoke,
    load_config,
    wait_for_metric_lines,
)


@pytest.mark.parametrize("full", [False, True], ids=["smoke", "full"])
@pytest.mark.parametrize("name", CONFIGS)
def test_every_config_validates_and_its_step_traces(name, full, fashion_mnist_dir):
    """Every config (its tiny 'smoke' form and the real one) validates, and its init and train
    step trace to the right shapes (``jax.eval_shape``: nothing is compiled)."""
    config = load_config(name, None if full else "smoke")
    with data_context(config, fashion_mnist_dir):
        info = classifier.validate_config(config)
    model = classifier.build_model(config, info)
    _, tx = classifier.make_optimizer(config, info)
    state = jax.eval_shape(
        classifier.make_init_state(model, tx, info.image_shape), jax.random.key(0)
    )
    batch = {
        "image": jax.ShapeDtypeStruct((config.batch_size, *info.image_shape), np.float32),
        "label": jax.ShapeDtypeStruct((config.batch_size,), np.int32),
    }
    new_state, metrics = jax.eval_shape(classifier.make_train_step(model, tx), state, batch)
    assert jax.tree_util.tree_structure(new_state) == jax.tree_util.tree_structure(state)
    for a, b in zip(
        jax.tree_util.tree_leaves(new_state), jax.tree_util.tree_leaves(state), strict=True
    ):
        assert (a.shape, a.dtype) == (b.shape, b.dtype)
    assert set(metrics) == {"loss", "accuracy", "grad_norm"}
    assert all(m.shape == () for m in metrics.values())
    assert ("stem_csc" in state.params) == ("sdnet" in config.model.name)


# One compiled run per model family (ResNet, SDNet, SDNet-All) and stem (CIFAR, ImageNet), through
# every data path (embedded digits, prepared TFDS files, TFDS mock data).
COMPILED = [
    "digits_sdnet",
    "fashion_mnist_resnet18",
    "fashion_mnist_sdnet18_all",
    "imagenet_sdnet18",
]


@pytest.mark.parametrize("name", COMPILED)
def test_one_step_run(name, tmp_path, fashion_mnist_dir):
    config = load_config(name)
    config.num_train_steps = 1
    config.checkpoint_every_steps = 1
    with data_context(config, fashion_mnist_dir):
        info = classifier.validate_config(config)
        results = classifier.train_and_evaluate(config, os.fspath(tmp_path))
    assert results["final"]["step"] == 1
    test = results["final"]["test"]
    assert np.isfinite(test["loss"]) and test["loss"] > 0
    # accuracy is a fraction of the test examples, each counted once (padding masked out)
    correct = test["accuracy"] * info.num_test
    assert abs(correct - round(correct)) < 1e-6 * info.num_test
    saved = json.load(open(tmp_path / "results.json"))
    assert saved["final"]["step"] == 1
    assert os.path.exists(tmp_path / "config.json")
    assert glob.glob(os.fspath(tmp_path / "tensorboard" / "events.out.tfevents.*"))
    lines = [json.loads(line) for line in open(tmp_path / "metrics.jsonl")]
    assert any("train/loss" in line and "train/examples_per_sec" in line for line in lines)


def _restore_params(workdir: str, config) -> dict:
    """Params of the latest checkpoint of ``workdir``, restored as NumPy arrays."""
    manager = checkpoint.make_manager(workdir, max_to_keep=3)
    restored = manager.restore(manager.latest_step())
    manager.close()
    return jax.tree_util.tree_map(np.asarray, restored["params"])


def test_interrupted_and_resumed_equals_uninterrupted(tmp_path):
    config = digits_smoke(num_train_steps=6, checkpoint_every_steps=100, **{"model.width": 4})
    straight, resumed = os.fspath(tmp_path / "straight"), os.fspath(tmp_path / "resumed")
    classifier.train_and_evaluate(config, straight)
    first = classifier.train_and_evaluate(config, resumed, stop_after_steps=3)
    assert first == {"interrupted": True, "step": 3, "signal": 0}
    assert not os.path.exists(os.path.join(resumed, "results.json"))
    second = classifier.train_and_evaluate(config, resumed)
    assert second["final"]["step"] == 6
    a, b = _restore_params(straight, config), _restore_params(resumed, config)
    for x, y in zip(jax.tree_util.tree_leaves(a), jax.tree_util.tree_leaves(b), strict=True):
        np.testing.assert_array_equal(x, y)
    losses = lambda d: [
        json.loads(line)["train/loss"]
        for line in open(os.path.join(d, "metrics.jsonl"))
        if "train/loss" in line
    ]
    assert losses(straight) == losses(resumed)


def _main_command(workdir: str, *flags: str) -> list[str]:
    return [
        sys.executable, "-m", "sdnet_jax.main", "--config=configs/digits_sdnet.py",
        f"--workdir={workdir}", *flags,
    ]  # fmt: skip


@pytest.mark.slow  # a subprocess
def test_sigterm_leaves_a_restorable_checkpoint_and_half_written_ones_are_skipped(tmp_path):
    workdir = os.fspath(tmp_path / "run")
    proc = subprocess.Popen(
        _main_command(
            workdir, "--config.num_train_steps=100000", "--config.log_every_steps=1",
            *TINY_MODEL_FLAGS, "--config.checkpoint_every_steps=100000",
        ),
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip
    wait_for_metric_lines(proc, workdir, 3, timeout=240)
    proc.send_signal(signal.SIGTERM)
    out, _ = proc.communicate(timeout=240)
    assert proc.returncode == 128 + signal.SIGTERM, out  # not 0: the run did not finish
    (line,) = [x for x in out.splitlines() if x.startswith("FATAL")]
    assert line.startswith("FATAL run interrupted: stopped by SIGTERM at step "), line
    steps = sorted(int(p) for p in os.listdir(os.path.join(workdir, "checkpoints")) if p.isdigit())
    assert steps and steps[-1] >= 3, out
    stopped = steps[-1]
    # a half-written checkpoint (what a kill during a save leaves) is ignored on resume
    junk = os.path.join(workdir, "checkpoints", f"{stopped + 50}.orbax-checkpoint-tmp-123")
    os.makedirs(junk)
    open(os.path.join(junk, "garbage"), "w").write("not a checkpoint")
    config = load_config("digits_sdnet", None)  # the run above: the full config, width 4, 1 block
    config.model.width = 4
    config.model.stage_sizes = (1, 1, 1, 1)
    config.num_train_steps = stopped + 2
    results = classifier.train_and_evaluate(config, workdir)
    assert results["final"]["step"] == stopped + 2


BAD = [
    ({"model.name": "resnet19"}, "config.model.name"),
    ({"data.name": "mnist"}, "config.data.name"),
    ({"model.csc.lam": -0.1}, "config.model.csc.lam"),
    ({"model.csc.num_iters": 0}, "config.model.csc.num_iters"),
    ({"model.csc.method": "adam"}, "config.model.csc.method"),
    ({"optim.lr": 0.0}, "config.optim.lr"),
    ({"optim.schedule": "exp"}, "config.optim.schedule"),
    ({"batch_size": 0}, "config.batch_size"),
    ({"data.augment": "mixup"}, "config.data.augment"),
    ({"model.dtype": "float16"}, "config.model.dtype"),
    ({"data.pipeline": "tpu"}, "config.data.pipeline"),
]


@pytest.mark.parametrize("overrides,field", BAD)
def test_bad_config_is_a_clear_error_before_compiling(overrides, field, tmp_path):
    compiles = []
    jax.monitoring.register_event_duration_secs_listener(
        lambda event, duration, **kw: compiles.append(event) if "compile" in event else None
    )
    config = digits_smoke(**overrides)
    with pytest.raises(ValueError, match=field.replace(".", r"\.")):
        classifier.train_and_evaluate(config, os.fspath(tmp_path))
    assert compiles == []


def test_missing_data_dir_says_how_to_prepare(tmp_path):
    config = load_config("cifar10_sdnet18")
    config.data.data_dir = os.fspath(tmp_path / "nothing_here")
    with pytest.raises(ValueError, match=r"sdnet_jax\.data\.prepare"):
        classifier.train_and_evaluate(config, os.fspath(tmp_path / "wd"))


@pytest.mark.slow  # a subprocess
def test_entrypoint_reports_bad_flags_in_one_line(tmp_path):
    for flags, expected in [
        (["--config.model.name=resnet19"], "config.model.name"),
        (["--config.optim.lrr=0.1"], "lrr"),  # locked config: unknown field
    ]:
        proc = subprocess.run(
            _main_command(os.fspath(tmp_path), *flags), cwd=ROOT, capture_output=True, text=True
        )
        assert proc.returncode != 0
        assert expected in proc.stderr
        assert "Traceback" not in proc.stderr


EIGHT_DEVICES = """
import json, sys
sys.path.insert(0, {root!r})
import jax
from tests.helpers import digits_smoke
from sdnet_jax.train import classifier
assert jax.device_count() == 8
config = digits_smoke(num_train_steps=4, batch_size=16, **{{"model.width": 4}})
classifier.train_and_evaluate(config, sys.argv[1])
"""


@pytest.mark.slow  # a subprocess
def test_eight_devices_follow_the_one_device_trajectory(tmp_path):
    """The same run on 8 (forced host) devices, in a subprocess, and on this process's one."""
    flags = f"{os.environ.get('XLA_FLAGS', '')} --xla_force_host_platform_device_count=8"
    eight = subprocess.Popen(
        [sys.executable, "-c", EIGHT_DEVICES.format(root=ROOT), os.fspath(tmp_path / "d8")],
        cwd=ROOT, env=dict(os.environ, XLA_FLAGS=flags), stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    assert jax.device_count() == 1
    config = digits_smoke(num_train_steps=4, batch_size=16, **{"model.width": 4})
    classifier.train_and_evaluate(config, os.fspath(tmp_path / "d1"))
    _, err = eight.communicate(timeout=600)
    assert eight.returncode == 0, err[-3000:]
    losses = {
        devices: [
            json.loads(line)["train/loss"]
            for line in open(tmp_path / f"d{devices}" / "metrics.jsonl")
            if "train/loss" in line
        ]
        for devices in (1, 8)
    }
    assert len(losses[1]) == 4
    np.testing.assert_allclose(losses[8], losses[1], rtol=2e-5)
