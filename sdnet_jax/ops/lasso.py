"""Unrolled lasso solvers (ISTA, FISTA, SDNet's variant, FISTA with restart, ADMM) with unrolled or
implicit gradients.

Problem, for a signal ``x`` and a linear dictionary ``A`` (any operator pair, see
:mod:`sdnet_jax.ops.dictionary`)::

    z* = argmin_z  λ‖z‖₁ + μ/2‖z‖² + ½‖x − A z‖²        (and z ≥ 0 when nonneg)

Proximal-gradient step with step size ``t`` (take ``t = 0.9 / ‖A‖²``)::

    z⁺ = prox_{t(λ‖·‖₁ + μ/2‖·‖²)}( y + t·Aᵀ(x − A y) )

* ``'ista'``:  ``y = z``.
* ``'fista'``: textbook FISTA (Beck & Teboulle): ``y = z + β_k (z − z_prev)``, gradient at ``y``.
* ``'sdnet'``: SDNet's public code: the same momentum, but the gradient is evaluated at the
  non-extrapolated ``z``: ``z⁺ = prox(y + t·Aᵀ(x − A z))``. Identical to FISTA for ≤ 2 iterations.
* ``'fista_restart'``: FISTA with adaptive *gradient restart* (O'Donoghue & Candès, 2015): after a
  step, when ``⟨y − z⁺, z⁺ − z⟩ > 0`` (the momentum points uphill) the momentum is reset,
  ``τ ← 1``, so the next step is a plain gradient step. Restarts are decided per example (per index
  of the leading axis; the problem is separable over examples), so ``vmap`` and batching agree.
  Without a restart it is exactly ``'fista'`` and it costs the same per iteration; it damps the
  oscillations of too much momentum on strongly convex problems.
* ``'admm'``: ADMM on the splitting ``z = y`` (Boyd et al.; Wohlberg's ConvBPDN for the convolutional
  case), needs ``normal_solver(b, ρ) = (AᵀA + ρI)⁻¹ b`` — exact and cheap for a circular
  convolution (:func:`sdnet_jax.ops.circular_conv_normal_solver`) or a small dense dictionary::

      z⁺ = (AᵀA + ρI)⁻¹ (Aᵀx + ρ(y − u))           (the ℓ2 step; ``step`` is not used)
      r  = α z⁺ + (1 − α) y                         (over-relaxation, ``relax = α``, default 1.8)
      y⁺ = prox_{(λ‖·‖₁ + μ/2‖·‖²)/ρ}(r + u)         (plus z ≥ 0 when nonneg)
      u⁺ = u + r − y⁺

  returning the sparse ``y``. For the first ``adapt_rho`` (default 100) iterations ``ρ`` is
  rebalanced after each one as SPORCO's ``ConvBPDN`` does (Wohlberg 2017, residual balancing with
  automatic scaling; SPORCO skips iteration 0 and, unlike us, never stops): primal and
  dual residuals ``p = ‖z⁺ − y⁺‖ / max(‖z⁺‖, ‖y⁺‖)``, ``d = ‖y⁺ − y‖ / ‖u⁺‖``; when ``p > ξ·1.2·d``
  ``ρ`` is multiplied by ``m = min(√(p / (ξ d)), 1000)`` and ``u`` divided by it, when
  ``d > 1.2/ξ · p`` the reverse, with ``ξ = 1 + 18.3^(log10 λ + 1)``. ``ρ`` is one scalar for the
  whole batch (the normal solver takes one), so, unlike the other methods, a batched solve is not
  the same as the per-example solves. Freezing ``ρ`` afterwards makes it plain (relaxed) ADMM, which
  converges (Boyd et al. 2011, §3.4.1); adapting forever can stall (it does on small dense
  problems). ``rho`` defaults to SPORCO's ``50 λ + 1`` (mean ``λ``). The
  first iteration from ``y = u = 0`` costs one analysis and one normal solve; every iteration costs
  one normal solve (no other operator application).

``β_k = (τ_{k−1} − 1) / τ_k`` with ``τ_0 = 1``, ``τ_k = (1 + √(1 + 4τ_{k−1}²)) / 2``; ``β_1 = 0``.
Iteration 0 from ``z = 0`` is a single analysis op, ``z₀ = prox(t·Aᵀx)``, so ``K`` iterations cost
``2K − 1`` operator applications; from a warm start ``z0`` it is a full step (``2K`` applications).

The iteration count is fixed (a Python loop up to ``UNROLL_LIMIT + 1`` iterations, a ``lax.scan``
beyond), so the solvers are differentiable and compile once. The step size is a constant for
differentiation (as in SDNet); gradients flow to ``x``, to whatever the operators close over (the dictionary), to ``λ`` and ``μ``.

Gradient modes:

* ``'unrolled'`` (default): backprop through the iterations; memory grows with the iteration count.
  The restart decisions and ADMM's ``ρ`` updates are treated as constants.
* ``'implicit'``: implicit differentiation of the lasso fixed point. With ``S`` the support of ``z*``
  the KKT conditions ``Aᵀ(x − A z) − λ sign(z) − μ z = 0`` on ``S`` give, for a cotangent ``g``,
  ``w = (A_Sᵀ A_S + μ I)⁻¹ g_S`` (conjugate gradients, ``cg_iters`` fixed iterations) and the
  cotangents of ``(x, A, λ, μ)`` as the VJP of that KKT residual at ``w``. Memory does not depend on the
  iteration count; exact when the forward pass has converged.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from functools import partial
from typing import Any, Literal, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from sdnet_jax import checks
from sdnet_jax.ops.prox import elastic_net_prox
from sdnet_jax.ops.spectral import adjoint
from sdnet_jax.ops.types import UNROLL_LIMIT, LinearOp, NormalSolver

Method = Literal["ista", "fista", "sdnet", "fista_restart", "admm"]
METHODS = ("ista", "fista", "sdnet", "fista_restart")  # need only the operator pair
SPLITTING_METHODS = ("admm",)  # need a normal-equation solver as well
GRAD_MODES = ("unrolled", "implicit")


def momentum_coefficients(num_iters: int) -> np.ndarray:
    """FISTA momentum ``β_k`` for ``k = 1 .. num_iters − 1`` (``β_1 = 0``), as float64 NumPy."""
    taus = [1.0]
    for _ in range(max(num_iters - 1, 0)):
        taus.append((1.0 + math.sqrt(1.0 + 4.0 * taus[-1] ** 2)) / 2.0)
    return np.array([(taus[k - 1] - 1.0) / taus[k] for k in range(1, num_iters)], dtype=np.float64)


class _Config(NamedTuple):
    num_iters: int
    method: str
    nonneg: bool
    warm: bool
    cg_iters: int
    relax: float = 1.8
    adapt_rho: int = 100


def _resolve_synthesis(analysis: LinearOp, synthesis: LinearOp | None, x: jax.Array) -> LinearOp:
    return synthesis if synthesis is not None else adjoint(analysis, x)


def _run(step_fn, state, xs, n, observe, output, unrolled_xs=None):
    """``n`` iterations of ``state = step_fn(state, xs[i])`` after the first; trace when observing.

    Short solves (``n <= UNROLL_LIMIT``, no trace) are a Python loop (``unrolled_xs`` are static
    per-iteration inputs there); longer ones, or traced ones, a ``lax.scan``.
    """
    if observe is None and n <= UNROLL_LIMIT:
        for i in range(n):
            state = step_fn(state, None if unrolled_xs is None else unrolled_xs[i])
        return output(state), None

    def body(state, xi):
        state = step_fn(state, xi)
        return state, (None if observe is None else observe(output(state)))

    first = None if observe is None else observe(output(state))  # after iteration 0
    state, trace = lax.scan(body, state, xs, length=n)
    if observe is not None:
        trace = jax.tree.map(lambda a, b: jnp.concatenate([a[None], b]), first, trace)
    return output(state), trace


def _iterate(
    analysis: LinearOp,
    synthesis: LinearOp,
    x: jax.Array,
    z0: jax.Array,
    lam: jax.Array,
    mu: jax.Array,
    step: jax.Array,
    cfg: _Config,
    rho: jax.Array | None = None,
    normal_solver=None,
    observe=None,
):
    """The fixed-iteration solver (forward pass of both gradient modes).

    Returns ``z``, or ``(z, trace)`` with ``trace[k] = observe(z after k + 1 iterations)`` when
    ``observe`` is given.
    """
    if cfg.method == "admm":
        out = _admm(x, analysis, normal_solver, z0, lam, mu, rho, cfg, observe)
    elif cfg.method == "fista_restart":
        out = _fista_restart(analysis, synthesis, x, z0, lam, mu, step, cfg, observe)
    else:
        out = _momentum(analysis, synthesis, x, z0, lam, mu, step, cfg, observe)
    return out if observe is not None else out[0]


def _momentum(analysis, synthesis, x, z0, lam, mu, step, cfg, observe):
    """ISTA, FISTA and SDNet's variant: momenta known in advance."""

    def prox(u):
        return elastic_net_prox(u, lam, mu, step=step, nonneg=cfg.nonneg)

    def grad_step(y):  # y + t·Aᵀ(x − A y)
        return y + step * analysis(x - synthesis(y))

    z = grad_step(z0) if cfg.warm else step * analysis(x)
    z = prox(z)

    def body(carry, beta):
        z, z_prev = carry
        if cfg.method == "ista":
            return prox(grad_step(z)), z
        # a static β_1 = 0: skip the extrapolation
        no_momentum = isinstance(beta, float) and beta == 0.0
        y = z if no_momentum else z + beta * (z - z_prev)
        if cfg.method == "fista":
            z_new = grad_step(y)
        else:  # 'sdnet': extrapolate, but take the gradient at the non-extrapolated point
            z_new = y + step * analysis(x - synthesis(z))
        return prox(z_new), z

    betas = momentum_coefficients(cfg.num_iters)
    # a Python loop for short solves: static momenta, XLA sees straight code
    return _run(
        body,
        (z, z0),
        jnp.asarray(betas, z.dtype),
        cfg.num_iters - 1,
        observe,
        lambda c: c[0],
        unrolled_xs=[float(b) for b in betas],
    )


def _example_sum(v: jax.Array) -> jax.Array:
    """Sum over all axes but the leading (example) one, kept for broadcasting (all axes if rank 1)."""
    if v.ndim < 2:
        return jnp.sum(v)
    return jnp.sum(v, axis=tuple(range(1, v.ndim)), keepdims=True)


def _fista_restart(analysis, synthesis, x, z0, lam, mu, step, cfg, observe):
    """FISTA with per-example adaptive gradient restart."""

    def prox(u):
        return elastic_net_prox(u, lam, mu, step=step, nonneg=cfg.nonneg)

    def grad_step(y):
        return y + step * analysis(x - synthesis(y))

    z = prox(grad_step(z0) if cfg.warm else step * analysis(x))
    tau = jnp.ones_like(_example_sum(z))

    def body(carry, _):
        z, z_prev, tau = carry
        tau_next = (1.0 + jnp.sqrt(1.0 + 4.0 * tau * tau)) / 2.0
        y = z + ((tau - 1.0) / tau_next) * (z - z_prev)
        z_new = prox(grad_step(y))
        uphill = lax.stop_gradient(_example_sum((y - z_new) * (z_new - z))) > 0
        return z_new, z, jnp.where(uphill, jnp.ones_like(tau), lax.stop_gradient(tau_next))

    return _run(body, (z, z0, tau), None, cfg.num_iters - 1, observe, lambda c: c[0])


def _admm(x, analysis, normal_solver, y0, lam, mu, rho, cfg, observe):
    """ADMM for the lasso on the splitting ``z = y`` (see the module docstring)."""
    alpha = cfg.relax
    dtype = y0.dtype
    mean_lam = jnp.mean(lam)
    # SPORCO's target ratio of the residuals (Wohlberg 2017): ξ = 1 + 18.3^(log10 λ + 1), 1 at λ = 0
    xi = jnp.where(
        mean_lam > 0, 1.0 + jnp.power(18.3, jnp.log10(jnp.maximum(mean_lam, 1e-30)) + 1.0), 1.0
    ).astype(dtype)
    tau_max, ratio = 1000.0, 1.2
    tiny = jnp.finfo(dtype).tiny
    atx = analysis(x)  # Aᵀx, once

    def norm(v):
        return jnp.sqrt(jnp.sum(jnp.square(v)))

    def iteration(carry, adapt):
        y, u, rho, k = carry
        z = normal_solver(atx + rho * (y - u), rho)
        r = alpha * z + (1.0 - alpha) * y
        y_new = elastic_net_prox(r + u, lam, mu, step=1.0 / rho, nonneg=cfg.nonneg)
        u = u + r - y_new
        if adapt:
            p = norm(z - y_new) / jnp.maximum(jnp.maximum(norm(z), norm(y_new)), tiny)
            d = norm(y_new - y) / jnp.maximum(norm(u), tiny)
            p, d = lax.stop_gradient(p), lax.stop_gradient(d)
            big = jnp.where(
                p > d * xi, p / jnp.maximum(d * xi, tiny), d * xi / jnp.maximum(p, tiny)
            )
            mult = jnp.where((p == 0) | (d == 0), tau_max, jnp.minimum(jnp.sqrt(big), tau_max))
            factor = jnp.where(
                p > xi * ratio * d, mult, jnp.where(d > ratio / xi * p, 1.0 / mult, 1.0)
            )
            factor = lax.stop_gradient(jnp.where(k < cfg.adapt_rho, factor, 1.0))  # then frozen
            rho, u = rho * factor, u / factor
        return y_new, u, rho, k + 1

    rho = jnp.asarray(50.0 * mean_lam + 1.0 if rho is None else rho, dtype)
    u0 = (lam / rho) * jnp.sign(y0) if cfg.warm else jnp.zeros_like(y0)
    # ρ is first rebalanced after the second iteration, as in SPORCO
    state = iteration((y0, u0, rho, jnp.zeros((), jnp.int32)), False)
    body = lambda carry, _: iteration(carry, cfg.adapt_rho > 1)
    return _run(body, state, None, cfg.num_iters - 1, observe, lambda c: c[0])


def _cg(matvec: Callable[[jax.Array], jax.Array], b: jax.Array, iters: int) -> jax.Array:
    """``iters`` conjugate-gradient iterations for ``M w = b`` (``M`` symmetric PSD) from ``w = 0``."""

    def vdot(a, c):
        return jnp.sum(a * c)

    def body(_, state):
        w, r, p, rr = state
        mp = matvec(p)
        denom = vdot(p, mp)
        alpha = jnp.where(denom > 0, rr / jnp.where(denom > 0, denom, 1), 0)
        w = w + alpha * p
        r = r - alpha * mp
        rr_new = vdot(r, r)
        beta = jnp.where(rr > 0, rr_new / jnp.where(rr > 0, rr, 1), 0)
        return w, r, r + beta * p, rr_new

    init = (jnp.zeros_like(b), b, b, vdot(b, b))
    return lax.fori_loop(0, iters, body, init)[0]


@partial(jax.custom_vjp, nondiff_argnums=(0, 1))
def _implicit_solve(pair, cfg, x, z0, lam, mu, step, rho, *consts):
    analysis, synthesis, solver = _split_pair(pair, x, z0, consts)
    return _iterate(analysis, synthesis, x, z0, lam, mu, step, cfg, rho, solver)


def _split_pair(pair, x, z0, consts):
    """Separate the analysis/synthesis/normal-solver closures of the closure-converted function."""
    return (
        lambda v: pair(v, jnp.zeros_like(z0), jnp.zeros_like(z0), 1.0, *consts)[0],
        lambda w: pair(jnp.zeros_like(x), w, jnp.zeros_like(z0), 1.0, *consts)[1],
        lambda b, r: pair(jnp.zeros_like(x), jnp.zeros_like(z0), b, r, *consts)[2],
    )


def _implicit_fwd(pair, cfg, x, z0, lam, mu, step, rho, *consts):
    z = _implicit_solve(pair, cfg, x, z0, lam, mu, step, rho, *consts)
    return z, (x, z, z0, lam, mu, step, rho, consts)


def _implicit_bwd(pair, cfg, res, g):
    x, z, z0, lam, mu, step, rho, consts = res
    support = (z != 0).astype(z.dtype)

    def kkt_residual(
        x_, lam_, mu_, *consts_
    ):  # Aᵀ(x − A z) − λ sign(z) − μ z, zero on the solution
        analysis, synthesis, _ = _split_pair(pair, x_, z0, consts_)
        return analysis(x_ - synthesis(z)) - lam_ * jnp.sign(z) - mu_ * z

    analysis, synthesis, _ = _split_pair(pair, x, z0, consts)

    def normal_op(w):  # (A_Sᵀ A_S + μ I) w on the support
        return support * analysis(synthesis(support * w)) + mu * w

    w = _cg(normal_op, support * g, cfg.cg_iters)
    _, vjp = jax.vjp(kkt_residual, x, lam, mu, *consts)
    x_bar, lam_bar, mu_bar, *consts_bar = vjp(w)
    zeros = jnp.zeros_like
    return (x_bar, zeros(z0), lam_bar, mu_bar, zeros(step), zeros(rho), *consts_bar)


_implicit_solve.defvjp(_implicit_fwd, _implicit_bwd)


def _validate(x, analysis, synthesis, z0, lam, mu, step, num_iters, method, grad, cg_iters):
    num_iters = checks.check_int("num_iters", num_iters, minimum=1)
    checks.check_int("cg_iters", cg_iters, minimum=1)
    checks.check_choice("method", method, METHODS + SPLITTING_METHODS)
    checks.check_choice("grad", grad, GRAD_MODES)
    if step is None and method not in SPLITTING_METHODS:
        raise ValueError(f"step is required for method={method!r} (take 0.9 / ‖A‖²).")
    if step is not None:
        checks.check_positive("step", step)
    checks.check_positive("lam", lam, allow_zero=True)
    checks.check_positive("mu", mu, allow_zero=True)
    try:
        code = jax.eval_shape(analysis, x)
    except (TypeError, ValueError) as err:
        raise ValueError(
            f"analysis operator cannot be applied to x of shape {x.shape}: {err}"
        ) from err
    if z0 is not None and (z0.shape != code.shape):
        raise ValueError(
            f"z0 has shape {z0.shape} but the analysis operator maps x {x.shape} to codes {code.shape}."
        )
    if synthesis is not None:
        back = jax.eval_shape(synthesis, code)
        if back.shape != x.shape:
            raise ValueError(
                f"synthesis maps codes {code.shape} to {back.shape}, expected the signal shape {x.shape}."
            )
    return num_iters, code


def _validate_admm(method, normal_solver, rho, relax, code):
    if method not in SPLITTING_METHODS:
        return
    if normal_solver is None:
        raise ValueError(
            f"normal_solver is required for method={method!r}: a callable (b, rho) -> "
            "(AᵀA + rho I)⁻¹ b, e.g. ops.circular_conv_normal_solver(kernel, signal_hw=...)."
        )
    if rho is not None:
        checks.check_positive("rho", rho)
        if np.ndim(rho) != 0:
            raise ValueError(f"rho must be a scalar, got shape {np.shape(rho)}.")
    if not 0.0 < float(relax) < 2.0:
        raise ValueError(f"relax must be in (0, 2) (over-relaxation), got {relax!r}.")
    try:
        back = jax.eval_shape(normal_solver, code, jax.ShapeDtypeStruct((), code.dtype))
    except (TypeError, ValueError) as err:
        raise ValueError(f"normal_solver cannot be applied to codes {code.shape}: {err}") from err
    if back.shape != code.shape:
        raise ValueError(
            f"normal_solver maps codes {code.shape} to {back.shape}; it must keep the code shape."
        )


def _prepare(x, analysis, kw):
    """Validates :func:`solve_lasso`'s arguments and casts them; returns what the solvers take."""
    step, method = kw["step"], kw["method"]
    num_iters, code = _validate(
        x, analysis, kw["synthesis"], kw["z0"], kw["lam"], kw["mu"], step, kw["num_iters"],
        method, kw["grad"], kw["cg_iters"],
    )  # fmt: skip
    _validate_admm(method, kw["normal_solver"], kw["rho"], kw["relax"], code)
    synthesis = _resolve_synthesis(analysis, kw["synthesis"], x)
    cfg = _Config(
        num_iters,
        method,
        bool(kw["nonneg"]),
        kw["z0"] is not None,
        kw["cg_iters"],
        float(kw["relax"]),
        checks.check_int("adapt_rho", kw["adapt_rho"], minimum=0),
    )
    dtype = code.dtype
    z_init = jnp.zeros(code.shape, dtype) if kw["z0"] is None else kw["z0"]
    lam = jnp.asarray(kw["lam"], dtype)
    mu = jnp.asarray(kw["mu"], dtype)
    step = lax.stop_gradient(jnp.asarray(1.0 if step is None else step, dtype))
    rho = kw["rho"]
    rho = lax.stop_gradient(jnp.asarray(50.0 * jnp.mean(lam) + 1.0 if rho is None else rho, dtype))
    return synthesis, cfg, z_init, lam, mu, step, rho


def solve_lasso(
    x: jax.Array,
    analysis: LinearOp,
    *,
    lam: jax.Array | float,
    num_iters: int,
    method: Method = "fista",
    step: jax.Array | float | None = None,
    synthesis: LinearOp | None = None,
    z0: jax.Array | None = None,
    nonneg: bool = False,
    mu: jax.Array | float = 0.0,
    grad: Literal["unrolled", "implicit"] = "unrolled",
    cg_iters: int = 100,
    normal_solver: NormalSolver | None = None,
    rho: jax.Array | float | None = None,
    relax: float = 1.8,
    adapt_rho: int = 100,
    observe: Callable[[jax.Array], Any] | None = None,
) -> jax.Array | tuple[jax.Array, Any]:
    """Solves ``argmin_z λ‖z‖₁ + μ/2‖z‖² + ½‖x − A z‖²`` with a fixed number of iterations.

    The one solver of this module; :func:`ista`, :func:`fista`, :func:`sdnet`,
    :func:`fista_restart` and :func:`admm` are this function with ``method`` bound.

    Args:
      x: signal, any shape the operators accept (e.g. ``(N, H, W, C_in)`` for a conv dictionary).
      analysis: ``Aᵀ``, signal -> code (e.g. ``partial(conv_analysis, kernel=W)``).
      lam: ``λ >= 0``; scalar or broadcastable to the code (per-channel).
      num_iters: iterations ``K >= 1`` (iteration 0 included).
      method: ``'ista'``, ``'fista'`` (textbook), ``'sdnet'`` (SDNet's variant),
        ``'fista_restart'`` (FISTA with adaptive restart) or ``'admm'`` (needs ``normal_solver``).
      step: step size ``t > 0`` of the proximal-gradient methods (required by them); take
        ``0.9 / L`` with ``L`` from :func:`power_iteration` (or ``1 / L`` with an exact ``L``).
        Not used by ``'admm'``.
      synthesis: ``A``, code -> signal; derived from ``analysis`` by ``jax.linear_transpose`` if omitted.
      z0: warm start (code shape); ``None`` starts from zero.
      nonneg: constrain ``z >= 0`` (SDNet's default).
      mu: elastic-net weight ``μ >= 0``.
      grad: ``'unrolled'`` or ``'implicit'`` (see the module docstring).
      cg_iters: conjugate-gradient iterations of the implicit backward pass.
      normal_solver: ``'admm'`` only: ``(b, ρ) -> (AᵀA + ρI)⁻¹ b`` for a code-shaped ``b`` and a
        scalar ``ρ`` (e.g. :func:`sdnet_jax.ops.circular_conv_normal_solver`).
      rho: ``'admm'`` only: initial penalty ``ρ > 0`` (scalar); default ``50·mean(λ) + 1``.
      relax: ``'admm'`` only: over-relaxation ``α`` in ``(0, 2)``; 1 is plain ADMM.
      adapt_rho: ``'admm'`` only: rebalance ``ρ`` (SPORCO's rule) after each of the first
        ``adapt_rho`` iterations, then keep it fixed; 0 (or 1) keeps the initial ``ρ``.
      observe: records ``observe(z_k)`` after every iteration (any pytree of arrays), for
        convergence curves and time-to-accuracy, e.g.
        ``observe=lambda z: lasso_objective(x, z, analysis, lam=lam)``. The iterations then run as
        one ``lax.scan`` and need ``grad='unrolled'``.

    Returns:
      the code ``z`` after ``num_iters`` iterations, shaped like ``analysis(x)``; with ``observe``,
      ``(z, trace)`` where ``trace[k] = observe(z after k + 1 iterations)``, stacked over ``k``.

    Raises:
      ValueError: on a bad argument, before anything is compiled.
    """
    kw = dict(locals())
    if observe is not None and grad != "unrolled":
        raise ValueError(f"observe needs grad='unrolled' (it records the iterates), got {grad!r}.")
    synthesis, cfg, z_init, lam, mu, step, rho = _prepare(x, analysis, kw)
    if grad == "unrolled":
        return _iterate(
            analysis, synthesis, x, z_init, lam, mu, step, cfg, rho, normal_solver, observe
        )

    def pair(x_, z_, b_, rho_):
        solved = jnp.zeros_like(b_) if normal_solver is None else normal_solver(b_, rho_)
        return analysis(x_), synthesis(z_), solved

    converted, consts = jax.closure_convert(pair, x, z_init, z_init, rho)
    return _implicit_solve(converted, cfg, x, z_init, lam, mu, step, rho, *consts)


ista = partial(solve_lasso, method="ista")
fista = partial(solve_lasso, method="fista")  # textbook FISTA
sdnet = partial(solve_lasso, method="sdnet")  # SDNet's FISTA variant
fista_restart = partial(solve_lasso, method="fista_restart")  # adaptive gradient restart
admm = partial(solve_lasso, method="admm")  # needs normal_solver; step is not used


def lasso_objective(
    x: jax.Array,
    z: jax.Array,
    analysis: LinearOp,
    *,
    lam: jax.Array | float,
    mu: jax.Array | float = 0.0,
    synthesis: LinearOp | None = None,
) -> jax.Array:
    """``λ‖z‖₁ + μ/2‖z‖² + ½‖x − A z‖²`` summed over everything (the batch included).

    ``synthesis`` (``A``) is derived from ``analysis`` when omitted, as in :func:`solve_lasso`.
    The problem is separable over examples, so the batch sum is what the solvers minimise; ``vmap``
    over a leading axis for per-example values.
    """
    synthesis = _resolve_synthesis(analysis, synthesis, x)
    residual = x - synthesis(z)
    return (
        jnp.sum(lam * jnp.abs(z))
        + 0.5 * mu * jnp.sum(jnp.square(z))
        + 0.5 * jnp.sum(jnp.square(residual))
    )


def optimality_gap(
    x: jax.Array,
    z: jax.Array,
    analysis: LinearOp,
    *,
    lam: jax.Array | float,
    mu: jax.Array | float = 0.0,
    nonneg: bool = False,
    synthesis: LinearOp | None = None,
) -> jax.Array:
    """KKT violation ``max_i |z − prox(z − ∇f(z))|_i`` (unit step), zero exactly at the solution.

    ``∇f(z) = Aᵀ(A z − x) + μ z`` and ``prox`` is that of ``λ‖·‖₁`` (plus ``z ≥ 0``). This
    prox-gradient residual is 0 iff the KKT conditions hold: ``−∇f(z)_i = λ sign(z_i)`` on the support
    and ``|∇f(z)_i| ≤ λ`` (``∇f(z)_i ≥ −λ`` when ``nonneg``) off it.
    """
    synthesis = _resolve_synthesis(analysis, synthesis, x)
    gradient = analysis(synthesis(z) - x) + mu * z
    mapped = elastic_net_prox(z - gradient, lam, 0.0, nonneg=nonneg)
    return jnp.max(jnp.abs(z - mapped))
