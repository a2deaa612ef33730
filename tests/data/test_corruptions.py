"""Tests for the CIFAR-10-C / ImageNet-C noise corruptions.

Every image batch has the same shape (16, 8, 8, 3) and statistics are gathered over several keys
instead of larger batches: on CPU the cost is compilation, which a new shape would repeat.
"""

import itertools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from sdnet_jax.data.corruptions import (
    CORRUPTION_PARAMS,
    CORRUPTIONS,
    TABLES,
    corrupt,
    gaussian_noise,
    impulse_noise,
)

NAMES = sorted(CORRUPTIONS)
SEVERITIES = range(1, 6)
SHAPE = (16, 8, 8, 3)
CIFAR = CORRUPTION_PARAMS["cifar10"]


def _images(seed: int = 0, dtype=jnp.float32) -> jax.Array:
    return jax.random.uniform(jax.random.key(seed), SHAPE).astype(dtype)


def _grey() -> jax.Array:
    return jnp.full(SHAPE, 0.5, jnp.float32)


def _draws(name: str, x: jax.Array, severity: int, n_keys: int = 8, **kw) -> np.ndarray:
    """``(n_keys, *SHAPE)`` corrupted copies of ``x`` (new keys do not recompile)."""
    keys = jax.random.split(jax.random.key(100), n_keys)
    return np.stack([np.asarray(corrupt(x, k, name, severity, **kw)) for k in keys])


@pytest.fixture(scope="module")
def jitted():
    """One compilation: each corruption at a static severity 3 and vmapped over traced 0..6."""

    def all_corruptions(x, key, severity):
        return {name: fn(x, key, severity) for name, fn in CORRUPTIONS.items()}

    @jax.jit
    def run(x, key, severities):
        return all_corruptions(x, key, 3), jax.vmap(all_corruptions, (None, None, 0))(
            x, key, severities
        )

    x, key = _images(), jax.random.key(6)
    static, swept = run(x, key, jnp.arange(0, 7))
    return x, key, static, swept


def test_parameters_match_hendrycks_dietterich():
    assert CIFAR["gaussian_noise"] == (0.04, 0.06, 0.08, 0.09, 0.10)
    assert CIFAR["shot_noise"] == (500, 250, 100, 75, 50)
    assert CIFAR["impulse_noise"] == (0.01, 0.02, 0.03, 0.05, 0.07)
    assert CIFAR["speckle_noise"] == (0.06, 0.10, 0.12, 0.16, 0.20)
    imagenet = CORRUPTION_PARAMS["imagenet"]
    assert imagenet["gaussian_noise"] == (0.08, 0.12, 0.18, 0.26, 0.38)
    assert imagenet["shot_noise"] == (60, 25, 12, 5, 3)
    assert imagenet["impulse_noise"] == (0.03, 0.06, 0.09, 0.17, 0.27)
    assert imagenet["speckle_noise"] == (0.15, 0.20, 0.35, 0.45, 0.60)
    assert set(TABLES) == {"cifar10", "imagenet"}
    assert all(set(CORRUPTION_PARAMS[t]) == set(CORRUPTIONS) for t in TABLES)


@pytest.mark.parametrize("dtype", [jnp.float32, jnp.bfloat16])
@pytest.mark.parametrize("table", TABLES)
@pytest.mark.parametrize("name", NAMES)
def test_shape_dtype_and_range(name, table, dtype):
    x = _images(dtype=dtype)
    y = corrupt(x, jax.random.key(1), name, 5, table=table)
    assert y.shape == x.shape and y.dtype == dtype
    y32 = np.asarray(y.astype(jnp.float32))
    assert np.isfinite(y32).all()
    assert y32.min() >= 0.0 and y32.max() <= 1.0
    assert not np.array_equal(y32, np.asarray(x.astype(jnp.float32)))


def test_values_clipped_when_noise_overshoots():
    # Mid-grey ± 0.38·z (ImageNet severity 5) overshoots [0, 1] for ~19 % of the elements.
    y = gaussian_noise(_grey(), jax.random.key(2), 5, table="imagenet")
    assert float(y.min()) == 0.0 and float(y.max()) == 1.0


@pytest.mark.parametrize("name", NAMES)
def test_severity_ordering(name):
    x = _images()
    mse = [float(jnp.mean((corrupt(x, jax.random.key(3), name, s) - x) ** 2)) for s in SEVERITIES]
    assert all(a < b for a, b in itertools.pairwise(mse)), mse


@pytest.mark.parametrize("name", NAMES)
def test_determinism_and_key_dependence(name):
    x = _images()
    a = corrupt(x, jax.random.key(4), name, 3)
    b = corrupt(x, jax.random.key(4), name, 3)
    c = corrupt(x, jax.random.key(5), name, 3)
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)


@pytest.mark.parametrize("name", NAMES)
def test_jit_and_traced_severity_match_eager(name, jitted):
    x, key, static, swept = jitted
    eager = np.stack([np.asarray(corrupt(x, key, name, s)) for s in SEVERITIES])
    np.testing.assert_allclose(static[name], eager[2], rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(swept[name][1:6], eager, rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("name", NAMES)
def test_traced_out_of_range_severity_is_nan(name, jitted):
    swept = jitted[3][name]
    assert np.isnan(swept[0]).all() and np.isnan(swept[6]).all()


@pytest.mark.parametrize("severity", SEVERITIES)
def test_impulse_fraction_and_balance(severity):
    y = _draws("impulse_noise", _grey(), severity)  # 24 576 elements, none 0 or 1 beforehand
    amount = CIFAR["impulse_noise"][severity - 1]
    salt, pepper = (y == 1.0).mean(), (y == 0.0).mean()
    assert ((y != 0.5) == ((y == 0.0) | (y == 1.0))).all()  # only salt or pepper changes
    tol = 5 * np.sqrt(amount * (1 - amount) / y.size)
    assert abs((salt + pepper) - amount) < tol, (salt + pepper, amount)
    assert abs(salt - pepper) < tol, (salt, pepper)


@pytest.mark.parametrize("severity", SEVERITIES)
def test_gaussian_std_on_mid_grey(severity):
    diff = _draws("gaussian_noise", _grey(), severity) - 0.5
    c = CIFAR["gaussian_noise"][severity - 1]
    assert abs(diff.mean()) < 0.05 * c
    np.testing.assert_allclose(diff.std(), c, rtol=0.03)


def test_shot_noise_is_poisson():
    # Poisson(c·x)/c has mean x and variance x/c; at x = 0.5, c = 50 clipping is negligible.
    y = _draws("shot_noise", _grey(), 5)
    np.testing.assert_allclose(y.mean(), 0.5, atol=0.005)
    np.testing.assert_allclose(y.var(), 0.5 / 50, rtol=0.05)
    np.testing.assert_allclose(y * 50, np.round(y * 50), atol=1e-4)  # integer counts / c


def test_speckle_scales_with_intensity():
    x = _grey().at[:8].set(0.0)
    y = _draws("speckle_noise", x, 5)
    np.testing.assert_array_equal(y[:, :8], 0.0)  # black stays black
    np.testing.assert_allclose(np.std(y[:, 8:] - 0.5), 0.5 * 0.2, rtol=0.05)


@pytest.mark.parametrize("severity", [0, 6, -1, 2.0, True, "3", jnp.array([1, 2])])
@pytest.mark.parametrize("name", NAMES)
def test_bad_severity_raises(name, severity):
    with pytest.raises(ValueError, match="severity"):
        corrupt(_images(), jax.random.key(0), name, severity)


def test_bad_severity_raises_under_jit_before_compiling():
    x, key = _images(), jax.random.key(0)
    with pytest.raises(ValueError, match="severity"):
        jax.jit(gaussian_noise, static_argnames="severity")(x, key, severity=6)
    with pytest.raises(ValueError, match="traced severity"):
        jax.jit(gaussian_noise)(x, key, jnp.float32(2))


def test_concrete_integer_severity_accepted():
    x, key = _images(), jax.random.key(0)
    ref = gaussian_noise(x, key, 3)
    np.testing.assert_array_equal(gaussian_noise(x, key, np.int64(3)), ref)
    np.testing.assert_array_equal(gaussian_noise(x, key, jnp.array(3)), ref)


def test_bad_name_table_and_dtype_raise():
    x, key = _images(), jax.random.key(0)
    with pytest.raises(ValueError, match=r"gaussian_noise, impulse_noise, shot_noise"):
        corrupt(x, key, "fog", 1)
    with pytest.raises(ValueError, match=r"cifar10, imagenet"):
        corrupt(x, key, "gaussian_noise", 1, table="cifar100")
    with pytest.raises(ValueError, match=r"floating point"):
        corrupt((x * 255).astype(jnp.uint8), key, "gaussian_noise", 1)
    assert impulse_noise is CORRUPTIONS["impulse_noise"]
