import functools
import itertools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.test_util import check_grads

from sdnet_jax import ops
from tests.ops.reference import admm_reference, operator_matrix, solver_reference


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


@functools.cache
def _reference_problem():
    """The problem every case of ``test_solvers_match_reference`` solves, built once (float64)."""
    _kernel, x, analysis, _, step = _conv_problem()
    a = operator_matrix(analysis, x.shape).T  # synthesis matrix A
    z0 = 0.1 * jax.random.normal(jax.random.key(5), analysis(x).shape, jnp.float64)
    return x, analysis, step, a, z0


@pytest.mark.parametrize("method,nonneg,mu,num_iters,warm", CASES)
def test_solvers_match_reference(method, nonneg, mu, num_iters, warm):
    x, analysis, step, a, z0 = _reference_problem()
    z0 = z0 if warm else None
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
        inner = eqn.params.get("jaxpr") or eqn.params.get("call_jaxpr")  # pjit / custom_jvp
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
    f_star = float(ops.lasso_objective(x, z_star, analysis, synthesis=synthesis, lam=0.05))

    def iterations_to(method, tol):
        for k in [5, 10, 20, 40, 80, 160, 320, 640, 1280, 2560]:
            z = ops.solve_lasso(x, analysis, lam=0.05, step=step, num_iters=k, method=method)
            if float(
                ops.lasso_objective(x, z, analysis, synthesis=synthesis, lam=0.05)
            ) - f_star <= tol * abs(f_star):
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

    check_grads(jax.jit(f), (x, kernel), order=1, modes=["rev", "fwd"], eps=1e-6)


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


# ------------------------------------------------------------------ FISTA with restart, ADMM


def _dense_normal_solver(d):
    gram = d.T @ d
    return lambda b, rho: jnp.linalg.solve(gram + rho * jnp.eye(gram.shape[0]), b.T).T


def _circular_problem(hw=(8, 8), cin=1, cout=6, n=2, seed=0):
    kernel = ops.normalize_atoms(
        jax.random.normal(jax.random.key(seed), (4, 4, cin, cout), jnp.float64)
    )
    x = jax.random.normal(jax.random.key(seed + 1), (n, *hw, cin), jnp.float64)
    analysis, synthesis = ops.circular_conv_pair(kernel, signal_hw=hw)
    solver = ops.circular_conv_normal_solver(kernel, signal_hw=hw)
    step = 1.0 / float(ops.circular_conv_lipschitz(kernel, signal_hw=hw))
    return x, analysis, synthesis, solver, step


@pytest.mark.parametrize(
    "nonneg,mu,relax,adapt,warm",
    [
        (False, 0.0, 1.0, 0, False),
        (False, 0.0, 1.8, 100, False),
        (True, 0.0, 1.8, 100, False),
        (False, 0.3, 1.5, 4, True),
        (True, 0.3, 1.0, 0, True),
    ],
)
def test_admm_matches_reference(nonneg, mu, relax, adapt, warm):
    d, x, _step = _dense_problem()
    analysis, synthesis = ops.dense_pair(d)
    y0 = 0.1 * jax.random.normal(jax.random.key(3), (1, d.shape[1]), jnp.float64) if warm else None
    for num_iters in [1, 2, 7, 20]:
        got = ops.admm(
            x,
            analysis,
            synthesis=synthesis,
            normal_solver=_dense_normal_solver(d),
            lam=0.1,
            mu=mu,
            nonneg=nonneg,
            num_iters=num_iters,
            rho=2.0,
            relax=relax,
            adapt_rho=adapt,
            z0=y0,
        )
        want = admm_reference(
            np.asarray(d),
            np.asarray(x[0]),
            0.1,
            mu,
            num_iters,
            nonneg,
            2.0,
            relax,
            adapt,
            None if y0 is None else np.asarray(y0[0]),
        )
        np.testing.assert_allclose(np.asarray(got[0]), want, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("nonneg,mu", [(False, 0.0), (True, 0.0), (False, 0.2)])
def test_new_solvers_converge_to_the_fista_minimiser(nonneg, mu):
    kw = dict(lam=0.1, mu=mu, nonneg=nonneg)
    # a dense problem
    d, x, step = _dense_problem()
    analysis, synthesis = ops.dense_pair(d)
    want = ops.fista(x, analysis, step=step, num_iters=5000, **kw)
    restart = ops.fista_restart(x, analysis, step=step, num_iters=3000, **kw)
    admm = ops.admm(x, analysis, normal_solver=_dense_normal_solver(d), num_iters=1000, **kw)
    for z in (restart, admm):
        np.testing.assert_allclose(z, want, atol=1e-7)
        assert ops.optimality_gap(x, z, analysis, **kw) < 1e-7
    # a circular convolutional one (the FFT normal solver). It is ill-conditioned: FISTA's KKT
    # residual is 1e-6 after 5000 iterations and 2e-8 after 20000, its code still 1e-5 away
    x, analysis, synthesis, solver, step = _circular_problem()
    want = ops.fista(x, analysis, synthesis=synthesis, step=step, num_iters=20000, **kw)
    restart = ops.fista_restart(x, analysis, synthesis=synthesis, step=step, num_iters=3000, **kw)
    admm = ops.admm(x, analysis, synthesis=synthesis, normal_solver=solver, num_iters=1500, **kw)
    f_want = ops.lasso_objective(x, want, analysis, synthesis=synthesis, lam=0.1, mu=mu)
    for z in (restart, admm):
        np.testing.assert_allclose(z, want, atol=1e-4)
        assert ops.optimality_gap(x, z, analysis, synthesis=synthesis, **kw) < 1e-8
        f = ops.lasso_objective(x, z, analysis, synthesis=synthesis, lam=0.1, mu=mu)
        assert f <= f_want * (1 + 1e-12) and f >= f_want * (1 - 1e-9)
    np.testing.assert_allclose(restart, admm, atol=1e-8)


def test_admm_needs_fewer_iterations_than_fista_on_a_circular_problem():
    x, analysis, synthesis, solver, step = _circular_problem(hw=(12, 12), cout=8, n=3)
    f_star = ops.lasso_objective(
        x,
        ops.admm(x, analysis, synthesis=synthesis, normal_solver=solver, lam=0.1, num_iters=2000),
        analysis,
        synthesis=synthesis,
        lam=0.1,
    )
    observe = lambda z: (
        (ops.lasso_objective(x, z, analysis, synthesis=synthesis, lam=0.1) - f_star) / f_star
    )
    kw = dict(synthesis=synthesis, lam=0.1, num_iters=400, observe=observe)
    _, gap_admm = ops.admm(x, analysis, normal_solver=solver, **kw)
    _, gap_fista = ops.fista(x, analysis, step=step, **kw)

    def first(gaps, tol=1e-5):
        hit = np.flatnonzero(np.asarray(gaps) <= tol)
        return hit[0] + 1 if hit.size else np.inf

    assert first(gap_admm) < first(gap_fista), (first(gap_admm), first(gap_fista))
    assert first(gap_admm) < 400


@pytest.mark.parametrize("method", ["fista", "fista_restart", "admm"])
def test_trace_follows_the_solver(method):
    x, analysis, synthesis, solver, step = _circular_problem()
    kw = dict(synthesis=synthesis, lam=0.1, method=method)
    kw.update(normal_solver=solver) if method == "admm" else kw.update(step=step)
    z, trace = ops.solve_lasso(x, analysis, num_iters=20, observe=lambda z: z, **kw)
    assert trace.shape == (20, *z.shape)
    np.testing.assert_allclose(trace[-1], z, rtol=1e-12)
    for k in [1, 2, 5, 20]:  # the Python-loop and lax.scan paths of solve_lasso agree with it
        np.testing.assert_allclose(
            trace[k - 1], ops.solve_lasso(x, analysis, num_iters=k, **kw), rtol=1e-10, atol=1e-12
        )
    with pytest.raises(ValueError, match="observe needs grad='unrolled'"):
        ops.solve_lasso(x, analysis, num_iters=2, observe=jnp.sum, grad="implicit", **kw)


def test_fista_restart_restarts_per_example():
    x, analysis, synthesis, _, step = _circular_problem(n=3)
    # strongly convex (μ > 0): FISTA's momentum overshoots and the restarts fire
    kw = dict(synthesis=synthesis, lam=0.1, mu=0.5, step=step, num_iters=200)
    batched = ops.fista_restart(x, analysis, **kw)
    single = jnp.concatenate([ops.fista_restart(x[i : i + 1], analysis, **kw) for i in range(3)])
    np.testing.assert_allclose(batched, single, rtol=1e-10, atol=1e-12)
    # and it did restart: the iterates differ from FISTA's
    assert np.abs(batched - ops.fista(x, analysis, **kw)).max() > 1e-6


def test_admm_gradients():
    x, _, _, _, _ = _circular_problem(n=1)
    kernel = ops.normalize_atoms(jax.random.normal(jax.random.key(0), (4, 4, 1, 6), jnp.float64))

    def f(x, kernel, lam, adapt=0):
        analysis, synthesis = ops.circular_conv_pair(kernel, signal_hw=(8, 8))
        solver = ops.circular_conv_normal_solver(kernel, signal_hw=(8, 8))
        kw = dict(synthesis=synthesis, normal_solver=solver, num_iters=4, rho=2.0, adapt_rho=adapt)
        return ops.admm(x, analysis, lam=lam, **kw)

    # a fixed ρ: the unrolled iterations are a smooth map almost everywhere
    check_grads(jax.jit(f), (x, kernel, 0.1), order=1, modes=["rev", "fwd"], eps=1e-6)
    # an adapted ρ is a constant for differentiation (as the step size is), so finite differences
    # do not apply; the gradient exists and is finite
    g = jax.jit(jax.grad(lambda x, k: jnp.sum(f(x, k, 0.1, adapt=100) ** 2), argnums=(0, 1)))(
        x, kernel
    )
    assert all(np.isfinite(np.asarray(v)).all() for v in g)


def test_admm_implicit_gradients_match_fista_implicit():
    d, x, _step = _dense_problem()
    r = jax.random.normal(jax.random.key(7), (1, d.shape[1]), jnp.float64)

    def loss(d, x, method):
        analysis, synthesis = ops.dense_pair(d)
        kw = dict(synthesis=synthesis, lam=0.1, grad="implicit")
        if method == "admm":
            z = ops.admm(x, analysis, normal_solver=_dense_normal_solver(d), num_iters=1000, **kw)
        else:
            z = ops.fista(x, analysis, step=_step, num_iters=5000, **kw)
        return jnp.sum(z * r)

    for a, b in zip(
        jax.grad(loss, (0, 1))(d, x, "admm"), jax.grad(loss, (0, 1))(d, x, "fista"), strict=True
    ):
        np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-8)


def test_new_methods_bad_input():
    x, analysis, _, solver, _step = _circular_problem()
    bad = [
        (dict(method="admm"), "normal_solver"),
        (dict(method="admm", normal_solver=solver, rho=0.0), "rho"),
        (dict(method="admm", normal_solver=solver, rho=jnp.ones(3)), "rho"),
        (dict(method="admm", normal_solver=solver, relax=2.0), "relax"),
        (dict(method="admm", normal_solver=lambda b, r: b[:1]), "normal_solver"),
        (dict(method="fista"), "step"),
        (dict(method="fista_restart", step=-1.0), "step"),
    ]
    for override, match in bad:
        with pytest.raises(ValueError, match=match):
            jax.jit(lambda x, o=override: ops.solve_lasso(x, analysis, lam=0.1, num_iters=3, **o))(
                x
            )
