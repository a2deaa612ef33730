"""A CSC-CTRL / CTRL run: its state (two players), encoder / decoder, optimizers and initial state
from a config, the closed loop ``x -> (z, x_hat, z_hat)`` on ``[-1, 1]`` images, and
:func:`load_ctrl` to restore a trained one from its workdir."""

from __future__ import annotations

from typing import Any

import flax
import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections

from sdnet_jax import models
from sdnet_jax.data import input_pipeline
from sdnet_jax.runs.common import DTYPES, num_train_steps, open_run, restore_state
from sdnet_jax.runtime import optim


@flax.struct.dataclass
class CTRLState:
    step: jax.Array
    enc_params: Any
    enc_state: Any  # batch_stats, power_iteration of the encoder
    enc_opt: Any
    dec_params: Any
    dec_state: Any
    dec_opt: Any


def build_models(config: Any, info: input_pipeline.DatasetInfo) -> tuple[nn.Module, nn.Module]:
    """``(encoder, decoder)`` of ``config.model`` for the data set's image shape."""
    m = config.model
    return models.get_ctrl_models(
        m.name,
        image_shape=info.image_shape,
        feature_dim=m.feature_dim,
        channels=tuple(m.channels),
        strides=tuple(m.strides) or None,
        kernel_size=m.kernel_size,
        csc=dict(m.csc),
        dtype=DTYPES[m.dtype],
    )


def make_optimizers(config: Any, info: input_pipeline.DatasetInfo):
    """``(learning_rate schedule, encoder optimizer, decoder optimizer)``: the same recipe, two
    independent optax states; the encoder's learning rate is ``config.ctrl.enc_lr_scale`` times the
    decoder's (the logged ``learning_rate``) after the ``config.ctrl.warmup_steps`` first steps."""
    learning_rate = optim.schedule(config.optim, num_train_steps(config, info))
    scale = float(config.ctrl.enc_lr_scale)
    warmup = int(config.ctrl.warmup_steps)
    if scale == 1.0:
        enc_learning_rate = learning_rate
    else:

        def enc_learning_rate(step):
            return jnp.where(step < warmup, 1.0, scale) * learning_rate(step)

    return (
        learning_rate,
        optim.make_optimizer(config.optim, enc_learning_rate),
        optim.make_optimizer(config.optim, learning_rate),
    )


def make_init_state(encoder, decoder, tx_enc, tx_dec, image_shape):
    """``key -> CTRLState`` at step 0 (pure; the loop jits it with replicated out_shardings)."""

    def init_state(key: jax.Array) -> CTRLState:
        k_enc, k_dec = jax.random.split(key)
        enc = encoder.init(k_enc, jnp.zeros((2, *image_shape), jnp.float32), train=False)
        z = jnp.zeros((2, encoder.feature_dim), jnp.float32)
        dec = decoder.init(k_dec, z, train=False)
        enc_params, dec_params = enc.pop("params"), dec.pop("params")
        return CTRLState(
            step=jnp.zeros((), jnp.int32),
            enc_params=enc_params,
            enc_state=dict(enc),
            enc_opt=tx_enc.init(enc_params),
            dec_params=dec_params,
            dec_state=dict(dec),
            dec_opt=tx_dec.init(dec_params),
        )

    return init_state


def load_ctrl(
    workdir: str, *, which: str | int = "latest", data_dir: str | None = None
) -> tuple[ml_collections.ConfigDict, nn.Module, nn.Module, CTRLState, input_pipeline.DatasetInfo]:
    """Restores a trained CTRL run: ``(config, encoder, decoder, state, info)``.

    ``which`` is ``'latest'`` or a step number; ``data_dir`` overrides ``config.data.data_dir``.
    Raises :class:`sdnet_jax.errors.RunError` for a missing, empty or other-task workdir, or no or
    an unreadable checkpoint.
    """
    config, info = open_run(
        workdir, "ctrl", command="restore it (load_ctrl / benchmarks.ctrl_transfer)",
        data_dir=data_dir,
    )  # fmt: skip
    encoder, decoder = build_models(config, info)
    _, tx_enc, tx_dec = make_optimizers(config, info)
    init_state = make_init_state(encoder, decoder, tx_enc, tx_dec, info.image_shape)
    state = restore_state(workdir, config, init_state, which)
    return config, encoder, decoder, state, info


def apply_model(module: nn.Module, params, state, x, train: bool = True):
    """Applies an encoder or decoder ``module``; in training returns ``(out, new non-param state)``."""
    if not train:
        return module.apply({"params": params, **state}, x, train=False), state
    out, new_state = module.apply({"params": params, **state}, x, train=True, mutable=list(state))
    return out, dict(new_state)


def make_closed_loop(encoder, decoder):
    """Jitted evaluation pass ``x -> (z, x_hat, z_hat)`` (frozen statistics)."""

    @jax.jit
    def closed_loop(state: CTRLState, x):
        z, _ = apply_model(encoder, state.enc_params, state.enc_state, x, train=False)
        x_hat, _ = apply_model(decoder, state.dec_params, state.dec_state, z, train=False)
        z_hat, _ = apply_model(encoder, state.enc_params, state.enc_state, x_hat, train=False)
        return z, x_hat, z_hat

    return closed_loop
