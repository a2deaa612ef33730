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

import os
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax

from sdnet_jax import models, ops
from sdnet_jax.data import input_pipeline, pixels
from sdnet_jax.evaluation import ctrl_metrics, feature_nets
from sdnet_jax.models import ctrl as ctrl_models
from sdnet_jax.runs.common import DTYPES, data_source, num_train_steps
from sdnet_jax.runs.ctrl import CTRLState, build_models, load_ctrl, make_init_state, make_optimizers
from sdnet_jax.runtime import optim, parallel
from sdnet_jax.train import classifier, inputs, loop
from sdnet_jax.viz import atom_grid

OBJECTIVES = ("multiclass", "binary", "unsupervised")
PAIR_PLAYERS = ("both", "decoder")  # who reduces the sample-wise term pair_lam * D


# ----------------------------------------------------------------------------- config


def validate_config(config: ml_collections.ConfigDict) -> input_pipeline.DatasetInfo:
    """Raises a ``ValueError`` naming the first bad field; returns the data set's info."""

    def check(ok: bool, message: str) -> None:
        if not ok:
            raise ValueError(message)

    check(config.task == "ctrl", f"config.task must be 'ctrl', got {config.task!r}.")
    m = config.model
    check(
        m.name in models.CTRL_MODELS,
        f"config.model.name must be one of {list(models.CTRL_MODELS)}.",
    )
    check(
        m.dtype in DTYPES,
        f"config.model.dtype must be one of {list(DTYPES)}.",
    )
    check(m.feature_dim >= 1, "config.model.feature_dim must be >= 1.")
    check(len(m.channels) >= 1, "config.model.channels must name at least one stage.")
    classifier.validate_csc(m.csc)
    c = config.ctrl
    check(c.objective in OBJECTIVES, f"config.ctrl.objective must be one of {OBJECTIVES}.")
    check(c.eps_sq > 0, f"config.ctrl.eps_sq must be > 0, got {c.eps_sq!r}.")
    check(isinstance(c.n_inner, int) and c.n_inner >= 1, "config.ctrl.n_inner must be an int >= 1.")
    check(c.pair_lam >= 0, f"config.ctrl.pair_lam must be >= 0, got {c.pair_lam!r}.")
    check(
        c.objective != "unsupervised" or c.pair_lam > 0,
        "config.ctrl.pair_lam must be > 0 with the unsupervised objective (its sample-wise term).",
    )
    check(
        c.pairwise in ops.PAIRWISE_DISTANCES, f"config.ctrl.pairwise in {ops.PAIRWISE_DISTANCES}."
    )
    check(
        c.pair_players in PAIR_PLAYERS,
        f"config.ctrl.pair_players must be one of {PAIR_PLAYERS}, got {c.pair_players!r}.",
    )
    check(
        c.objective != "unsupervised" or c.pair_players == "both",
        "config.ctrl.pair_players must be 'both' with the unsupervised objective (its sample-wise "
        "term is part of the encoder's objective too).",
    )
    check(c.code_lam >= 0, f"config.ctrl.code_lam must be >= 0, got {c.code_lam!r}.")
    check(c.enc_lr_scale > 0, f"config.ctrl.enc_lr_scale must be > 0, got {c.enc_lr_scale!r}.")
    check(
        config.data.name.split("/")[0] in input_pipeline.SUPPORTED,
        f"config.data.name {config.data.name!r} is not one of {list(input_pipeline.SUPPORTED)}.",
    )
    check(
        config.eval.feature_net in ("random", "classifier"),
        "config.eval.feature_net: random|classifier",
    )
    optim.validate(config.optim, "config.optim")
    classifier.validate_schedule(config)
    info = input_pipeline.get_info(config.data.name, **data_source(config.data))
    models.get_ctrl_models(  # checks that the strides divide the image size
        m.name, image_shape=info.image_shape, channels=tuple(m.channels), csc=dict(m.csc)
    )
    return info


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
            return ops.ctrl_binary_objective(z, z_hat, c.eps_sq)
        return ops.ctrl_unsupervised_objective(z, z_hat, 0.0, c.pairwise, c.eps_sq)

    def objective(z, z_hat, labels):
        return value(z, z_hat, labels), ops.sample_distance(z, z_hat, c.pairwise)

    return objective


def to_symmetric(images: jax.Array, info: input_pipeline.DatasetInfo) -> jax.Array:
    """Pipeline-normalised images -> [-1, 1] (the decoder's tanh range)."""
    mean, std = jnp.asarray(info.mean), jnp.asarray(info.std)
    return pixels.symmetric_from_unit(pixels.unit_from_normalised(images, mean, std))


def _run(module: nn.Module, params, state, x, train: bool = True):
    """Applies ``module``; in training returns ``(out, new non-param state)``."""
    if not train:
        return module.apply({"params": params, **state}, x, train=False), state
    out, new_state = module.apply({"params": params, **state}, x, train=True, mutable=list(state))
    return out, dict(new_state)


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
):
    """One game step: ``n_inner`` encoder steps on ``−T (+ pair_lam·D)``, one decoder step on
    ``T + pair_lam·D + code_lam·C`` (``objective`` as returned by :func:`objective_fn`).

    ``pair_players``: who reduces the sample-wise term ``pair_lam·D``: ``'both'`` players or the
    ``'decoder'`` only (then the encoder's gradient does not see ``D``). ``code_lam`` weighs the
    sample-wise code consistency ``C`` (:func:`code_distance`), a decoder-only term.
    """
    if pair_players not in PAIR_PLAYERS:
        raise ValueError(f"pair_players must be one of {PAIR_PLAYERS}, got {pair_players!r}.")
    enc_pair_lam = pair_lam if pair_players == "both" else 0.0

    def encoder_step(state: CTRLState, x, labels):
        def loss_fn(enc_params):
            z, enc_state = _run(encoder, enc_params, state.enc_state, x)
            x_hat, _ = _run(decoder, state.dec_params, state.dec_state, jax.lax.stop_gradient(z))
            z_hat, enc_state = _run(encoder, enc_params, enc_state, jax.lax.stop_gradient(x_hat))
            value, distance = objective(z, z_hat, labels)
            return -value + enc_pair_lam * distance, (enc_state, value)

        (_, (enc_state, value)), grads = jax.value_and_grad(loss_fn, has_aux=True)(state.enc_params)
        updates, enc_opt = tx_enc.update(grads, state.enc_opt, state.enc_params)
        enc_params = models.project_dictionaries(optax.apply_updates(state.enc_params, updates))
        new = state.replace(enc_params=enc_params, enc_state=enc_state, enc_opt=enc_opt)
        return new, value, optax.tree.norm(grads)

    def decoder_step(state: CTRLState, x, labels):
        if code_lam:
            z, _, codes = _run_codes(encoder, state.enc_params, state.enc_state, x)
        else:
            z, _ = _run(encoder, state.enc_params, state.enc_state, x)
        z = jax.lax.stop_gradient(z)

        def loss_fn(dec_params):
            x_hat, dec_state = _run(decoder, dec_params, state.dec_state, z)
            if code_lam:
                z_hat, _, codes_hat = _run_codes(encoder, state.enc_params, state.enc_state, x_hat)
                code = code_distance(codes, codes_hat)
            else:
                z_hat, _ = _run(encoder, state.enc_params, state.enc_state, x_hat)
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


def make_closed_loop(encoder, decoder):
    """Jitted evaluation pass ``x -> (z, x_hat, z_hat)`` (frozen statistics)."""

    @jax.jit
    def closed_loop(state: CTRLState, x):
        z, _ = _run(encoder, state.enc_params, state.enc_state, x, train=False)
        x_hat, _ = _run(decoder, state.dec_params, state.dec_state, z, train=False)
        z_hat, _ = _run(encoder, state.enc_params, state.enc_state, x_hat, train=False)
        return z, x_hat, z_hat

    return closed_loop


# ----------------------------------------------------------------------------- evaluation


def _feature_net(config: Any):
    if config.eval.feature_net == "classifier":
        return feature_nets.ClassifierFeatures(config.eval.classifier_workdir)
    return feature_nets.RandomConvNet(seed=0)


def make_evaluate(config, info, closed_loop, workdir: str):
    """``(state, split) -> metrics``; also writes PNG figures to ``workdir/images``."""
    data = config.data
    feature_net = _feature_net(config)
    mesh = parallel.data_mesh()
    num_classes = info.num_classes

    def features_of(state, batches, limit):
        zs, xs, xhs, zhs, ys = [], [], [], [], []
        seen = 0
        for batch in batches:
            x = to_symmetric(jnp.asarray(batch["image"]), info)
            z, x_hat, z_hat = jax.device_get(closed_loop(state, parallel.shard_batch(
                {"image": np.asarray(x)}, mesh)["image"]))  # fmt: skip
            keep = np.asarray(batch["mask"], bool) if "mask" in batch else slice(None)
            zs.append(z[keep]), xs.append(np.asarray(x)[keep]), xhs.append(x_hat[keep])
            zhs.append(z_hat[keep]), ys.append(np.asarray(batch["label"])[keep])
            seen += len(ys[-1])
            if seen >= limit:
                break
        cat = lambda parts: np.concatenate(parts)[:limit]
        return cat(zs), cat(xs), cat(xhs), cat(zhs), cat(ys)

    def evaluate(state: CTRLState, split: str) -> dict[str, float]:
        limit = config.eval.max_examples
        source = data_source(data)
        batches = input_pipeline.eval_iterator(
            data.name, split, global_batch_size=config.eval_batch_size, **source
        )
        z, x, x_hat, z_hat, y = features_of(state, batches, limit)
        train_batches = input_pipeline.train_iterator(
            data.name, global_batch_size=config.eval_batch_size, seed=0, augment="none", **source
        )
        z_train, x_train, *_, y_train = features_of(
            state, train_batches, config.eval.subspace_fit_examples
        )
        terms = ops.ctrl_terms(z, z_hat, y, num_classes, config.ctrl.eps_sq)
        results = {k: float(v) for k, v in terms.items()}
        results["mse"] = float(np.mean(ctrl_metrics.mse(x, x_hat)))
        # psnr, psnr_mean_image (of the mean of the training images the subspaces are fit on),
        # psnr_gain_over_mean_image, spread_x_hat, spread_x: is it a reconstruction or a collapse?
        results.update(ctrl_metrics.collapse_metrics(x, x_hat, x_train.mean(axis=0)))
        results["sample_cosine_distance"] = float(np.mean(1.0 - np.sum(z * z_hat, axis=-1)))
        results["nearest_subspace_accuracy"] = float(
            ctrl_metrics.nearest_subspace_accuracy(
                z_train, y_train, z, y, num_classes, config.eval.subspace_components
            )
        )
        distance = ctrl_metrics.frechet_feature_distance(feature_net, [x], [x_hat])
        results[distance["key"]] = float(distance["value"])
        if parallel.is_main_process():
            step = int(jax.device_get(state.step))
            out = os.path.join(workdir, "images")
            os.makedirs(out, exist_ok=True)
            ctrl_metrics.save_reconstruction_grid(
                os.path.join(out, f"{split}_reconstruction_{step}.png"), x, x_hat
            )
            ctrl_metrics.save_cosine_heatmap(os.path.join(out, f"{split}_cosine_{step}.png"), z, y)
            ctrl_metrics.save_atom_grid(
                os.path.join(out, f"encoder_atoms_{step}.png"), jax.device_get(state.enc_params)
            )
        return results

    return evaluate


def first_stage_atoms(params: Any) -> dict[str, np.ndarray]:
    """The encoder's first-stage atoms (CSC dictionary or DCGAN kernel) as an image."""
    return {"encoder_atoms": atom_grid(ctrl_metrics.first_stage_dictionary(jax.device_get(params)))}


def to_model_images(images01: np.ndarray, image_shape: tuple[int, int, int]) -> np.ndarray:
    """[0, 1] NHWC images of any size/channels -> [-1, 1] images of ``image_shape`` (bilinear
    resize; grey <-> RGB by repetition / BT.601 luma)."""
    x = pixels.to_shape(jnp.asarray(images01, jnp.float32), image_shape)
    return np.asarray(pixels.symmetric_from_unit(jnp.clip(x, 0.0, 1.0)))


def transfer_reconstruction(
    workdir: str,
    dataset: str,
    *,
    data_dir: str | None = None,
    max_examples: int = 1000,
    batch_size: int = 250,
) -> dict[str, Any]:
    """Reconstructs the test split of another data set with a trained CTRL model.

    The images are resized / converted to the model's input shape, passed through ``g(f(·))``, and
    the PSNR / MSE are reported with the PSNR of the split's own mean image and the per-pixel
    spread of X̂ and X (:func:`ctrl_metrics.collapse_metrics`); a grid of X beside X̂ is written to
    ``workdir/images/transfer_<dataset>.png``.
    """
    config, encoder, decoder, state, info = load_ctrl(workdir)
    other = input_pipeline.get_info(dataset, data_dir=data_dir, validation_size=0)
    batches = input_pipeline.eval_iterator(
        dataset, "test", data_dir=data_dir, global_batch_size=batch_size, validation_size=0
    )
    closed_loop = make_closed_loop(encoder, decoder)
    mesh = parallel.data_mesh()
    xs, x_hats, seen = [], [], 0
    mean, std = np.asarray(other.mean), np.asarray(other.std)
    for batch in batches:
        keep = np.asarray(batch["mask"], bool)
        x = to_model_images(np.asarray(batch["image"]) * std + mean, info.image_shape)
        _, x_hat, _ = closed_loop(state, parallel.shard_batch({"x": x}, mesh)["x"])
        xs.append(x[keep]), x_hats.append(np.asarray(jax.device_get(x_hat))[keep])
        seen += int(keep.sum())
        if seen >= max_examples:
            break
    x, x_hat = np.concatenate(xs)[:max_examples], np.concatenate(x_hats)[:max_examples]
    out = os.path.join(workdir, "images")
    os.makedirs(out, exist_ok=True)
    path = os.path.join(out, f"transfer_{dataset.replace('/', '_')}.png")
    if parallel.is_main_process():
        ctrl_metrics.save_reconstruction_grid(path, x, x_hat)
    return {
        "trained_on": config.data.name,
        "reconstructed": dataset,
        "num_examples": len(x),
        # psnr_mean_image: the mean image of these same test images (the split's own mean)
        **ctrl_metrics.collapse_metrics(x, x_hat),
        "mse": float(np.mean(ctrl_metrics.mse(x, x_hat))),
        "grid": path,
    }


# ----------------------------------------------------------------------------- job


def config_train_step(config: Any, info, encoder, decoder, tx_enc, tx_dec):
    """The train step ``config.ctrl`` describes (the one :func:`train_and_evaluate` runs)."""
    c = config.ctrl
    return make_train_step(
        encoder, decoder, tx_enc, tx_dec, objective_fn(config, info.num_classes), c.n_inner, info,
        pair_lam=c.pair_lam, pair_players=c.pair_players, code_lam=c.code_lam,
    )  # fmt: skip


def train_and_evaluate(
    config: ml_collections.ConfigDict, workdir: str, *, stop_after_steps: int | None = None
) -> dict[str, Any]:
    """Trains and evaluates the CTRL autoencoder described by ``config`` in ``workdir``."""
    info = validate_config(config)
    encoder, decoder = build_models(config, info)
    total = num_train_steps(config, info)
    learning_rate, tx_enc, tx_dec = make_optimizers(config, info)
    train_input = inputs.training_input(config, info, workdir)  # on device when it fits
    has_validation = info.num_validation > 0
    task = loop.Task(
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
    return loop.run_with_config(task, config, workdir, stop_after_steps=stop_after_steps)
