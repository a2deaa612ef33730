"""The ops tests run in float64 (references, adjoint and convergence tests need the precision)."""

import pytest


@pytest.fixture(autouse=True)
def _ops_in_float64(float64):
    yield
