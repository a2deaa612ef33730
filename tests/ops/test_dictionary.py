import itertools
from functools import partial

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.test_util import check_grads

from sdnet_jax import ops, workarounds
from tests.ops.reference import conv_reference, normal

GRID = list(
    itertools.product(
        [(8, 8), (7, 9), (6, 5)],  # even, odd, mixed signal sizes
        [1, 3, 4],  # kernel sizes (odd and even)
        [1, 2],  # strides
        ["SAME", "VALID", 1, ((0, 2), (1, 0))],  # paddings
    )
)


def _kernel(k, cin=3, cout=5, seed=0):
    return normal(seed, (k, k, cin, cout))


@pytest.mark.parametrize("hw,k,stride,padding", GRID)
def test_conv_analysis_matches_loops(hw, k, stride, padding):
    kernel = _kernel(k)
    x = normal(1, (2, *hw, 3))
    pads = ops.conv_padding(padding, hw, (k, k), (stride, stride))
    got = ops.conv_analysis(x, kernel, strides=stride, padding=padding)
    np.testing.assert_allclose(got, conv_reference(x, kernel, stride, pads), rtol=1e-12, atol=1e-12)
    assert got.shape[1:3] == ops.code_hw(hw, (k, k), stride, padding)


@pytest.mark.parametrize("hw,k,stride,padding", GRID)
def test_conv_pair_is_adjoint(hw, k, stride, padding):
    kernel = _kernel(k)
    analysis, synthesis = ops.conv_pair(kernel, signal_hw=hw, strides=stride, padding=padding)
    x = normal(1, (2, *hw, 3))
    z = analysis(x)
    y = normal(2, z.shape)
    ax = synthesis(y)
    assert ax.shape == x.shape
    lhs, rhs = jnp.vdot(z, y), jnp.vdot(x, ax)
    assert abs(lhs - rhs) <= 1e-12 * max(1.0, abs(lhs))
    # and equal to the adjoint JAX derives by transposition
    np.testing.assert_allclose(ax, ops.adjoint(analysis, x)(y), rtol=1e-12, atol=1e-12)


def test_dense_pair_adjoint_and_reference():
    d = normal(0, (6, 10))
    x = normal(1, (4, 6))
    y = normal(2, (4, 10))
    analysis, synthesis = ops.dense_pair(d)
    np.testing.assert_allclose(analysis(x), np.asarray(x) @ np.asarray(d), rtol=1e-13)
    assert abs(jnp.vdot(analysis(x), y) - jnp.vdot(x, synthesis(y))) < 1e-12


def test_normalize_atoms():
    for shape in [(3, 3, 4, 7), (12, 5)]:
        w = 3.0 * normal(0, shape)
        n = ops.normalize_atoms(w)
        norms = np.sqrt(np.sum(np.asarray(n) ** 2, axis=tuple(range(len(shape) - 1))))
        np.testing.assert_allclose(norms, 1.0, rtol=1e-13)
        np.testing.assert_allclose(ops.normalize_atoms(n), n, rtol=1e-13)  # a projection
        # direction of each atom is kept
        cos = np.sum(np.asarray(n) * np.asarray(w), axis=tuple(range(len(shape) - 1)))
        assert np.all(cos > 0)
    assert np.all(np.asarray(ops.normalize_atoms(jnp.zeros((2, 3)))) == 0)  # no NaN for zero atoms


@pytest.mark.parametrize("stride", [1, 2])
def test_conv_grads(stride):
    kernel = _kernel(3, 2, 3)
    x = normal(1, (1, 5, 6, 2))
    z = ops.conv_analysis(x, kernel, strides=stride)
    check_grads(jax.jit(lambda x, k: ops.conv_analysis(x, k, strides=stride)), (x, kernel), order=2)
    check_grads(
        jax.jit(lambda z, k: ops.conv_synthesis(z, k, signal_hw=(5, 6), strides=stride)),
        (z, kernel),
        order=2,
    )


# batches above a KERNEL_GRAD_CHUNK of 4, most not multiples of it: the kernel gradient runs in chunks
CHUNKED = [
    ((7, 9), 3, 1, "SAME", 19),
    ((8, 8), 3, 2, 1, 11),
    ((7, 9), 3, 2, "SAME", 16),
    ((6, 5), 4, 2, ((0, 2), (1, 0)), 9),
    ((7, 9), 1, 1, "VALID", 10),
    ((8, 8), 3, 2, "VALID", 13),
]


def _plain_pair(kernel, hw, stride, padding):
    """The convolution pair with JAX's own derivatives (no chunked kernel gradient)."""
    strides = (stride, stride)
    pads = ops.conv_padding(padding, hw, kernel.shape[:2], strides)

    def analysis(x, k):
        return jax.lax.conv_general_dilated(
            x, k, strides, pads, dimension_numbers=("NHWC", "HWIO", "NHWC")
        )

    def synthesis(z, k):
        example = jnp.zeros((z.shape[0], *hw, k.shape[2]), z.dtype)
        return jax.linear_transpose(lambda x: analysis(x, k), example)(z)[0]

    return analysis, synthesis


def _assert_derivatives_equal(f, plain, v, kernel):
    """Reverse and forward mode of ``f(v, kernel)`` equal those of ``plain`` (float64)."""

    def close(got, want):
        for a, b in zip(got, want, strict=True):
            np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-12)

    def loss(g):
        return lambda v, k: jnp.sum(jnp.sin(g(v, k)))  # a cotangent that varies

    close(
        jax.jit(jax.grad(loss(f), argnums=(0, 1)))(v, kernel),
        jax.grad(loss(plain), (0, 1))(v, kernel),
    )
    dv = normal(5, v.shape)
    dk = normal(6, kernel.shape)
    for tangents in [(dv, dk), (jnp.zeros_like(v), dk)]:
        close(jax.jvp(f, (v, kernel), tangents), jax.jvp(plain, (v, kernel), tangents))
    # the input not differentiated at all (a symbolic-zero tangent)
    close(jax.jvp(partial(f, v), (kernel,), (dk,)), jax.jvp(partial(plain, v), (kernel,), (dk,)))


@pytest.mark.parametrize("hw,k,stride,padding,batch", CHUNKED)
def test_chunked_kernel_gradient_equals_jax_autodiff(monkeypatch, hw, k, stride, padding, batch):
    monkeypatch.setattr(workarounds, "KERNEL_GRAD_CHUNK", 4)
    kernel = _kernel(k)
    x = normal(1, (batch, *hw, 3))
    code_shape = (batch, *ops.code_hw(hw, (k, k), stride, padding), 5)
    z = normal(2, code_shape)
    plain_analysis, plain_synthesis = _plain_pair(kernel, hw, stride, padding)
    _assert_derivatives_equal(
        lambda x, k: ops.conv_analysis(x, k, strides=stride, padding=padding),
        plain_analysis,
        x,
        kernel,
    )
    _assert_derivatives_equal(
        lambda z, k: ops.conv_synthesis(z, k, signal_hw=hw, strides=stride, padding=padding),
        plain_synthesis,
        z,
        kernel,
    )


def test_kernel_gradient_is_one_convolution_per_chunk(monkeypatch):
    monkeypatch.setattr(workarounds, "KERNEL_GRAD_CHUNK", 8)
    kernel = _kernel(3)
    x = jnp.zeros((19, 8, 8, 3), jnp.float64)

    def grad_jaxpr(f):
        jaxpr = jax.make_jaxpr(jax.grad(lambda k: jnp.sum(f(k) ** 2)))(kernel)
        return str(jaxpr).count("conv_general_dilated")

    # the forward convolution, then ceil(19 / 8) = 3 kernel-gradient convolutions
    assert grad_jaxpr(lambda k: ops.conv_analysis(x, k)) == 1 + 3
    assert grad_jaxpr(lambda k: ops.conv_analysis(x[:8], k)) == 1 + 1


def test_chunked_second_order_and_transpose(monkeypatch):
    monkeypatch.setattr(workarounds, "KERNEL_GRAD_CHUNK", 4)
    kernel = _kernel(3, 2, 3)
    x = normal(1, (10, 5, 6, 2))
    check_grads(jax.jit(lambda x, k: ops.conv_analysis(x, k, strides=2)), (x, kernel), order=2)
    z = ops.conv_analysis(x, kernel, strides=2)
    check_grads(
        jax.jit(lambda z, k: ops.conv_synthesis(z, k, signal_hw=(5, 6), strides=2)),
        (z, kernel),
        order=2,
    )
    analysis, synthesis = ops.conv_pair(kernel, signal_hw=(5, 6), strides=2)
    np.testing.assert_allclose(synthesis(z), ops.adjoint(analysis, x)(z), rtol=1e-12, atol=1e-12)


def test_jit_and_vmap_match_eager():
    kernel = _kernel(3)
    x = normal(1, (4, 7, 7, 3))
    eager = ops.conv_analysis(x, kernel, strides=2)
    jitted = jax.jit(lambda x, k: ops.conv_analysis(x, k, strides=2))(x, kernel)
    mapped = jax.vmap(lambda xi: ops.conv_analysis(xi[None], kernel, strides=2)[0])(x)
    np.testing.assert_allclose(jitted, eager, rtol=1e-12)
    np.testing.assert_allclose(mapped, eager, rtol=1e-12)
    z = eager
    eager_s = ops.conv_synthesis(z, kernel, signal_hw=(7, 7), strides=2)
    jit_s = jax.jit(lambda z: ops.conv_synthesis(z, kernel, signal_hw=(7, 7), strides=2))(z)
    np.testing.assert_allclose(jit_s, eager_s, rtol=1e-12)


def test_bad_input_is_a_clear_error():
    kernel = _kernel(3, cin=3, cout=5)
    with pytest.raises(ValueError, match="channels"):
        ops.conv_analysis(jnp.zeros((1, 8, 8, 4)), kernel)
    with pytest.raises(ValueError, match="rank 4"):
        ops.conv_analysis(jnp.zeros((8, 8, 3)), kernel)
    with pytest.raises(ValueError, match="rank 4"):
        ops.conv_analysis(jnp.zeros((1, 8, 8, 3)), kernel[0])
    with pytest.raises(ValueError, match="spatial size"):
        ops.conv_synthesis(jnp.zeros((1, 5, 5, 5)), kernel, signal_hw=(8, 8), strides=2)
    with pytest.raises(ValueError, match="strides"):
        ops.conv_analysis(jnp.zeros((1, 8, 8, 3)), kernel, strides=0)
    with pytest.raises(ValueError, match="padding"):
        ops.conv_analysis(jnp.zeros((1, 8, 8, 3)), kernel, padding="CIRCLE")
    with pytest.raises(ValueError, match="smaller than the kernel"):
        ops.conv_analysis(jnp.zeros((1, 2, 2, 3)), kernel, padding="VALID")
    with pytest.raises(ValueError, match="dictionary"):
        ops.dense_analysis(jnp.zeros((2, 5)), jnp.zeros((6, 4)))
