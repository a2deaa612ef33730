"""Unrolled lasso solvers (ISTA, FISTA, SDNet's FISTA variant) with unrolled or implicit gradients.

Problem, for a signal ``x`` and a linear dictionary ``A`` (any operator pair, see
:mod:`sdnet_jax.ops.dictionary`)::

    z* = argmin_z  λ‖z‖₁ + μ/2‖z‖² + ½‖x − A z‖²        (and z ≥ 0 when nonneg)

Proximal-gradient step with step size ``t`` (take ``t = 0.9 / ‖A‖²``)::

    z⁺ = prox_{t(λ‖·‖₁ + μ/2‖·‖²)}( y + t·Aᵀ(x − A y) )

* ``'ista'``:  ``y = z``.
* ``'fista'``: textbook FISTA (Beck & Teboulle): ``y = z + β_k (z − z_prev)``, gradient at ``y``.
* ``'sdnet'``: SDNet's public code: the same momentum, but the gradient is evaluated at the
  non-extrapolated ``z``: ``z⁺ = prox(y + t·Aᵀ(x − A z))``. Identical to FISTA for ≤ 2 iterations.

``β_k = (τ_{k−1} − 1) / τ_k`` with ``τ_0 = 1``, ``τ_k = (1 + √(1 + 4τ_{k−1}²)) / 2``; ``β_1 = 0``.
Iteration 0 from ``z = 0`` is a single analysis op, ``z₀ = prox(t·Aᵀx)``, so ``K`` iterations cost
``2K − 1`` operator applications; from a warm start ``z0`` it is a full step (``2K`` applications).

The iteration count is fixed (a Python loop up to ``UNROLL_LIMIT + 1`` iterations, a ``lax.scan``
beyond), so the solvers are differentiable and compile once. (A ``lax.scan`` of length 1 made XLA's
CPU backward pass 80x slower for K = 2, hence the Python loop for the short solves SDNet uses.) The step size is a constant for differentiation (as in SDNet);
gradients flow to ``x``, to whatever the operators close over (the dictionary), to ``λ`` and ``μ``.

Gradient modes:

* ``'unrolled'`` (default): backprop through the iterations; memory grows with the iteration count.
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
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from sdnet_jax.ops import _checks
from sdnet_jax.ops.prox import elastic_net_prox
from sdnet_jax.ops.spectral import LinearOp, adjoint

METHODS = ("ista", "fista", "sdnet")
GRAD_MODES = ("unrolled", "implicit")
UNROLL_LIMIT = 16  # iterations beyond the first that are unrolled in Python; more run in a lax.scan


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


def _resolve_synthesis(analysis: LinearOp, synthesis: LinearOp | None, x: jax.Array) -> LinearOp:
    return synthesis if synthesis is not None else adjoint(analysis, x)


def _iterate(
    analysis: LinearOp,
    synthesis: LinearOp,
    x: jax.Array,
    z0: jax.Array,
    lam: jax.Array,
    mu: jax.Array,
    step: jax.Array,
    cfg: _Config,
) -> jax.Array:
    """The fixed-iteration solver (forward pass of both gradient modes)."""

    def prox(u):
        return elastic_net_prox(u, lam, mu, step=step, nonneg=cfg.nonneg)

    def grad_step(y):  # y + t·Aᵀ(x − A y)
        return y + step * analysis(x - synthesis(y))

    z = grad_step(z0) if cfg.warm else step * analysis(x)
    z = prox(z)
    if cfg.num_iters == 1:
        return z

    def body(carry, beta):
        z, z_prev = carry
        if cfg.method == "ista":
            return (prox(grad_step(z)), z), None
        # a static β_1 = 0: skip the extrapolation
        no_momentum = isinstance(beta, float) and beta == 0.0
        y = z if no_momentum else z + beta * (z - z_prev)
        if cfg.method == "fista":
            z_new = grad_step(y)
        else:  # 'sdnet': extrapolate, but take the gradient at the non-extrapolated point
            z_new = y + step * analysis(x - synthesis(z))
        return (prox(z_new), z), None

    betas = momentum_coefficients(cfg.num_iters)
    if cfg.num_iters - 1 <= UNROLL_LIMIT:  # a Python loop: static momenta, XLA sees straight code
        carry = (z, z0)
        for beta in betas:
            carry, _ = body(carry, float(beta))
        return carry[0]
    (z, _), _ = lax.scan(body, (z, z0), jnp.asarray(betas, z.dtype))
    return z


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
def _implicit_solve(pair, cfg, x, z0, lam, mu, step, *consts):
    analysis, synthesis = _split_pair(pair, x, z0, consts)
    return _iterate(analysis, synthesis, x, z0, lam, mu, step, cfg)


def _split_pair(pair, x, z0, consts):
    """Separate analysis/synthesis closures from the closure-converted pair function."""
    return (
        lambda v: pair(v, jnp.zeros_like(z0), *consts)[0],
        lambda w: pair(jnp.zeros_like(x), w, *consts)[1],
    )


def _implicit_fwd(pair, cfg, x, z0, lam, mu, step, *consts):
    z = _implicit_solve(pair, cfg, x, z0, lam, mu, step, *consts)
    return z, (x, z, z0, lam, mu, step, consts)


def _implicit_bwd(pair, cfg, res, g):
    x, z, z0, lam, mu, step, consts = res
    support = (z != 0).astype(z.dtype)

    def kkt_residual(
        x_, lam_, mu_, *consts_
    ):  # Aᵀ(x − A z) − λ sign(z) − μ z, zero on the solution
        analysis, synthesis = _split_pair(pair, x_, z0, consts_)
        return analysis(x_ - synthesis(z)) - lam_ * jnp.sign(z) - mu_ * z

    analysis, synthesis = _split_pair(pair, x, z0, consts)

    def normal_op(w):  # (A_Sᵀ A_S + μ I) w on the support
        return support * analysis(synthesis(support * w)) + mu * w

    w = _cg(normal_op, support * g, cfg.cg_iters)
    _, vjp = jax.vjp(kkt_residual, x, lam, mu, *consts)
    x_bar, lam_bar, mu_bar, *consts_bar = vjp(w)
    return (x_bar, jnp.zeros_like(z0), lam_bar, mu_bar, jnp.zeros_like(step), *consts_bar)


_implicit_solve.defvjp(_implicit_fwd, _implicit_bwd)


def _validate(x, analysis, synthesis, z0, lam, mu, step, num_iters, method, grad, cg_iters):
    num_iters = _checks.check_int("num_iters", num_iters, minimum=1)
    _checks.check_int("cg_iters", cg_iters, minimum=1)
    _checks.check_choice("method", method, METHODS)
    _checks.check_choice("grad", grad, GRAD_MODES)
    _checks.check_positive("step", step)
    _checks.check_positive("lam", lam, allow_zero=True)
    _checks.check_positive("mu", mu, allow_zero=True)
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


def solve_lasso(
    x: jax.Array,
    analysis: LinearOp,
    *,
    lam: jax.Array | float,
    step: jax.Array | float,
    num_iters: int,
    method: str = "fista",
    synthesis: LinearOp | None = None,
    z0: jax.Array | None = None,
    nonneg: bool = False,
    mu: jax.Array | float = 0.0,
    grad: str = "unrolled",
    cg_iters: int = 100,
) -> jax.Array:
    """Solves ``argmin_z λ‖z‖₁ + μ/2‖z‖² + ½‖x − A z‖²`` with a fixed number of iterations.

    Args:
      x: signal, any shape the operators accept (e.g. ``(N, H, W, C_in)`` for a conv dictionary).
      analysis: ``Aᵀ``, signal -> code (e.g. ``partial(conv_analysis, kernel=W)``).
      lam: ``λ >= 0``; scalar or broadcastable to the code (per-channel).
      step: step size ``t > 0``; take ``0.9 / L`` with ``L`` from :func:`power_iteration`.
      num_iters: iterations ``K >= 1`` (iteration 0 included).
      method: ``'ista'``, ``'fista'`` (textbook) or ``'sdnet'`` (SDNet's variant).
      synthesis: ``A``, code -> signal; derived from ``analysis`` by ``jax.linear_transpose`` if omitted.
      z0: warm start (code shape); ``None`` starts from zero.
      nonneg: constrain ``z >= 0`` (SDNet's default).
      mu: elastic-net weight ``μ >= 0``.
      grad: ``'unrolled'`` or ``'implicit'`` (see the module docstring).
      cg_iters: conjugate-gradient iterations of the implicit backward pass.

    Returns:
      the code ``z`` after ``num_iters`` iterations, shaped like ``analysis(x)``.

    Raises:
      ValueError: on a bad argument, before anything is compiled.
    """
    num_iters, code = _validate(
        x, analysis, synthesis, z0, lam, mu, step, num_iters, method, grad, cg_iters
    )
    synthesis = _resolve_synthesis(analysis, synthesis, x)
    cfg = _Config(num_iters, method, bool(nonneg), z0 is not None, cg_iters)
    z_init = jnp.zeros(code.shape, code.dtype) if z0 is None else z0
    dtype = code.dtype
    lam = jnp.asarray(lam, dtype)
    mu = jnp.asarray(mu, dtype)
    step = lax.stop_gradient(jnp.asarray(step, dtype))
    if grad == "unrolled":
        return _iterate(analysis, synthesis, x, z_init, lam, mu, step, cfg)

    def pair(x_, z_):
        return analysis(x_), synthesis(z_)

    converted, consts = jax.closure_convert(pair, x, z_init)
    return _implicit_solve(converted, cfg, x, z_init, lam, mu, step, *consts)


def ista(x: jax.Array, analysis: LinearOp, **kwargs) -> jax.Array:
    """:func:`solve_lasso` with ``method='ista'``."""
    return solve_lasso(x, analysis, method="ista", **kwargs)


def fista(x: jax.Array, analysis: LinearOp, **kwargs) -> jax.Array:
    """:func:`solve_lasso` with ``method='fista'`` (textbook FISTA)."""
    return solve_lasso(x, analysis, method="fista", **kwargs)


def sdnet_fista(x: jax.Array, analysis: LinearOp, **kwargs) -> jax.Array:
    """:func:`solve_lasso` with ``method='sdnet'`` (SDNet's FISTA variant)."""
    return solve_lasso(x, analysis, method="sdnet", **kwargs)


def lasso_objective(
    x: jax.Array,
    z: jax.Array,
    synthesis: LinearOp,
    *,
    lam: jax.Array | float,
    mu: jax.Array | float = 0.0,
) -> jax.Array:
    """``λ‖z‖₁ + μ/2‖z‖² + ½‖x − A z‖²`` summed over everything (the batch included).

    The problem is separable over examples, so the batch sum is what the solvers minimise; ``vmap``
    over a leading axis for per-example values.
    """
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
