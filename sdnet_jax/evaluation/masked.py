"""Masked evaluation of a classifier over padded batches: one accumulator for training's validation
pass and the robustness sweeps alike.

Evaluation batches are padded to a fixed size (``batch['mask']`` is 1 for real examples, 0 for
padding); a jitted step returns per-batch masked *sums* (:func:`masked_sums`), the host adds them
up (:func:`accumulate`, one transfer per batch) and divides by the count (:func:`means`).
"""

from __future__ import annotations

from collections.abc import Iterable

import jax
import jax.numpy as jnp
import optax

SUMS = ("count", "correct", "loss")


def masked_sums(
    logits: jax.Array, batch: dict[str, jax.Array], stats: dict[str, jax.Array] | None = None
) -> dict[str, jax.Array]:
    """Masked totals of one batch: ``count``, ``correct``, cross-entropy ``loss`` and the sum of
    every per-example statistic in ``stats``."""
    mask = batch["mask"]
    correct = (jnp.argmax(logits, -1) == batch["label"]) * mask
    loss = optax.softmax_cross_entropy_with_integer_labels(logits, batch["label"]) * mask
    sums = {"count": jnp.sum(mask), "correct": jnp.sum(correct), "loss": jnp.sum(loss)}
    for name, value in (stats or {}).items():
        sums[name] = jnp.sum(value * mask)
    return sums


def accumulate(outputs: Iterable[dict[str, jax.Array]]) -> dict[str, float]:
    """Adds up per-batch sums on the host."""
    totals: dict[str, float] = {}
    for sums in outputs:
        for k, v in jax.device_get(sums).items():
            totals[k] = totals.get(k, 0.0) + float(v)
    return totals


def means(totals: dict[str, float]) -> dict[str, float]:
    """Means over the counted examples: ``accuracy``, ``loss`` and every statistic."""
    count = max(totals["count"], 1.0)
    out = {"accuracy": totals["correct"] / count, "loss": totals["loss"] / count}
    out.update({k: v / count for k, v in totals.items() if k not in SUMS})
    return out
