"""Circular (periodic-boundary) convolutional dictionaries, direct or in the Fourier domain.

The classic CSC lasso (SPORCO's ``ConvBPDN``, most of the CSC literature) uses a *circular*
boundary: the signal is treated as periodic, so the dictionary is diagonalised by the 2-D DFT. This
module offers that operator pair behind the interface of :func:`~sdnet_jax.ops.conv_pair` (NHWC
signals and codes, HWIO kernels, stride 1, code of the signal's spatial size), in two
implementations that compute the same map:

* ``impl='direct'``: wrap-pad the signal by the kernel's ``'SAME'`` amounts and run a ``'VALID'``
  ``lax.conv_general_dilated``; the synthesis is its transposed convolution folded back onto the
  torus. Cheapest for small kernels and few iterations (SDNet's 3x3, 2-iteration layers).
* ``impl='fft'``: ``rfft2`` over ``(H, W)``, a per-frequency ``C_in x C_out`` product with the
  kernel's spectrum (computed once, when the pair is built), ``irfft2``. Its cost does not grow with
  the kernel size; it wins for large kernels and many iterations (a CSC lasso solved to accuracy).

Both are exactly the circular cross-correlation (``W[u, v, c, o]`` centred as ``'SAME'`` centres it,
``p = (k − 1) // 2``)::

    (Aᵀ x)[n, i, j, o] = Σ_{u, v, c} x[n, (i + u − p_h) mod H, (j + v − p_w) mod W, c] · W[u, v, c, o]

and ``A`` is its exact adjoint (a circular convolution with output channels summed).

Both also take ``layout='NCHW'`` (channels-first signals and codes, the kernel still HWIO): XLA's
CPU FFTs transform the minor axes, so with the spatial axes minor an FFT-domain solver needs no
transposes and runs about twice as fast per iteration (measured on the 32x32, 64-atom lasso of
``benchmarks/solver_accuracy.py``).

Because the circular operator is diagonal in frequency, the regularised normal equations
``(AᵀA + ρI) z = b`` are solved exactly per frequency (:func:`circular_conv_normal_solver`, the
Sherman–Morrison / Woodbury identity of Wohlberg's efficient convolutional sparse coding), which is
what the ADMM solver of :mod:`sdnet_jax.ops.lasso` needs, and ``‖A‖²`` is known exactly
(:func:`circular_conv_lipschitz`).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

import jax
import jax.numpy as jnp
from jax import lax

from sdnet_jax import checks
from sdnet_jax.ops.types import LinearOp, NormalSolver

IMPLS = ("fft", "direct")
DIMENSION_NUMBERS = ("NHWC", "HWIO", "NHWC")


def _wrap_pads(kernel_hw: Sequence[int]) -> tuple[tuple[int, int], tuple[int, int]]:
    """``'SAME'`` padding amounts at stride 1: ``lo = (k − 1) // 2``, ``hi = k − 1 − lo``."""
    return tuple(((k - 1) // 2, k - 1 - (k - 1) // 2) for k in kernel_hw)  # type: ignore[return-value]


def _check_kernel(kernel: jax.Array, signal_hw) -> tuple[int, int]:
    checks.check_rank("kernel", kernel, 4, "kh, kw, c_in, c_out (HWIO)")
    signal_hw = checks.pair("signal_hw", signal_hw)
    if kernel.shape[0] > signal_hw[0] or kernel.shape[1] > signal_hw[1]:
        raise ValueError(
            f"kernel of spatial size {tuple(kernel.shape[:2])} is larger than the signal_hw "
            f"{signal_hw}; a circular convolution needs kh <= H and kw <= W."
        )
    return signal_hw


def _check_input(
    name: str, v: jax.Array, signal_hw, channels: int, role: str, layout: str = "NHWC"
) -> None:
    checks.check_rank(name, v, 4, f"N, H, W, C ({layout})" if layout == "NHWC" else "N, C, H, W")
    hw, c = (v.shape[1:3], v.shape[3]) if layout == "NHWC" else (v.shape[2:4], v.shape[1])
    if tuple(hw) != tuple(signal_hw):
        raise ValueError(
            f"{name} has spatial size {tuple(hw)} but the circular pair was built for "
            f"signal_hw={tuple(signal_hw)} (signal and code have the same size)."
        )
    if c != channels:
        raise ValueError(f"{name} has {c} channels but the kernel expects {channels} ({role}).")


def kernel_spectrum(kernel: jax.Array, signal_hw: Sequence[int]) -> jax.Array:
    """``rfft2`` of the kernel placed on the ``H x W`` torus with its ``'SAME'`` centre at 0.

    Returns a complex array of shape ``(H, W // 2 + 1, C_in, C_out)``: per frequency, the
    ``C_in x C_out`` matrix ``K̂`` such that the synthesis is ``Â z = K̂ ẑ`` and the analysis
    ``(Aᵀx)^ = K̂ᴴ x̂``.
    """
    signal_hw = _check_kernel(kernel, signal_hw)
    (ph, _), (pw, _) = _wrap_pads(kernel.shape[:2])
    h, w = signal_hw
    dtype = jnp.result_type(kernel.dtype, jnp.float32)
    placed = jnp.zeros((h, w, *kernel.shape[2:]), dtype).at[: kernel.shape[0], : kernel.shape[1]]
    placed = placed.set(kernel.astype(dtype))
    placed = jnp.roll(placed, (-ph, -pw), axis=(0, 1))  # tap (u, v) sits at (u − p_h, v − p_w)
    return jnp.fft.rfft2(placed, axes=(0, 1))


class _Layout(NamedTuple):
    """Where the channel and FFT axes of signals/codes are, and how the spectrum is arranged."""

    name: str
    fft_axes: tuple[int, int]

    def arrange(self, spectrum: jax.Array) -> jax.Array:
        """``(H, Wf, C_in, C_out)`` -> this layout's arrangement (``(C_in, C_out, H, Wf)`` for NCHW)."""
        return spectrum if self.name == "NHWC" else jnp.moveaxis(spectrum, (0, 1), (2, 3))

    def to_codes(self, sig_f: jax.Array, spec: jax.Array) -> jax.Array:
        """``Σ_c sig[c] · conj(K̂[c, o])``: a signal spectrum to a code spectrum."""
        if self.name == "NHWC":
            return jnp.sum(sig_f[..., :, None] * jnp.conj(spec), axis=-2)
        return jnp.sum(sig_f[:, :, None] * jnp.conj(spec)[None], axis=1)

    def to_signals(self, code_f: jax.Array, spec: jax.Array) -> jax.Array:
        """``Σ_o K̂[c, o] · code[o]``: a code spectrum to a signal spectrum."""
        if self.name == "NHWC":
            return jnp.sum(code_f[..., None, :] * spec, axis=-1)
        return jnp.sum(code_f[:, None] * spec[None], axis=2)

    def matvec(self, mat: jax.Array, v: jax.Array) -> jax.Array:
        """Per-frequency ``mat @ v`` for a ``(.., C, D)`` matrix arranged like the spectrum."""
        if self.name == "NHWC":
            return jnp.einsum("hwcd,nhwd->nhwc", mat, v)
        return jnp.einsum("cdhw,ndhw->nchw", mat, v)

    def gram(self, spec: jax.Array, of_signals: bool) -> jax.Array:
        """Per-frequency ``K̂ K̂ᴴ`` (``of_signals``, C_in x C_in) or ``K̂ᴴ K̂`` (C_out x C_out)."""
        conj = jnp.conj(spec)
        if self.name == "NHWC":
            if of_signals:
                return jnp.einsum("hwco,hwdo->hwcd", spec, conj)
            return jnp.einsum("hwco,hwcp->hwop", conj, spec)
        if of_signals:
            return jnp.einsum("cohw,dohw->cdhw", spec, conj)
        return jnp.einsum("cohw,cphw->ophw", conj, spec)

    def eye(self, n: int, dtype) -> jax.Array:
        eye = jnp.eye(n, dtype=dtype)
        return eye if self.name == "NHWC" else eye[:, :, None, None]

    def inv(self, mat: jax.Array) -> jax.Array:
        if self.name == "NHWC":
            return jnp.linalg.inv(mat)
        return jnp.moveaxis(jnp.linalg.inv(jnp.moveaxis(mat, (0, 1), (2, 3))), (2, 3), (0, 1))


_LAYOUTS = {"NHWC": _Layout("NHWC", (1, 2)), "NCHW": _Layout("NCHW", (2, 3))}


def _fft_pair(kernel, signal_hw, layout: _Layout) -> tuple[LinearOp, LinearOp]:
    c_in, c_out = kernel.shape[2:]
    spectrum = layout.arrange(kernel_spectrum(kernel, signal_hw))
    axes = layout.fft_axes

    def analysis(x: jax.Array) -> jax.Array:
        _check_input("x", x, signal_hw, c_in, "c_in", layout.name)
        xf = jnp.fft.rfft2(x, axes=axes)
        zf = layout.to_codes(xf, spectrum.astype(xf.dtype))
        return jnp.fft.irfft2(zf, s=signal_hw, axes=axes).astype(x.dtype)

    def synthesis(z: jax.Array) -> jax.Array:
        _check_input("z", z, signal_hw, c_out, "c_out", layout.name)
        zf = jnp.fft.rfft2(z, axes=axes)
        xf = layout.to_signals(zf, spectrum.astype(zf.dtype))
        return jnp.fft.irfft2(xf, s=signal_hw, axes=axes).astype(z.dtype)

    return analysis, synthesis


def _direct_pair(kernel, signal_hw, layout: _Layout) -> tuple[LinearOp, LinearOp]:
    c_in, c_out = kernel.shape[2:]
    pads = [(0, 0)] * 4
    for axis, pad in zip(layout.fft_axes, _wrap_pads(kernel.shape[:2]), strict=True):
        pads[axis] = pad
    numbers = (layout.name, "HWIO", layout.name)

    def raw_analysis(x: jax.Array) -> jax.Array:
        padded = jnp.pad(x, pads, mode="wrap")
        return lax.conv_general_dilated(
            padded, kernel.astype(x.dtype), (1, 1), "VALID", dimension_numbers=numbers
        )

    def analysis(x: jax.Array) -> jax.Array:
        _check_input("x", x, signal_hw, c_in, "c_in", layout.name)
        return raw_analysis(x)

    def synthesis(z: jax.Array) -> jax.Array:
        _check_input("z", z, signal_hw, c_out, "c_out", layout.name)
        # the transpose JAX derives (a transposed convolution, then the wrap padding folded back
        # onto the torus); on CPU it is faster than an explicit flipped-kernel convolution
        shape = (
            (z.shape[0], *signal_hw, c_in)
            if layout.name == "NHWC"
            else (z.shape[0], c_in, *signal_hw)
        )
        example = jax.ShapeDtypeStruct(shape, z.dtype)
        return jax.linear_transpose(raw_analysis, example)(z)[0]

    return analysis, synthesis


def circular_conv_pair(
    kernel: jax.Array, *, signal_hw: Sequence[int], impl: str = "fft", layout: str = "NHWC"
) -> tuple[LinearOp, LinearOp]:
    """``(analysis, synthesis)`` of a circular convolutional dictionary (stride 1).

    Same interface as :func:`~sdnet_jax.ops.conv_pair`: ``analysis`` maps a signal
    ``(N, H, W, C_in)`` to a code ``(N, H, W, C_out)``, ``synthesis`` is its exact adjoint. See the
    module docstring for the map.

    Args:
      kernel: dictionary, shape ``(kh, kw, C_in, C_out)`` with ``kh <= H``, ``kw <= W``.
      signal_hw: spatial size ``(H, W)`` of signals (and codes).
      impl: ``'fft'`` (Fourier domain; the kernel's spectrum is computed here, once) or
        ``'direct'`` (wrap padding and ``lax.conv_general_dilated``).
      layout: ``'NHWC'`` (the library's convention) or ``'NCHW'`` for signals and codes (the
        kernel stays HWIO). With the spatial axes minor, XLA's CPU FFTs need no transposes: an
        FFT-domain solver (FISTA, ADMM) runs about twice as fast per iteration in ``'NCHW'``;
        transpose the signal once before and the code once after the solve.

    Raises:
      ValueError: on a bad kernel, ``signal_hw`` or ``impl`` here, and on a signal/code of the
        wrong rank, size or channel count when an operator is applied (at trace time).
    """
    checks.check_choice("impl", impl, IMPLS)
    checks.check_choice("layout", layout, tuple(_LAYOUTS))
    signal_hw = _check_kernel(kernel, signal_hw)
    return (_fft_pair if impl == "fft" else _direct_pair)(kernel, signal_hw, _LAYOUTS[layout])


def circular_conv_lipschitz(kernel: jax.Array, *, signal_hw: Sequence[int]) -> jax.Array:
    """Exactly ``‖A‖² = λ_max(AᵀA)`` of the circular pair: the largest ``σ_max(K̂_f)²`` over frequencies.

    Use ``step = 1 / L`` for the proximal-gradient solvers (no power-iteration safety margin needed).
    No gradient flows through the result.
    """
    spectrum = lax.stop_gradient(kernel_spectrum(kernel, signal_hw))
    c_in, c_out = spectrum.shape[2:]
    if min(c_in, c_out) == 1:
        return jnp.max(jnp.sum(jnp.square(jnp.abs(spectrum)), axis=(2, 3)))
    gram = jnp.einsum("hwco,hwdo->hwcd", spectrum, jnp.conj(spectrum))  # K̂ K̂ᴴ, Hermitian PSD
    return jnp.max(jnp.linalg.eigvalsh(gram))


def circular_conv_normal_solver(
    kernel: jax.Array, *, signal_hw: Sequence[int], layout: str = "NHWC"
) -> NormalSolver:
    """``solve(b, ρ) = (AᵀA + ρ I)⁻¹ b`` for the circular pair, exact, per frequency.

    Per frequency the system is ``(K̂ᴴK̂ + ρ I) ẑ = b̂`` with ``K̂`` of shape ``C_in x C_out``. By the
    Woodbury identity ``ẑ = (b̂ − K̂ᴴ (ρ I + K̂ K̂ᴴ)⁻¹ K̂ b̂) / ρ``, a ``C_in x C_in`` solve per
    frequency (Sherman–Morrison, a division, for a single-channel signal); when ``C_out < C_in`` the
    ``C_out x C_out`` system is solved directly instead. Cost: one ``rfft2``/``irfft2`` of the code.

    ``b`` is code-shaped ``(N, H, W, C_out)`` (``(N, C_out, H, W)`` with ``layout='NCHW'``, as for
    :func:`circular_conv_pair`); ``ρ > 0`` may be traced (ADMM adapts it).
    """
    signal_hw = _check_kernel(kernel, signal_hw)
    checks.check_choice("layout", layout, tuple(_LAYOUTS))
    lay = _LAYOUTS[layout]
    spectrum = lay.arrange(kernel_spectrum(kernel, signal_hw))
    c_in, c_out = kernel.shape[2:]
    small_signal = c_in <= c_out
    gram = lay.gram(spectrum, of_signals=small_signal)

    def solve(b: jax.Array, rho: jax.Array | float) -> jax.Array:
        _check_input("b", b, signal_hw, c_out, "c_out", layout)
        checks.check_positive("rho", rho)
        bf = jnp.fft.rfft2(b, axes=lay.fft_axes)
        k = spectrum.astype(bf.dtype)
        rho_c = jnp.asarray(rho, bf.real.dtype)
        if small_signal:  # Woodbury: (b̂ − K̂ᴴ (ρI + K̂K̂ᴴ)⁻¹ K̂ b̂) / ρ
            kb = lay.to_signals(bf, k)
            if c_in == 1:  # Sherman–Morrison: a division
                g = gram[..., 0] if layout == "NHWC" else gram[0]  # |K̂|² per frequency
                w = kb / (rho_c + g.real.astype(rho_c.dtype))
            else:
                inv = lay.inv(rho_c * lay.eye(c_in, bf.dtype) + gram.astype(bf.dtype))
                w = lay.matvec(inv, kb)
            zf = (bf - lay.to_codes(w, k)) / rho_c
        else:  # (ρI + K̂ᴴK̂)⁻¹ b̂ directly
            inv = lay.inv(rho_c * lay.eye(c_out, bf.dtype) + gram.astype(bf.dtype))
            zf = lay.matvec(inv, bf)
        return jnp.fft.irfft2(zf, s=signal_hw, axes=lay.fft_axes).astype(b.dtype)

    return solve
