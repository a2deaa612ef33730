"""Encoder/decoder pairs for closed-loop transcription (CTRL): CSC-CTRL and its DCGAN baseline.

CTRL learns an encoder ``f: x ↦ z`` onto the unit sphere of ``R^d`` and a decoder ``g: z ↦ x̂``
through the closed loop ``Z = f(X)``, ``X̂ = g(Z)``, ``Ẑ = f(X̂)`` and a rate-reduction game
(:mod:`sdnet_jax.ops.rates`; the encoder maximises, the decoder minimises). Images are in
``[-1, 1]`` (so every decoder ends with ``tanh``). Every module is NHWC, called as
``module(x, train=False)``; ``train=True`` uses batch statistics (make ``batch_stats`` and, for the
CSC pair, ``power_iteration`` mutable). Computation runs in ``dtype`` (float32 or bfloat16);
parameters are float32, and outputs are float32.

**CSC-CTRL** (:class:`CSCEncoder`, :class:`CSCDecoder`). The encoder is a stack of convolutional
sparse coding stages. Stage ``l`` (``channels[l]`` atoms, stride ``s_l``, 'SAME' padding) outputs::

    z_l = argmin_{z ≥ 0} λ‖z‖₁ + ½‖z_{l−1} − A_l z‖²,    A_l = (stride-s_l conv)ᵀ,

(``z ≥ 0`` with ``nonneg``, the default), i.e. :class:`~sdnet_jax.models.csc.CSCConv` with
``transpose=False``: the code lives on the coarse grid (``⌈H / s_l⌉``) and ``A_l`` synthesises the
finer signal ``z_{l−1}`` from it (``z_0 = x``). As in SDNet each stage is followed by BatchNorm and
no ReLU (the codes are already non-negative). The last code is flattened and mapped by a dense
layer to ``d = feature_dim``, and each feature is put on the sphere, ``z / max(‖z‖, eps)``.

The decoder mirrors it with its own dictionaries (not tied to the encoder's): a dense layer from
``R^d`` to the coarsest code's shape ``(H / Πs, W / Πs, channels[0])``, BatchNorm, then *sparse
deconvolutions* going up in resolution. Decoder stage ``l`` (``channels[l]`` atoms, stride ``s_l``)
is ``CSCConv(transpose=True)``::

    z_l = argmin_{z ≥ 0} λ‖z‖₁ + ½‖z_{l−1} − B_l z‖²,    B_l = stride-s_l conv,

whose code ``z_l`` lives on the ``s_l``-times *finer* grid (a drop-in for ``nn.ConvTranspose``),
each followed by BatchNorm. The image itself is not sparse nor non-negative, so the last stage is
not a sparse-coding layer but the plain linear synthesis ``x̂ = tanh(D z_L)`` with ``D`` a stride-
``s`` transposed convolution (``nn.ConvTranspose``; the counterpart of the encoder's first
dictionary, which synthesises the image from its first code). ``D``'s parameter is named ``kernel``,
so :func:`~sdnet_jax.models.csc.project_dictionaries` leaves it free; the sparse-coding dictionaries
(``dictionary``) of both networks must be projected after every optimizer step.

With ``channels = (c_1, …, c_L)`` for the encoder, the mirrored decoder has
``channels = (c_L, …, c_1)`` and ``strides`` reversed: ``L − 1`` sparse deconvolutions
(``c_L → c_{L−1} → … → c_1``) then the image synthesis ``c_1 → C``; both networks change the
resolution by ``Πs`` in total. The decoder's base resolution is ``(H / Πs, W / Πs)``, which must be
exact (28×28 with strides (2, 2): 28 → 14 → 7; with (2, 2, 2) a ``ValueError``). The encoder uses
'SAME' padding and also accepts other sizes (``⌈H / s⌉`` per stage).

**DCGAN baseline** (:class:`DCGANEncoder`, :class:`DCGANDecoder`), the conventional CTRL networks
(as in the CTRL papers' DCGAN-style nets, with the 4×4 'valid' conv / transposed conv at the
bottleneck written as a dense layer): encoder = ``[conv k×k/s → BN (not on the first stage) →
LeakyReLU(0.2)]`` per entry of ``channels``, flatten, dense to ``d``, unit sphere; decoder = dense →
reshape → BN → ReLU, ``[transposed conv k×k/s → BN → ReLU]`` for ``channels[1:]``, transposed conv
to the image channels, ``tanh``. Same attributes and shape conventions as the CSC pair, so the pairs
are interchangeable. Convolutions are bias-free with ``N(0, 0.02)`` weights (DCGAN).

Both encoders return, with ``return_codes=True``, each stage's output before its BatchNorm (the
CSC stage's sparse code ``z_l``, the DCGAN stage's convolution) beside ``z``: ``(z, codes)``, for
the sample-wise code consistency of :mod:`sdnet_jax.train.ctrl`.

:func:`get_ctrl_models` builds either pair from the encoder's ``channels`` and an ``image_shape``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from functools import partial
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from sdnet_jax.checks import check_rank
from sdnet_jax.models.csc import CSCConv, csc_layer

ModuleDef = Callable[..., nn.Module]
dcgan_init = nn.initializers.normal(0.02)


def sphere_normalize(z: jax.Array, eps: float = 1e-8) -> jax.Array:
    """Each row of ``z`` divided by ``max(‖row‖, eps)``, in float32 (finite gradients at 0)."""
    z = z.astype(jnp.float32)
    sq = jnp.sum(jnp.square(z), axis=-1, keepdims=True)
    return z * jax.lax.rsqrt(jnp.maximum(sq, eps * eps))


def _strides(channels: Sequence[int], strides: Sequence[int] | None) -> tuple[int, ...]:
    """``strides`` as a tuple (default: 2 per stage), checked against ``channels``."""
    if len(channels) < 1:
        raise ValueError("channels must name at least one stage, got ().")
    if strides is None:
        return (2,) * len(channels)
    strides = tuple(int(s) for s in strides)
    if len(strides) != len(channels) or min(strides) < 1:
        raise ValueError(
            f"strides must give one positive stride per stage of channels {tuple(channels)}, "
            f"got {strides}."
        )
    return strides


def base_resolution(image_shape: Sequence[int], strides: Sequence[int]) -> tuple[int, int]:
    """The decoder's starting spatial size ``(H / Πs, W / Πs)``.

    Raises:
      ValueError: if ``image_shape`` is not ``(H, W, C)`` or ``Πs`` does not divide ``H`` and ``W``.
    """
    if len(image_shape) != 3 or min(image_shape) < 1:
        raise ValueError(f"image_shape must be (H, W, C) positive ints, got {tuple(image_shape)}.")
    factor = 1
    for s in strides:
        factor *= int(s)
    h, w = int(image_shape[0]), int(image_shape[1])
    if h % factor or w % factor:
        raise ValueError(
            f"image size {(h, w)} is not divisible by the total upsampling factor {factor} of "
            f"strides {tuple(strides)}; use fewer stages, other strides or another image size."
        )
    return h // factor, w // factor


def _norm(train: bool, dtype: Any) -> ModuleDef:
    return partial(
        nn.BatchNorm, use_running_average=not train, momentum=0.9, epsilon=1e-5, dtype=dtype
    )


def _check_features(z: jax.Array, feature_dim: int) -> None:
    check_rank("z", z, 2, "N, feature_dim")
    if z.shape[-1] != feature_dim:
        raise ValueError(f"z must have {feature_dim} features, got shape {z.shape}.")


class CSCEncoder(nn.Module):
    """CSC-CTRL encoder: CSC stages (each + BN), dense to ``feature_dim``, unit sphere.

    Attributes:
      channels: atoms per CSC stage, e.g. ``(64, 128, 256)``.
      strides: stride per stage (default 2 for every stage).
      kernel_size: atom size (4 or 3).
      feature_dim: ``d``, the dimension of the features.
      csc: the CSC layer constructor (a ``functools.partial`` of :class:`CSCConv` carrying λ,
        iterations, solver, …).
      dtype: computation dtype; parameters stay float32.

    Returns ``(N, feature_dim)`` float32 unit vectors (and the per-stage codes before BN with
    ``return_codes=True``).
    """

    channels: Sequence[int] = (64, 128, 256)
    strides: Sequence[int] | None = None
    kernel_size: int = 4
    feature_dim: int = 128
    csc: ModuleDef = CSCConv
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x: jax.Array, train: bool = False, return_codes: bool = False):
        check_rank("x", x, 4, "N, H, W, C (NHWC)")
        strides = _strides(self.channels, self.strides)
        norm = _norm(train, self.dtype)
        csc = partial(self.csc, dtype=self.dtype)
        x = x.astype(self.dtype)
        codes = []
        for i, (features, s) in enumerate(zip(self.channels, strides, strict=True)):
            x = csc(
                features, self.kernel_size, s, padding="SAME", transpose=False, name=f"csc{i + 1}"
            )(x)
            codes.append(x)  # the sparse code before BN
            x = norm(name=f"bn{i + 1}")(x)
        x = x.reshape(x.shape[0], -1)
        z = sphere_normalize(nn.Dense(self.feature_dim, dtype=self.dtype, name="head")(x))
        return (z, tuple(codes)) if return_codes else z


class CSCDecoder(nn.Module):
    """CSC-CTRL decoder: dense → BN, sparse deconvolutions (each + BN), linear synthesis, tanh.

    Attributes:
      channels: the encoder's ``channels`` reversed, e.g. ``(256, 128, 64)``: ``channels[0]`` are
        the channels of the dense layer's output, ``channels[1:]`` the atoms of the sparse
        deconvolutions; a last transposed conv synthesises the image from ``channels[-1]``.
      image_shape: ``(H, W, C)`` of the output images.
      strides: upsampling factor per stage, in decoder order (default 2 for every stage);
        ``H / Πs`` and ``W / Πs`` must be integers.
      kernel_size: atom size (4 or 3).
      feature_dim: ``d``.
      csc: the CSC layer constructor (``transpose=True`` is set here).
      dtype: computation dtype; parameters stay float32.

    Returns ``(N, H, W, C)`` float32 images in ``[-1, 1]``.
    """

    channels: Sequence[int] = (256, 128, 64)
    image_shape: Sequence[int] = (32, 32, 3)
    strides: Sequence[int] | None = None
    kernel_size: int = 4
    feature_dim: int = 128
    csc: ModuleDef = CSCConv
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, z: jax.Array, train: bool = False) -> jax.Array:
        _check_features(z, self.feature_dim)
        strides = _strides(self.channels, self.strides)
        h, w = base_resolution(self.image_shape, strides)
        norm = _norm(train, self.dtype)
        csc = partial(self.csc, dtype=self.dtype)
        x = nn.Dense(h * w * self.channels[0], dtype=self.dtype, name="stem")(z.astype(self.dtype))
        x = norm(name="bn0")(x.reshape(x.shape[0], h, w, self.channels[0]))
        for i, (features, s) in enumerate(zip(self.channels[1:], strides[:-1], strict=True)):
            x = csc(
                features, self.kernel_size, s, padding="SAME", transpose=True, name=f"csc{i + 1}"
            )(x)
            x = norm(name=f"bn{i + 1}")(x)
        x = nn.ConvTranspose(
            self.image_shape[-1],
            (self.kernel_size, self.kernel_size),
            (strides[-1], strides[-1]),
            padding="SAME",
            use_bias=False,
            dtype=self.dtype,
            name="synthesis",
        )(x)
        return jnp.tanh(x.astype(jnp.float32))


class DCGANEncoder(nn.Module):
    """DCGAN-style CTRL encoder: ``[conv → BN (not first) → LeakyReLU(0.2)]``, dense, unit sphere.

    Attributes as :class:`CSCEncoder` (``csc`` is accepted and unused, for interchangeability).
    """

    channels: Sequence[int] = (64, 128, 256)
    strides: Sequence[int] | None = None
    kernel_size: int = 4
    feature_dim: int = 128
    csc: ModuleDef = CSCConv
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x: jax.Array, train: bool = False, return_codes: bool = False):
        check_rank("x", x, 4, "N, H, W, C (NHWC)")
        strides = _strides(self.channels, self.strides)
        norm = _norm(train, self.dtype)
        k = (self.kernel_size, self.kernel_size)
        x = x.astype(self.dtype)
        codes = []
        for i, (features, s) in enumerate(zip(self.channels, strides, strict=True)):
            x = nn.Conv(
                features,
                k,
                (s, s),
                padding="SAME",
                use_bias=False,
                kernel_init=dcgan_init,
                dtype=self.dtype,
                name=f"conv{i + 1}",
            )(x)
            codes.append(x)  # the convolution's output before BN
            if i > 0:
                x = norm(name=f"bn{i + 1}")(x)
            x = nn.leaky_relu(x, 0.2)
        x = x.reshape(x.shape[0], -1)
        z = sphere_normalize(nn.Dense(self.feature_dim, dtype=self.dtype, name="head")(x))
        return (z, tuple(codes)) if return_codes else z


class DCGANDecoder(nn.Module):
    """DCGAN-style CTRL decoder: dense → BN → ReLU, ``[conv-T → BN → ReLU]``, conv-T, tanh.

    Attributes as :class:`CSCDecoder` (``csc`` is accepted and unused, for interchangeability).
    """

    channels: Sequence[int] = (256, 128, 64)
    image_shape: Sequence[int] = (32, 32, 3)
    strides: Sequence[int] | None = None
    kernel_size: int = 4
    feature_dim: int = 128
    csc: ModuleDef = CSCConv
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, z: jax.Array, train: bool = False) -> jax.Array:
        _check_features(z, self.feature_dim)
        strides = _strides(self.channels, self.strides)
        h, w = base_resolution(self.image_shape, strides)
        norm = _norm(train, self.dtype)
        k = (self.kernel_size, self.kernel_size)
        deconv = partial(
            nn.ConvTranspose,
            kernel_size=k,
            padding="SAME",
            use_bias=False,
            kernel_init=dcgan_init,
            dtype=self.dtype,
        )
        x = nn.Dense(h * w * self.channels[0], dtype=self.dtype, name="stem")(z.astype(self.dtype))
        x = x.reshape(x.shape[0], h, w, self.channels[0])
        x = nn.relu(norm(name="bn0")(x))
        for i, (features, s) in enumerate(zip(self.channels[1:], strides[:-1], strict=True)):
            x = deconv(features, strides=(s, s), name=f"deconv{i + 1}")(x)
            x = nn.relu(norm(name=f"bn{i + 1}")(x))
        s = strides[-1]
        x = deconv(self.image_shape[-1], strides=(s, s), name="synthesis")(x)
        return jnp.tanh(x.astype(jnp.float32))


CTRL_MODELS: dict[str, tuple[type[nn.Module], type[nn.Module]]] = {
    "csc": (CSCEncoder, CSCDecoder),
    "dcgan": (DCGANEncoder, DCGANDecoder),
}


def get_ctrl_models(
    name: str,
    *,
    image_shape: Sequence[int],
    feature_dim: int = 128,
    channels: Sequence[int] = (64, 128, 256),
    strides: Sequence[int] | None = None,
    kernel_size: int = 4,
    csc: dict[str, Any] | None = None,
    dtype: Any = jnp.float32,
) -> tuple[nn.Module, nn.Module]:
    """Builds a mirrored CTRL ``(encoder, decoder)`` pair.

    Args:
      name: ``'csc'`` (CSC-CTRL) or ``'dcgan'`` (the DCGAN-style baseline).
      image_shape: ``(H, W, C)``; ``H`` and ``W`` must be divisible by the product of ``strides``.
      feature_dim: ``d``.
      channels: the **encoder's** channels per stage; the decoder gets them reversed.
      strides: the encoder's strides (default 2 per stage); the decoder gets them reversed.
      kernel_size: atom / kernel size of every stage.
      csc: options of every CSC layer (keys in ``sdnet_jax.models.CSC_OPTIONS``, e.g.
        ``{'lam': 0.1, 'num_iters': 2}``); checked, and unused by ``'dcgan'``.
      dtype: computation dtype (float32 or bfloat16).

    Raises:
      ValueError: for an unknown name or CSC option (naming the valid ones), or an image size that
        the strides do not divide.
    """
    if name not in CTRL_MODELS:
        raise ValueError(f"unknown CTRL model {name!r}; valid names: {sorted(CTRL_MODELS)}.")
    layer = csc_layer(csc)
    channels = tuple(int(c) for c in channels)
    enc_strides = _strides(channels, strides)
    base_resolution(image_shape, enc_strides)  # fail now rather than at init
    encoder_cls, decoder_cls = CTRL_MODELS[name]
    common = dict(
        kernel_size=kernel_size,
        feature_dim=feature_dim,
        csc=layer,
        dtype=dtype,
    )
    encoder = encoder_cls(channels=channels, strides=enc_strides, **common)
    decoder = decoder_cls(
        channels=channels[::-1],
        strides=enc_strides[::-1],
        image_shape=tuple(int(n) for n in image_shape),
        **common,
    )
    return encoder, decoder


__all__ = [
    "CTRL_MODELS",
    "CSCDecoder",
    "CSCEncoder",
    "DCGANDecoder",
    "DCGANEncoder",
    "base_resolution",
    "get_ctrl_models",
    "sphere_normalize",
]
