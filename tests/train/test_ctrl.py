"""CSC-CTRL training: smoke runs, the game's gradient signs, resume equivalence, bad configs."""

from __future__ import annotations

import dataclasses
import functools
import glob
import json
import os
from types import SimpleNamespace

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
import tensorflow_datasets as tfds

from benchmarks import ctrl_transfer
from configs import ctrl_base
from sdnet_jax import models, ops, runs
from sdnet_jax.data import input_pipeline, pixels
from sdnet_jax.train import ctrl
from tests.data.test_input_pipeline import global_batches
from tests.helpers import CTRL_CONFIGS, data_context, load_config


@pytest.mark.parametrize("full", [False, True], ids=["smoke", "full"])
@pytest.mark.parametrize("name", CTRL_CONFIGS)
def test_every_ctrl_config_validates_and_its_step_traces(name, full):
    """Every CTRL config (smoke and real form) validates and its init and game step trace to the
    right shapes with ``jax.eval_shape`` (nothing compiled)."""
    config = load_config(name, None if full else "smoke")
    with data_context(config):
        info = ctrl.validate_config(config)
    encoder, decoder = runs.ctrl.build_models(config, info)
    _, tx_enc, tx_dec = runs.ctrl.make_optimizers(config, info)
    init_state = runs.ctrl.make_init_state(encoder, decoder, tx_enc, tx_dec, info.image_shape)
    state = jax.eval_shape(init_state, jax.random.key(0))
    batch = {  # [-1, 1] images
        "image": jax.ShapeDtypeStruct((config.batch_size, *info.image_shape), np.float32),
        "label": jax.ShapeDtypeStruct((config.batch_size,), np.int32),
    }
    step = ctrl.config_train_step(config, info, encoder, decoder, tx_enc, tx_dec)
    new_state, metrics = jax.eval_shape(step, state, batch)
    leaves = lambda t: [(a.shape, a.dtype) for a in jax.tree_util.tree_leaves(t)]
    assert leaves(new_state) == leaves(state)
    assert {"objective_encoder_step", "encoder_grad_norm", "decoder_grad_norm"} <= set(metrics)


# compiled runs: the CSC pair on the embedded digits and on 32 px mock data (image_size), the DCGAN pair
@pytest.mark.parametrize(
    "name", ["ctrl_digits_csc", "ctrl_fashion_mnist_reference_csc", "ctrl_cifar10_dcgan"]
)
def test_two_step_run(name, tmp_path):
    config = load_config(name)
    with data_context(config):
        results = ctrl.train_and_evaluate(config, os.fspath(tmp_path))
    final = results["final"]["test"]
    assert results["final"]["step"] == 2
    for key in ("objective", "psnr", "mse", "nearest_subspace_accuracy"):
        assert np.isfinite(final[key]), key
    assert any(k.startswith("frechet_distance[random-convnet") for k in final)
    assert not any("fid" in k.lower() for k in final)
    assert glob.glob(os.fspath(tmp_path / "images" / "test_reconstruction_2.png"))
    assert glob.glob(os.fspath(tmp_path / "images" / "encoder_atoms_2.png"))
    assert json.load(open(tmp_path / "results.json"))["final"]["step"] == 2


def _game(config_overrides=None):
    """A tiny CTRL game on a digits batch (built once per set of ``config.ctrl`` overrides, those
    equal to the default game's dropped: the tests only read it; every step returns a new state)."""
    defaults = _build_game(()).config.ctrl
    overrides = (config_overrides or {}).items()
    return _build_game(tuple(sorted((k, v) for k, v in overrides if defaults[k] != v)))


@functools.cache
def _build_game(ctrl_overrides):
    config = load_config("ctrl_digits_csc")
    config.model.channels = (8, 16)
    config.model.feature_dim = 16
    config.optim.lr = 1e-3
    # the game itself: no warm-up (it has its own test), no sample-wise terms (added per test)
    config.ctrl.warmup_steps, config.ctrl.code_lam, config.ctrl.pair_lam = 0, 0.0, 0.0
    for k, v in ctrl_overrides:
        config.ctrl[k] = v
    info = ctrl.validate_config(config)
    encoder, decoder = runs.ctrl.build_models(config, info)
    # the config's Adam with its learning rate in the optimizer state, so that freezing a player
    # (`frozen(state, ...)`) is a state value and both players' steps share one compiled program
    o = config.optim
    assert o.name == "adam" and not o.weight_decay
    tx = optax.inject_hyperparams(optax.adam)(learning_rate=o.lr, b1=o.b1, b2=o.b2)
    init = jax.jit(runs.ctrl.make_init_state(encoder, decoder, tx, tx, info.image_shape))
    state = init(jax.random.key(0))
    train_input = input_pipeline.train_input(
        "digits", data_dir=None, validation_size=200, image_size=None, global_batch_size=64,
        seed=0, augment="none",
    )  # fmt: skip
    (first,) = global_batches(train_input, 0, 1)  # the first training batch
    x = pixels.symmetric_from_unit(jnp.asarray(first["image"]))  # [-1, 1], as the step takes it
    labels = jnp.asarray(first["label"])
    batch = {"image": x, "label": labels}
    game = ctrl.game_of(config, info.num_classes)

    @jax.jit
    def terms(state):  # (T, D) on the batch as the train step sees it (batch statistics)
        z, _ = runs.ctrl.apply_model(encoder, state.enc_params, state.enc_state, x)
        x_hat, _ = runs.ctrl.apply_model(decoder, state.dec_params, state.dec_state, z)
        z_hat, _ = runs.ctrl.apply_model(encoder, state.enc_params, state.enc_state, x_hat)
        return game.value(z, z_hat, labels), game.distance(z, z_hat)

    def frozen(state, player):  # the state with a zero learning rate for "enc" or "dec"
        opt = getattr(state, f"{player}_opt")
        hyper = dict(
            opt.hyperparams, learning_rate=jnp.zeros_like(opt.hyperparams["learning_rate"])
        )
        return state.replace(**{f"{player}_opt": opt._replace(hyperparams=hyper)})

    @functools.cache
    def step(**kw):  # the jitted game step, one per set of Game fields changed (shared)
        return jax.jit(
            ctrl.make_train_step(encoder, decoder, tx, tx, dataclasses.replace(game, **kw))
        )

    return SimpleNamespace(
        frozen=frozen, step=step, config=config, encoder=encoder, decoder=decoder, tx=tx,
        state=state, batch=batch, info=info, game=game, terms=terms,
        value=lambda s: terms(s)[0], x=x, labels=labels,
    )  # fmt: skip


@pytest.mark.parametrize("objective", ["multiclass", "binary"])
def test_encoder_step_raises_and_decoder_step_lowers_the_objective(objective):
    g = _game({"objective": objective})
    # one player at a time: the other's learning rate is zero
    step = g.step()
    batch = g.batch
    state = g.state
    before = float(g.value(state))
    after_enc, _ = step(g.frozen(state, "dec"), batch)
    after_dec, _ = step(g.frozen(state, "enc"), batch)
    assert float(g.value(after_enc)) > before
    assert float(g.value(after_dec)) < before
    # the frozen player's parameters did not move (up to re-projecting unit-norm atoms)
    for a, b in zip(
        jax.tree_util.tree_leaves(after_enc.dec_params),
        jax.tree_util.tree_leaves(state.dec_params),
        strict=True,
    ):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-7)


def test_decoder_gradient_flows_through_the_closed_loop():
    g = _game()
    state = g.state

    def t_of_dec(dec_params):  # only through z_hat = f(g(z)): z does not depend on dec_params
        z, _ = runs.ctrl.apply_model(g.encoder, state.enc_params, state.enc_state, g.x)
        x_hat, _ = runs.ctrl.apply_model(g.decoder, dec_params, state.dec_state, z)
        z_hat, _ = runs.ctrl.apply_model(g.encoder, state.enc_params, state.enc_state, x_hat)
        return g.game.value(z, z_hat, g.labels)

    grads = jax.jit(jax.grad(t_of_dec))(state.dec_params)
    norms = [float(jnp.linalg.norm(g)) for g in jax.tree_util.tree_leaves(grads)]
    assert all(np.isfinite(norms)) and max(norms) > 0


def test_sample_wise_term_is_reduced_by_both_players():
    # unsupervised game: encoder loss -T + lam*D, decoder loss T + lam*D; each step lowers its own
    lam = 3.0
    g = _game({"objective": "unsupervised", "pair_lam": lam})
    step = g.step(pair_lam=lam)
    batch = g.batch
    t0, d0 = map(float, g.terms(g.state))
    t_enc, d_enc = map(float, g.terms(step(g.frozen(g.state, "dec"), batch)[0]))
    t_dec, d_dec = map(float, g.terms(step(g.frozen(g.state, "enc"), batch)[0]))
    assert -t_enc + lam * d_enc < -t0 + lam * d0
    assert t_dec + lam * d_dec < t0 + lam * d0
    assert d_dec < d0  # the decoder moves the re-encodings towards the encodings


def _leaves_close(a, b):
    return all(
        np.allclose(x, y, rtol=1e-6, atol=1e-8)
        for x, y in zip(jax.tree_util.tree_leaves(a), jax.tree_util.tree_leaves(b), strict=True)
    )


def test_decoder_only_terms_are_invisible_to_the_encoder():
    # pair_players='decoder' and code_lam: the encoder's step is the reference encoder step
    g = _game()
    batch = g.batch

    def enc_step(**kw):
        return g.step(**kw)(g.frozen(g.state, "dec"), batch)[0].enc_params

    reference = enc_step()  # pair_lam=0
    assert _leaves_close(enc_step(pair_lam=5.0, pair_players="decoder", code_lam=7.0), reference)
    assert not _leaves_close(enc_step(pair_lam=5.0, pair_players="both"), reference)
    with pytest.raises(ValueError, match="pair_players"):
        dataclasses.replace(g.game, pair_players="encoder")


@functools.partial(jax.jit, static_argnames=("encoder", "decoder"))
def _code_terms(state, x, *, encoder, decoder):
    z, codes, _ = ctrl.encode_with_codes(encoder, state.enc_params, state.enc_state, x)
    x_hat, _ = runs.ctrl.apply_model(decoder, state.dec_params, state.dec_state, z)
    _, codes_hat, _ = ctrl.encode_with_codes(encoder, state.enc_params, state.enc_state, x_hat)
    return ctrl.code_distance(codes, codes_hat), codes


def _code_distance(g, state):
    distance, codes = _code_terms(state, g.x, encoder=g.encoder, decoder=g.decoder)
    return float(distance), codes


def test_decoder_step_lowers_the_code_consistency():
    lam = 50.0  # large enough that C dominates T in the decoder's loss
    g = _game()
    step = g.step(code_lam=lam)
    batch = g.batch
    c0, codes = _code_distance(g, g.state)
    # one code per encoder stage, the sparse codes before BN: non-negative (nonneg CSC)
    assert [c.shape[-1] for c in codes] == list(g.config.model.channels)
    assert all(float(jnp.min(c)) >= 0 for c in codes)
    state = g.frozen(g.state, "enc")
    for _ in range(3):
        after, metrics = step(state, batch)
        # the step's C is that of the decoder before its update, seen by the encoder after its
        # (frozen) step, whose power iteration moved its step size: recomputed here exactly
        seen = after.replace(dec_params=state.dec_params, dec_state=state.dec_state)
        assert float(metrics["code_distance"]) == pytest.approx(_code_distance(g, seen)[0], 1e-5)
        state = after
    assert _code_distance(g, state)[0] < c0
    # C of identical codes is 0; each stage is relative to the real codes' mean squared norm
    assert float(ctrl.code_distance(codes, codes)) == 0.0
    doubled = float(ctrl.code_distance(codes, [2 * c for c in codes]))
    assert doubled == pytest.approx(len(codes) * g.x.shape[0], rel=1e-5)


def test_encoder_learning_rate_scale():
    config = load_config("ctrl_digits_csc")
    config.ctrl.enc_lr_scale, config.ctrl.warmup_steps = 0.25, 0
    info = ctrl.validate_config(config)
    _, tx_enc, tx_dec = runs.ctrl.make_optimizers(config, info)
    params = {"w": jnp.ones(3)}
    grads = {"w": jnp.asarray([1.0, -2.0, 3.0])}
    up_enc, _ = tx_enc.update(grads, tx_enc.init(params), params)
    up_dec, _ = tx_dec.update(grads, tx_dec.init(params), params)
    np.testing.assert_allclose(up_enc["w"], 0.25 * up_dec["w"], rtol=1e-6)


def test_encoder_learning_rate_is_unscaled_during_the_warmup():
    config = load_config("ctrl_digits_csc")
    config.ctrl.enc_lr_scale, config.ctrl.warmup_steps = 0.25, 2
    config.optim.schedule = "constant"
    info = ctrl.validate_config(config)
    _, tx_enc, tx_dec = runs.ctrl.make_optimizers(config, info)
    params = {"w": jnp.ones(3)}
    grads = {"w": jnp.asarray([1.0, -2.0, 3.0])}
    s_enc, s_dec = tx_enc.init(params), tx_dec.init(params)
    ratios = []
    for _ in range(4):  # the same gradients: Adam's updates differ by the learning rate only
        up_enc, s_enc = tx_enc.update(grads, s_enc, params)
        up_dec, s_dec = tx_dec.update(grads, s_dec, params)
        ratios.append(float(up_enc["w"][0] / up_dec["w"][0]))
    np.testing.assert_allclose(ratios, [1.0, 1.0, 0.25, 0.25], rtol=1e-6)


def test_warmup_encoder_step_maximises_the_rate_reduction_of_z_alone():
    g = _game()
    batch = g.batch
    num_classes = g.info.num_classes

    def delta_r(enc_params, enc_state=g.state.enc_state):
        z, new_state = runs.ctrl.apply_model(g.encoder, enc_params, enc_state, g.x)
        return ops.rate_reduction(z, g.labels, num_classes), new_state

    # by hand: one optimizer step on -ΔR(Z) (no decoder pass), then the unit-norm projection
    @jax.jit
    def by_hand(state):
        (value, enc_state), grads = jax.value_and_grad(
            lambda p: tuple_neg(delta_r(p)), has_aux=True
        )(state.enc_params)
        updates, _ = g.tx.update(grads, state.enc_opt, state.enc_params)
        return (
            value,
            enc_state,
            models.project_dictionaries(optax.apply_updates(state.enc_params, updates)),
        )

    value, enc_state, expected = by_hand(g.state)
    warmup_step, game_step = g.step(warmup_steps=2), g.step()
    s0 = g.frozen(g.state, "dec")  # the encoder's steps alone
    warm, metrics = warmup_step(s0, batch)
    assert _leaves_close(warm.enc_params, expected)
    assert _leaves_close(warm.enc_state, enc_state)
    np.testing.assert_allclose(float(metrics["objective_encoder_step"]), -float(value), rtol=1e-5)
    assert float(delta_r(warm.enc_params)[0]) > -float(value)  # ΔR(Z) went up
    # the game's encoder step from step 2 on: the same as without a warmup
    at_two = s0.replace(step=jnp.asarray(2, jnp.int32))
    after = warmup_step(at_two, batch)[0].enc_params
    assert _leaves_close(after, game_step(at_two, batch)[0].enc_params)
    assert not _leaves_close(warm.enc_params, game_step(s0, batch)[0].enc_params)


def tuple_neg(pair):
    return -pair[0], pair[1]


def test_ctrl_resume_equals_uninterrupted(tmp_path):
    config = load_config("ctrl_digits_csc", "smoke")
    config.num_train_steps = 4
    config.checkpoint_every_steps = 100
    straight, resumed = os.fspath(tmp_path / "a"), os.fspath(tmp_path / "b")
    ctrl.train_and_evaluate(config, straight)
    assert ctrl.train_and_evaluate(config, resumed, stop_after_steps=2)["interrupted"]
    ctrl.train_and_evaluate(config, resumed)

    def losses(d):
        return [
            (line["train/objective_encoder_step"], line["train/objective_decoder_step"])
            for line in map(json.loads, open(os.path.join(d, "metrics.jsonl")))
            if "train/objective_decoder_step" in line
        ]

    assert losses(straight) == losses(resumed)
    a = json.load(open(os.path.join(straight, "results.json")))["final"]["test"]
    b = json.load(open(os.path.join(resumed, "results.json")))["final"]["test"]
    assert a == b


@pytest.mark.parametrize(
    "section,field,value",
    [
        ("ctrl", "objective", "gan"),
        ("ctrl", "eps_sq", 0.0),
        ("ctrl", "n_inner", 0),
        ("ctrl", "pair_lam", -1.0),
        ("ctrl", "pair_players", "encoder"),
        ("ctrl", "code_lam", -1.0),
        ("ctrl", "enc_lr_scale", 0.0),
        ("ctrl", "warmup_steps", -1),
        ("model", "name", "vae"),
        ("optim", "lr", -1.0),
        ("data", "train_classes", "0,10"),  # digits has classes 0-9
        ("data", "train_classes", "1,1"),
        ("data", "train_classes", "0-7"),
        ("eval", "fidelity_classifier_workdir", "/nonexistent/run"),
    ],
)
def test_bad_ctrl_config_is_a_clear_error(section, field, value, tmp_path):
    config = load_config("ctrl_digits_csc", "smoke")
    config[section][field] = value
    with pytest.raises(ValueError, match=f"config.{section}.{field}".replace(".", r"\.")):
        ctrl.train_and_evaluate(config, os.fspath(tmp_path))


def test_held_out_classes_run_reports_seen_and_unseen(tmp_path):
    """Trained on digits 0-7: the test split's metrics split into seen_ (0-7) and unseen_ (8, 9)
    on the first eval.max_examples test digits; validation (carved from the seen classes' training
    split) has seen_ metrics only; the option is in the run's config; an unseen-class grid."""
    config = load_config("ctrl_digits_csc", "smoke")
    config.data.train_classes = "0,1,2,3,4,5,6,7"
    results = ctrl.train_and_evaluate(config, os.fspath(tmp_path))["final"]
    test, validation = results["test"], results["validation"]
    labels = np.concatenate([
        b["label"][b["mask"] > 0] for b in input_pipeline.eval_iterator(
            "digits", "test", data_dir=None, global_batch_size=16, validation_size=32)
    ])[: config.eval.max_examples]  # fmt: skip
    assert test["unseen_num_examples"] == np.sum(labels >= 8) > 0
    assert test["seen_num_examples"] == np.sum(labels < 8)
    for key in ("psnr", "psnr_mean_image", "spread_x_hat", "spread_x", "ssim"):
        assert np.isfinite(test[f"seen_{key}"]) and np.isfinite(test[f"unseen_{key}"]), key
    assert 0 <= test["seen_nearest_subspace_accuracy"] <= 1
    assert "seen_psnr" in validation and not any(k.startswith("unseen_") for k in validation)
    saved = json.load(open(tmp_path / "config.json"))
    assert saved["data"]["train_classes"] == "0,1,2,3,4,5,6,7"
    assert glob.glob(os.fspath(tmp_path / "images" / "test_unseen_reconstruction_2.png"))


def test_transfer_reconstruction_on_an_unseen_data_set(tmp_path, fashion_mnist_dir):
    config = load_config("ctrl_fashion_mnist_csc")
    config.data.data_dir = fashion_mnist_dir.data_dir  # fake files, prepared in a temporary folder
    config.data.validation_size = 20
    ctrl.train_and_evaluate(config, os.fspath(tmp_path))
    # a model trained on (mock) 28x28 Fashion-MNIST reconstructs 8x8 digits resized to 28x28
    (result,) = ctrl_transfer.main([os.fspath(tmp_path), "digits", "--max_examples", "40"])
    assert json.load(open(tmp_path / "transfer.json")) == [result]
    assert result["trained_on"] == "fashion_mnist" and result["reconstructed"] == "digits"
    assert result["num_examples"] == 40 and np.isfinite(result["psnr"])
    assert os.path.exists(result["grid"])
    *_, state, info = runs.load_ctrl(os.fspath(tmp_path))
    assert info.image_shape == (28, 28, 1) and int(state.step) == 2


def test_unsupervised_objective_needs_both_players_on_its_sample_wise_term(tmp_path):
    config = load_config("ctrl_digits_csc", "smoke")
    config.ctrl.objective = "unsupervised"
    config.ctrl.pair_lam = 1.0
    config.ctrl.pair_players = "decoder"
    with pytest.raises(ValueError, match=r"config\.ctrl\.pair_players must be 'both'"):
        ctrl.train_and_evaluate(config, os.fspath(tmp_path))


def test_unsupervised_objective_needs_its_sample_wise_weight(tmp_path):
    config = load_config("ctrl_digits_csc", "smoke")
    config.ctrl.objective = "unsupervised"
    config.ctrl.pair_lam = 0.0
    with pytest.raises(ValueError, match=r"config\.ctrl\.pair_lam must be > 0"):
        ctrl.train_and_evaluate(config, os.fspath(tmp_path))


@pytest.mark.parametrize("model", ["csc", "dcgan"])
def test_reference_recipe_configs_are_the_reference_recipe(model):
    config = load_config(f"ctrl_fashion_mnist_reference_{model}", None)
    assert config.model.name == model and tuple(config.model.channels) == (64, 128, 256)
    assert config.data.image_size == 32 and config.batch_size == 2048
    assert config.num_train_steps == 4500 and config.optim.lr == 1.5e-4
    assert (config.optim.b1, config.optim.b2, config.optim.schedule) == (0.5, 0.999, "linear")
    c = config.ctrl
    assert (c.objective, c.pair_lam, c.code_lam, c.enc_lr_scale) == ("multiclass", 0.0, 0.0, 1.0)
    config.data.validation_size = 8  # the mock data set has 48 examples
    with tfds.testing.mock_data(num_examples=48):
        info = ctrl.validate_config(config)
    assert info.image_shape == (32, 32, 1)


@pytest.mark.parametrize(
    "name",
    ["ctrl_digits_csc", "ctrl_digits_dcgan", "ctrl_fashion_mnist_csc", "ctrl_fashion_mnist_dcgan"],
)
def test_small_batch_configs_use_the_small_batch_recipe(name):
    config = load_config(name, None)
    c = config.ctrl
    assert config.batch_size <= 512 and c.objective == "multiclass"
    assert c.warmup_steps > 0
    assert c.eps_sq == (2.0 if name.startswith("ctrl_fashion_mnist") else 0.5)  # issue 25
    for key, value in ctrl_base.small_batch_recipe(c.warmup_steps, c.eps_sq).items():
        section, field = key.split("__")
        assert config[section][field] == value, key
