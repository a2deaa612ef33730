"""Proximal maps of the sparsity penalties.

All maps are elementwise; thresholds broadcast against the input (a scalar, or one per channel).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp


def soft_threshold(u: jax.Array, thresh: jax.Array | float) -> jax.Array:
    """``prox_{τ‖·‖₁}(u) = sign(u) · max(|u| − τ, 0)``."""
    return jnp.sign(u) * jax.nn.relu(jnp.abs(u) - thresh)


def nonneg_soft_threshold(u: jax.Array, thresh: jax.Array | float) -> jax.Array:
    """``prox_{τ‖·‖₁ + ι_{≥0}}(u) = max(u − τ, 0)`` (SDNet's default non-linearity)."""
    return jax.nn.relu(u - thresh)


def elastic_net_prox(
    u: jax.Array,
    lam: jax.Array | float,
    mu: jax.Array | float = 0.0,
    *,
    step: jax.Array | float = 1.0,
    nonneg: bool = False,
) -> jax.Array:
    """Proximal map of ``step · (λ‖z‖₁ + μ/2‖z‖²)`` (plus ``z ≥ 0`` when ``nonneg``).

    ``argmin_z step·(λ‖z‖₁ + μ/2‖z‖²) + ½‖z − u‖² = shrink(u / (1 + μ·step), λ·step / (1 + μ·step))``
    where ``shrink`` is :func:`soft_threshold` (or :func:`nonneg_soft_threshold`). With ``μ = 0`` it
    is the plain (non-negative) soft threshold at ``λ·step``.
    """
    scale = 1.0 / (1.0 + mu * step)
    shrink = nonneg_soft_threshold if nonneg else soft_threshold
    return shrink(u * scale, lam * step * scale)
