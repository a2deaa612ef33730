"""The PyTorch reference layer of ``benchmarks/torch_reference.py`` computes what ours computes."""

from functools import partial

import jax
import jax.numpy as jnp
import numpy as np
import pytest

torch = pytest.importorskip("torch")

from benchmarks import torch_reference as tr  # noqa: E402
from sdnet_jax import ops  # noqa: E402

pytestmark = pytest.mark.usefixtures("float64")  # tests/conftest.py


def _close(ours, theirs):
    np.testing.assert_allclose(np.asarray(ours), theirs, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize(
    "hw,stride,num_iters",
    [((7, 9), 1, 2), ((8, 8), 2, 2), ((7, 9), 2, 2), ((7, 9), 1, 3), ((8, 8), 2, 4)],
)
def test_torch_layer_equals_ours(hw, stride, num_iters):
    _, kernel = tr.problem(1, 3, 5, 8, dtype=jnp.float64)
    x = jax.random.normal(jax.random.key(3), (2, *hw, 3), jnp.float64)
    lip = tr.lipschitz(kernel, hw, stride, 1)
    step = tr.STEP_SCALE / lip
    conf = dict(stride=stride, padding=1, num_iters=num_iters)
    op = partial(tr.ours_op, step=step, **conf)
    layer = partial(tr.ours_layer, lipschitz_value=lip, **conf)

    xt, wt = tr.to_torch(x, kernel)
    assert xt.dtype == wt.dtype == torch.float64
    zt = tr.torch_csc(xt, wt, step=step, stride=stride, padding=1, num_iters=num_iters)
    gxt, gwt = torch.autograd.grad(torch.sum(zt**2), (xt, wt))
    z_torch = zt.detach().numpy().transpose(0, 2, 3, 1)
    gx_torch, gw_torch = gxt.numpy().transpose(0, 2, 3, 1), gwt.numpy().transpose(2, 3, 1, 0)
    assert np.count_nonzero(z_torch) > z_torch.size // 10  # not trivially all zero

    for f in (op, layer):
        z = jax.jit(f)(x, kernel)
        assert z.dtype == jnp.float64
        _close(z, z_torch)
        gx, gw = jax.jit(partial(tr.jax_fwd_bwd, f))(x, kernel)
        _close(gx, gx_torch)
        _close(gw, gw_torch)


def test_two_iterations_match_the_design_formula():
    """z0 = relu(t·Aᵀx − tλ), z = relu(z0 + t·Aᵀ(x − A z0) − tλ), with ops' conv pair."""
    x, kernel = tr.problem(2, 3, 4, 6, dtype=jnp.float64)
    step = 0.3
    analysis, synthesis = ops.conv_pair(kernel, signal_hw=(6, 6), padding=1)
    z0 = jax.nn.relu(step * analysis(x) - step * tr.LAM)
    z = jax.nn.relu(z0 + step * analysis(x - synthesis(z0)) - step * tr.LAM)
    _close(
        z, tr.torch_csc(*tr.to_torch(x, kernel), step=step).detach().numpy().transpose(0, 2, 3, 1)
    )
