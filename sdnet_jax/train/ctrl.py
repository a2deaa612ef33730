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
learn slower than the decoder (``enc_lr_scale``) after an encoder warm-up (``warmup_steps``).
``pair_lam = code_lam = 0``, ``enc_lr_scale = 1`` is the CTRL reference recipe; the small-batch
recipe of the digits / Fashion-MNIST configs is ``configs.ctrl_base.small_batch_recipe``
(docs/ctrl_recipe_log.md). The game a config describes is :func:`game_of`.

Each player has its own optax optimizer and state inside one train state; both run in training mode
(batch statistics) and keep the updates of their own BN / power-iteration state only. After each
update the CSC dictionaries are projected onto unit-norm atoms. Everything else — the mesh, jit,
checkpoints, resume, SIGTERM handling and logging — is the shared loop of
:mod:`sdnet_jax.train.loop`.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections
import optax

from sdnet_jax import models, ops
from sdnet_jax.data import pixels
from sdnet_jax.evaluation.ctrl import first_stage_atoms, make_evaluate
from sdnet_jax.runs.common import num_train_steps
from sdnet_jax.runs.ctrl import (
    CTRLState,
    apply_model,
    build_models,
    make_closed_loop,
    make_init_state,
    make_optimizers,
)
from sdnet_jax.runs.validation import PAIR_PLAYERS
from sdnet_jax.runs.validation import validate_ctrl as validate_config
from sdnet_jax.train import inputs, loop

# ----------------------------------------------------------------------------- steps


@dataclasses.dataclass(frozen=True)
class Game:
    """The CTRL game of ``config.ctrl`` (:func:`game_of`), as the train step plays it.

    Attributes:
      objective: the value ``T`` the encoder maximises and the decoder minimises: ``'multiclass'``
        ``ΔR(Z) + ΔR(Ẑ) + Σ_j ΔR(Z_j, Ẑ_j)``, ``'binary'`` ``ΔR(Z, Ẑ)`` or ``'unsupervised'``
        ``R(Z) + ΔR(Z, Ẑ)``; ``num_classes`` and ``eps_sq`` (ε²) as in :mod:`sdnet_jax.ops.rates`.
      n_inner: encoder steps per decoder step.
      pair_lam, pairwise, pair_players: the sample-wise self-consistency
        ``D = Σ_i D(z_i, ẑ_i)`` (:func:`ops.sample_distance` of kind ``pairwise``), reduced with
        weight ``pair_lam`` by ``'both'`` players or by the ``'decoder'`` only — inside the
        min-max the decoder would be paid to move ``ẑ_i`` away from ``z_i``. The unsupervised form
        needs it; ``pair_lam = 0`` with the multi-class / binary forms is the CTRL reference recipe.
      code_lam: weight of the decoder-only code consistency ``C`` (:func:`code_distance`).
      warmup_steps: while ``step < warmup_steps`` the encoder maximises ``ΔR(Z)`` of the real
        features and their classes alone (MCR², no decoder pass); the decoder's steps are unchanged.
    """

    objective: str
    num_classes: int
    eps_sq: float = 0.5
    n_inner: int = 1
    pair_lam: float = 0.0
    pairwise: str = "cosine"
    pair_players: str = "both"
    code_lam: float = 0.0
    warmup_steps: int = 0

    def __post_init__(self):
        if self.pair_players not in PAIR_PLAYERS:
            raise ValueError(
                f"pair_players must be one of {PAIR_PLAYERS}, got {self.pair_players!r}."
            )

    def value(self, z, z_hat, labels) -> jax.Array:
        """``T``."""
        if self.objective == "multiclass":
            return ops.ctrl_multiclass_objective(z, z_hat, labels, self.num_classes, self.eps_sq)
        if self.objective == "binary":
            return ops.pairwise_rate_reduction(z, z_hat, self.eps_sq)
        return ops.ctrl_unsupervised_objective(z, z_hat, 0.0, self.pairwise, self.eps_sq)

    def distance(self, z, z_hat) -> jax.Array:
        """``D``."""
        return ops.sample_distance(z, z_hat, self.pairwise)

    def warmup_value(self, z, labels) -> jax.Array:
        """``ΔR(Z)`` of the classes (the warm-up's encoder objective)."""
        return ops.rate_reduction(z, labels, self.num_classes, self.eps_sq)


def game_of(config: Any, num_classes: int) -> Game:
    """The game ``config.ctrl`` describes (the one place a config becomes a train step's game)."""
    c = config.ctrl
    return Game(
        objective=c.objective, num_classes=num_classes, eps_sq=c.eps_sq, n_inner=c.n_inner,
        pair_lam=c.pair_lam, pairwise=c.pairwise, pair_players=c.pair_players,
        code_lam=c.code_lam, warmup_steps=c.warmup_steps,
    )  # fmt: skip


def encode_with_codes(encoder: nn.Module, params, state, x):
    """The encoder in training mode: ``(z, per-stage codes before BN, new non-param state)``."""
    (z, codes), new_state = encoder.apply(
        {"params": params, **state}, x, train=True, return_codes=True, mutable=list(state)
    )
    return z, codes, dict(new_state)


def code_distance(codes: Sequence[jax.Array], codes_hat: Sequence[jax.Array]) -> jax.Array:
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


def make_train_step(encoder, decoder, tx_enc, tx_dec, game: Game):
    """One game step on a batch of ``[-1, 1]`` images: ``game.n_inner`` encoder steps on
    ``−T (+ pair_lam·D when both players reduce it)`` — or, during the warm-up, on ``−ΔR(Z)`` —
    then one decoder step on ``T + pair_lam·D + code_lam·C``, its gradient through
    ``Ẑ = f(g(Z))``. After each update the CSC dictionaries are projected onto unit-norm atoms."""
    enc_pair_lam = game.pair_lam if game.pair_players == "both" else 0.0

    def warmup_encoder_step(state: CTRLState, x, labels):
        def loss_fn(enc_params):
            z, enc_state = apply_model(encoder, enc_params, state.enc_state, x)
            value = game.warmup_value(z, labels)
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
            value = game.value(z, z_hat, labels)
            return -value + enc_pair_lam * game.distance(z, z_hat), (enc_state, value)

        return _apply_encoder_grads(state, loss_fn)

    def _apply_encoder_grads(state: CTRLState, loss_fn):
        (_, (enc_state, value)), grads = jax.value_and_grad(loss_fn, has_aux=True)(state.enc_params)
        updates, enc_opt = tx_enc.update(grads, state.enc_opt, state.enc_params)
        enc_params = models.project_dictionaries(optax.apply_updates(state.enc_params, updates))
        new = state.replace(enc_params=enc_params, enc_state=enc_state, enc_opt=enc_opt)
        return new, value, optax.tree.norm(grads)

    def decoder_step(state: CTRLState, x, labels):
        z, codes, _ = encode_with_codes(encoder, state.enc_params, state.enc_state, x)
        z = jax.lax.stop_gradient(z)

        def loss_fn(dec_params):
            x_hat, dec_state = apply_model(decoder, dec_params, state.dec_state, z)
            z_hat, codes_hat, _ = encode_with_codes(
                encoder, state.enc_params, state.enc_state, x_hat
            )
            value, distance = game.value(z, z_hat, labels), game.distance(z, z_hat)
            code = code_distance(codes, codes_hat) if game.code_lam else jnp.zeros((), jnp.float32)
            loss = value + game.pair_lam * distance + game.code_lam * code
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
        x, labels = batch["image"], batch["label"]
        for _ in range(game.n_inner):
            if game.warmup_steps:
                state, t_enc, enc_grad_norm = jax.lax.cond(
                    state.step < game.warmup_steps, warmup_encoder_step, encoder_step, state, x,
                    labels,
                )  # fmt: skip
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
    """The train step ``config.ctrl`` describes (the one :func:`train_and_evaluate` runs), on
    batches of ``[-1, 1]`` images."""
    return make_train_step(encoder, decoder, tx_enc, tx_dec, game_of(config, info.num_classes))


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
    step = config_train_step(config, info, encoder, decoder, tx_enc, tx_dec)
    return loop.Task(
        init_state=make_init_state(encoder, decoder, tx_enc, tx_dec, info.image_shape),
        train_step=inputs.fed(step, train_input, pixels.symmetric_from_unit),
        train_feeds=train_input.feeds,
        resident=train_input.resident,
        steps_per_feed=train_input.steps_per_feed,
        evaluate=make_evaluate(config, info, make_closed_loop(encoder, decoder), workdir),
        num_train_steps=total,
        examples_per_step=config.batch_size,
        selection_metric=None,
        eval_splits=("validation", "test") if has_validation else ("test",),
        summaries=lambda state: first_stage_atoms(state.enc_params),
        learning_rate=learning_rate,
    )
