"""The hidden-feature inverse (``models.inverse``): SDNet's map from a layer's code back to the
image, on small random-initialised models (the trained ones are in tests/evaluation)."""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from sdnet_jax import models, ops
from sdnet_jax.models import inverse

STAGES = (1, 2, 1, 1)  # small, but with a second block in stage 2 and every stride


def model_and_variables(name: str, stem: str = "cifar", hw: int = 8, **kw):
    model = models.get_model(name, num_classes=10, stem=stem, width=4, stage_sizes=STAGES, **kw)
    x = jax.random.normal(jax.random.key(0), (3, hw, hw, 3))
    variables = model.init(jax.random.key(1), x)
    # running statistics away from their (0, 1) start, so the inverse batch norms do something
    rng = np.random.default_rng(2)
    variables["batch_stats"] = jax.tree_util.tree_map(
        lambda v: v + 0.5 * np.abs(rng.normal(size=v.shape)).astype(np.float32),
        variables["batch_stats"],
    )
    return model, variables, x


def test_inverse_batch_norm_after_batch_norm_is_the_identity_in_eval_mode():
    bn = nn.BatchNorm(use_running_average=True, epsilon=1e-5)
    x = jax.random.normal(jax.random.key(0), (4, 5, 5, 6))
    variables = bn.init(jax.random.key(1), x)
    k = jax.random.split(jax.random.key(2), 4)
    variables = {
        "params": {
            "scale": 1 + jax.random.uniform(k[0], (6,)),
            "bias": jax.random.normal(k[1], (6,)),
        },
        "batch_stats": {
            "mean": jax.random.normal(k[2], (6,)),
            "var": 0.1 + jax.random.uniform(k[3], (6,)),
        },
    }
    y = bn.apply(variables, x)
    assert float(jnp.max(jnp.abs(y - x))) > 0.1  # the batch norm is not the identity itself
    np.testing.assert_allclose(inverse.inverse_batch_norm(y, variables, 1e-5), x, atol=1e-5)
    # use_scale / use_bias off: the missing parameters are 1 and 0
    no_affine = {"batch_stats": variables["batch_stats"]}
    y = nn.BatchNorm(True, use_scale=False, use_bias=False).apply(no_affine, x)
    np.testing.assert_allclose(inverse.inverse_batch_norm(y, no_affine, 1e-5), x, atol=1e-5)


def test_stem_inverse_is_a_z_and_its_distance_is_the_reported_recon_error():
    model, variables, x = model_and_variables("sdnet18")

    @jax.jit
    def both(variables, x):
        code, reconstruction = inverse.hidden_features(model, variables, x, (0, 0))
        # the stem's code and the error the layer sows
        _, state = model.apply(
            variables, x, mutable=["csc_stats", "intermediates"],
            capture_intermediates=lambda m, f: f == "__call__" and m.name in ("stem_csc", "stem_bn"),
        )  # fmt: skip
        return code, reconstruction, state

    code, reconstruction, state = both(variables, x)
    z = state["intermediates"]["stem_csc"]["__call__"][0]
    np.testing.assert_allclose(code, state["intermediates"]["stem_bn"]["__call__"][0], rtol=1e-6)
    dictionary = variables["params"]["stem_csc"]["dictionary"]
    a_z = ops.conv_synthesis(z, dictionary, signal_hw=(8, 8), strides=1, padding=((1, 1), (1, 1)))
    np.testing.assert_allclose(reconstruction, a_z, rtol=1e-4, atol=1e-5)
    distance = jnp.sum(jnp.square(x - reconstruction), axis=(1, 2, 3))
    reported = state["csc_stats"]["stem_csc"]["recon_error"][0]
    np.testing.assert_allclose(distance, reported, rtol=1e-4)


def test_layer_1_1_is_the_chain_of_synthesis_and_inverse_batch_norms():
    model, variables, x = model_and_variables("sdnet18_all_noshortcut")
    code, reconstruction = inverse.hidden_features(model, variables, x, (1, 1))
    p, s = variables["params"], variables["batch_stats"]
    pad = ((1, 1), (1, 1))

    def bn_inv(y, name, block=None):
        where = (lambda t: t[block][name]) if block else (lambda t: t[name])
        v = {"params": where(p), "batch_stats": where(s)}
        return (y - v["params"]["bias"]) / v["params"]["scale"] * jnp.sqrt(
            v["batch_stats"]["var"] + 1e-5
        ) + v["batch_stats"]["mean"]

    def synth(z, dictionary):
        return ops.conv_synthesis(z, dictionary, signal_hw=(8, 8), strides=1, padding=pad)

    b = "stage1_block1"
    expected = bn_inv(code, "bn2", b)
    expected = synth(expected, p[b]["csc2"]["dictionary"])
    expected = bn_inv(expected, "bn1", b)
    expected = synth(expected, p[b]["csc1"]["dictionary"])
    expected = synth(bn_inv(expected, "stem_bn"), p["stem_csc"]["dictionary"])
    np.testing.assert_allclose(reconstruction, expected, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("stem,hw", [("cifar", 8), ("imagenet", 32)])
def test_every_layer_of_the_all_model_gives_an_image_of_the_input_shape(stem, hw):
    model, variables, x = model_and_variables("sdnet18_all_noshortcut", stem, hw)
    layers = inverse.invertible_layers(model)
    assert layers == inverse.all_layers(model) == [(0, 0), (1, 1), (2, 1), (2, 2), (3, 1), (4, 1)]
    every = jax.jit(lambda v, x: [inverse.hidden_features(model, v, x, la) for la in layers])
    first = hw // (4 if stem == "imagenet" else 1)  # the stem's code: 7x7/2 then 3x3/2 CSC
    expected = [first, first, first // 2, first // 2, first // 4, first // 8]
    for layer, size, (code, reconstruction) in zip(
        layers, expected, every(variables, x), strict=True
    ):
        assert code.shape[1:3] == (size, size), layer
        assert reconstruction.shape == x.shape, layer
        assert bool(jnp.all(jnp.isfinite(reconstruction)))
        assert float(jnp.std(reconstruction)) > 0


def test_models_and_layers_it_cannot_invert_are_refused():
    build = lambda name: models.get_model(name, num_classes=10, width=4, stage_sizes=STAGES)
    resnet = build("resnet18")
    assert inverse.invertible_layers(resnet) == []
    with pytest.raises(ValueError, match="no CSC stem"):
        inverse.hidden_features(resnet, {}, jnp.zeros((1, 8, 8, 3)), (0, 0))
    for name in ("sdnet18", "sdnet18_all"):  # convolutions / shortcuts in the blocks
        model = build(name)
        assert inverse.invertible_layers(model) == [(0, 0)]
        with pytest.raises(ValueError, match="cannot be mapped back"):
            inverse.check_layer(model, (1, 1))
    with pytest.raises(ValueError, match=r"does not exist.*\(2, 2\)"):
        inverse.check_layer(build("sdnet18_all_noshortcut"), (1, 2))


def test_stem_width_is_the_stem_s_atoms():
    model, variables, x = model_and_variables("sdnet18", stem_width=12)
    assert variables["params"]["stem_csc"]["dictionary"].shape == (3, 3, 3, 12)
    assert "proj_conv" in variables["params"]["stage1_block1"]  # 12 -> 4 channels
    assert model.apply(variables, x).shape == (3, 10)
    _, reconstruction = inverse.hidden_features(model, variables, x, (0, 0))
    assert reconstruction.shape == x.shape
