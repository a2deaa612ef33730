"""The jitted programs of the robustness evaluation: pixel-space corruption, the forward pass with
λ overrides and stem statistics, masked sums, the PGD steps, and :class:`Evaluator` that compiles
them once per model."""

from __future__ import annotations

import functools
from collections.abc import Sequence
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax

from sdnet_jax.data import corruptions as corruptions_lib
from sdnet_jax.data import input_pipeline
from sdnet_jax.data.pixels import (
    normalised_from_uint8,
    normalised_from_unit,
    unit_from_normalised,
    unit_from_uint8,
)
from sdnet_jax.evaluation.masked import masked_sums
from sdnet_jax.evaluation.robustness.config import CLEAN, PGD_TAG, STEM, Cell


def corrupt_normalised(
    images: jax.Array,
    key: jax.Array,
    severity: int | jax.Array,
    *,
    name: str,
    mean: Any,
    std: Any,
    table: str,
) -> jax.Array:
    """Corrupts normalised images: un-normalise, corrupt in ``[0, 1]`` (clipped), re-normalise."""
    pixels = jnp.clip(unit_from_normalised(images, mean, std), 0.0, 1.0)
    noisy = corruptions_lib.corrupt(pixels, key, name, severity, table=table)
    return normalised_from_unit(noisy, mean, std)


def _lam_kwargs(lam: Any, scope: str) -> dict[str, Any]:
    return {"stem_lam": lam} if scope == "stem" else {"lam": lam}


def _is_stem(module: nn.Module, method_name: str) -> bool:
    return module.name == STEM and method_name == "__call__"


def forward(
    model: nn.Module, variables: Any, images: jax.Array, lam: Any, scope: str
) -> tuple[jax.Array, dict[str, jax.Array]]:
    """Logits and the stem CSC layer's per-example statistics (empty without a CSC stem).

    ``lam`` (a scalar, or ``(N, 1, 1, 1)`` for a per-example λ) replaces λ of the stem's CSC layer
    (``scope='stem'``) or of every CSC layer (``scope='all'``).
    """
    logits, collections = model.apply(
        variables,
        images,
        train=False,
        mutable=["csc_stats", "intermediates"],
        capture_intermediates=_is_stem,
        **_lam_kwargs(lam, scope),
    )
    stats = collections.get("csc_stats", {})
    if STEM not in stats:
        return logits, {}
    codes = collections["intermediates"][STEM]["__call__"][0]
    return logits, {
        "recon_error": stats[STEM]["recon_error"][0],
        "l1": stats[STEM]["l1"][0],
        "nonzero_fraction": jnp.mean((codes != 0).astype(jnp.float32), axis=(1, 2, 3)),
    }


def pgd_direction(grad: jax.Array, norm: str) -> jax.Array:
    """The steepest-ascent direction of unit ``norm`` per example."""
    if norm == "linf":
        return jnp.sign(grad)
    length = jnp.sqrt(jnp.sum(jnp.square(grad), axis=(1, 2, 3), keepdims=True))
    return grad / jnp.maximum(length, 1e-12)


def pgd_project(delta: jax.Array, pixels: jax.Array, eps: jax.Array, norm: str) -> jax.Array:
    """Projects a perturbation onto the ε-ball of ``norm``, then onto ``pixels + delta ∈ [0, 1]``.

    The box clip only shrinks entries towards zero, so the result stays in the ball.
    """
    if norm == "linf":
        delta = jnp.clip(delta, -eps, eps)
    else:
        length = jnp.sqrt(jnp.sum(jnp.square(delta), axis=(1, 2, 3), keepdims=True))
        delta = delta * jnp.minimum(1.0, eps / jnp.maximum(length, 1e-12))
    return jnp.clip(pixels + delta, 0.0, 1.0) - pixels


def pgd_random_start(key: jax.Array, shape: Sequence[int], eps: jax.Array, norm: str) -> jax.Array:
    """A random point of the ε-ball: uniform in the ℓ∞ box; ℓ2: random direction, radius ε·U."""
    if norm == "linf":
        return jax.random.uniform(key, shape, minval=-1.0, maxval=1.0) * eps
    k_dir, k_rad = jax.random.split(key)
    direction = pgd_direction(jax.random.normal(k_dir, shape), "l2")
    return direction * eps * jax.random.uniform(k_rad, (shape[0], 1, 1, 1))


# ----------------------------------------------------------------------------- the jitted model


class Evaluator:
    """The jitted evaluation programs of one trained model.

    Args:
      model: the classifier (``load_classifier``'s).
      info: its data set's info (``mean``/``std`` map between pixels and the model's input).
      corruption_names: the corruptions cells may use (indices 1.. in that order).
      table: the corruption parameters, ``'cifar10'`` or ``'imagenet'``.
      scope: ``'stem'`` or ``'all'``: which CSC layers λ replaces.
      default_lam: the trained λ (the adaptive rule reads the recon error at it).
      seed: seeds the corruption noise and the PGD random starts.
      pgd_steps: PGD iterations.
      random_start: start PGD at a random point of the ε-ball.

    Attributes:
      cell_sums: ``(params, model_state, batch, batch_index, corruption_index, severity, lam)``
        -> masked sums of the batch corrupted as the cell says (index 0 = clean, ``i`` = the
        ``i``-th of ``corruption_names``) and classified at λ.
      adaptive_sums: ``(..., severity, rule)`` with ``rule = [a, b, lam_min, lam_max]``: the same
        with a per-example λ from the adaptive rule (also sums the λ used, ``lam``).
      pgd_sums: ``(params, model_state, batch, batch_index, lam, eps, step_size, norm=...)`` ->
        masked sums on the PGD adversarial examples of the clean batch.
    """

    def __init__(
        self,
        model: nn.Module,
        info: input_pipeline.DatasetInfo,
        *,
        corruption_names: Sequence[str],
        table: str,
        scope: str,
        default_lam: float,
        seed: int,
        pgd_steps: int,
        random_start: bool,
    ) -> None:
        self.model = model
        self.corruption_names = tuple(corruption_names)
        self.scope = scope
        self.default_lam = float(default_lam)
        mean = np.asarray(info.mean, np.float32)
        std = np.asarray(info.std, np.float32)
        base_key = jax.random.key(seed)

        def prepare(
            images: jax.Array, batch_index: Any, corruption_index: Any, severity: Any
        ) -> jax.Array:
            """The cell's normalised images from the stored uint8 ones; the clean branch only
            normalises them."""
            images = normalised_from_uint8(images, mean, std)
            key = jax.random.fold_in(jax.random.fold_in(base_key, corruption_index), batch_index)
            branches = [lambda x, k, s: x] + [
                functools.partial(corrupt_normalised, name=n, mean=mean, std=std, table=table)
                for n in self.corruption_names
            ]
            return jax.lax.switch(corruption_index, branches, images, key, severity)

        def cell_sums(
            params: Any,
            model_state: Any,
            batch: dict[str, jax.Array],
            batch_index: Any,
            corruption_index: Any,
            severity: Any,
            lam: Any,
        ) -> dict[str, jax.Array]:
            variables = {"params": params, **model_state}
            images = prepare(batch["image"], batch_index, corruption_index, severity)
            logits, stats = forward(model, variables, images, lam, scope)
            return masked_sums(logits, batch, stats)

        def adaptive_sums(
            params: Any,
            model_state: Any,
            batch: dict[str, jax.Array],
            batch_index: Any,
            corruption_index: Any,
            severity: Any,
            rule: Any,
        ) -> dict[str, jax.Array]:
            variables = {"params": params, **model_state}
            images = prepare(batch["image"], batch_index, corruption_index, severity)
            _, stats = forward(model, variables, images, self.default_lam, scope)
            lam = jnp.clip(rule[0] * stats["recon_error"] + rule[1], rule[2], rule[3])
            logits, stats = forward(model, variables, images, lam[:, None, None, None], scope)
            sums = masked_sums(logits, batch, stats)
            sums["lam"] = jnp.sum(lam * batch["mask"])
            return sums

        def pgd_sums(
            params: Any,
            model_state: Any,
            batch: dict[str, jax.Array],
            batch_index: Any,
            lam: Any,
            eps: Any,
            step_size: Any,
            norm: str,
        ) -> dict[str, jax.Array]:
            variables = {"params": params, **model_state}
            pixels = unit_from_uint8(batch["image"])

            def loss_fn(x: jax.Array) -> jax.Array:
                logits = model.apply(
                    variables,
                    normalised_from_unit(x, mean, std),
                    train=False,
                    **_lam_kwargs(lam, scope),
                )
                return jnp.sum(
                    optax.softmax_cross_entropy_with_integer_labels(logits, batch["label"])
                    * batch["mask"]
                )

            delta = jnp.zeros_like(pixels)
            if random_start:
                key = jax.random.fold_in(jax.random.fold_in(base_key, PGD_TAG), batch_index)
                delta = pgd_random_start(key, pixels.shape, eps, norm)
            delta = pgd_project(delta, pixels, eps, norm)

            def step(_: Any, delta: jax.Array) -> jax.Array:
                grad = jax.grad(loss_fn)(pixels + delta)
                return pgd_project(
                    delta + step_size * eps * pgd_direction(grad, norm), pixels, eps, norm
                )

            delta = jax.lax.fori_loop(0, pgd_steps, step, delta)
            adversarial = normalised_from_unit(pixels + delta, mean, std)
            logits, stats = forward(model, variables, adversarial, lam, scope)
            return masked_sums(logits, batch, stats)

        self.cell_sums = jax.jit(cell_sums)
        self.adaptive_sums = jax.jit(adaptive_sums)
        self.pgd_sums = jax.jit(pgd_sums, static_argnames="norm")

    def corruption_index(self, cell: Cell) -> int:
        """0 for the clean cell, ``i + 1`` for the ``i``-th configured corruption."""
        return 0 if cell[0] == CLEAN else self.corruption_names.index(cell[0]) + 1
