"""The training loop's input: the device path trains like the host path, its global batch does
not depend on the device count, the prefetcher hands on errors, and the step path does not
fetch from the devices."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time

import jax
import numpy as np
import pytest

from sdnet_jax.runtime import parallel
from sdnet_jax.train import classifier, inputs, loop
from tests.train.test_classifier import ROOT, digits_smoke


def _losses(workdir: str) -> list[float]:
    lines = [json.loads(line) for line in open(os.path.join(workdir, "metrics.jsonl"))]
    return [line["train/loss"] for line in lines if "train/loss" in line]


def test_device_grain_and_host_paths_follow_the_same_trajectory(tmp_path):
    losses = {}
    for pipeline in ("device", "grain", "host"):
        config = digits_smoke(num_train_steps=3, **{"model.width": 4, "data.pipeline": pipeline})
        workdir = os.fspath(tmp_path / pipeline)
        train_input = inputs.training_input(config, classifier.validate_config(config), workdir)
        assert train_input.pipeline == pipeline
        assert bool(train_input.resident) == (pipeline == "device")
        classifier.train_and_evaluate(config, workdir)
        losses[pipeline] = _losses(workdir)
    assert len(losses["device"]) == 3
    # the same batches (made on the devices, in Grain's worker processes, in this process): the
    # same program for Grain with or without workers; the device path's program gathers first
    assert losses["grain"] == losses["host"]
    np.testing.assert_allclose(losses["device"], losses["host"], rtol=1e-5)


def test_auto_puts_digits_on_the_device(tmp_path):
    config = digits_smoke()
    info = classifier.validate_config(config)
    assert config.data.pipeline == "auto"
    assert inputs.training_input(config, info, os.fspath(tmp_path)).pipeline == "device"


GLOBAL_BATCH = """
import re, sys
sys.path.insert(0, {root!r})
import jax, numpy as np
from jax.sharding import NamedSharding, PartitionSpec
from sdnet_jax.data import input_pipeline
from sdnet_jax.runtime import parallel
mesh = parallel.data_mesh()
train_input = input_pipeline.train_input(
    "digits", data_dir=None, validation_size=200, image_size=None, global_batch_size=32, seed=7,
    augment="cifar", pipeline="device")
replicated, feeds = parallel.replicated(mesh), NamedSharding(mesh, PartitionSpec(None, "data"))
resident = {{k: jax.device_put(v, replicated) for k, v in train_input.resident.items()}}
make = jax.jit(train_input.batch, in_shardings=(replicated, feeds, None),
               out_shardings=parallel.batch_sharded(mesh))
feed = parallel.shard_batch(next(train_input.feeds(38)), mesh, feeds)
out = [make(resident, feed, step) for step in (38, 39, 40)]
hlo = make.lower(resident, feed, 38).compile().as_text()
collectives = re.findall(r"= (\\S+) (all-gather|all-reduce|all-to-all|collective-permute|"
                         r"reduce-scatter)[-a-z]*\\(", hlo)
np.savez(sys.argv[1], devices=jax.device_count(), collectives=repr(collectives),
         **{{f"{{k}}{{i}}": np.asarray(b[k]) for i, b in enumerate(out) for k in b}})
"""


def test_global_batch_is_the_same_on_one_and_eight_devices_and_moves_no_images(tmp_path):
    """The step's gather and augmentation give the same global batch on 1 and 8 devices, and on
    8 the compiled program holds no collective: the split is on every device and each gathers
    its own rows (sharding it by rows made XLA all-reduce the whole global batch)."""
    saved = {}
    for devices in (1, 8):
        path = os.fspath(tmp_path / f"d{devices}.npz")
        flags = (
            f"{os.environ.get('XLA_FLAGS', '')} --xla_force_host_platform_device_count={devices}"
        )
        proc = subprocess.run(
            [sys.executable, "-c", GLOBAL_BATCH.format(root=ROOT), path],
            cwd=ROOT, env=dict(os.environ, XLA_FLAGS=flags), capture_output=True, text=True,
        )  # fmt: skip
        assert proc.returncode == 0, proc.stderr[-3000:]
        saved[devices] = dict(np.load(path))
        assert int(saved[devices].pop("devices")) == devices
        assert str(saved[devices].pop("collectives")) == "[]", devices
    assert saved[1].keys() == saved[8].keys() and len(saved[1]) == 6
    for key in saved[1]:
        np.testing.assert_array_equal(saved[8][key], saved[1][key])


def test_prefetcher_hands_on_the_producers_error():
    mesh = parallel.data_mesh()

    def batches():
        yield {"x": np.zeros((2, 3), np.float32)}
        raise RuntimeError("disk on fire")

    with parallel.Prefetcher(batches(), mesh, size=2) as prefetched:
        first = next(prefetched)
        assert first["x"].shape == (2, 3)
        with pytest.raises(RuntimeError, match="disk on fire"):
            next(prefetched)
        with pytest.raises(RuntimeError, match="disk on fire"):
            next(prefetched)


def test_prefetcher_stops_its_thread_when_closed():
    mesh = parallel.data_mesh()
    endless = iter(lambda: {"x": np.zeros((2,), np.float32)}, None)
    prefetched = parallel.Prefetcher(endless, mesh, size=1)
    next(prefetched)
    prefetched.close()
    assert not prefetched._thread.is_alive()


def test_the_step_path_fetches_only_at_the_log_cadence(tmp_path, monkeypatch):
    """``jax.device_get`` called from loop.py: once for the start step, then once per log line
    (every 4 steps of 8), not once per step. The model's train step is traced once per run (the
    trace that names the metrics is the one the jitted step uses)."""
    calls = []
    real = jax.device_get
    traces = []
    make_train_step = classifier.make_train_step

    def counted_train_step(*args, **kwargs):
        step = make_train_step(*args, **kwargs)

        def counted(state, batch):
            traces.append(1)  # Python runs only when JAX traces
            return step(state, batch)

        return counted

    monkeypatch.setattr(classifier, "make_train_step", counted_train_step)

    def counting(*args, **kwargs):
        if sys._getframe(1).f_code.co_filename == loop.__file__:
            calls.append(sys._getframe(1).f_code.co_name)
        return real(*args, **kwargs)

    monkeypatch.setattr(jax, "device_get", counting)
    config = digits_smoke(
        num_train_steps=8, log_every_steps=4, checkpoint_every_steps=100, **{"model.width": 4}
    )
    classifier.train_and_evaluate(config, os.fspath(tmp_path))
    assert calls == ["run", "_fetch_metrics", "_fetch_metrics"]
    assert len(traces) == 1


def test_a_deadline_stops_the_run_like_a_preemption_and_it_resumes(tmp_path):
    config = digits_smoke(num_train_steps=4, log_every_steps=2, **{"model.width": 4})
    workdir = os.fspath(tmp_path)
    # a deadline already past: the first step ends after it, so the run stops there, saved
    stopped = classifier.train_and_evaluate(config, workdir, deadline=time.monotonic())
    assert stopped == {"interrupted": True, "step": 1, "signal": 0}  # no signal: the deadline
    assert not os.path.exists(os.path.join(workdir, "results.json"))
    finished = classifier.train_and_evaluate(config, workdir)
    assert finished["final"]["step"] == 4
    assert [line["step"] for line in map(json.loads, open(f"{workdir}/metrics.jsonl"))
            if "train/loss" in line] == [2, 4]  # fmt: skip
