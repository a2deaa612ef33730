"""CSC-CTRL training: the closed-loop transcription rate-reduction game between two players.

``Z = f(X)`` (encoder, unit-norm features), ``X̂ = g(Z)`` (decoder, images in [-1, 1]),
``Ẑ = f(X̂)``. With the objective ``T`` (multi-class ``ΔR(Z) + ΔR(Ẑ) + Σ_j ΔR(Z_j, Ẑ_j)``, binary, or
the unsupervised sample-wise form; :mod:`sdnet_jax.ops.rates`), one train step on a batch is

* ``n_inner`` encoder steps maximising ``T`` (``X̂ = g(Z)`` is a constant for the encoder: its
  gradient flows through ``Z = f(X)`` and ``Ẑ = f(X̂)``), then
* one decoder step minimising ``T`` with ``Z`` a constant; the decoder's gradient flows through
  ``Ẑ = f(g(Z))``.

Sample-wise terms (``config.ctrl``): ``pair_lam · Σ_i D(z_i, ẑ_i)`` reduced by both players or the
decoder only (``pair_players``), and the decoder-only code consistency ``code_lam · C``
(:func:`code_distance`: the encoder's per-stage codes of ``X̂`` vs those of ``X``); the encoder can
learn slower than the decoder (``enc_lr_scale``). ``pair_lam = code_lam = 0``, ``enc_lr_scale = 1``
is the CTRL reference recipe; ``code_lam = 10``, ``enc_lr_scale = 0.2`` the small-batch recipe of
the digits / Fashion-MNIST configs (docs/ctrl_recipe_log.md).

Each player has its own optax optimizer and state inside one train state; both run in training mode
(batch statistics) and keep the updates of their own BN / power-iteration state only. After each
update the CSC dictionaries are projected onto unit-norm atoms. Everything else — the mesh, jit,
checkpoints, resume, SIGTERM handling and logging — is the shared loop of
:mod:`sdnet_jax.train.loop`.
"""

from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections
import optax

from sdnet_jax import models, ops
from sdnet_jax.evaluation.ctrl import first_stage_atoms, make_evaluate
from sdnet_jax.models import ctrl as ctrl_models
from sdnet_jax.runs.common import num_train_steps
from sdnet_jax.runs.ctrl import (
    CTRLState,
    apply_model,
    build_models,
    make_closed_loop,
    make_init_state,
    make_optimizers,
    to_symmetric,
)
from sdnet_jax.runs.validation import PAIR_PLAYERS
from sdnet_jax.runs.validation import validate_ctrl as validate_config
from sdnet_jax.train import inputs, loop

# ----------------------------------------------------------------------------- steps


def objective_fn(config: Any, num_classes: int):
    """``(z, z_hat, labels) -> (T, D)`` for ``config.ctrl``.

    ``T`` is the game's value (the encoder maximises it, the decoder minimises it): multi-class
    ``ΔR(Z) + ΔR(Ẑ) + Σ_j ΔR(Z_j, Ẑ_j)``, binary ``ΔR(Z, Ẑ)``, or unsupervised ``R(Z) + ΔR(Z, Ẑ)``.
    ``D = Σ_i D(z_i, ẑ_i)`` is the sample-wise self-consistency (:func:`ops.sample_distance`), a
    constraint reduced with weight ``config.ctrl.pair_lam`` by both players or by the decoder only
    (``config.ctrl.pair_players``; :func:`make_train_step`) — were it inside the
    min-max, the decoder would be paid to move ``ẑ_i`` away from ``z_i``. The unsupervised form
    needs ``pair_lam > 0``; ``pair_lam = 0`` with the multi-class / binary forms is the CTRL
    reference recipe.
    """
    c = config.ctrl

    def value(z, z_hat, labels):
        if c.objective == "multiclass":
            return ops.ctrl_multiclass_objective(z, z_hat, labels, num_classes, c.eps_sq)
        if c.objective == "binary":
            return ops.pairwise_rate_reduction(z, z_hat, c.eps_sq)
        return ops.ctrl_unsupervised_objective(z, z_hat, 0.0, c.pairwise, c.eps_sq)

    def objective(z, z_hat, labels):
        return value(z, z_hat, labels), ops.sample_distance(z, z_hat, c.pairwise)

    return objective


def _run_codes(module: nn.Module, params, state, x):
    """Applies an encoder in training mode: ``(z, new state, per-stage codes before BN)``."""
    out, new_state = module.apply(
        {"params": params, **state}, x, train=True, mutable=[*state, ctrl_models.CODES]
    )
    new_state = dict(new_state)
    sown = new_state.pop(ctrl_models.CODES)
    codes = [sown[k][0] for k in sorted(sown, key=lambda k: int(k[len("code") :]))]
    return out, new_state, codes


def code_distance(codes: list[jax.Array], codes_hat: list[jax.Array]) -> jax.Array:
    """Sample-wise code consistency ``C = Σ_l Σ_i ‖c_l(x̂_i) − c_l(x_i)‖² / mean_i ‖c_l(x_i)‖²``.

    ``c_l`` is the encoder's stage-``l`` code before its BN (the CSC stage's sparse code), of the
    real images (``codes``, a constant) and of their reconstructions (``codes_hat``). Each stage's
    squared distance is relative to the mean squared norm of the real codes of the batch, so every
    stage weighs the same and ``C`` is a sum over the batch like :func:`ops.sample_distance`.
    """
    total = jnp.zeros((), jnp.float32)
    for c, c_hat in zip(codes, codes_hat, strict=True):
        c = jax.lax.stop_gradient(c.astype(jnp.float32))
        sq = jnp.sum(jnp.square(c_hat.astype(jnp.float32) - c).reshape(c.shape[0], -1), axis=1)
        scale = jnp.mean(jnp.sum(jnp.square(c).reshape(c.shape[0], -1), axis=1))
        total = total + jnp.sum(sq) / jnp.maximum(scale, 1e-12)
    return total


def make_train_step(
    encoder,
    decoder,
    tx_enc,
    tx_dec,
    objective,
    n_inner: int,
    info,
    pair_lam: float = 0.0,
    *,
    pair_players: str = "both",
    code_lam: float = 0.0,
    warmup_steps: int = 0,
    num_classes: int | None = None,
    eps_sq: float = 0.5,
):
    """One game step: ``n_inner`` encoder steps on ``−T (+ pair_lam·D)``, one decoder step on
    ``T + pair_lam·D + code_lam·C`` (``objective`` as returned by :func:`objective_fn`).

    ``pair_players``: who reduces the sample-wise term ``pair_lam·D``: ``'both'`` players or the
    ``'decoder'`` only (then the encoder's gradient does not see ``D``). ``code_lam`` weighs the
    sample-wise code consistency ``C`` (:func:`code_distance`), a decoder-only term.

    ``warmup_steps``: while ``state.step < warmup_steps`` the encoder steps maximise the rate
    reduction ``ΔR(Z)`` of the real features and their ``num_classes`` classes alone (MCR², with
    ``eps_sq``; no decoder pass), so the features separate the classes before the game starts; the
    decoder steps are unchanged. Its learning rate is then unscaled (:func:`runs.ctrl.make_optimizers`).
    """
    if pair_players not in PAIR_PLAYERS:
        raise ValueError(f"pair_players must be one of {PAIR_PLAYERS}, got {pair_players!r}.")
    if warmup_steps and num_classes is None:
        raise ValueError("warmup_steps > 0 needs num_classes (the classes of ΔR(Z)).")
    enc_pair_lam = pair_lam if pair_players == "both" else 0.0

    def warmup_encoder_step(state: CTRLState, x, labels):
        def loss_fn(enc_params):
            z, enc_state = apply_model(encoder, enc_params, state.enc_state, x)
            value = ops.rate_reduction(z, labels, num_classes, eps_sq)
            return -value, (enc_state, value)

        return _apply_encoder_grads(state, loss_fn)

    def encoder_step(state: CTRLState, x, labels):
        def loss_fn(enc_params):
            z, enc_state = apply_model(encoder, enc_params, state.enc_state, x)
            x_hat, _ = apply_model(
                decoder, state.dec_params, state.dec_state, jax.lax.stop_gradient(z)
            )
            z_hat, enc_state = apply_model(
                encoder, enc_params, enc_state, jax.lax.stop_gradient(x_hat)
            )
            value, distance = objective(z, z_hat, labels)
            return -value + enc_pair_lam * distance, (enc_state, value)

        return _apply_encoder_grads(state, loss_fn)

    def _apply_encoder_grads(state: CTRLState, loss_fn):
        (_, (enc_state, value)), grads = jax.value_and_grad(loss_fn, has_aux=True)(state.enc_params)
        updates, enc_opt = tx_enc.update(grads, state.enc_opt, state.enc_params)
        enc_params = models.project_dictionaries(optax.apply_updates(state.enc_params, updates))
        new = state.replace(enc_params=enc_params, enc_state=enc_state, enc_opt=enc_opt)
        return new, value, optax.tree.norm(grads)

    def decoder_step(state: CTRLState, x, labels):
        if code_lam:
            z, _, codes = _run_codes(encoder, state.enc_params, state.enc_state, x)
        else:
            z, _ = apply_model(encoder, state.enc_params, state.enc_state, x)
        z = jax.lax.stop_gradient(z)

        def loss_fn(dec_params):
            x_hat, dec_state = apply_model(decoder, dec_params, state.dec_state, z)
            if code_lam:
                z_hat, _, codes_hat = _run_codes(encoder, state.enc_params, state.enc_state, x_hat)
                code = code_distance(codes, codes_hat)
            else:
                z_hat, _ = apply_model(encoder, state.enc_params, state.enc_state, x_hat)
                code = jnp.zeros((), jnp.float32)
            value, distance = objective(z, z_hat, labels)
            loss = value + pair_lam * distance + code_lam * code
            return loss, (dec_state, x_hat, value, distance, code)

        (_, (dec_state, x_hat, value, distance, code)), grads = jax.value_and_grad(
            loss_fn, has_aux=True
        )(state.dec_params)
        updates, dec_opt = tx_dec.update(grads, state.dec_opt, state.dec_params)
        dec_params = models.project_dictionaries(optax.apply_updates(state.dec_params, updates))
        new = state.replace(dec_params=dec_params, dec_state=dec_state, dec_opt=dec_opt)
        grad_norm = optax.tree.norm(grads)
        return new, value, distance, jnp.mean(jnp.square(x_hat - x)), code, grad_norm

    def train_step(state: CTRLState, batch: dict[str, jax.Array]):
        x, labels = to_symmetric(batch["image"], info), batch["label"]
        for _ in range(n_inner):
            if warmup_steps:
                state, t_enc, enc_grad_norm = jax.lax.cond(
                    state.step < warmup_steps, warmup_encoder_step, encoder_step, state, x, labels
                )
            else:
                state, t_enc, enc_grad_norm = encoder_step(state, x, labels)
        state, t_dec, distance, mse, code, dec_grad_norm = decoder_step(state, x, labels)
        metrics = {
            "objective_encoder_step": t_enc,
            "objective_decoder_step": t_dec,
            "sample_distance": distance,
            "code_distance": code,
            "mse": mse,
            "encoder_grad_norm": enc_grad_norm,
            "decoder_grad_norm": dec_grad_norm,
        }
        return state.replace(step=state.step + 1), metrics

    return train_step


# ----------------------------------------------------------------------------- job


def config_train_step(config: Any, info, encoder, decoder, tx_enc, tx_dec):
    """The train step ``config.ctrl`` describes (the one :func:`train_and_evaluate` runs)."""
    c = config.ctrl
    return make_train_step(
        encoder, decoder, tx_enc, tx_dec, objective_fn(config, info.num_classes), c.n_inner, info,
        pair_lam=c.pair_lam, pair_players=c.pair_players, code_lam=c.code_lam,
        warmup_steps=c.get("warmup_steps", 0), num_classes=info.num_classes, eps_sq=c.eps_sq,
    )  # fmt: skip


def train_and_evaluate(
    config: ml_collections.ConfigDict,
    workdir: str,
    *,
    stop_after_steps: int | None = None,
    deadline: float | None = None,
) -> dict[str, Any]:
    """Trains and evaluates the CTRL autoencoder described by ``config`` in ``workdir``
    (``deadline`` and ``stop_after_steps``: see :func:`loop.run`)."""
    return loop.run_with_config(
        make_task(config, workdir), config, workdir,
        stop_after_steps=stop_after_steps, deadline=deadline,
    )  # fmt: skip


def make_task(config: ml_collections.ConfigDict, workdir: str) -> loop.Task:
    """The training task of ``config`` (validated first): the two players, their optimizers,
    the game step, input and evaluation."""
    info = validate_config(config)
    encoder, decoder = build_models(config, info)
    total = num_train_steps(config, info)
    learning_rate, tx_enc, tx_dec = make_optimizers(config, info)
    train_input = inputs.training_input(config, info, workdir)  # on device when it fits
    has_validation = info.num_validation > 0
    return loop.Task(
        init_state=make_init_state(encoder, decoder, tx_enc, tx_dec, info.image_shape),
        train_step=config_train_step(config, info, encoder, decoder, tx_enc, tx_dec),
        train_batches=train_input.train_batches,
        train_arrays=train_input.train_arrays,
        evaluate=make_evaluate(config, info, make_closed_loop(encoder, decoder), workdir),
        num_train_steps=total,
        examples_per_step=config.batch_size,
        selection_metric=None,
        eval_splits=("validation", "test") if has_validation else ("test",),
        summaries=lambda state: first_stage_atoms(state.enc_params),
        learning_rate=learning_rate,
    )
