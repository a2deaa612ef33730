"""Suite-wide settings: the tests are dominated by XLA compile time on a 2-core CPU, so XLA's
backend optimisations are turned down (about 2.5x faster compiles; results are unaffected at the
tolerances used). The CPU convolution option the entrypoints set (:mod:`sdnet_jax.xla_flags`) is set
here too, before any test module is imported, so every test runs the same XLA path. Subprocesses
started by tests inherit the flags."""

import os

import jax
import pytest

from sdnet_jax import xla_flags

_FAST_COMPILE = "--xla_backend_optimization_level=0 --xla_llvm_disable_expensive_passes=true"
if _FAST_COMPILE not in os.environ.get("XLA_FLAGS", ""):
    os.environ["XLA_FLAGS"] = f"{os.environ.get('XLA_FLAGS', '')} {_FAST_COMPILE}".strip()
xla_flags.prefer_eigen_convolutions()


@pytest.fixture
def float64():
    """Runs a test with ``jax_enable_x64`` (float64 references, adjoint and convergence checks)."""
    previous = jax.config.jax_enable_x64
    jax.config.update("jax_enable_x64", True)
    yield
    jax.config.update("jax_enable_x64", previous)
