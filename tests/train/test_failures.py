"""What a user hits when things go wrong: a relative --workdir, a diverging run (classifier and
CTRL), a damaged newest checkpoint, and evaluate / transfer pointed at the wrong workdir."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time

import jax
import numpy as np
import pytest

from benchmarks import ctrl_transfer
from sdnet_jax import cli, runs
from sdnet_jax.errors import NonFiniteError, RunError
from sdnet_jax.evaluation import robustness
from sdnet_jax.train import classifier, ctrl
from tests.helpers import ROOT, TINY_MODEL_FLAGS, digits_smoke, load_config


def _run(args: list[str], cwd: str) -> subprocess.CompletedProcess:
    env = dict(os.environ)
    env.pop("PYTHONPATH", None)  # the installed package; `configs` found from --config's path
    return subprocess.run(
        [sys.executable, "-m", *args], cwd=cwd, env=env, capture_output=True, text=True
    )


def _fatal_line(proc: subprocess.CompletedProcess) -> str:
    """The entrypoint's one-line error (and that it is the only thing it says about it)."""
    assert proc.returncode == 1, proc.stderr[-3000:]
    assert "Traceback" not in proc.stderr, proc.stderr[-3000:]
    (line,) = [x for x in proc.stderr.splitlines() if x.startswith("FATAL")]
    return line


def _checkpoints(workdir: str) -> list[int]:
    return sorted(int(p) for p in os.listdir(os.path.join(workdir, "checkpoints")) if p.isdigit())


@pytest.mark.slow  # a subprocess
def test_relative_workdir_from_another_directory(tmp_path):
    proc = _run(
        ["sdnet_jax.main", f"--config={ROOT}/configs/digits_sdnet.py", "--workdir=runs/rel",
         "--config.num_train_steps=2", "--config.checkpoint_every_steps=1",
         *TINY_MODEL_FLAGS, "--config.eval_every_steps=0"],
        cwd=os.fspath(tmp_path),
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    workdir = tmp_path / "runs" / "rel"
    assert _checkpoints(os.fspath(workdir)) == [1, 2]
    assert json.load(open(workdir / "results.json"))["final"]["step"] == 2
    # evaluation of the same relative workdir gets past the workdir checks (its config is bad)
    proc = _run(["sdnet_jax.evaluate", "--workdir=runs/rel", "--config.eval.batch_size=0"],
                cwd=os.fspath(tmp_path))  # fmt: skip
    assert _fatal_line(proc).startswith("FATAL config error: config.eval.batch_size")


@pytest.mark.slow  # a subprocess
def test_diverging_classifier_stops_naming_the_step_and_keeps_the_last_good_checkpoint(tmp_path):
    workdir = os.fspath(tmp_path / "run")
    proc = _run(
        ["sdnet_jax.main", "--config=configs/digits_sdnet.py", f"--workdir={workdir}",
         "--config.optim.lr=1e8", *TINY_MODEL_FLAGS, "--config.checkpoint_every_steps=1",
         "--config.log_every_steps=50", "--config.num_train_steps=30"],
        cwd=ROOT,
    )  # fmt: skip
    line = _fatal_line(proc)
    assert line.startswith("FATAL training diverged: ") and "not finite at step" in line, line
    bad_step = int(line.split("not finite at step ")[1].split(".")[0])
    assert 1 <= bad_step < 30
    # every step before the first non-finite one was saved, none after it
    assert _checkpoints(workdir) and max(_checkpoints(workdir)) == bad_step - 1
    assert f"step {bad_step - 1}, is the last good state" in line
    _, _, state, _ = runs.load_classifier(workdir, which="latest")
    assert int(state.step) == bad_step - 1
    for leaf in jax.tree_util.tree_leaves(state.params):
        assert np.all(np.isfinite(leaf))
    assert not os.path.exists(os.path.join(workdir, "results.json"))


def test_diverging_ctrl_game_stops(tmp_path):
    config = load_config("ctrl_digits_csc")  # smoke form: 2 steps
    config.num_train_steps = 6
    config.checkpoint_every_steps = 1
    config.optim.lr = 1e30  # either player's update overflows float32
    with pytest.raises(NonFiniteError, match=r"not finite at step (\d)") as caught:
        ctrl.train_and_evaluate(config, os.fspath(tmp_path))
    bad_step = int(caught.value.args[0].split("not finite at step ")[1][0])
    assert "grad_norm" in caught.value.args[0]
    saved = _checkpoints(os.fspath(tmp_path))
    assert (max(saved) if saved else 0) == bad_step - 1


def _damage(checkpoint_dir: str) -> None:
    """Truncates every array data file of a checkpoint (what a full disk or a bad copy leaves)."""
    damaged = 0
    for root, _, files in os.walk(checkpoint_dir):
        if os.path.basename(root) == "d":
            for name in files:
                path = os.path.join(root, name)
                with open(path, "r+b") as f:
                    f.truncate(os.path.getsize(path) // 3)
                damaged += 1
    assert damaged, f"no data files found under {checkpoint_dir}"


def test_damaged_newest_checkpoint_resumes_from_the_previous_one(tmp_path):
    workdir = os.fspath(tmp_path)
    config = digits_smoke(num_train_steps=4, checkpoint_every_steps=2, **{"model.width": 4})
    assert classifier.train_and_evaluate(config, workdir)["final"]["step"] == 4
    assert _checkpoints(workdir) == [2, 4]
    _damage(os.path.join(workdir, "checkpoints", "4"))
    with pytest.raises(RunError, match=r"checkpoint 4 in .* cannot be read"):
        runs.load_classifier(workdir, which="latest")

    config.num_train_steps = 6
    results = classifier.train_and_evaluate(config, workdir)
    assert results["final"]["step"] == 6
    assert os.path.isdir(os.path.join(workdir, "damaged_checkpoints", "4"))  # kept, set aside
    assert 4 in _checkpoints(workdir) and 6 in _checkpoints(workdir)  # step 4 saved anew
    _, _, state, _ = runs.load_classifier(workdir, which=4)
    assert int(state.step) == 4

    # every checkpoint damaged: one clear error, nothing silently restarted from scratch
    for step in _checkpoints(workdir):
        _damage(os.path.join(workdir, "checkpoints", str(step)))
    with pytest.raises(RunError, match=r"no checkpoint in .* can be read"):
        classifier.train_and_evaluate(config, workdir)


def _fake_run(workdir, task: str | None, checkpoints: bool = False) -> str:
    os.makedirs(workdir, exist_ok=True)
    if task is not None:
        json.dump({"task": task}, open(os.path.join(workdir, "config.json"), "w"))
    if checkpoints:
        os.makedirs(os.path.join(workdir, "checkpoints", "7"))
    return os.fspath(workdir)


WRONG_WORKDIRS = [  # (what, make(folder, task) -> workdir, the message)
    ("missing", lambda d, task: os.fspath(d / "nope"), r"does not exist: train a \w+ run there"),
    ("empty", lambda d, task: _fake_run(d, None), "has no config.json"),
    ("no checkpoint", lambda d, task: _fake_run(d, task), "has no checkpoint yet"),
]


@pytest.mark.parametrize("what,make,message", WRONG_WORKDIRS)
def test_evaluate_and_transfer_on_a_wrong_workdir(what, make, message, tmp_path):
    workdir = make(tmp_path / "classifier", "classifier")
    with pytest.raises(RunError, match=message) as caught:
        robustness.evaluate_checkpoint(workdir, robustness.default_config().eval)
    assert "python -m sdnet_jax.main" in str(caught.value)
    with pytest.raises(RunError, match=message):
        ctrl_transfer.main([make(tmp_path / "ctrl", "ctrl"), "digits"])


def test_evaluate_and_transfer_on_the_other_task(tmp_path):
    ctrl_run = _fake_run(tmp_path / "ctrl", "ctrl", checkpoints=True)
    with pytest.raises(RunError, match=r"holds a 'ctrl' run but .* needs a 'classifier' run"):
        robustness.evaluate_checkpoint(ctrl_run, robustness.default_config().eval)
    classifier_run = _fake_run(tmp_path / "cls", "classifier", checkpoints=True)
    with pytest.raises(RunError, match=r"holds a 'classifier' run but .* needs a 'ctrl' run"):
        ctrl_transfer.main([classifier_run, "digits"])


@pytest.mark.slow  # a subprocess
def test_entrypoints_print_one_line_for_a_missing_workdir(tmp_path):
    proc = _run(["sdnet_jax.evaluate", "--workdir=missing"], cwd=os.fspath(tmp_path))
    line = _fatal_line(proc)
    assert line.startswith("FATAL run error: workdir ") and str(tmp_path / "missing") in line
    proc = _run(["benchmarks.ctrl_transfer", f"{tmp_path}/missing", "digits"], cwd=ROOT)
    assert _fatal_line(proc).startswith("FATAL run error: workdir ")


@pytest.mark.slow  # subprocesses
def test_entrypoint_mistakes_are_one_line_each(tmp_path):
    afile = tmp_path / "afile"
    afile.write_text("not a folder")
    cases = [  # (command, cwd, the line's start, what it must name)
        (["sdnet_jax.evaluate", f"--workdir={tmp_path}", "--config.eval.max_exmples=100"], tmp_path,
         "FATAL Flags parsing error:", "max_examples"),
        (["sdnet_jax.main", "--config=configs/digit_sdnet.py", f"--workdir={tmp_path}/w"], ROOT,
         "FATAL Flags parsing error:", "configs/digit_sdnet.py"),
        (["sdnet_jax.main", "--config=configs/digits_sdnet.py", f"--workdir={afile}"], ROOT,
         f"FATAL run error: --workdir {afile} is a file", "folder"),
        (["sdnet_jax.evaluate", f"--workdir={afile}"], tmp_path,
         f"FATAL run error: --workdir {afile} is a file", "folder"),
    ]  # fmt: skip
    for command, cwd, start, named in cases:
        line = _fatal_line(_run(command, cwd=os.fspath(cwd)))
        assert line.startswith(start) and named in line, (command, line)
    assert not (tmp_path / "w").exists()


def test_interrupted_run_exits_with_the_signal_status(tmp_path, capsys):
    """SIGINT during a run: a checkpoint, the signal in the results, and the entrypoint's exit
    status 130 (128 + SIGINT) with one line, so `&&` chains and schedulers see it unfinished."""
    workdir = os.fspath(tmp_path)
    config = digits_smoke(num_train_steps=10**6, log_every_steps=1, **{"model.width": 4})

    def interrupt_after_the_first_log_line():
        path = os.path.join(workdir, "metrics.jsonl")
        while not (os.path.exists(path) and open(path).read().strip()):
            time.sleep(0.05)
        os.kill(os.getpid(), signal.SIGINT)

    threading.Thread(target=interrupt_after_the_first_log_line, daemon=True).start()
    results = classifier.train_and_evaluate(config, workdir)
    assert results["interrupted"] and results["signal"] == signal.SIGINT
    assert max(_checkpoints(workdir)) == results["step"]
    with pytest.raises(SystemExit) as exited:
        cli.exit_interrupted(results)
    assert exited.value.code == 130
    line = capsys.readouterr().err.strip()
    assert line == (f"FATAL run interrupted: stopped by SIGINT at step {results['step']} and "
                    "checkpointed; rerun the same command to resume.")  # fmt: skip


def test_rerunning_a_finished_run_records_nothing_again_and_old_configs_open(tmp_path):
    workdir = os.fspath(tmp_path)
    config = digits_smoke(num_train_steps=2, **{"model.width": 4})
    first = classifier.train_and_evaluate(config, workdir)
    records = open(os.path.join(workdir, "metrics.jsonl")).read()
    again = classifier.train_and_evaluate(config, workdir)
    assert again == json.loads(json.dumps(first))
    assert open(os.path.join(workdir, "metrics.jsonl")).read() == records  # no second record
    config.num_train_steps = 3  # more steps asked: it trains on
    assert classifier.train_and_evaluate(config, workdir)["final"]["step"] == 3

    # the same run as saved before the fields of runs.common.ADDED_FIELDS existed: it opens, and
    # those fields read as what reproduces how it trained
    path = os.path.join(workdir, "config.json")
    saved = json.load(open(path))
    removed = []
    for key, value in runs.common.ADDED_FIELDS.items():  # those at the value that replaces them
        section, field = key.split(".")
        if saved.get(section, {}).get(field, "absent") == json.loads(json.dumps(value)):
            del saved[section][field]
            removed.append(key)
    assert {"data.pipeline", "data.cache_dir", "optim.warmup_steps"} <= set(removed)
    json.dump(saved, open(path, "w"))
    opened, _, state, _ = runs.load_classifier(workdir, which="latest")
    assert int(state.step) == 3
    for key in removed:
        section, field = key.split(".")
        assert opened[section][field] == runs.common.ADDED_FIELDS[key], key
    assert "ctrl" not in opened  # only the sections a run has
