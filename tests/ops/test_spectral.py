import itertools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from sdnet_jax import ops
from sdnet_jax.ops.types import UNROLL_LIMIT
from tests.ops.reference import normal, operator_matrix


@pytest.mark.parametrize("stride,hw", [(1, (6, 6)), (2, (7, 6)), (2, (8, 8))])
def test_power_iteration_matches_eigvalsh(stride, hw):
    kernel = ops.normalize_atoms(normal(0, (3, 3, 2, 6)))
    analysis, synthesis = ops.conv_pair(kernel, signal_hw=hw, strides=stride)
    a_t = operator_matrix(analysis, (1, *hw, 2))  # A^T as a matrix (code x signal)
    exact = np.linalg.eigvalsh(a_t.T @ a_t).max()
    u0 = normal(1, (1, *hw, 2))
    est, u = ops.power_iteration(analysis, u0, num_iters=2000)
    np.testing.assert_allclose(est, exact, rtol=1e-6)
    assert est <= exact * (1 + 1e-12)  # a Rayleigh quotient never over-estimates
    # explicit synthesis gives the same, and a warm start from the converged vector stays put
    est2, u2 = ops.power_iteration(analysis, u, num_iters=3, synthesis=synthesis)
    np.testing.assert_allclose(est2, exact, rtol=1e-6)
    np.testing.assert_allclose(np.abs(jnp.vdot(u, u2)), 1.0, rtol=1e-6)


def test_power_iteration_warm_start_improves_monotonically():
    d = normal(0, (20, 30))
    analysis, _ = ops.dense_pair(d)
    exact = np.linalg.svd(np.asarray(d), compute_uv=False)[0] ** 2
    u = normal(1, (1, 20))
    errs = []
    for _ in range(5):
        est, u = ops.power_iteration(analysis, u, num_iters=2)
        errs.append(exact - float(est))
    assert all(e >= -1e-9 for e in errs)
    assert all(b <= a + 1e-12 for a, b in itertools.pairwise(errs))


def test_power_iteration_has_no_gradient_and_jits():
    d = normal(0, (5, 8))
    u = jnp.ones((1, 5))

    def f(d):
        return ops.power_iteration(lambda v: v @ d, u, num_iters=10)[0]

    np.testing.assert_allclose(jax.grad(f)(d), 0.0)
    np.testing.assert_allclose(jax.jit(f)(d), f(d), rtol=1e-12)
    with pytest.raises(ValueError, match="num_iters"):
        ops.power_iteration(lambda v: v @ d, u, num_iters=-1)


def test_unrolled_and_looped_power_iterations_agree():
    # up to UNROLL_LIMIT iterations run unrolled, more in a fori_loop: warm-started halves == whole
    d = normal(2, (12, 9))
    analysis, synthesis = ops.dense_pair(d)
    u = normal(3, (1, 12))
    n = 2 * (UNROLL_LIMIT // 2 + 1)  # each half unrolled, the whole looped
    est, v = ops.power_iteration(analysis, u, num_iters=n, synthesis=synthesis)
    _, half = ops.power_iteration(analysis, u, num_iters=n // 2, synthesis=synthesis)
    est2, v2 = ops.power_iteration(analysis, half, num_iters=n // 2, synthesis=synthesis)
    np.testing.assert_allclose(est2, est, rtol=1e-13)
    np.testing.assert_allclose(v2, v, rtol=1e-12, atol=1e-14)
    assert "while" not in str(jax.make_jaxpr(
        lambda u: ops.power_iteration(analysis, u, num_iters=UNROLL_LIMIT, synthesis=synthesis)
    )(u))  # fmt: skip
