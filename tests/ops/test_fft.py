import itertools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.test_util import check_grads

from sdnet_jax import ops
from tests.ops.reference import normal, operator_matrix


def _circular_reference(x, kernel):
    """Loops: out[n,i,j,o] = Σ x[n, (i+u−p_h) mod H, (j+v−p_w) mod W, c] · k[u,v,c,o]."""
    x, kernel = np.asarray(x, np.float64), np.asarray(kernel, np.float64)
    n, h, w, _ = x.shape
    kh, kw, _, cout = kernel.shape
    ph, pw = (kh - 1) // 2, (kw - 1) // 2
    out = np.zeros((n, h, w, cout))
    for i, j, u, v in itertools.product(range(h), range(w), range(kh), range(kw)):
        out[:, i, j, :] += x[:, (i + u - ph) % h, (j + v - pw) % w, :] @ kernel[u, v]
    return out


def _nchw(v):
    return jnp.moveaxis(v, 3, 1)


def _nhwc(v):
    return jnp.moveaxis(v, 1, 3)


GRID = list(
    itertools.product(
        [(7, 6), (8, 8)],  # odd/even signal sizes
        [(3, 3), (4, 2), (1, 1)],  # kernel sizes (odd, even, mixed)
        [(1, 4), (3, 5), (4, 2)],  # (c_in, c_out): grey, colour, more inputs than atoms
    )
)


def _setup(hw, ksize, channels, n=2):
    kernel = normal(0, (*ksize, *channels))
    x = normal(1, (n, *hw, channels[0]))
    z = normal(2, (n, *hw, channels[1]))
    return kernel, x, z


@pytest.mark.parametrize("hw,ksize,channels", GRID)
@pytest.mark.parametrize("impl", ops.fft.IMPLS)
def test_matches_loops_and_is_adjoint(hw, ksize, channels, impl):
    kernel, x, z = _setup(hw, ksize, channels)

    @jax.jit  # one program instead of op-by-op dispatch
    def pair(kernel, x, z):
        analysis, synthesis = ops.circular_conv_pair(kernel, signal_hw=hw, impl=impl)
        return analysis(x), synthesis(z), ops.adjoint(analysis, x)(z)

    a_x, ax, transposed = pair(kernel, x, z)
    np.testing.assert_allclose(a_x, _circular_reference(x, kernel), rtol=1e-12, atol=1e-12)
    assert ax.shape == x.shape
    lhs, rhs = jnp.vdot(a_x, z), jnp.vdot(x, ax)
    assert abs(lhs - rhs) <= 1e-12 * max(1.0, abs(lhs))
    np.testing.assert_allclose(ax, transposed, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("hw,ksize,channels", GRID[::3])
def test_fft_equals_direct_in_both_layouts(hw, ksize, channels):
    kernel, x, z = _setup(hw, ksize, channels)
    want_a, want_s = ops.circular_conv_pair(kernel, signal_hw=hw, impl="direct")
    for impl in ops.fft.IMPLS:
        a, s = ops.circular_conv_pair(kernel, signal_hw=hw, impl=impl, layout="NCHW")
        np.testing.assert_allclose(_nhwc(a(_nchw(x))), want_a(x), rtol=1e-12, atol=1e-12)
        np.testing.assert_allclose(_nhwc(s(_nchw(z))), want_s(z), rtol=1e-12, atol=1e-12)
    a, s = ops.circular_conv_pair(kernel, signal_hw=hw, impl="fft")
    np.testing.assert_allclose(a(x), want_a(x), rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(s(z), want_s(z), rtol=1e-12, atol=1e-12)


def test_a_centred_delta_is_the_identity_and_shifts_are_circular():
    kernel = jnp.zeros((3, 3, 1, 1), jnp.float64).at[1, 1, 0, 0].set(1.0)
    x = normal(0, (1, 5, 6, 1))
    for impl in ops.fft.IMPLS:
        a, s = ops.circular_conv_pair(kernel, signal_hw=(5, 6), impl=impl)
        np.testing.assert_allclose(a(x), x, atol=1e-13)
        np.testing.assert_allclose(s(x), x, atol=1e-13)
    right = kernel.at[1, 1].set(0.0).at[1, 2, 0, 0].set(1.0)  # reads x[i, j + 1 mod W]
    for impl in ops.fft.IMPLS:
        a, _ = ops.circular_conv_pair(right, signal_hw=(5, 6), impl=impl)
        np.testing.assert_allclose(a(x), jnp.roll(x, -1, axis=2), atol=1e-13)


@pytest.mark.parametrize("channels", [(1, 4), (3, 5), (4, 2)])
@pytest.mark.parametrize("layout", ["NHWC", "NCHW"])
def test_normal_solver_and_lipschitz_are_exact(channels, layout):
    hw = (6, 5)
    kernel, _x, z = _setup(hw, (3, 3), channels)
    analysis, synthesis = ops.circular_conv_pair(kernel, signal_hw=hw)
    solve = ops.circular_conv_normal_solver(kernel, signal_hw=hw, layout=layout)
    for rho in [1e-2, 0.7, 50.0]:
        w = solve(z if layout == "NHWC" else _nchw(z), rho)
        w = w if layout == "NHWC" else _nhwc(w)
        np.testing.assert_allclose(analysis(synthesis(w)) + rho * w, z, rtol=1e-10, atol=1e-10)
    a_t = operator_matrix(analysis, (1, *hw, channels[0]))  # Aᵀ as a matrix
    exact = np.linalg.eigvalsh(a_t.T @ a_t).max()
    np.testing.assert_allclose(ops.circular_conv_lipschitz(kernel, signal_hw=hw), exact, rtol=1e-12)


@pytest.mark.parametrize("impl", ops.fft.IMPLS)
def test_gradients(impl):
    kernel, x, z = _setup((5, 4), (3, 2), (2, 3), n=1)

    def fa(x, k):
        return ops.circular_conv_pair(k, signal_hw=(5, 4), impl=impl)[0](x)

    def fs(z, k):
        return ops.circular_conv_pair(k, signal_hw=(5, 4), impl=impl)[1](z)

    check_grads(jax.jit(fa), (x, kernel), order=2, modes=["fwd", "rev"])  # jitted: 2x faster
    check_grads(jax.jit(fs), (z, kernel), order=2, modes=["fwd", "rev"])
    solve = lambda b, k: ops.circular_conv_normal_solver(k, signal_hw=(5, 4))(b, 0.5)
    check_grads(jax.jit(solve), (z, kernel), order=1, modes=["fwd", "rev"])


@pytest.mark.parametrize("impl", ops.fft.IMPLS)
def test_jit_vmap_and_float32(impl):
    kernel, x, z = _setup((6, 6), (3, 3), (3, 4), n=3)
    a, s = ops.circular_conv_pair(kernel, signal_hw=(6, 6), impl=impl)
    np.testing.assert_allclose(jax.jit(a)(x), a(x), rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(jax.jit(s)(z), s(z), rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(jax.vmap(lambda v: a(v[None])[0])(x), a(x), rtol=1e-12, atol=1e-12)
    k32 = kernel.astype(jnp.float32)
    a32, s32 = ops.circular_conv_pair(k32, signal_hw=(6, 6), impl=impl)
    assert a32(x.astype(jnp.float32)).dtype == jnp.float32
    assert s32(z.astype(jnp.float32)).dtype == jnp.float32
    np.testing.assert_allclose(a32(x.astype(jnp.float32)), a(x), rtol=1e-4, atol=1e-4)
    # the pair built inside jit from a traced kernel
    f = jax.jit(lambda x, k: ops.circular_conv_pair(k, signal_hw=(6, 6), impl=impl)[0](x))
    np.testing.assert_allclose(f(x, kernel), a(x), rtol=1e-12, atol=1e-12)


def test_bad_input_is_a_clear_error():
    kernel = jnp.zeros((3, 3, 2, 4))
    with pytest.raises(ValueError, match="impl"):
        ops.circular_conv_pair(kernel, signal_hw=(8, 8), impl="winograd")
    with pytest.raises(ValueError, match="layout"):
        ops.circular_conv_pair(kernel, signal_hw=(8, 8), layout="HWNC")
    with pytest.raises(ValueError, match="kernel"):
        ops.circular_conv_pair(kernel[0], signal_hw=(8, 8))
    with pytest.raises(ValueError, match="signal_hw"):
        ops.circular_conv_pair(kernel, signal_hw=(8, 0))
    with pytest.raises(ValueError, match="larger than the signal_hw"):
        ops.circular_conv_pair(kernel, signal_hw=(2, 8))
    for impl in ops.fft.IMPLS:
        a, s = ops.circular_conv_pair(kernel, signal_hw=(8, 8), impl=impl)
        with pytest.raises(ValueError, match="x has 3 channels"):
            jax.jit(a)(jnp.zeros((1, 8, 8, 3)))
        with pytest.raises(ValueError, match="x has spatial size"):
            jax.jit(a)(jnp.zeros((1, 8, 7, 2)))
        with pytest.raises(ValueError, match="rank 4"):
            a(jnp.zeros((8, 8, 2)))
        with pytest.raises(ValueError, match="z has 3 channels"):
            jax.jit(s)(jnp.zeros((1, 8, 8, 3)))
    solve = ops.circular_conv_normal_solver(kernel, signal_hw=(8, 8))
    with pytest.raises(ValueError, match="rho"):
        solve(jnp.zeros((1, 8, 8, 4)), 0.0)
    with pytest.raises(ValueError, match="b has 2 channels"):
        solve(jnp.zeros((1, 8, 8, 2)), 1.0)
