"""Spectral norm ``‖A‖² = λ_max(AᵀA)`` by warm-startable power iteration."""

from __future__ import annotations

import jax
import jax.numpy as jnp
from jax import lax

from sdnet_jax import checks
from sdnet_jax.ops.types import UNROLL_LIMIT, LinearOp


def adjoint(op: LinearOp, example: jax.Array | jax.ShapeDtypeStruct) -> LinearOp:
    """The exact adjoint of the linear map ``op`` at inputs shaped like ``example``.

    Built with ``jax.linear_transpose``: ``<op(x), y> = <x, adjoint(op, x)(y)>``.
    """
    transpose = jax.linear_transpose(op, example)
    return lambda y: transpose(y)[0]


def _unit(v: jax.Array) -> jax.Array:
    return v / jnp.maximum(jnp.linalg.norm(v.ravel()), jnp.finfo(v.dtype).tiny)


def power_iteration(
    analysis: LinearOp,
    u: jax.Array,
    *,
    num_iters: int,
    synthesis: LinearOp | None = None,
) -> tuple[jax.Array, jax.Array]:
    """Estimates ``L = ‖A‖² = λ_max(A Aᵀ) = λ_max(AᵀA)`` by power iteration in *signal* space.

    Iterates ``u ← A Aᵀ u / ‖A Aᵀ u‖`` ``num_iters`` times from ``u`` (warm start: pass the vector
    returned by the previous call), then returns ``L = ‖Aᵀ u‖²`` with ``‖u‖ = 1`` — the Rayleigh
    quotient, a lower bound of ``‖A‖²`` that converges to it. Working in signal space means ``u`` has
    the layer's *input* shape (e.g. ``(1, H, W, C_in)``), so the estimate is of the actual zero-padded,
    strided operator at that size. No gradient flows through the result.

    Args:
      analysis: ``Aᵀ`` (signal -> code).
      u: start vector of signal shape; need not be normalised, must not be zero.
      num_iters: iterations (>= 0; 0 only evaluates the Rayleigh quotient at ``u``); up to
        ``UNROLL_LIMIT`` are unrolled, more run in a ``lax.fori_loop`` (same results).
      synthesis: ``A``; derived from ``analysis`` by ``jax.linear_transpose`` when omitted.

    Returns:
      ``(L, u)``: the estimate (scalar) and the normalised vector to warm-start the next call.
    """
    num_iters = checks.check_int("num_iters", num_iters, minimum=0)
    synthesis = synthesis or adjoint(analysis, u)
    u = _unit(lax.stop_gradient(u))

    def body(_, v):
        return _unit(synthesis(analysis(v)))

    if num_iters <= UNROLL_LIMIT:  # the few warm-started iterations of a train step: straight-line
        for i in range(num_iters):  # code, no while loop (on GPU its predicate is a host read-back)
            u = body(i, u)
    else:
        u = lax.fori_loop(0, num_iters, body, u)
    u = lax.stop_gradient(u)
    estimate = jnp.sum(jnp.square(lax.stop_gradient(analysis(u))))
    return estimate, u
