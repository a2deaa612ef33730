"""Slow, obvious float64 NumPy references for the ops tests."""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np


def conv_reference(x, kernel, stride, pads):
    """Direct loops: out[n,i,j,o] = sum_{u,v,c} xpad[n, s*i+u, s*j+v, c] * k[u,v,c,o]."""
    x = np.asarray(x, np.float64)
    kernel = np.asarray(kernel, np.float64)
    (plo_h, phi_h), (plo_w, phi_w) = pads
    xp = np.pad(x, ((0, 0), (plo_h, phi_h), (plo_w, phi_w), (0, 0)))
    kh, kw, _, cout = kernel.shape
    oh = (xp.shape[1] - kh) // stride + 1
    ow = (xp.shape[2] - kw) // stride + 1
    out = np.zeros((x.shape[0], oh, ow, cout))
    for i in range(oh):
        for j in range(ow):
            patch = xp[:, i * stride : i * stride + kh, j * stride : j * stride + kw, :]
            out[:, i, j, :] = np.einsum("nuvc,uvco->no", patch, kernel)
    return out


def operator_matrix(apply, in_shape):
    """The matrix of a linear map, column by column (float64)."""
    n = int(np.prod(in_shape))
    cols = []
    for k in range(n):
        e = np.zeros(n)
        e[k] = 1.0
        cols.append(np.asarray(apply(e.reshape(in_shape)), np.float64).ravel())
    return np.stack(cols, axis=1)


def prox_reference(u, thresh, scale, nonneg):
    v = u * scale
    th = thresh * scale
    if nonneg:
        return np.maximum(v - th, 0.0)
    return np.sign(v) * np.maximum(np.abs(v) - th, 0.0)


def solver_reference(a, x, lam, mu, step, num_iters, method, nonneg, z0=None):
    """ISTA / FISTA / SDNet variant with an explicit matrix ``a`` (signal = a @ code)."""
    scale = 1.0 / (1.0 + mu * step)

    def prox(u):
        return prox_reference(u, lam * step, scale, nonneg)

    z_prev = np.zeros(a.shape[1]) if z0 is None else z0.copy()
    z = prox(z_prev + step * a.T @ (x - a @ z_prev))
    tau = 1.0
    for _ in range(1, num_iters):
        tau_new = (1.0 + math.sqrt(1.0 + 4.0 * tau * tau)) / 2.0
        beta = (tau - 1.0) / tau_new
        tau = tau_new
        y = z + beta * (z - z_prev)
        if method == "ista":
            z_new = prox(z + step * a.T @ (x - a @ z))
        elif method in ("fista", "fista_restart"):
            z_new = prox(y + step * a.T @ (x - a @ y))
            if method == "fista_restart" and np.dot(y - z_new, z_new - z) > 0:
                tau = 1.0  # gradient restart: the next step has no momentum
        else:
            z_new = prox(y + step * a.T @ (x - a @ z))
        z_prev, z = z, z_new
    return z


def admm_reference(a, x, lam, mu, num_iters, nonneg, rho, relax, adapt, y0=None):
    """ADMM on z = y with explicit matrices (SPORCO ConvBPDN's iteration and ρ rule).

    ``adapt``: ρ is rebalanced after iterations ``1 .. adapt − 1`` (as ``adapt_rho``).
    """
    n = a.shape[1]
    y = np.zeros(n) if y0 is None else y0.copy()
    u = np.zeros(n) if y0 is None else (lam / rho) * np.sign(y0)
    xi = 1.0 + 18.3 ** (math.log10(lam) + 1.0) if lam > 0 else 1.0
    for k in range(num_iters):
        z = np.linalg.solve(a.T @ a + rho * np.eye(n), a.T @ x + rho * (y - u))
        r = relax * z + (1 - relax) * y
        y_new = prox_reference(r + u, lam / rho, 1.0 / (1.0 + mu / rho), nonneg)
        u = u + r - y_new
        if 1 <= k < adapt:  # ρ rebalanced after iterations 1 .. adapt − 1
            p = np.linalg.norm(z - y_new) / max(np.linalg.norm(z), np.linalg.norm(y_new))
            d = np.linalg.norm(y_new - y) / np.linalg.norm(u)
            mult = min(math.sqrt(p / (d * xi) if p > d * xi else d * xi / p), 1000.0)
            if p > xi * 1.2 * d:
                rho, u = rho * mult, u / mult
            elif d > 1.2 / xi * p:
                rho, u = rho / mult, u * mult
        y = y_new
    return y


def normal(seed: int, shape) -> jax.Array:
    """Standard-normal float64 test data from NumPy's generator: ``jax.random`` would compile a
    sampling program for every new shape, and the ops tests use dozens of shapes."""
    return jnp.asarray(np.random.default_rng(seed).standard_normal(tuple(shape)), jnp.float64)
