"""Types and constants shared by the ops modules."""

from __future__ import annotations

from collections.abc import Callable

import jax

LinearOp = Callable[[jax.Array], jax.Array]
"""A linear map on arrays: an analysis ``Aᵀ`` (signal -> code) or a synthesis ``A`` (code -> signal)."""

NormalSolver = Callable[[jax.Array, jax.Array | float], jax.Array]
"""``(b, ρ) -> (AᵀA + ρI)⁻¹ b`` for a code-shaped ``b`` and a scalar ``ρ`` (ADMM's ℓ2 step)."""

UNROLL_LIMIT = 16
"""Fixed-count loops (solver iterations, power iterations) up to this length are unrolled in
Python, so a train step's few iterations are straight-line code (a one-trip ``lax.scan`` made XLA's
CPU backward pass far slower); longer ones run in a ``lax.scan`` / ``lax.fori_loop``, with the same
results."""
