"""Helpers the test modules share: the repository root and the experiment configs."""

from __future__ import annotations

import contextlib
import glob
import importlib.util
import os
import subprocess
import time

import jax
import tensorflow_datasets as tfds

from configs.common import set_fields

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CONFIGS = sorted(  # the classifier configs
    os.path.basename(p)[:-3]
    for p in glob.glob(os.path.join(ROOT, "configs", "*.py"))
    if not os.path.basename(p).startswith(("__", "classifier_base", "common", "ctrl"))
)
CTRL_CONFIGS = sorted(
    os.path.basename(p)[:-3]
    for p in glob.glob(os.path.join(ROOT, "configs", "ctrl_*.py"))
    if not p.endswith("ctrl_base.py")
)


# The digits SDNet as the subprocess tests run it: width 4, one block per stage (cheap to compile).
TINY_MODEL_FLAGS = ("--config.model.width=4", "--config.model.stage_sizes=(1, 1, 1, 1)")


@contextlib.contextmanager
def optimized_xla():
    """Compiles with XLA's optimisations (level 1) instead of the suite's level 0
    (``tests/conftest.py``): for code that runs many steps, where level 0's slow programs cost more
    than level 1's slower compilation."""
    previous = jax.config.values["jax_disable_most_optimizations"]
    jax.config.update("jax_disable_most_optimizations", False)
    try:
        yield
    finally:
        jax.config.update("jax_disable_most_optimizations", previous)


def load_config(name: str, arg: str | None = "smoke"):
    """``configs/<name>.py``'s ``get_config(arg)`` (default: its tiny 'smoke' form)."""
    spec = importlib.util.spec_from_file_location(name, os.path.join(ROOT, "configs", f"{name}.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.get_config(arg)


def digits_smoke(**overrides):
    """The digits SDNet smoke config with dotted-path overrides (``{"model.width": 4}``)."""
    return set_fields(load_config("digits_sdnet"), overrides)


def data_context(config, fashion_mnist_dir=None):
    """A context in which ``config``'s data set can be opened (``config.data`` adjusted): the
    prepared fake Fashion-MNIST when ``fashion_mnist_dir`` is given (the real TFDS path, no
    TensorFlow), the embedded digits, or TFDS's mock data (48 examples) for the others."""
    if fashion_mnist_dir is not None and config.data.name.startswith("fashion_mnist"):
        config.data.data_dir = fashion_mnist_dir.data_dir
        config.data.validation_size = 10
        return contextlib.nullcontext()
    if config.data.name == "digits":
        return contextlib.nullcontext()
    config.data.validation_size = 16
    return tfds.testing.mock_data(num_examples=48)


def wait_for_metric_lines(proc: subprocess.Popen, workdir: str, lines: int, timeout: float) -> None:
    """Waits until the training run ``proc`` has written ``lines`` lines of
    ``workdir/metrics.jsonl``; fails (with its output) if it ended or ``timeout`` passed first."""
    path = os.path.join(workdir, "metrics.jsonl")
    deadline = time.time() + timeout
    while time.time() < deadline and proc.poll() is None:
        if os.path.exists(path) and len(open(path).readlines()) >= lines:
            break
        time.sleep(0.5)
    assert proc.poll() is None, proc.stdout.read()
