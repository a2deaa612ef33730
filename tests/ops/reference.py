"""Slow, obvious float64 NumPy references for the ops tests."""

from __future__ import annotations

import math

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
        elif method == "fista":
            z_new = prox(y + step * a.T @ (x - a @ y))
        else:
            z_new = prox(y + step * a.T @ (x - a @ z))
        z_prev, z = z, z_new
    return z
