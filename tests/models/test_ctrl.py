import functools
from functools import partial

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from sdnet_jax.models import CSCConv, project_dictionaries
from sdnet_jax.models.ctrl import (
    CSCDecoder,
    CSCEncoder,
    DCGANDecoder,
    DCGANEncoder,
    get_ctrl_models,
)

CHANNELS = (8, 16)
D = 16
N = 4
CSC = {"num_iters": 2, "init_power_iters": 10}
MUTABLE = ["batch_stats", "power_iteration"]
F32 = jnp.dtype(jnp.float32)


def _pair(name, image_shape, dtype=jnp.float32):
    return get_ctrl_models(
        name, image_shape=image_shape, feature_dim=D, channels=CHANNELS, csc=CSC, dtype=dtype
    )


def _abstract(name, image_shape, dtype=jnp.float32):
    """Shapes/dtypes of the variables and outputs, without compiling anything."""
    enc, dec = _pair(name, image_shape, dtype)
    x = jax.ShapeDtypeStruct((N, *image_shape), jnp.float32)
    ve = jax.eval_shape(enc.init, jax.random.key(0), x)
    vd = jax.eval_shape(dec.init, jax.random.key(0), jax.ShapeDtypeStruct((N, D), jnp.float32))
    z = jax.eval_shape(enc.apply, ve, x)
    x_hat = jax.eval_shape(dec.apply, vd, z)
    return ve, vd, z, x_hat


@functools.cache
def _real(name):
    """A real (initialised) pair on 16x16 grey images: ``(name, enc, dec, ve, vd, x)``."""
    enc, dec = _pair(name, (16, 16, 1))
    x = jax.random.uniform(jax.random.key(1), (N, 16, 16, 1), minval=-1.0, maxval=1.0)
    init = lambda x: (  # one compilation for both
        enc.init(jax.random.key(2), x),
        dec.init(jax.random.key(3), jnp.zeros((N, D))),
    )
    ve, vd = jax.jit(init)(x)
    return name, enc, dec, ve, vd, x


@pytest.fixture(params=["csc", "dcgan"])
def pair16(request):
    return _real(request.param)


def _leaves(tree, name):
    flat = jax.tree_util.tree_flatten_with_path(tree)[0]
    return {jax.tree_util.keystr(p): v for p, v in flat if getattr(p[-1], "key", None) == name}


@pytest.mark.parametrize("name", ["csc", "dcgan"])
@pytest.mark.parametrize("image_shape", [(28, 28, 1), (32, 32, 3)])
def test_shapes(name, image_shape):
    _, _, z, x_hat = _abstract(name, image_shape)
    assert z.shape == (N, D) and z.dtype == F32
    assert x_hat.shape == (N, *image_shape) and x_hat.dtype == F32


def test_image_size_that_does_not_divide_raises():
    with pytest.raises(ValueError, match="not divisible by the total upsampling factor 8"):
        get_ctrl_models("csc", image_shape=(28, 28, 1), channels=(8, 16, 32))
    for cls in (CSCDecoder, DCGANDecoder):
        dec = cls(channels=(16, 8), image_shape=(30, 30, 1), feature_dim=D)
        with pytest.raises(ValueError, match="not divisible"):
            jax.eval_shape(dec.init, jax.random.key(0), jnp.zeros((1, D)))
    with pytest.raises(ValueError, match=r"valid names: \['csc', 'dcgan'\]"):
        get_ctrl_models("vae", image_shape=(28, 28, 1))
    with pytest.raises(ValueError, match="unknown CSC option"):
        get_ctrl_models("csc", image_shape=(28, 28, 1), csc={"lamda": 0.1})
    with pytest.raises(ValueError, match="one positive stride per stage"):
        get_ctrl_models("csc", image_shape=(28, 28, 1), channels=(8, 16), strides=(2,))


def test_parameter_trees():
    k = 4
    ve, vd, _, _ = _abstract("csc", (28, 28, 1))
    # encoder atoms: image (1) -> 8 -> 16; decoder: its own atoms 16 -> 8, then a kernel 8 -> 1
    enc_dicts = {p: v.shape for p, v in _leaves(ve["params"], "dictionary").items()}
    dec_dicts = {p: v.shape for p, v in _leaves(vd["params"], "dictionary").items()}
    assert enc_dicts == {
        "['csc1']['dictionary']": (k, k, 1, 8),
        "['csc2']['dictionary']": (k, k, 8, 16),
    }
    assert dec_dicts == {"['csc1']['dictionary']": (k, k, 16, 8)}
    assert vd["params"]["synthesis"]["kernel"].shape == (k, k, 8, 1)
    assert vd["params"]["stem"]["kernel"].shape == (D, 7 * 7 * 16)  # base 28 / 4 = 7
    assert set(ve["power_iteration"]) == {"csc1", "csc2"}
    assert set(vd["power_iteration"]) == {"csc1"}
    assert vd["power_iteration"]["csc1"]["u"].shape == (1, 7, 7, 16)

    for v in _abstract("dcgan", (28, 28, 1))[:2]:
        assert not _leaves(v, "dictionary") and "power_iteration" not in v
        assert _leaves(v["params"], "kernel") and "batch_stats" in v


def test_closed_loop_jits_and_is_differentiable_in_train_mode(pair16):
    name, enc, dec, ve, vd, x = pair16
    w = jax.random.normal(jax.random.key(5), (N, D))

    @jax.jit
    def loop(pd, ve, vd, x):
        z, se = enc.apply(ve, x, train=True, mutable=MUTABLE)
        x_hat, sd = dec.apply({**vd, "params": pd}, z, train=True, mutable=MUTABLE)
        z_hat, _ = enc.apply({**ve, **se}, x_hat, train=True, mutable=MUTABLE)
        return jnp.sum(w * z_hat), (z, x_hat, z_hat, se, sd)

    (value, (z, x_hat, z_hat, se, sd)), grads = jax.value_and_grad(loop, has_aux=True)(
        vd["params"], ve, vd, x
    )
    assert np.isfinite(float(value)) and x_hat.shape == x.shape
    for f in (z, z_hat):  # features on the unit sphere
        assert f.shape == (N, D) and f.dtype == F32
        np.testing.assert_allclose(jnp.linalg.norm(f, axis=-1), 1.0, rtol=1e-5)
    assert x_hat.dtype == F32 and float(jnp.max(jnp.abs(x_hat))) <= 1.0
    assert float(jnp.std(x_hat)) > 0
    # finite gradients, non-zero for every decoder parameter (the dictionaries included)
    leaves = _leaves(grads, "kernel") | _leaves(grads, "dictionary")
    assert leaves
    for path, g in leaves.items():
        assert bool(jnp.all(jnp.isfinite(g))), path
        assert float(jnp.max(jnp.abs(g))) > 0, path
    assert all(bool(jnp.all(jnp.isfinite(g))) for g in jax.tree_util.tree_leaves(grads))
    # training updates the running statistics (and the power-iteration state of the CSC pair)
    want = {"batch_stats", "power_iteration"} if name == "csc" else {"batch_stats"}
    assert set(se) == want and set(sd) == want
    moved = jax.tree_util.tree_map(
        lambda a, b: bool(jnp.any(a != b)), sd["batch_stats"], vd["batch_stats"]
    )
    assert all(jax.tree_util.tree_leaves(moved))
    # the projected SGD step keeps the tree and leaves non-dictionaries alone
    projected = project_dictionaries(vd["params"])
    assert jax.tree_util.tree_structure(projected) == jax.tree_util.tree_structure(vd["params"])


@pytest.mark.parametrize("nonneg", [True, False])
def test_decoder_stage_is_a_sparse_deconvolution(nonneg):
    _, _, dec, _, vd, _ = _real("csc")
    dec = dec.clone(csc=partial(dec.csc, nonneg=nonneg))  # nonneg changes no variable
    z = jax.random.normal(jax.random.key(0), (2, D))
    _, state = dec.apply(vd, z, capture_intermediates=True, mutable=["intermediates"])
    inter = state["intermediates"]
    stage_in = inter["bn0"]["__call__"][0]
    codes = inter["csc1"]["__call__"][0]
    assert stage_in.shape == (2, 4, 4, 16)
    assert codes.shape == (2, 8, 8, 8)  # the code lives on the 2x finer grid
    # it is exactly the CSCConv(transpose=True) layer applied to its input
    layer = CSCConv(8, 4, 2, transpose=True, nonneg=nonneg)
    stage_vars = {k: vd[k]["csc1"] for k in ("params", "power_iteration")}
    np.testing.assert_allclose(codes, layer.apply(stage_vars, stage_in), rtol=1e-5, atol=1e-6)
    if nonneg:  # sparse, non-negative codes
        assert float(jnp.min(codes)) >= 0 and float(jnp.mean(codes == 0)) > 0.1
    else:
        assert float(jnp.min(codes)) < 0


def test_bfloat16_compute(pair16):
    name, _, _, ve, vd, x = pair16
    ve_abs, vd_abs, z_abs, x_hat_abs = _abstract(name, (16, 16, 1), jnp.bfloat16)
    for v in (ve_abs, vd_abs):  # parameters stay float32
        assert {leaf.dtype for leaf in jax.tree_util.tree_leaves(v["params"])} == {F32}
    assert z_abs.dtype == F32 and x_hat_abs.dtype == F32
    same = jax.tree_util.tree_map(
        lambda a, b: a.shape == b.shape and a.dtype == b.dtype, ve, ve_abs
    )
    assert all(jax.tree_util.tree_leaves(same))
    # the float32-initialised variables serve the bfloat16 modules (same tree, same dtypes)
    enc, dec = _pair(name, (16, 16, 1), jnp.bfloat16)
    z, _ = jax.jit(partial(enc.apply, train=True, mutable=MUTABLE))(ve, x)
    x_hat = jax.jit(dec.apply)(vd, z)
    assert z.dtype == F32 and x_hat.dtype == F32
    assert bool(jnp.all(jnp.isfinite(z))) and bool(jnp.all(jnp.isfinite(x_hat)))
    np.testing.assert_allclose(jnp.linalg.norm(z, axis=-1), 1.0, rtol=1e-5)
    assert float(jnp.max(jnp.abs(x_hat))) <= 1.0


def test_classes_are_interchangeable():
    x = jax.ShapeDtypeStruct((1, 16, 16, 3), jnp.float32)
    z = jax.ShapeDtypeStruct((1, D), jnp.float32)
    for cls in (CSCEncoder, DCGANEncoder):
        e = cls(channels=CHANNELS, feature_dim=D)
        assert jax.eval_shape(e.init_with_output, jax.random.key(0), x)[0].shape == (1, D)
    for cls in (CSCDecoder, DCGANDecoder):
        g = cls(channels=CHANNELS[::-1], image_shape=(16, 16, 3), feature_dim=D)
        out = jax.eval_shape(g.init_with_output, jax.random.key(0), z)[0]
        assert out.shape == (1, 16, 16, 3)
