"""Suite-wide settings: the tests are dominated by XLA compile time on a 2-core CPU, so XLA's
backend optimisations are turned down and its simpler CPU emitters used (``_FAST_COMPILE``; results
are unaffected at the tolerances used). The CPU convolution option the entrypoints set
(:mod:`sdnet_jax.workarounds`) is set here too, before any test module is imported, so every test
runs the same XLA path. Subprocesses started by tests inherit the flags.

No test reads or writes outside the repository and its temporary folders: data sets a test needs
are small fakes written by :mod:`tests.data.fakes` and prepared once per session with the real
``prepare`` command into a temporary ``data_dir`` (``fashion_mnist_dir``, ``cifar10_dir``). CI runs
the suite with an empty ``HOME`` and ``TFDS_DATA_DIR`` so a hidden dependency fails there."""

import atexit
import dataclasses
import os
import shutil
import tempfile
from typing import Any

# One persistent XLA compilation cache per test run: the first process (pytest, or pytest-xdist's
# controller under `make test`) makes a temporary folder and removes it at exit; its workers and every
# subprocess a test starts inherit it through the environment, so a program compiled once — the same
# tiny model in a subprocess, a notebook or the other worker — is not compiled again. Set before jax
# is imported; a fresh folder per run (CI starts cold).
if "JAX_COMPILATION_CACHE_DIR" not in os.environ:
    _cache = tempfile.mkdtemp(prefix="sdnet_jax_test_xla_cache_")
    atexit.register(shutil.rmtree, _cache, ignore_errors=True)
    os.environ["JAX_COMPILATION_CACHE_DIR"] = _cache
    os.environ["JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS"] = "0"
    os.environ["JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES"] = "0"

import jax
import pytest

from sdnet_jax import workarounds
from sdnet_jax.data import prepare
from tests.data import fakes

# Measured with jax/jaxlib 0.10.2 on 2 CPU cores. XLA's optimisation level 0 compiles about 2.5x
# faster than its default but the programs it makes run about 10x slower (a training step of the
# digits SDNet 16 -> 200 ms); level 1 compiles about 2x slower than level 0 and runs as fast as the
# default. So the suite compiles at level 1 (XLA_FLAGS) but JAX lowers each compilation to level 0
# (``jax_disable_most_optimizations``, read at every compilation) except inside
# ``tests.helpers.optimized_xla()``, which the tests that run many steps use. XLA's older CPU loop
# emitters instead of its fusion emitters take a further 30-45 % off the compile-bound tests (a
# CTRL game step 5.8 -> 3.4 s). Test-only: the entrypoints keep XLA's defaults. Subprocesses inherit
# both through the environment.
_FAST_COMPILE = (
    "--xla_backend_optimization_level=1 --xla_llvm_disable_expensive_passes=true"
    " --xla_cpu_use_fusion_emitters=false"
)
if _FAST_COMPILE not in os.environ.get("XLA_FLAGS", ""):
    os.environ["XLA_FLAGS"] = f"{os.environ.get('XLA_FLAGS', '')} {_FAST_COMPILE}".strip()
os.environ.setdefault("JAX_DISABLE_MOST_OPTIMIZATIONS", "1")
# JAX reads that variable once, at its import, which came first (above, or a pytest plugin's):
jax.config.update(
    "jax_disable_most_optimizations",
    os.environ["JAX_DISABLE_MOST_OPTIMIZATIONS"].lower() in ("1", "true", "t", "yes", "y", "on"),
)
workarounds.prefer_eigen_convolutions()


@pytest.fixture
def float64():
    """Runs a test with ``jax_enable_x64`` (float64 references, adjoint and convergence checks)."""
    previous = jax.config.jax_enable_x64
    jax.config.update("jax_enable_x64", True)
    yield
    jax.config.update("jax_enable_x64", previous)


@dataclasses.dataclass(frozen=True)
class Prepared:
    data_dir: str
    written: Any  # what the fake writer returned


def _prepared(factory: pytest.TempPathFactory, name: str, write) -> Prepared:
    """Fake source files of ``name`` written by ``write(manual_dir)``, prepared with the real
    ``prepare`` command into a temporary TFDS data_dir."""
    manual_dir = factory.mktemp(f"{name}_manual")
    data_dir = factory.mktemp(f"{name}_data")
    written = write(os.fspath(manual_dir))
    prepare.main([name, f"--manual_dir={manual_dir}", f"--data_dir={data_dir}"])
    return Prepared(os.fspath(data_dir), written)


@pytest.fixture(scope="session")
def fashion_mnist_dir(tmp_path_factory: pytest.TempPathFactory) -> Prepared:
    """Fake Fashion-MNIST IDX files (Debian's layout), prepared."""
    return _prepared(tmp_path_factory, "fashion_mnist", fakes.write_fashion_mnist)


@pytest.fixture(scope="session")
def cifar10_dir(tmp_path_factory: pytest.TempPathFactory) -> Prepared:
    """Fake CIFAR-10 python pickles, prepared."""
    return _prepared(tmp_path_factory, "cifar10", fakes.write_cifar10)


# Tiny classifiers trained once per session on the embedded digits (evaluation tests restore them).
SDNET_STEPS = 150
RESNET_STEPS = 40


def _train_tiny(workdir: str, model: str, steps: int) -> str:
    from sdnet_jax.train import classifier
    from tests.helpers import digits_smoke, optimized_xla

    config = digits_smoke(
        num_train_steps=steps,
        batch_size=64,
        eval_batch_size=200,
        log_every_steps=50,
        checkpoint_every_steps=50,
        **{"model.name": model, "model.width": 8, "data.validation_size": 200},
    )
    with optimized_xla():  # many steps
        classifier.train_and_evaluate(config, workdir)
    return workdir


@pytest.fixture(scope="session")
def sdnet_dir(tmp_path_factory: pytest.TempPathFactory) -> str:
    """A width-8 SDNet-18 trained for ``SDNET_STEPS`` steps on digits (its workdir)."""
    return _train_tiny(os.fspath(tmp_path_factory.mktemp("sdnet")), "sdnet18", SDNET_STEPS)


@pytest.fixture(scope="session")
def resnet_dir(tmp_path_factory: pytest.TempPathFactory) -> str:
    """A width-8 ResNet-18 trained for ``RESNET_STEPS`` steps on digits (its workdir)."""
    return _train_tiny(os.fspath(tmp_path_factory.mktemp("resnet")), "resnet18", RESNET_STEPS)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """The longest tests first (the ``slow`` ones: subprocesses, notebooks, several processes, and
    the group that trains the tiny models), the rest in their usual order: with two pytest-xdist
    workers a long test that starts last leaves the other worker idle at the end."""
    long = lambda item: item.get_closest_marker("slow") or item.get_closest_marker("xdist_group")
    items.sort(key=lambda item: 0 if long(item) else 1)
