"""Two local CPU processes (jax.distributed + gloo, started by launch/local.sh) train exactly like
one process over the same global batch; only process 0 logs; their checkpoints resume in a run with
another process count."""

from __future__ import annotations

import ast
import json
import os
import signal
import subprocess

import jax
import numpy as np
import pytest

from sdnet_jax import runs
from sdnet_jax.train import classifier
from tests.helpers import (
    ROOT,
    TINY_MODEL_FLAGS,
    load_config,
    set_fields,
    wait_for_metric_lines,
)

pytestmark = pytest.mark.slow  # several local processes

FLAGS = [
    "--config=configs/digits_sdnet.py",
    "--config.num_train_steps=4",
    "--config.batch_size=16",
    "--config.eval_batch_size=64",
    *TINY_MODEL_FLAGS,
    "--config.log_every_steps=1",
    "--config.checkpoint_every_steps=2",
    "--config.eval_every_steps=0",
]


def _params(workdir: str) -> list[np.ndarray]:
    """Latest checkpoint's parameters, restored onto this (1-process) topology."""
    _, _, state, _ = runs.load_classifier(workdir, which="latest")
    return [np.asarray(x) for x in jax.tree_util.tree_leaves(state.params)]


def _config(flags: list[str]):
    """The config that ``python -m sdnet_jax.main`` builds from ``flags`` (literal overrides)."""
    (path,) = [f.split("=", 1)[1] for f in flags if f.startswith("--config=")]
    overrides = dict(
        f[len("--config.") :].split("=", 1) for f in flags if f.startswith("--config.")
    )
    return set_fields(
        load_config(os.path.basename(path)[: -len(".py")], None),
        {key: ast.literal_eval(value) for key, value in overrides.items()},
    )


def _losses(workdir: str) -> list[float]:
    lines = [json.loads(line) for line in open(os.path.join(workdir, "metrics.jsonl"))]
    return [line["train/loss"] for line in lines if "train/loss" in line]


def test_two_processes_match_one_and_resume_with_one(tmp_path):
    two, one = os.fspath(tmp_path / "two"), os.fspath(tmp_path / "one")
    launched = subprocess.run(
        ["bash", "launch/local.sh", "--num-processes", "2", "--workdir", two, "--timeout", "400",
         "--", *FLAGS],
        cwd=ROOT, capture_output=True, text=True,
    )  # fmt: skip
    assert launched.returncode == 0, launched.stdout[-3000:] + launched.stderr[-3000:]
    logs = [open(os.path.join(two, "logs", f"process_{i}.log")).read() for i in range(2)]
    assert "step 4/4" in logs[0] and "step 4/4" not in logs[1]  # only process 0 logs
    classifier.train_and_evaluate(_config(FLAGS), one)  # one process: this one

    # same global batch, same program: the same trajectory and the same parameters
    assert len(_losses(two)) == 4  # written once (process 0 only), not once per process
    np.testing.assert_allclose(_losses(two), _losses(one), rtol=1e-5)
    for a, b in zip(_params(two), _params(one), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)

    # the 2-process checkpoint restores in a 1-process run (this one), which continues training
    more = classifier.train_and_evaluate(_config([*FLAGS, "--config.num_train_steps=6"]), two)
    assert more["final"]["step"] == 6
    assert json.load(open(os.path.join(two, "results.json")))["final"]["step"] == 6


def test_sigterm_on_one_host_stops_both_at_the_same_step(tmp_path):
    """The hosts agree on stopping at the log cadence (no per-step collective): SIGTERM to
    process 1 alone stops both cleanly, at the same step, with a checkpoint of it, and the
    launcher exits with SIGTERM's status (143: interrupted, not finished)."""
    workdir = os.fspath(tmp_path / "run")
    flags = [f for f in FLAGS if "num_train_steps" not in f and "log_every" not in f]
    launched = subprocess.Popen(
        ["bash", "launch/local.sh", "--num-processes", "2", "--workdir", workdir, "--timeout",
         "400", "--", *flags, "--config.num_train_steps=100000", "--config.log_every_steps=3",
         "--config.checkpoint_every_steps=100000"],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip
    wait_for_metric_lines(launched, workdir, 2, timeout=300)
    found = subprocess.run(
        ["pgrep", "-f", f"workdir={workdir} .*--process_id=1"], capture_output=True, text=True
    )
    (pid,) = [int(p) for p in found.stdout.split()]
    os.kill(pid, signal.SIGTERM)
    out, _ = launched.communicate(timeout=300)
    assert launched.returncode == 128 + signal.SIGTERM, out  # both learn the signal
    logs = [open(os.path.join(workdir, "logs", f"process_{i}.log")).read() for i in range(2)]
    stopped = [int(log.split("stopped at step ")[1].split(";")[0]) for log in logs]
    assert stopped[0] == stopped[1] and stopped[0] % 3 == 0, stopped  # at the log cadence
    steps = [int(p) for p in os.listdir(os.path.join(workdir, "checkpoints")) if p.isdigit()]
    assert steps == [stopped[0]]
