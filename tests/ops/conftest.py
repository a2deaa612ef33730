"""The ops tests run in float64 (references, adjoint and convergence tests need the precision)."""

import jax
import pytest


@pytest.fixture(autouse=True)
def float64():
    previous = jax.config.jax_enable_x64
    jax.config.update("jax_enable_x64", True)
    yield
    jax.config.update("jax_enable_x64", previous)
