import itertools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.test_util import check_grads

from sdnet_jax import ops
from tests.ops.reference import operator_matrix, solver_reference


def _conv_problem(stride=2, hw=(7, 6), cin=2, cout=4, seed=0):
    kernel = ops.normalize_atoms(
        jax.random.normal(jax.random.key(seed), (3, 3, cin, cout), jnp.float64)
    )
    x = jax.random.normal(jax.random.key(seed + 1), (1, *hw, cin), jnp.float64)
    analysis, synthesis = ops.conv_pair(kernel, signal_hw=hw, strides=stride)
    est, _ = ops.power_iteration(analysis, x, num_iters=300)
    return kernel, x, analysis, synthesis, 0.9 / float(est)


def _dense_problem(m=20, n=40, seed=0):
    """A well-posed lasso: unit-norm atoms, a sparse ground truth, a little noise."""
    rng = np.random.default_rng(seed)
    d = rng.standard_normal((m, n))
    d /= np.linalg.norm(d, axis=0)
    z_true = np.zeros(n)
    z_true[rng.choice(n, 4, replace=False)] = rng.uniform(1, 2, 4)
    x = d @ z_true + 0.01 * rng.standard_normal(m)
    step = 0.9 / np.linalg.norm(d, 2) ** 2
    return jnp.asarray(d), jnp.asarray(x)[None], step


CASES = list(itertools.product(ops.METHODS, [False, True], [0.0, 0.3], [1, 2, 3, 5], [False, True]))


@pytest.mark.parametrize("method,nonneg,mu,num_iters,warm", CASES)
def test_solvers_match_reference(method, nonneg, mu, num_iters, warm):
    _kernel, x, analysis, _, step = _conv_problem()
    a = operator_matrix(analysis, x.shape).T  # synthesis matrix A
    z0 = (
        0.1 * jax.random.normal(jax.random.key(5), analysis(x).shape, jnp.float64) if warm else None
    )
    got = ops.solve_lasso(
        x,
        analysis,
        lam=0.1,
        step=step,
        num_iters=num_iters,
        method=method,
        nonneg=nonneg,
        mu=mu,
        z0=z0,
    )
    want = solver_reference(
        a,
        np.asarray(x).ravel(),
        0.1,
        mu,
        step,
        num_iters,
        method,
        nonneg,
        None if z0 is None else np.asarray(z0).ravel(),
    )
    np.testing.assert_allclose(np.asarray(got).ravel(), want, rtol=1e-10, atol=1e-12)


def _count_convs(jaxpr):
    """Convolutions executed by a jaxpr (scan bodies counted ``length`` times)."""
    count = 0
    for eqn in jaxpr.eqns:
        inner = eqn.params.get("jaxpr")
        inner = getattr(inner, "jaxpr", inner)  # ClosedJaxpr -> Jaxpr
        if eqn.primitive.name == "conv_general_dilated":
            count += 1
        elif eqn.primitive.name == "scan":
            count += eqn.params["length"] * _count_convs(inner)
        elif inner is not None:  # pjit / closed_call
            count += _count_convs(inner)
    return count


@pytest.mark.parametrize("num_iters", [1, 2, 3, 6])
def test_cost_is_2k_minus_1_convolutions(num_iters):
    _kernel, x, analysis, synthesis, step = _conv_problem()
    f = lambda x: ops.fista(
        x, analysis, synthesis=synthesis, lam=0.1, step=step, num_iters=num_iters
    )
    assert _count_convs(jax.make_jaxpr(f)(x).jaxpr) == 2 * num_iters - 1


@pytest.mark.parametrize("nonneg", [False, True])
def test_converges_to_the_lasso_solution(nonneg):
    d, x, step = _dense_problem()
    analysis, _ = ops.dense_pair(d)
    # SDNet's variant (momentum with the gradient at the non-extrapolated point) has the same fixed
    # point but converges more slowly than ISTA here (gap 1.3e-5 after 5000, 4.8e-7 after 50000).
    for method, iters, tol in [
        ("fista", 3000, 1e-6),
        ("ista", 20000, 1e-6),
        ("sdnet", 20000, 1e-5),
    ]:
        z = ops.solve_lasso(
            x, analysis, lam=0.1, step=step, num_iters=iters, method=method, nonneg=nonneg
        )
        gap = ops.optimality_gap(x, z, analysis, lam=0.1, nonneg=nonneg)
        assert gap < tol, (method, float(gap))
    # a convolutional problem too
    _kernel, x, analysis, _synthesis, step = _conv_problem(stride=1, hw=(6, 6), cout=3)
    z = ops.fista(x, analysis, lam=0.1, step=step, num_iters=5000, nonneg=nonneg)
    assert ops.optimality_gap(x, z, analysis, lam=0.1, nonneg=nonneg) < 1e-6


def test_optimality_gap_detects_non_solutions():
    d, x, step = _dense_problem()
    analysis, _ = ops.dense_pair(d)
    z = ops.fista(x, analysis, lam=0.1, step=step, num_iters=3000)
    assert ops.optimality_gap(x, z, analysis, lam=0.1) < 1e-6
    assert ops.optimality_gap(x, z * 1.05, analysis, lam=0.1) > 1e-3
    assert ops.optimality_gap(x, z, analysis, lam=0.2) > 1e-3


def test_fista_needs_fewer_iterations_than_ista():
    d, x, step = _dense_problem(m=30, n=60, seed=3)
    analysis, synthesis = ops.dense_pair(d)
    z_star = ops.fista(x, analysis, lam=0.05, step=step, num_iters=5000)
    f_star = float(ops.lasso_objective(x, z_star, synthesis, lam=0.05))

    def iterations_to(method, tol):
        for k in [5, 10, 20, 40, 80, 160, 320, 640, 1280, 2560]:
            z = ops.solve_lasso(x, analysis, lam=0.05, step=step, num_iters=k, method=method)
            if float(ops.lasso_objective(x, z, synthesis, lam=0.05)) - f_star <= tol * abs(f_star):
                return k
        return np.inf

    k_fista, k_ista = iterations_to("fista", 1e-6), iterations_to("ista", 1e-6)
    assert k_fista < k_ista, (k_fista, k_ista)


def test_warm_start_continues_ista():
    _kernel, x, analysis, synthesis, step = _conv_problem()
    kw = dict(lam=0.05, step=step, synthesis=synthesis)
    z5 = ops.ista(x, analysis, num_iters=5, **kw)
    z2 = ops.ista(x, analysis, num_iters=2, **kw)
    z2_3 = ops.ista(x, analysis, num_iters=3, z0=z2, **kw)
    np.testing.assert_allclose(z2_3, z5, rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("method", ops.METHODS)
def test_unrolled_gradients_check_grads(method):
    kernel, x, _, _, step = _conv_problem()

    def f(x, kernel):
        analysis, synthesis = ops.conv_pair(kernel, signal_hw=(7, 6), strides=2)
        return ops.solve_lasso(
            x, analysis, synthesis=synthesis, lam=0.05, step=step, num_iters=3, method=method
        )

    check_grads(f, (x, kernel), order=1, modes=["rev", "fwd"], eps=1e-6)


@pytest.mark.parametrize("nonneg,mu", [(False, 0.0), (True, 0.0), (False, 0.2)])
def test_implicit_gradients_match_unrolled_at_convergence(nonneg, mu):
    d, x, step = _dense_problem()
    r = jax.random.normal(jax.random.key(7), (1, d.shape[1]), jnp.float64)

    def loss(d, x, lam, grad):
        analysis, synthesis = ops.dense_pair(d)
        # ISTA converges linearly here, so its unrolled derivative has converged too
        z = ops.ista(
            x,
            analysis,
            synthesis=synthesis,
            lam=lam,
            step=step,
            num_iters=5000,
            nonneg=nonneg,
            mu=mu,
            grad=grad,
        )
        return jnp.sum(z * r) + 0.5 * jnp.sum(z**2)

    g_unrolled = jax.grad(loss, argnums=(0, 1, 2))(d, x, 0.1, "unrolled")
    g_implicit = jax.grad(loss, argnums=(0, 1, 2))(d, x, 0.1, "implicit")
    for a, b in zip(g_unrolled, g_implicit, strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-7)
    # the forward pass of both modes is the same
    np.testing.assert_allclose(loss(d, x, 0.1, "implicit"), loss(d, x, 0.1, "unrolled"), rtol=1e-14)


def test_implicit_gradients_conv_dictionary():
    kernel, x, _, _, step = _conv_problem(stride=2, hw=(8, 8), cin=3, cout=4)

    def loss(kernel, x, grad):
        analysis, synthesis = ops.conv_pair(kernel, signal_hw=(8, 8), strides=2)
        z = ops.ista(
            x,
            analysis,
            synthesis=synthesis,
            lam=0.1,
            step=step,
            num_iters=4000,
            nonneg=True,
            grad=grad,
        )
        return jnp.sum(jnp.sin(z))

    for a, b in zip(
        jax.grad(loss, (0, 1))(kernel, x, "unrolled"),
        jax.grad(loss, (0, 1))(kernel, x, "implicit"),
        strict=True,
    ):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-7)


def test_jit_vmap_and_dtype():
    kernel, x, analysis, _synthesis, step = _conv_problem()
    xs = jax.random.normal(jax.random.key(9), (3, 7, 6, 2), jnp.float64)

    def solve(x, kernel):
        analysis, synthesis = ops.conv_pair(kernel, signal_hw=(7, 6), strides=2)
        return ops.fista(x, analysis, synthesis=synthesis, lam=0.1, step=step, num_iters=4)

    eager = solve(xs, kernel)
    np.testing.assert_allclose(jax.jit(solve)(xs, kernel), eager, rtol=1e-12, atol=1e-14)
    mapped = jax.vmap(lambda xi: solve(xi[None], kernel)[0])(xs)
    np.testing.assert_allclose(mapped, eager, rtol=1e-12, atol=1e-14)
    z32 = solve(xs.astype(jnp.float32), kernel.astype(jnp.float32))
    assert z32.dtype == jnp.float32
    np.testing.assert_allclose(z32, eager, rtol=1e-4, atol=1e-5)
    # traced lambda and step (test-time lambda under jit)
    f = jax.jit(lambda x, lam, t: ops.fista(x, analysis, lam=lam, step=t, num_iters=3))
    np.testing.assert_allclose(
        f(x, 0.1, step), ops.fista(x, analysis, lam=0.1, step=step, num_iters=3)
    )


def test_bad_input_raises_before_compiling():
    _kernel, x, analysis, _synthesis, step = _conv_problem()
    kw = dict(lam=0.1, step=step, num_iters=2)
    bad = [
        (dict(num_iters=0), "num_iters"),
        (dict(num_iters=2.0), "num_iters"),
        (dict(step=0.0), "step"),
        (dict(step=-1.0), "step"),
        (dict(lam=-0.1), "lam"),
        (dict(mu=-1.0), "mu"),
        (dict(method="adam"), "method"),
        (dict(grad="magic"), "grad"),
        (dict(z0=jnp.zeros((1, 3, 3, 4))), "z0"),
    ]
    for override, match in bad:
        with pytest.raises(ValueError, match=match):
            jax.jit(lambda x, o=override: ops.solve_lasso(x, analysis, **{**kw, **o}))(x)
    with pytest.raises(ValueError, match="channels"):  # mismatched channels
        ops.fista(jnp.zeros((1, 7, 6, 3)), analysis, **kw)
    with pytest.raises(ValueError, match="rank 4"):  # wrong rank
        ops.fista(jnp.zeros((7, 6, 2)), analysis, **kw)
    with pytest.raises(ValueError, match="synthesis"):
        ops.fista(x, analysis, synthesis=lambda z: z, **kw)
