import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.test_util import check_grads

from sdnet_jax import ops
from sdnet_jax.models import CSCConv, project_dictionaries
from tests.ops.reference import operator_matrix


@pytest.fixture
def x64():
    jax.config.update("jax_enable_x64", True)
    yield
    jax.config.update("jax_enable_x64", False)


def _init(layer, x, seed=0):
    return layer.init(jax.random.key(seed), x)


@pytest.mark.parametrize("transpose", [False, True])
@pytest.mark.parametrize("method", ["fista", "sdnet"])
def test_output_equals_float64_composition_of_ops(x64, transpose, method):
    x = jax.random.normal(jax.random.key(1), (2, 6, 8, 3), jnp.float64)
    layer = CSCConv(
        5, 3, strides=2, num_iters=4, method=method, transpose=transpose, param_dtype=jnp.float64
    )
    variables = _init(layer, x)
    w = variables["params"]["dictionary"]
    state = variables["power_iteration"]
    if transpose:  # the synthesis is the strided conv from the fine code (12 x 16) to x
        fine, coarse = ops.conv_pair(jnp.swapaxes(w, 2, 3), signal_hw=(12, 16), strides=2)
        analysis, synthesis = coarse, fine
    else:
        analysis, synthesis = ops.conv_pair(w, signal_hw=(6, 8), strides=2)
    # the stored L estimates ||A||^2 of the actual operator at this input size (50 float32
    # power iterations at init: a Rayleigh quotient, so from below)
    a_t = operator_matrix(analysis, (1, 6, 8, 3))
    exact = np.linalg.eigvalsh(a_t.T @ a_t).max()
    assert exact * (1 - 2e-2) <= float(state["lipschitz"]) <= exact * (1 + 1e-6)
    want = ops.solve_lasso(
        x,
        analysis,
        synthesis=synthesis,
        lam=0.1,
        step=0.9 / state["lipschitz"],
        num_iters=4,
        method=method,
        nonneg=True,
    )
    got = layer.apply(variables, x)
    assert got.shape == ((2, 12, 16, 5) if transpose else (2, 3, 4, 5))
    np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-12)


def test_grads_through_the_layer(x64):
    x = jax.random.normal(jax.random.key(1), (1, 5, 5, 2), jnp.float64)
    layer = CSCConv(3, 3, num_iters=3, nonneg=False, param_dtype=jnp.float64)
    variables = _init(layer, x)

    def f(w, x):
        return layer.apply({**variables, "params": {"dictionary": w}}, x)

    check_grads(f, (variables["params"]["dictionary"], x), order=1, modes=["rev"], eps=1e-6)


@pytest.mark.parametrize("hw", [(7, 7), (8, 8), (7, 10)])
@pytest.mark.parametrize("padding", ["SAME", ((1, 1), (1, 1))])
def test_stride_2_shapes_match_nn_conv(hw, padding):
    x = jnp.ones((2, *hw, 3))
    conv = nn.Conv(4, (3, 3), strides=2, padding=padding)
    csc = CSCConv(4, 3, strides=2, padding=padding)
    want = jax.eval_shape(lambda: conv.apply(conv.init(jax.random.key(0), x), x)).shape
    variables = _init(csc, x)
    assert csc.apply(variables, x).shape == want
    deconv = CSCConv(4, 3, strides=2, transpose=True)
    assert deconv.apply(_init(deconv, x), x).shape == (2, 2 * hw[0], 2 * hw[1], 4)


def test_lambda_at_call_time_trades_sparsity_for_reconstruction():
    x = jax.random.normal(jax.random.key(1), (4, 12, 12, 3))
    layer = CSCConv(16, 3, num_iters=4)
    variables = _init(layer, x)
    l1, err = [], []
    for lam in [0.0, 0.05, 0.1, 0.2, 0.4]:
        _, stats = layer.apply(variables, x, lam=lam, mutable=["csc_stats"])
        l1.append(float(jnp.mean(stats["csc_stats"]["l1"][0])))
        err.append(float(jnp.mean(stats["csc_stats"]["recon_error"][0])))
    assert all(np.diff(l1) < 0), l1
    assert all(np.diff(err) > 0), err
    # the default lambda is self.lam
    np.testing.assert_allclose(layer.apply(variables, x), layer.apply(variables, x, lam=0.1))


def test_stats_cost_nothing_unless_requested():
    x = jnp.ones((1, 8, 8, 3))
    layer = CSCConv(4, 3, num_iters=2)
    variables = _init(layer, x)
    assert "csc_stats" not in variables

    def convs(mutable):
        jaxpr = jax.make_jaxpr(lambda v: layer.apply(v, x, mutable=mutable))(variables)
        return str(jaxpr).count("conv_general_dilated")

    assert convs(["csc_stats"]) == convs(False) + 1  # one extra synthesis for the residual


def test_power_iteration_state_updates_in_training_only():
    x = jax.random.normal(jax.random.key(1), (2, 8, 8, 3))
    layer = CSCConv(8, 3, init_power_iters=1, power_iters=3)
    variables = _init(layer, x)
    _, new = layer.apply(variables, x, mutable=["power_iteration"])
    assert not np.allclose(new["power_iteration"]["u"], variables["power_iteration"]["u"])
    assert float(new["power_iteration"]["lipschitz"]) >= float(
        variables["power_iteration"]["lipschitz"]
    )
    # evaluation: nothing mutable, output deterministic and from the stored state
    out1 = jax.jit(layer.apply)(variables, x)
    out2 = jax.jit(layer.apply)(variables, x)
    np.testing.assert_array_equal(out1, out2)
    with pytest.raises(ValueError, match="spatial size"):
        layer.apply(variables, jnp.ones((2, 10, 10, 3)))


def test_training_call_costs_2p_plus_1_batch1_convs_and_no_loop():
    x = jnp.ones((2, 8, 8, 3))
    layer = CSCConv(4, 3, num_iters=2, power_iters=2)
    variables = _init(layer, x)

    def grad_jaxpr(mutable):
        def loss(params, x):
            out = layer.apply(
                {"params": params, "power_iteration": variables["power_iteration"]},
                x,
                mutable=mutable,
            )
            return jnp.sum((out[0] if mutable else out) ** 2)

        return str(jax.make_jaxpr(jax.grad(loss, argnums=(0, 1)))(variables["params"], x))

    train, evaluate = grad_jaxpr(["power_iteration"]), grad_jaxpr(False)
    assert "while" not in train and "scan" not in train
    # 5 power-iteration convs, forward only: no gradient is traced through them
    assert train.count("conv_general_dilated") == evaluate.count("conv_general_dilated") + 5


def test_project_dictionaries_only_touches_dictionaries():
    params = {
        "csc": {"dictionary": 3.0 * jnp.ones((3, 3, 2, 4))},
        "conv": {"kernel": 3.0 * jnp.ones((3, 3, 2, 4))},
        "bn": {"scale": 2.0 * jnp.ones(4)},
    }
    out = project_dictionaries(params)
    np.testing.assert_allclose(
        jnp.sum(out["csc"]["dictionary"] ** 2, axis=(0, 1, 2)), 1.0, rtol=1e-6
    )
    np.testing.assert_array_equal(out["conv"]["kernel"], params["conv"]["kernel"])
    np.testing.assert_array_equal(out["bn"]["scale"], params["bn"]["scale"])
    # and the initial dictionary already has unit-norm atoms
    v = _init(CSCConv(6, 3), jnp.ones((1, 8, 8, 2)))
    np.testing.assert_allclose(
        jnp.sum(v["params"]["dictionary"] ** 2, axis=(0, 1, 2)), 1.0, rtol=1e-5
    )


def test_drop_in_replacement_for_nn_conv():
    class Net(nn.Module):
        conv: type = nn.Conv

        @nn.compact
        def __call__(self, x):
            x = self.conv(16, (3, 3), strides=2)(x)
            return nn.Dense(10)(jnp.mean(x, axis=(1, 2)))

    x = jnp.ones((2, 16, 16, 3))
    for conv in (nn.Conv, CSCConv):
        net = Net(conv=conv)
        variables = net.init(jax.random.key(0), x)
        assert net.apply(variables, x).shape == (2, 10)
    n_conv = sum(p.size for p in jax.tree_util.tree_leaves(Net(nn.Conv).init(jax.random.key(0), x)))
    n_csc = sum(
        p.size for p in jax.tree_util.tree_leaves(Net(CSCConv).init(jax.random.key(0), x)["params"])
    )
    assert n_csc == n_conv - 16  # the same kernel, no bias


def test_implicit_grad_mode_and_bfloat16():
    x = jax.random.normal(jax.random.key(1), (2, 8, 8, 3))
    layer = CSCConv(4, 3, grad="implicit", num_iters=20)
    variables = _init(layer, x)
    g = jax.grad(lambda v: jnp.sum(layer.apply(v, x)))(variables)
    assert np.all(np.isfinite(g["params"]["dictionary"]))
    bf = CSCConv(4, 3, dtype=jnp.bfloat16)
    out = bf.apply(_init(bf, x), x)
    assert out.dtype == jnp.bfloat16


def test_bad_configuration_is_a_clear_error():
    x = jnp.ones((1, 8, 8, 3))
    with pytest.raises(ValueError, match="method"):
        _init(CSCConv(4, 3, method="adam"), x)
    with pytest.raises(ValueError, match="num_iters"):
        _init(CSCConv(4, 3, num_iters=0), x)
    with pytest.raises(ValueError, match="rank 4"):
        _init(CSCConv(4, 3), jnp.ones((8, 8, 3)))
    with pytest.raises(ValueError, match="lam"):
        _init(CSCConv(4, 3, lam=-1.0), x)
