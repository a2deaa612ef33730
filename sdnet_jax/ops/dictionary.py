"""Linear dictionaries: the convolutional pair, the dense pair, and atom normalisation.

Naming follows the sparse-coding model ``x ≈ A z``:

* **synthesis** ``A z`` maps a code ``z`` to signal space;
* **analysis** ``Aᵀ x`` maps a signal ``x`` to code space (the exact adjoint).

For a convolutional dictionary with kernel ``W`` the analysis op is an ordinary convolution
``Aᵀ x = conv(x, W)`` (so ``W`` has the shape of an ``nn.Conv`` kernel and a CSC layer is a drop-in
replacement for a convolution), and synthesis is its transpose with output shape equal to the signal's.

Layouts: activations NHWC, kernels HWIO, ``dimension_numbers=("NHWC", "HWIO", "NHWC")``.

Both convolutions differentiate like ``lax.conv_general_dilated`` except that their kernel gradient is
a sum of per-chunk kernel gradients (:func:`sdnet_jax.workarounds.kernel_grad_chunk`, see :func:`_conv`):
the same sums in another order, several times faster on XLA's CPU backend for large batches.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from functools import partial

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax
from jax.custom_derivatives import SymbolicZero

from sdnet_jax import checks, workarounds

Padding = str | int | Sequence[tuple[int, int]]
DIMENSION_NUMBERS = ("NHWC", "HWIO", "NHWC")


def _plain_conv(lhs, rhs, strides, padding, lhs_dilation):
    return lax.conv_general_dilated(
        lhs,
        rhs,
        window_strides=strides,
        padding=padding,
        lhs_dilation=lhs_dilation,
        dimension_numbers=DIMENSION_NUMBERS,
    )


@partial(jax.custom_jvp, nondiff_argnums=(2, 3, 4))
def _conv(lhs, rhs, strides, padding, lhs_dilation):
    """``lax.conv_general_dilated`` (NHWC, HWIO) whose kernel gradient is taken chunk by chunk.

    The value and the input gradient are those of the plain convolution. The kernel tangent (linear in
    the kernel) is written as one convolution per chunk of
    :func:`sdnet_jax.workarounds.kernel_grad_chunk` examples, so its transpose, the kernel gradient of
    reverse mode, is a sum of per-chunk kernel-gradient convolutions instead of one over the whole
    batch: the same sums in a different order (a CPU workaround; one chunk elsewhere).
    """
    return _plain_conv(lhs, rhs, strides, padding, lhs_dilation)


def _conv_jvp(strides, padding, lhs_dilation, primals, tangents):
    lhs, rhs = primals
    d_lhs, d_rhs = tangents
    conv = partial(_plain_conv, strides=strides, padding=padding, lhs_dilation=lhs_dilation)
    out = conv(lhs, rhs)
    terms = []
    if not isinstance(d_lhs, SymbolicZero):
        terms.append(conv(d_lhs, rhs))
    if not isinstance(d_rhs, SymbolicZero):
        chunk = workarounds.kernel_grad_chunk(lhs.shape[0])
        chunks = [conv(lhs[i : i + chunk], d_rhs) for i in range(0, lhs.shape[0], chunk)]
        terms.append(chunks[0] if len(chunks) == 1 else jnp.concatenate(chunks))
    return out, sum(terms[1:], terms[0]) if terms else jnp.zeros_like(out)


_conv.defjvp(_conv_jvp, symbolic_zeros=True)


def conv_padding(
    padding: Padding, signal_hw: Sequence[int], kernel_hw: Sequence[int], strides: Sequence[int]
) -> tuple[tuple[int, int], tuple[int, int]]:
    """Explicit ``((lo, hi), (lo, hi))`` padding for a 2-D convolution.

    ``padding`` is ``'SAME'``, ``'VALID'``, an int ``p`` (``p`` on every side, as PyTorch's
    ``padding=p``) or explicit pairs, as for ``flax.linen.Conv``. Padding is with zeros.
    """
    if isinstance(padding, str):
        name = padding.upper()
        checks.check_choice("padding", name, ("SAME", "VALID"))
        pads = lax.padtype_to_pads(tuple(signal_hw), tuple(kernel_hw), tuple(strides), name)
        return tuple((int(lo), int(hi)) for lo, hi in pads)  # type: ignore[return-value]
    if isinstance(padding, int | np.integer):
        if padding < 0:
            raise ValueError(f"padding must be >= 0, got {padding!r}.")
        return ((int(padding), int(padding)),) * 2  # type: ignore[return-value]
    pads = tuple((int(lo), int(hi)) for lo, hi in padding)
    if len(pads) != 2 or min(min(p) for p in pads) < 0:
        raise ValueError(f"padding must be two non-negative (lo, hi) pairs, got {padding!r}.")
    return pads  # type: ignore[return-value]


def code_hw(
    signal_hw: Sequence[int], kernel_hw: Sequence[int], strides: Padding, padding: Padding
) -> tuple[int, int]:
    """Spatial size of the code ``Aᵀ x`` for a signal of spatial size ``signal_hw``."""
    strides = checks.pair("strides", strides)
    pads = conv_padding(padding, signal_hw, kernel_hw, strides)
    out = tuple(
        (n + lo + hi - k) // s + 1
        for n, k, s, (lo, hi) in zip(signal_hw, kernel_hw, strides, pads, strict=True)
    )
    if min(out) < 1:
        raise ValueError(
            f"signal of spatial size {tuple(signal_hw)} is smaller than the kernel {tuple(kernel_hw)} "
            f"with padding {pads}; pad more or use a smaller kernel."
        )
    return out  # type: ignore[return-value]


def _check_conv(x_or_z: jax.Array, kernel: jax.Array, channels_axis: int, what: str) -> None:
    checks.check_rank("kernel", kernel, 4, "kh, kw, c_in, c_out (HWIO)")
    checks.check_rank(what, x_or_z, 4, "N, H, W, C (NHWC)")
    expected = kernel.shape[channels_axis]
    if x_or_z.shape[-1] != expected:
        role = "c_in" if channels_axis == 2 else "c_out"
        raise ValueError(
            f"{what} has {x_or_z.shape[-1]} channels but the kernel of shape {kernel.shape} expects "
            f"{expected} ({role}, kernel axis {channels_axis})."
        )


def conv_analysis(
    x: jax.Array, kernel: jax.Array, *, strides: int | Sequence[int] = 1, padding: Padding = "SAME"
) -> jax.Array:
    """Analysis operator ``Aᵀ x`` of a convolutional dictionary: a plain 2-D convolution.

    ``(Aᵀ x)[n, i, j, o] = Σ_{u, v, c} x_pad[n, s·i + u, s·j + v, c] · W[u, v, c, o]``
    (cross-correlation, as ``lax.conv_general_dilated`` and ``nn.Conv``).

    Args:
      x: signal, shape ``(N, H, W, C_in)``.
      kernel: dictionary, shape ``(kh, kw, C_in, C_out)``; atom ``o`` is ``kernel[..., o]``.
      strides: int or pair.
      padding: ``'SAME'``, ``'VALID'``, int or explicit pairs (see :func:`conv_padding`).

    Returns:
      code-space array of shape ``(N, H', W', C_out)`` with ``(H', W') = code_hw(...)``.
    """
    _check_conv(x, kernel, 2, "x")
    strides = checks.pair("strides", strides)
    pads = conv_padding(padding, x.shape[1:3], kernel.shape[:2], strides)
    code_hw(x.shape[1:3], kernel.shape[:2], strides, pads)
    return _conv(x, kernel.astype(x.dtype), tuple(strides), tuple(pads), (1, 1))


def conv_synthesis(
    z: jax.Array,
    kernel: jax.Array,
    *,
    signal_hw: Sequence[int],
    strides: int | Sequence[int] = 1,
    padding: Padding = "SAME",
) -> jax.Array:
    """Synthesis operator ``A z``: the exact adjoint of :func:`conv_analysis` (a transposed conv).

    ``<conv_analysis(x), z> = <x, conv_synthesis(z)>`` for every ``x`` of spatial size ``signal_hw``.
    With stride ``s`` the code is dilated by ``s`` and convolved with the spatially flipped kernel,
    with input/output channels swapped, padded so that the output has exactly ``signal_hw`` (this
    resolves the odd/even ambiguity that ``output_padding`` resolves in PyTorch).

    Args:
      z: code, shape ``(N, H', W', C_out)``; must equal ``code_hw(signal_hw, ...)``.
      kernel: ``(kh, kw, C_in, C_out)``.
      signal_hw: spatial size ``(H, W)`` of the signal space.
      strides, padding: as for :func:`conv_analysis`.

    Returns:
      signal-space array of shape ``(N, H, W, C_in)``.
    """
    _check_conv(z, kernel, 3, "z")
    strides = checks.pair("strides", strides)
    kh, kw = kernel.shape[:2]
    pads = conv_padding(padding, signal_hw, (kh, kw), strides)
    expected = code_hw(signal_hw, (kh, kw), strides, pads)
    if tuple(z.shape[1:3]) != expected:
        raise ValueError(
            f"z has spatial size {tuple(z.shape[1:3])} but a signal of size {tuple(signal_hw)} "
            f"with this kernel/stride/padding has codes of size {expected}."
        )
    # Transpose of a strided conv (as in JAX's own conv VJP): dilate the code by the stride, pad so
    # the "full" correlation lands on the signal grid, flip the kernel and swap its I/O channels.
    trans_pads = []
    for n, k, s, m, (lo, _) in zip(signal_hw, (kh, kw), strides, expected, pads, strict=True):
        before = k - 1 - lo
        after = n + k - 1 - ((m - 1) * s + 1) - before
        trans_pads.append((before, after))
    flipped = jnp.flip(kernel, axis=(0, 1)).swapaxes(2, 3).astype(z.dtype)
    return _conv(z, flipped, (1, 1), tuple(trans_pads), tuple(strides))


def conv_pair(
    kernel: jax.Array,
    *,
    signal_hw: Sequence[int],
    strides: int | Sequence[int] = 1,
    padding: Padding = "SAME",
) -> tuple[Callable[[jax.Array], jax.Array], Callable[[jax.Array], jax.Array]]:
    """``(analysis, synthesis)`` closures of one convolutional dictionary, for the solvers.

    ``analysis(x) = conv_analysis(x, kernel, ...)`` and ``synthesis(z) = conv_synthesis(z, kernel,
    signal_hw=signal_hw, ...)``. Swap the two to get the *sparse deconvolution* pair, whose code lives
    on the finer grid (CSC-CTRL's decoder).
    """
    analysis = partial(conv_analysis, kernel=kernel, strides=strides, padding=padding)
    synthesis = partial(
        conv_synthesis, kernel=kernel, signal_hw=tuple(signal_hw), strides=strides, padding=padding
    )
    return analysis, synthesis


def dense_analysis(x: jax.Array, dictionary: jax.Array) -> jax.Array:
    """Dense analysis ``Aᵀ x = x @ D`` for a dictionary ``D`` of shape ``(m, n)`` (atoms are columns).

    ``x`` has shape ``(..., m)``; the result has shape ``(..., n)``.
    """
    checks.check_rank("dictionary", dictionary, 2, "signal_dim m, num_atoms n")
    if x.shape[-1] != dictionary.shape[0]:
        raise ValueError(
            f"x has last dimension {x.shape[-1]} but the dictionary of shape {dictionary.shape} "
            f"expects signals of dimension {dictionary.shape[0]}."
        )
    return x @ dictionary.astype(x.dtype)


def dense_synthesis(z: jax.Array, dictionary: jax.Array) -> jax.Array:
    """Dense synthesis ``A z = z @ Dᵀ``: ``z`` of shape ``(..., n)`` to ``(..., m)``."""
    checks.check_rank("dictionary", dictionary, 2, "signal_dim m, num_atoms n")
    if z.shape[-1] != dictionary.shape[1]:
        raise ValueError(
            f"z has last dimension {z.shape[-1]} but the dictionary of shape {dictionary.shape} "
            f"has {dictionary.shape[1]} atoms."
        )
    return z @ dictionary.T.astype(z.dtype)


def dense_pair(
    dictionary: jax.Array,
) -> tuple[Callable[[jax.Array], jax.Array], Callable[[jax.Array], jax.Array]]:
    """``(analysis, synthesis)`` closures of a dense dictionary (SDNet's 1-D case)."""
    return partial(dense_analysis, dictionary=dictionary), partial(
        dense_synthesis, dictionary=dictionary
    )


def normalize_atoms(dictionary: jax.Array, eps: float = 1e-12) -> jax.Array:
    """Projects every atom onto the unit ℓ2 sphere: ``W[..., o] / max(‖W[..., o]‖₂, eps)``.

    Atoms are slices along the *last* axis: ``W[:, :, :, o]`` of an HWIO conv kernel (its
    ``kh·kw·C_in`` entries) or column ``o`` of a dense ``(m, n)`` dictionary. This is the projection of
    projected SGD: apply it at init and after every optimizer update.
    """
    if np.ndim(dictionary) < 2:
        raise ValueError(
            f"dictionary must have rank >= 2 with atoms along the last axis, got {np.shape(dictionary)}."
        )
    axes = tuple(range(dictionary.ndim - 1))
    norm = jnp.sqrt(jnp.sum(jnp.square(dictionary), axis=axes, keepdims=True))
    return dictionary / jnp.maximum(norm, eps)
