import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.test_util import check_grads

from sdnet_jax import ops
from tests.ops.reference import normal, prox_reference


def _brute_force_prox(u, lam, mu, step, nonneg):
    """argmin_z step*(lam|z| + mu/2 z^2) + 1/2 (z - u)^2 on a fine grid, per entry."""
    grid = np.linspace(-4, 4, 160001)
    if nonneg:
        grid = grid[grid >= 0]
    cost = (
        step * (lam * np.abs(grid) + 0.5 * mu * grid**2)[None]
        + 0.5 * (grid[None] - u[:, None]) ** 2
    )
    return grid[np.argmin(cost, axis=1)]


@pytest.mark.parametrize("nonneg", [False, True])
@pytest.mark.parametrize("mu", [0.0, 0.7])
def test_elastic_net_prox_is_the_argmin(nonneg, mu):
    u = np.linspace(-3, 3, 41)
    got = ops.elastic_net_prox(jnp.asarray(u), 0.4, mu, step=0.8, nonneg=nonneg)
    np.testing.assert_allclose(got, _brute_force_prox(u, 0.4, mu, 0.8, nonneg), atol=1e-4)
    np.testing.assert_allclose(
        got, prox_reference(u, 0.4 * 0.8, 1 / (1 + mu * 0.8), nonneg), atol=1e-14
    )


def test_soft_thresholds():
    u = jnp.array([-2.0, -0.5, 0.0, 0.3, 1.5])
    np.testing.assert_allclose(ops.soft_threshold(u, 0.5), [-1.5, 0.0, 0.0, 0.0, 1.0])
    np.testing.assert_allclose(ops.nonneg_soft_threshold(u, 0.5), [0.0, 0.0, 0.0, 0.0, 1.0])
    # per-channel thresholds broadcast
    v = jnp.ones((2, 3)) * 1.0
    np.testing.assert_allclose(
        ops.soft_threshold(v, jnp.array([0.0, 0.5, 2.0])), [[1.0, 0.5, 0.0]] * 2
    )


def test_prox_grads_away_from_kinks():
    u = jnp.array([-2.0, -1.1, 0.9, 1.7])
    check_grads(lambda u, lam: ops.elastic_net_prox(u, lam, 0.3, step=0.5), (u, 0.4), order=2)
    check_grads(lambda u: ops.elastic_net_prox(u, 0.4, nonneg=True), (u,), order=1)


def test_prox_vmap_jit():
    u = normal(0, (5, 7))
    f = lambda u: ops.elastic_net_prox(u, 0.2, 0.1, step=0.9, nonneg=True)
    np.testing.assert_allclose(jax.jit(f)(u), f(u))
    np.testing.assert_allclose(jax.vmap(f)(u), f(u))
