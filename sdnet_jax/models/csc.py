"""``CSCConv``: a convolutional-sparse-coding layer that is a drop-in replacement for ``nn.Conv``.

The layer's output is the sparse code of its input against a learned convolutional dictionary::

    z = argmin_z λ‖z‖₁ + μ/2‖z‖² + ½‖x − A z‖²   (z ≥ 0 when nonneg)

solved by ``num_iters`` unrolled iterations of :func:`sdnet_jax.ops.solve_lasso` with step
``0.9 / L``, ``L = ‖A‖²``. With ``transpose=False`` ``Aᵀ`` is a convolution with the layer's
dictionary (so the code has the resolution of an ``nn.Conv`` output); with ``transpose=True`` the
operator pair is swapped — the synthesis ``A`` is the strided convolution, the code lives on the finer
grid, and the layer is a *sparse deconvolution*, a drop-in replacement for ``nn.ConvTranspose``
(CSC-CTRL's decoder).

Variables:

* ``params/dictionary``: shape ``(kh, kw, C_in, features)`` in both modes (``nn.Conv`` /
  ``nn.ConvTranspose`` layout); atom ``o`` is ``dictionary[..., o]``, kept at unit ℓ2 norm:
  initialised normalised, and :func:`project_dictionaries` must be applied to the parameters after
  every optimizer update (projected SGD, as SDNet does).
* ``power_iteration/u`` (signal-shaped ``(1, H, W, C_in)``) and ``power_iteration/lipschitz``:
  the warm-started power-iteration state. Initialised with ``init_power_iters`` iterations; updated by
  ``power_iters`` more per call when the collection is mutable (training;
  ``2 * power_iters + 1`` batch-1 convolutions, unrolled, no gradient); frozen otherwise (evaluation is
  deterministic). Saved with checkpoints like ``batch_stats``.
* ``csc_stats/recon_error`` and ``csc_stats/l1`` (per example ``‖x − A z‖²`` and ``‖z‖₁``): sown
  only when the caller makes ``csc_stats`` mutable, so they cost nothing otherwise.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from functools import partial
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from sdnet_jax import ops
from sdnet_jax.checks import check_rank, pair
from sdnet_jax.ops.dictionary import Padding

CSC_OPTIONS = (
    "lam",
    "num_iters",
    "method",
    "nonneg",
    "mu",
    "grad",
    "power_iters",
    "init_power_iters",
    "step_scale",
)
STATE = "power_iteration"
STATS = "csc_stats"
DICTIONARY = "dictionary"


def normalized_init(base: Callable[..., jax.Array] | None = None) -> Callable[..., jax.Array]:
    """Initializer that draws with ``base`` (default LeCun normal) and projects every atom (last
    axis) to unit norm."""
    base = base or nn.initializers.lecun_normal()

    def init(key, shape, dtype=jnp.float32):
        return ops.normalize_atoms(base(key, shape, dtype))

    return init


def csc_layer(options: dict[str, Any] | None = None) -> Callable[..., nn.Module]:
    """``functools.partial(CSCConv, **options)`` after checking the option names.

    Raises:
      ValueError: for an option not in ``CSC_OPTIONS``, naming the valid ones.
    """
    options = dict(options or {})
    unknown = sorted(set(options) - set(CSC_OPTIONS))
    if unknown:
        raise ValueError(f"unknown CSC option(s) {unknown}; valid: {list(CSC_OPTIONS)}.")
    return partial(CSCConv, **options)


def project_dictionaries(params: Any) -> Any:
    """Projects every CSC dictionary in a parameter tree onto unit-norm atoms.

    The projection step of projected SGD: call it on the new parameters after every optimizer update
    (``params = project_dictionaries(optax.apply_updates(params, updates))``). Leaves named
    ``dictionary`` are CSC dictionaries; every other leaf is returned unchanged.
    """

    def project(path, leaf):
        name = getattr(path[-1], "key", None) if path else None
        return ops.normalize_atoms(leaf) if name == DICTIONARY else leaf

    return jax.tree_util.tree_map_with_path(project, params)


def operator_pair(
    dictionary: jax.Array,
    in_hw: tuple[int, int],
    *,
    strides: int | Sequence[int] = 1,
    padding: Padding = "SAME",
    transpose: bool = False,
) -> tuple[Callable[[jax.Array], jax.Array], Callable[[jax.Array], jax.Array], tuple[int, int]]:
    """``(analysis, synthesis, out_hw)`` of a CSC layer whose input has spatial size ``in_hw``.

    ``analysis`` maps the layer's input (the signal) to code space (``Aᵀ``), ``synthesis`` maps a
    code of spatial size ``out_hw`` back to the input (``A z``, the exact adjoint). With
    ``transpose=False`` ``Aᵀ`` is the strided convolution with ``dictionary`` (``(kh, kw, C_in,
    atoms)``); with ``transpose=True`` the pair is swapped (a sparse deconvolution: the code lives
    on the ``strides`` times finer grid). :class:`CSCConv` solves its lasso with this pair; the
    hidden-feature visualisation (:mod:`sdnet_jax.models.inverse`) applies its ``synthesis``.
    """
    strides = pair("strides", strides)
    kernel_hw = dictionary.shape[:2]
    in_hw = tuple(in_hw)
    if not transpose:
        out_hw = ops.code_hw(in_hw, kernel_hw, strides, padding)
        analysis, synthesis = ops.conv_pair(
            dictionary, signal_hw=in_hw, strides=strides, padding=padding
        )
        return analysis, synthesis, out_hw
    # Sparse deconvolution: the synthesis is the strided conv from the fine code to the input.
    out_hw = tuple(n * s for n, s in zip(in_hw, strides, strict=True))
    if ops.code_hw(out_hw, kernel_hw, strides, padding) != in_hw:
        raise ValueError(
            f"transpose=True with padding {padding!r} cannot map {in_hw} to {out_hw}; use "
            "padding='SAME'."
        )
    kernel = jnp.swapaxes(dictionary, 2, 3)  # (kh, kw, features, C_in): fine code -> input
    fine, coarse = ops.conv_pair(kernel, signal_hw=out_hw, strides=strides, padding=padding)
    return coarse, fine, out_hw


class CSCConv(nn.Module):
    """Convolutional sparse coding layer (SDNet), NHWC in and out.

    A drop-in replacement for ``nn.Conv`` (same ``features``, ``kernel_size``, ``strides``,
    ``padding``; a kernel-shaped ``dictionary`` parameter) whose output is the sparse code of its
    input. Using it in your own model takes three things ``nn.Conv`` does not need:

    * **Its collections.** ``power_iteration`` (``u``, ``lipschitz``: the warm-started estimate of
      ``L = ‖A‖²`` that sets the step ``step_scale / L``) is layer *state*, like ``batch_stats``:
      in training pass ``mutable=['batch_stats', 'power_iteration']`` to ``apply`` and keep the
      returned values; in evaluation leave it immutable and it is frozen (deterministic). Save it
      with the checkpoint. ``csc_stats`` (per example ``recon_error = ‖x − A z‖²`` and
      ``l1 = ‖z‖₁``) is sown only when the caller makes that collection mutable
      (``mutable=['csc_stats']``), so it costs nothing otherwise.
    * **The projection.** Apply :func:`project_dictionaries` to the parameters after every optimizer
      update (projected SGD keeps the atoms at unit norm, as SDNet does).
    * **Batch norm after it with momentum 0.9.** The codes are small (mean ``|z|`` about 0.005 in
      a small digits model) and their variance of order 1e-4, while a running variance starts at
      1 and forgets that start only as ``momentumᵗ``. With Flax's default ``nn.BatchNorm(momentum=
      0.99)`` 0.99¹⁰⁰ ≈ 0.37 of it is left after 100 steps, so evaluation mode divides the codes by
      a standard deviation tens of times too large: that model classified at chance in evaluation
      mode at every λ (9 %), and at 82 % with ``momentum=0.9`` (PyTorch's default, what SDNet and
      this project's models use). The README's drop-in example is a complete, tested program.

    Attributes:
      features: number of atoms (output channels).
      kernel_size: int or pair.
      strides: int or pair.
      padding: ``'SAME'``, ``'VALID'``, int or explicit pairs (as ``nn.Conv``).
      lam: sparsity weight λ (SDNet: 0.1); can be overridden per call (test-time λ).
      num_iters: unrolled iterations (SDNet: 2).
      method: ``'fista'`` (textbook, default), ``'ista'`` or ``'sdnet'`` (SDNet's variant).
      nonneg: non-negative codes (SDNet's default).
      mu: elastic-net weight.
      grad: ``'unrolled'`` or ``'implicit'``.
      transpose: swap the operator pair: a sparse deconvolution whose output is ``strides`` times
        larger than its input (with ``'SAME'`` padding), like ``nn.ConvTranspose``.
      power_iters: warm-started power iterations per training call.
      init_power_iters: power iterations at initialisation.
      step_scale: step size = ``step_scale / L`` (SDNet: 0.9).
      dtype: computation dtype (``None``: the input's); the power iteration runs in float32.
      param_dtype: dtype of the dictionary.
    """

    features: int
    kernel_size: int | Sequence[int]
    strides: int | Sequence[int] = 1
    padding: Padding = "SAME"
    lam: float = 0.1
    num_iters: int = 2
    method: str = "fista"
    nonneg: bool = True
    mu: float = 0.0
    grad: str = "unrolled"
    transpose: bool = False
    power_iters: int = 2
    init_power_iters: int = 50
    step_scale: float = 0.9
    dtype: Any = None
    param_dtype: Any = jnp.float32
    dictionary_init: Callable[..., jax.Array] = normalized_init()

    def _operators(self, dictionary: jax.Array, in_hw: tuple[int, int]):
        return operator_pair(
            dictionary, in_hw, strides=self.strides, padding=self.padding, transpose=self.transpose
        )

    @nn.compact
    def __call__(self, x: jax.Array, *, lam: float | jax.Array | None = None) -> jax.Array:
        """Sparse code of ``x`` (``(N, H, W, C_in)``); ``lam`` overrides ``self.lam`` for this call."""
        check_rank("x", x, 4, "N, H, W, C (NHWC)")
        kernel_hw = pair("kernel_size", self.kernel_size)
        in_hw = tuple(x.shape[1:3])
        dictionary = self.param(
            DICTIONARY,
            self.dictionary_init,
            (*kernel_hw, x.shape[-1], self.features),
            self.param_dtype,
        )

        # Step size from the warm-started power iteration, in float32, on the dictionary as stored
        # (a constant for differentiation: no tangent is traced through the iterations).
        frozen = jax.lax.stop_gradient(dictionary).astype(jnp.float32)
        analysis32, synthesis32, _ = self._operators(frozen, in_hw)
        signal_shape = (1, *in_hw, x.shape[-1])
        u = self.variable(
            STATE, "u", lambda: jax.random.normal(self.make_rng("params"), signal_shape)
        )
        lipschitz = self.variable(STATE, "lipschitz", lambda: jnp.ones((), jnp.float32))
        if u.value.shape != signal_shape:
            raise ValueError(
                f"{self.name or 'CSCConv'} was initialised for inputs of spatial size "
                f"{u.value.shape[1:3]} but is called on {in_hw}; its step size (power-iteration "
                "state) is specific to the input size. Initialise the model at this size."
            )
        if self.is_initializing():
            lipschitz.value, u.value = ops.power_iteration(
                analysis32, u.value, num_iters=self.init_power_iters, synthesis=synthesis32
            )
        elif self.is_mutable_collection(STATE):
            lipschitz.value, u.value = ops.power_iteration(
                analysis32, u.value, num_iters=self.power_iters, synthesis=synthesis32
            )
        step = self.step_scale / lipschitz.value

        dtype = self.dtype or x.dtype
        x = x.astype(dtype)
        analysis, synthesis, _ = self._operators(dictionary.astype(dtype), in_hw)
        z = ops.solve_lasso(
            x,
            analysis,
            synthesis=synthesis,
            lam=self.lam if lam is None else lam,
            step=step,
            num_iters=self.num_iters,
            method=self.method,
            nonneg=self.nonneg,
            mu=self.mu,
            grad=self.grad,
        )
        if self.is_mutable_collection(STATS) and not self.is_initializing():
            residual = (x - synthesis(z)).astype(jnp.float32)
            self.sow(STATS, "recon_error", jnp.sum(jnp.square(residual), axis=(1, 2, 3)))
            self.sow(STATS, "l1", jnp.sum(jnp.abs(z.astype(jnp.float32)), axis=(1, 2, 3)))
        return z
