"""CSC-CTRL training: the closed-loop transcription rate-reduction game between two players.

``Z = f(X)`` (encoder, unit-norm features), ``X̂ = g(Z)`` (decoder, images in [-1, 1]),
``Ẑ = f(X̂)``. With the objective ``T`` (multi-class ``ΔR(Z) + ΔR(Ẑ) + Σ_j ΔR(Z_j, Ẑ_j)``, binary, or
the unsupervised sample-wise form; :mod:`sdnet_jax.ops.rates`), one train step on a batch is

* ``n_inner`` encoder steps maximising ``T`` (``X̂ = g(Z)`` is a constant for the encoder: its
  gradient flows through ``Z = f(X)`` and ``Ẑ = f(X̂)``), then
* one decoder step minimising ``T`` with ``Z`` a constant; the decoder's gradient flows through
  ``Ẑ = f(g(Z))``.

Each player has its own optax optimizer and state inside one train state; both run in training mode
(batch statistics) and keep the updates of their own BN / power-iteration state only. After each
update the CSC dictionaries are projected onto unit-norm atoms. Everything else — the mesh, jit,
checkpoints, resume, SIGTERM handling and logging — is the shared loop of
:mod:`sdnet_jax.train.loop`.
"""

from __future__ import annotations

import os
from typing import Any

import flax
import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax

from sdnet_jax import models, ops
from sdnet_jax.data import input_pipeline
from sdnet_jax.evaluation import ctrl_metrics, feature_nets
from sdnet_jax.train import checkpoint, classifier, loop, optim, parallel
from sdnet_jax.viz import atom_grid

OBJECTIVES = ("multiclass", "binary", "unsupervised")


@flax.struct.dataclass
class CTRLState:
    step: jax.Array
    enc_params: Any
    enc_state: Any  # batch_stats, power_iteration of the encoder
    enc_opt: Any
    dec_params: Any
    dec_state: Any
    dec_opt: Any


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
        m.dtype in classifier.DTYPES,
        f"config.model.dtype must be one of {list(classifier.DTYPES)}.",
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
        config.data.name.split("/")[0] in input_pipeline.SUPPORTED,
        f"config.data.name {config.data.name!r} is not one of {list(input_pipeline.SUPPORTED)}.",
    )
    check(
        config.eval.feature_net in ("random", "classifier"),
        "config.eval.feature_net: random|classifier",
    )
    optim.validate(config.optim, "config.optim")
    classifier.validate_schedule(config)
    info = input_pipeline.get_info(config.data.name, **classifier.data_source(config.data))
    models.get_ctrl_models(  # checks that the strides divide the image size
        m.name, image_shape=info.image_shape, channels=tuple(m.channels), csc=dict(m.csc)
    )
    return info


def build_models(config: Any, info: input_pipeline.DatasetInfo) -> tuple[nn.Module, nn.Module]:
    m = config.model
    return models.get_ctrl_models(
        m.name,
        image_shape=info.image_shape,
        feature_dim=m.feature_dim,
        channels=tuple(m.channels),
        strides=tuple(m.strides) or None,
        kernel_size=m.kernel_size,
        csc=dict(m.csc),
        dtype=classifier.DTYPES[m.dtype],
    )


# ----------------------------------------------------------------------------- steps


def objective_fn(config: Any, num_classes: int):
    """``(z, z_hat, labels) -> (T, D)`` for ``config.ctrl``.

    ``T`` is the game's value (the encoder maximises it, the decoder minimises it): multi-class
    ``ΔR(Z) + ΔR(Ẑ) + Σ_j ΔR(Z_j, Ẑ_j)``, binary ``ΔR(Z, Ẑ)``, or unsupervised ``R(Z) + ΔR(Z, Ẑ)``.
    ``D = Σ_i D(z_i, ẑ_i)`` is the sample-wise self-consistency (:func:`ops.sample_distance`), a
    constraint that BOTH players reduce with weight ``config.ctrl.pair_lam`` — were it inside the
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
    return 2.0 * (images * std + mean) - 1.0


def _run(module: nn.Module, params, state, x, train: bool = True):
    """Applies ``module``; in training returns ``(out, new non-param state)``."""
    if not train:
        return module.apply({"params": params, **state}, x, train=False), state
    out, new_state = module.apply({"params": params, **state}, x, train=True, mutable=list(state))
    return out, dict(new_state)


def make_optimizers(config: Any, info: input_pipeline.DatasetInfo):
    """``(learning_rate schedule, encoder optimizer, decoder optimizer)``: the same recipe, two
    independent optax states."""
    learning_rate = optim.schedule(config.optim, classifier.num_train_steps(config, info))
    return (
        learning_rate,
        optim.make_optimizer(config.optim, learning_rate),
        optim.make_optimizer(config.optim, learning_rate),
    )


def make_init_state(encoder, decoder, tx_enc, tx_dec, image_shape):
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


def make_train_step(
    encoder, decoder, tx_enc, tx_dec, objective, n_inner: int, info, pair_lam: float = 0.0
):
    """One game step: ``n_inner`` encoder steps on ``−T + pair_lam·D``, one decoder step on
    ``T + pair_lam·D`` (``objective`` as returned by :func:`objective_fn`)."""

    def encoder_step(state: CTRLState, x, labels):
        def loss_fn(enc_params):
            z, enc_state = _run(encoder, enc_params, state.enc_state, x)
            x_hat, _ = _run(decoder, state.dec_params, state.dec_state, jax.lax.stop_gradient(z))
            z_hat, enc_state = _run(encoder, enc_params, enc_state, jax.lax.stop_gradient(x_hat))
            value, distance = objective(z, z_hat, labels)
            return -value + pair_lam * distance, (enc_state, value)

        (_, (enc_state, value)), grads = jax.value_and_grad(loss_fn, has_aux=True)(state.enc_params)
        updates, enc_opt = tx_enc.update(grads, state.enc_opt, state.enc_params)
        enc_params = models.project_dictionaries(optax.apply_updates(state.enc_params, updates))
        new = state.replace(enc_params=enc_params, enc_state=enc_state, enc_opt=enc_opt)
        return new, value, optax.tree.norm(grads)

    def decoder_step(state: CTRLState, x, labels):
        z, _ = _run(encoder, state.enc_params, state.enc_state, x)
        z = jax.lax.stop_gradient(z)

        def loss_fn(dec_params):
            x_hat, dec_state = _run(decoder, dec_params, state.dec_state, z)
            z_hat, _ = _run(encoder, state.enc_params, state.enc_state, x_hat)
            value, distance = objective(z, z_hat, labels)
            return value + pair_lam * distance, (dec_state, x_hat, value, distance)

        (_, (dec_state, x_hat, value, distance)), grads = jax.value_and_grad(loss_fn, has_aux=True)(
            state.dec_params
        )
        updates, dec_opt = tx_dec.update(grads, state.dec_opt, state.dec_params)
        dec_params = models.project_dictionaries(optax.apply_updates(state.dec_params, updates))
        new = state.replace(dec_params=dec_params, dec_state=dec_state, dec_opt=dec_opt)
        return new, value, distance, jnp.mean(jnp.square(x_hat - x)), optax.tree.norm(grads)

    def train_step(state: CTRLState, batch: dict[str, jax.Array]):
        x, labels = to_symmetric(batch["image"], info), batch["label"]
        for _ in range(n_inner):
            state, t_enc, enc_grad_norm = encoder_step(state, x, labels)
        state, t_dec, distance, mse, dec_grad_norm = decoder_step(state, x, labels)
        metrics = {
            "objective_encoder_step": t_enc,
            "objective_decoder_step": t_dec,
            "sample_distance": distance,
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
        source = classifier.data_source(data)
        batches = input_pipeline.eval_iterator(
            data.name, split, global_batch_size=config.eval_batch_size, **source
        )
        z, x, x_hat, z_hat, y = features_of(state, batches, limit)
        train_batches = input_pipeline.train_iterator(
            data.name, global_batch_size=config.eval_batch_size, seed=0, augment="none", **source
        )
        z_train, *_, y_train = features_of(state, train_batches, config.eval.subspace_fit_examples)
        terms = ops.ctrl_terms(z, z_hat, y, num_classes, config.ctrl.eps_sq)
        results = {k: float(v) for k, v in terms.items()}
        results["mse"] = float(np.mean(ctrl_metrics.mse(x, x_hat)))
        results["psnr"] = float(ctrl_metrics.psnr(x, x_hat).mean)
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


def load_trained(workdir: str, *, which: str | int = "latest", data_dir: str | None = None):
    """Restores a trained CTRL run: ``(config, encoder, decoder, state, info)``.

    ``which`` is ``'latest'`` or a step number; ``data_dir`` overrides ``config.data.data_dir``.
    """
    config = checkpoint.read_run_config(
        workdir, "ctrl", command="restore it (ctrl.load_trained / benchmarks.ctrl_transfer)"
    )
    if data_dir is not None:
        config.data.data_dir = data_dir
    info = input_pipeline.get_info(config.data.name, **classifier.data_source(config.data))
    encoder, decoder = build_models(config, info)
    _, tx_enc, tx_dec = make_optimizers(config, info)
    init_state = make_init_state(encoder, decoder, tx_enc, tx_dec, info.image_shape)
    shapes = jax.eval_shape(init_state, jax.random.key(0))
    sharding = parallel.tree_replicated(shapes, parallel.data_mesh())
    manager = checkpoint.make_manager(workdir, max_to_keep=config.max_to_keep)
    step = manager.latest_step() if which == "latest" else int(which)
    try:
        state = checkpoint.restore(manager, step, checkpoint.abstract_like(shapes, sharding))
    finally:
        manager.close()
    return config, encoder, decoder, state, info


def to_model_images(images01: np.ndarray, image_shape: tuple[int, int, int]) -> np.ndarray:
    """[0, 1] NHWC images of any size/channels -> [-1, 1] images of ``image_shape`` (bilinear
    resize; grey <-> RGB by repetition / BT.601 luma)."""
    h, w, c = image_shape
    x = jnp.asarray(images01, jnp.float32)
    if x.shape[-1] != c:
        x = jnp.repeat(x, c, axis=-1) if x.shape[-1] == 1 else (
            x @ jnp.asarray([0.299, 0.587, 0.114])[:, None]
        )  # fmt: skip
    x = jax.image.resize(x, (x.shape[0], h, w, c), method="bilinear", antialias=True)
    return np.asarray(2.0 * jnp.clip(x, 0.0, 1.0) - 1.0)


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
    the PSNR / MSE are reported; a grid of X beside X̂ is written to
    ``workdir/images/transfer_<dataset>.png``.
    """
    config, encoder, decoder, state, info = load_trained(workdir)
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
        "psnr": float(ctrl_metrics.psnr(x, x_hat).mean),
        "mse": float(np.mean(ctrl_metrics.mse(x, x_hat))),
        "grid": path,
    }


# ----------------------------------------------------------------------------- job


def train_and_evaluate(
    config: ml_collections.ConfigDict, workdir: str, *, stop_after_steps: int | None = None
) -> dict[str, Any]:
    """Trains and evaluates the CTRL autoencoder described by ``config`` in ``workdir``."""
    info = validate_config(config)
    encoder, decoder = build_models(config, info)
    total = classifier.num_train_steps(config, info)
    learning_rate, tx_enc, tx_dec = make_optimizers(config, info)
    objective = objective_fn(config, info.num_classes)
    train_input = classifier.training_input(config, info, workdir)  # on device when it fits
    has_validation = info.num_validation > 0
    task = loop.Task(
        init_state=make_init_state(encoder, decoder, tx_enc, tx_dec, info.image_shape),
        train_step=make_train_step(
            encoder,
            decoder,
            tx_enc,
            tx_dec,
            objective,
            config.ctrl.n_inner,
            info,
            pair_lam=config.ctrl.pair_lam,
        ),
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
