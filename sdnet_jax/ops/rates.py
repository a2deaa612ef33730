"""Coding rates, rate reduction (MCR²) and the CTRL closed-loop objectives.

Features ``z`` have shape ``(m, d)``: ``m`` samples (rows, typically each on the unit sphere) of
dimension ``d``. ``eps_sq`` is ε² (the reference code names it ``eps`` but it multiplies as ε²)::

    R(Z)        = ½ logdet(I_d + d/(m ε²) ZᵀZ)                                (coding rate)
    Rc(Z, Π)    = Σ_j (m_j / 2m) logdet(I_d + d/(m_j ε²) Z_jᵀZ_j)             (class coding rate)
    ΔR(Z, Π)    = R(Z) − Rc(Z, Π)                                            (rate reduction)
    ΔR(Z, Ẑ)    = R(Z ∪ Ẑ) − ½(R(Z) + R(Ẑ))                                 (pairwise rate reduction)

``Z_j`` are the rows with label ``j`` and ``m_j`` their count; a class with ``m_j = 0`` contributes
exactly 0. Per-class quantities use masks (``Z_jᵀZ_j = Zᵀ diag(1[y = j]) Z``), never boolean indexing,
so shapes are static and everything jits, vmaps and runs on sharded global arrays (a global-view
``jit`` over a batch sharded on a mesh computes the rates of the global batch).

Numerics: each log-determinant is of ``I + c·G`` with ``G`` a Gram matrix (PSD) and ``c ≥ 0``, so the
matrix is SPD with eigenvalues ≥ 1; it is taken through a Cholesky factor (``2 Σ log diag L``), which
is finite, with finite gradients, even for rank-deficient or duplicated features (the reference code's
``torch.logdet`` / ``slogdet`` NaNs do not occur). The smaller Gram matrix is used (Sylvester:
``logdet(I_d + c ZᵀZ) = logdet(I_m + c Z Zᵀ)``): ``d × d`` when ``d ≤ m``, else ``m × m``. Inputs are
computed in at least float32 (bfloat16/float16 features are upcast).

CTRL (closed loop ``Z = f(X)``, ``X̂ = g(Z)``, ``Ẑ = f(X̂)``; the encoder maximises, the decoder
minimises):

* multi-class: ``T = ΔR(Z, Π) + ΔR(Ẑ, Π) + Σ_j ΔR(Z_j, Ẑ_j)``;
* binary: ``T = ΔR(Z, Ẑ) = R(Z ∪ Ẑ) − ½(R(Z) + R(Ẑ))`` over the whole batch;
* unsupervised sample-wise: ``T = R(Z) + ΔR(Z, Ẑ) − λ Σ_i D(z_i, ẑ_i)``.

The pairwise ``½`` form is the two-class ``ΔR`` of ``Z ∪ Ẑ`` with labels "real"/"reconstructed" when
the two sets have the same size (as in CTRL, where ``Ẑ`` is the re-encoding of ``Z``); for sets of
different sizes the ``½`` weights are kept (the two-class ``ΔR`` would weigh them ``m/(m+m')``).
"""

from __future__ import annotations

from functools import partial

import jax
import jax.numpy as jnp
import numpy as np

from sdnet_jax import checks

SAMPLE_DISTANCES = ("cosine", "l2")  # D(z_i, ẑ_i) of sample_distance


# ----------------------------------------------------------------------------------------------
# argument checks (static, before tracing)


def _check_features(name: str, z) -> tuple[int, int]:
    checks.check_rank(name, z, 2, "samples, dims")
    m, d = np.shape(z)
    if m < 1 or d < 1:
        raise ValueError(f"{name} must have at least one sample and one dim, got shape {(m, d)}.")
    return m, d


def _check_labels(labels, m: int, num_classes: int) -> None:
    if np.shape(labels) != (m,):
        raise ValueError(
            f"labels must have shape ({m},) (one per row of z), got {np.shape(labels)}."
        )
    if not jnp.issubdtype(jnp.result_type(labels), jnp.integer):
        raise ValueError(f"labels must be integer class ids, got dtype {jnp.result_type(labels)}.")
    arr = checks.concrete_value(labels)
    if arr is not None and arr.size and (arr.min() < 0 or arr.max() >= num_classes):
        raise ValueError(
            f"labels must lie in [0, num_classes) = [0, {num_classes}), "
            f"got values in [{arr.min()}, {arr.max()}]."
        )


def _check_common(z, eps_sq, labels=None, num_classes=None) -> tuple[int, int, int | None]:
    m, d = _check_features("z", z)
    checks.check_positive("eps_sq", eps_sq)
    if num_classes is not None:
        num_classes = checks.check_int("num_classes", num_classes, minimum=1)
        _check_labels(labels, m, num_classes)
    return m, d, num_classes


def _check_pair(z, z_hat, *, same_shape: bool) -> None:
    _, d = _check_features("z", z)
    m_hat, d_hat = _check_features("z_hat", z_hat)
    if same_shape and np.shape(z_hat) != np.shape(z):
        raise ValueError(
            f"z_hat must have the shape of z {tuple(np.shape(z))}, got {tuple(np.shape(z_hat))}."
        )
    if d_hat != d:
        raise ValueError(f"z_hat must have d = {d} columns like z, got shape {(m_hat, d_hat)}.")


# ----------------------------------------------------------------------------------------------
# the masked coding rate, the one numerical kernel


def _masks(labels: jax.Array, num_classes: int, dtype) -> jax.Array:
    """One-hot class masks, shape ``(num_classes, m)`` (an out-of-range label masks its row out)."""
    return (labels[None, :] == jnp.arange(num_classes)[:, None]).astype(dtype)


def _replicated_out(x: jax.Array):
    """``out_sharding`` for a contraction of ``x`` over a sharded axis: replicated, or ``None``.

    With a mesh of ``Explicit`` axes (the default of ``jax.make_mesh``) a contraction over a sharded
    batch axis must name its output sharding; the small Gram matrices are replicated (XLA computes
    local partial sums and all-reduces them). Auto/unsharded arrays need nothing (``None``).
    """
    sharding = getattr(jax.typeof(x), "sharding", None)
    mesh = getattr(sharding, "mesh", None)
    explicit = getattr(jax.sharding, "AxisType", None)
    if mesh is None or explicit is None:
        return None
    if any(t == explicit.Explicit for t in getattr(mesh, "axis_types", ())):
        return jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec())
    return None


def _masked_grams(z: jax.Array, masks: jax.Array, path: str | None = None) -> jax.Array:
    """Per-mask Gram matrices of ``z`` (m, d) for binary ``masks`` (k, m).

    ``path='dims'``: ``Zᵀ diag(w_k) Z``, shape (k, d, d); ``path='samples'``:
    ``diag(w_k) Z Zᵀ diag(w_k)``, shape (k, m, m). Default: the smaller one (``'dims'`` when
    ``d ≤ m``). Both give the same ``logdet(I + c G_k)`` (Sylvester; masked-out rows of the samples
    Gram are zero, so they add identity rows).
    """
    m, d = z.shape
    k = masks.shape[0]
    if path is None:
        path = "dims" if d <= m else "samples"
    if path == "dims" and k > d:
        # many masks: sum per-sample outer products (an (m, d, d) temporary instead of (k, m, d))
        outer = z[:, :, None] * z[:, None, :]
        return jnp.einsum("km,mde->kde", masks, outer, out_sharding=_replicated_out(outer))
    zw = masks[:, :, None] * z[None]  # (k, m, d): the rows of mask k, others zeroed
    if path == "dims":
        return jnp.einsum("kmd,kme->kde", zw, zw, out_sharding=_replicated_out(zw))
    return jnp.einsum("kmd,knd->kmn", zw, zw, out_sharding=_replicated_out(zw))


def _half_logdets(grams: jax.Array, counts: jax.Array, d: int, eps_sq) -> jax.Array:
    """``½ logdet(I + d/(count ε²) G)`` per Gram matrix (k, n, n); 0 where ``count = 0``."""
    n = grams.shape[-1]
    safe = jnp.where(counts > 0, counts, 1.0)
    scale = (d / (safe * eps_sq)).astype(grams.dtype)
    eye = jnp.eye(n, dtype=grams.dtype)
    chol = jnp.linalg.cholesky(eye + scale[:, None, None] * grams)
    # ½ logdet(L Lᵀ) = Σ log diag L; for count = 0 the Gram is 0 and the factor the identity.
    return jnp.sum(jnp.log(jnp.diagonal(chol, axis1=-2, axis2=-1)), axis=-1)


def _rates_of(groups: list[tuple[jax.Array, jax.Array]], eps_sq) -> list[jax.Array]:
    """``R`` of every mask of every ``(z, masks)`` group, with ONE batched Cholesky.

    The Gram matrices of all groups are zero-padded to a common size (a zero block adds identity
    rows to ``I + c G``: the logdet is unchanged) and factorised together. Besides being one kernel
    launch, this avoids a jaxlib CPU deadlock seen when three or more batched Cholesky
    factorisations of 128x128 matrices run concurrently under ``jax.grad`` (jax 0.10.2).
    """
    grams = [_masked_grams(z, masks) for z, masks in groups]
    counts = jnp.concatenate([jnp.sum(masks, axis=-1) for _, masks in groups])
    n = max(g.shape[-1] for g in grams)
    padded = [jnp.pad(g, ((0, 0), (0, n - g.shape[-1]), (0, n - g.shape[-1]))) for g in grams]
    rates = _half_logdets(jnp.concatenate(padded), counts, groups[0][0].shape[1], eps_sq)
    sizes = np.cumsum([masks.shape[0] for _, masks in groups])[:-1]
    return jnp.split(rates, sizes)


def _masked_rates(z: jax.Array, masks: jax.Array, eps_sq, path: str | None = None) -> jax.Array:
    """``R(Z_k)`` for each mask: ``½ logdet(I + d/(m_k ε²) Zᵀ diag(w_k) Z)``, shape (k,)."""
    counts = jnp.sum(masks, axis=-1)
    return _half_logdets(_masked_grams(z, masks, path), counts, z.shape[1], eps_sq)


def _with_whole(masks: jax.Array) -> jax.Array:
    """The class masks with an all-ones mask first (the whole-batch rate rides along)."""
    return jnp.concatenate([jnp.ones_like(masks[:1]), masks])


def _rates_with_classes(z: jax.Array, labels: jax.Array, num_classes: int, eps_sq):
    """``R(Z)``, per-class rates ``R(Z_j)`` (num_classes,), counts ``m_j`` and the class masks."""
    masks = _masks(labels, num_classes, z.dtype)
    rates = _masked_rates(z, _with_whole(masks), eps_sq)
    return rates[0], rates[1:], jnp.sum(masks, axis=-1), masks


def _whole_rate(z: jax.Array, eps_sq) -> jax.Array:
    return _masked_rates(z, jnp.ones((1, z.shape[0]), z.dtype), eps_sq)[0]


def _class_rate_from(rates: jax.Array, counts: jax.Array, m: int) -> jax.Array:
    """``Rc = Σ_j (m_j / m) R(Z_j)``."""
    return jnp.sum(counts / m * rates)


def _whole_rates(*zs: jax.Array, eps_sq) -> list[jax.Array]:
    """``R`` of each feature set, with one Cholesky."""
    groups = [(z, jnp.ones((1, z.shape[0]), z.dtype)) for z in zs]
    return [r[0] for r in _rates_of(groups, eps_sq)]


def _pairwise(z: jax.Array, z_hat: jax.Array, eps_sq) -> jax.Array:
    union = jnp.concatenate([z, z_hat], axis=0)
    r_union, r_z, r_hat = _whole_rates(union, z, z_hat, eps_sq=eps_sq)
    return r_union - 0.5 * (r_z + r_hat)


def _upcast(*arrays: jax.Array) -> list[jax.Array]:
    dtype = jnp.promote_types(jnp.result_type(*arrays), jnp.float32)
    return [jnp.asarray(a, dtype) for a in arrays]


# The kernels are jitted (static class count / distance), so an eager call compiles one program per
# shape instead of dispatching op by op; inside an outer jit they are inlined.


@jax.jit
def _coding_rate(z, eps_sq):
    (z,) = _upcast(z)
    return _whole_rate(z, eps_sq)


@partial(jax.jit, static_argnames=("num_classes",))
def _class_terms(z, labels, eps_sq, num_classes):
    (z,) = _upcast(z)
    rate, rates, counts, _ = _rates_with_classes(z, labels, num_classes, eps_sq)
    return rate, _class_rate_from(rates, counts, z.shape[0])


@jax.jit
def _pairwise_rate_reduction(z, z_hat, eps_sq):
    return _pairwise(*_upcast(z, z_hat), eps_sq)


@partial(jax.jit, static_argnames=("num_classes",))
def _ctrl_terms(z, z_hat, labels, eps_sq, num_classes):
    z, z_hat = _upcast(z, z_hat)
    m = z.shape[0]
    masks = _masks(labels, num_classes, z.dtype)
    counts = jnp.sum(masks, axis=-1)
    union = jnp.concatenate([z, z_hat], axis=0)
    all_z, all_h, rates_u = _rates_of(
        [
            (z, _with_whole(masks)),
            (z_hat, _with_whole(masks)),
            (union, jnp.concatenate([masks, masks], axis=1)),
        ],
        eps_sq,
    )
    rate_z, rates_z, rate_h, rates_h = all_z[0], all_z[1:], all_h[0], all_h[1:]
    class_z = _class_rate_from(rates_z, counts, m)
    class_h = _class_rate_from(rates_h, counts, m)
    # an empty class has all three rates exactly 0
    pairwise = jnp.sum(rates_u - 0.5 * (rates_z + rates_h))
    delta_z, delta_h = rate_z - class_z, rate_h - class_h
    return {
        "rate_z": rate_z,
        "class_rate_z": class_z,
        "delta_r_z": delta_z,
        "rate_z_hat": rate_h,
        "class_rate_z_hat": class_h,
        "delta_r_z_hat": delta_h,
        "pairwise": pairwise,
        "objective": delta_z + delta_h + pairwise,
    }


@partial(jax.jit, static_argnames=("distance",))
def _sample_distance(z, z_hat, distance):
    z, z_hat = _upcast(z, z_hat)
    if distance == "l2":
        return jnp.sum((z - z_hat) ** 2)
    return jnp.sum(1.0 - jnp.sum(z * z_hat, axis=-1))


def _ctrl_unsupervised(z, z_hat, lam, eps_sq, distance):
    dist = _sample_distance(z, z_hat, distance)
    z, z_hat = _upcast(z, z_hat)
    union = jnp.concatenate([z, z_hat], axis=0)
    r_union, r_z, r_hat = _whole_rates(union, z, z_hat, eps_sq=eps_sq)
    return r_z + (r_union - 0.5 * (r_z + r_hat)) - lam * dist


# ----------------------------------------------------------------------------------------------
# public ops


def coding_rate(z: jax.Array, eps_sq: float | jax.Array = 0.5) -> jax.Array:
    """Coding rate ``R(Z) = ½ logdet(I_d + d/(m ε²) ZᵀZ)`` of features ``z`` (m, d) → scalar.

    Computed through the smaller Gram matrix (``m × m`` ``Z Zᵀ`` when ``m < d``) and a Cholesky
    factor; finite, with finite gradients, for any (even rank-deficient) ``z``.
    """
    _check_common(z, eps_sq)
    return _coding_rate(z, eps_sq)


def class_coding_rate(
    z: jax.Array, labels: jax.Array, num_classes: int, eps_sq: float | jax.Array = 0.5
) -> jax.Array:
    """Class coding rate ``Rc(Z, Π) = Σ_j (m_j/2m) logdet(I + d/(m_j ε²) Z_jᵀZ_j)`` → scalar.

    ``z``: (m, d); ``labels``: (m,) integer class ids in ``[0, num_classes)``; ``num_classes`` is
    static. Empty classes contribute exactly 0. (Under ``jit`` labels cannot be range-checked; an
    out-of-range label drops its row from every class.)
    """
    _, _, num_classes = _check_common(z, eps_sq, labels, num_classes)
    return _class_terms(z, jnp.asarray(labels), eps_sq, num_classes=num_classes)[1]


def rate_reduction(
    z: jax.Array, labels: jax.Array, num_classes: int, eps_sq: float | jax.Array = 0.5
) -> jax.Array:
    """Rate reduction ``ΔR(Z, Π) = R(Z) − Rc(Z, Π)`` (MCR²) → scalar; shapes as :func:`class_coding_rate`."""
    _, _, num_classes = _check_common(z, eps_sq, labels, num_classes)
    rate, class_rate = _class_terms(z, jnp.asarray(labels), eps_sq, num_classes=num_classes)
    return rate - class_rate


def pairwise_rate_reduction(
    z: jax.Array, z_hat: jax.Array, eps_sq: float | jax.Array = 0.5
) -> jax.Array:
    """Pairwise rate reduction ``ΔR(Z, Ẑ) = R(Z ∪ Ẑ) − ½(R(Z) + R(Ẑ))`` → scalar.

    ``z``: (m, d), ``z_hat``: (m', d); each rate uses its own sample count (``m + m'`` for the union).
    Equals the two-class ``ΔR`` of the union when ``m = m'`` (real vs reconstructed). It is the
    binary CTRL objective ``T`` (``config.ctrl.objective = 'binary'``), the form of the CTRL
    reference code.
    """
    _check_pair(z, z_hat, same_shape=False)
    checks.check_positive("eps_sq", eps_sq)
    return _pairwise_rate_reduction(z, z_hat, eps_sq)


def ctrl_terms(
    z: jax.Array,
    z_hat: jax.Array,
    labels: jax.Array,
    num_classes: int,
    eps_sq: float | jax.Array = 0.5,
) -> dict[str, jax.Array]:
    """The terms of the multi-class CTRL objective, as a dict of scalars (for logging).

    ``z``, ``z_hat``: (m, d) (``z_hat[i]`` is the re-encoding of ``z[i]``); ``labels``: (m,).
    Keys: ``rate_z`` ``R(Z)``, ``class_rate_z`` ``Rc(Z)``, ``delta_r_z`` ``ΔR(Z)``, the same three for
    ``Ẑ`` (``*_z_hat``), ``pairwise`` ``Σ_j ΔR(Z_j, Ẑ_j)`` (empty classes contribute 0) and
    ``objective`` ``T = ΔR(Z) + ΔR(Ẑ) + Σ_j ΔR(Z_j, Ẑ_j)``.
    """
    _check_pair(z, z_hat, same_shape=True)
    _, _, num_classes = _check_common(z, eps_sq, labels, num_classes)
    return _ctrl_terms(z, z_hat, jnp.asarray(labels), eps_sq, num_classes=num_classes)


def ctrl_multiclass_objective(
    z: jax.Array,
    z_hat: jax.Array,
    labels: jax.Array,
    num_classes: int,
    eps_sq: float | jax.Array = 0.5,
) -> jax.Array:
    """Multi-class CTRL objective ``T = ΔR(Z) + ΔR(Ẑ) + Σ_j ΔR(Z_j, Ẑ_j)`` → scalar.

    ``z``, ``z_hat``: (m, d), ``labels``: (m,). The encoder maximises ``T``, the decoder minimises it.
    See :func:`ctrl_terms` for the individual terms.
    """
    return ctrl_terms(z, z_hat, labels, num_classes, eps_sq)["objective"]


def sample_distance(z: jax.Array, z_hat: jax.Array, distance: str = "cosine") -> jax.Array:
    """Sample-wise distance ``Σ_i D(z_i, ẑ_i)`` → scalar (a sum over the batch, not a mean).

    ``'l2'``: ``D = ‖z_i − ẑ_i‖²``; ``'cosine'``: ``D = 1 − ⟨z_i, ẑ_i⟩`` (the cosine distance for
    unit-norm rows; rows are not re-normalised). ``z``, ``z_hat``: (m, d), row ``i`` of ``z_hat`` the
    re-encoding of row ``i`` of ``z``. It stands in for the sample-wise rate reduction
    ``Σ_i ΔR(z_i, ẑ_i)`` of the unsupervised CTRL objective.
    """
    _check_pair(z, z_hat, same_shape=True)
    checks.check_choice("distance", distance, SAMPLE_DISTANCES)
    return _sample_distance(z, z_hat, distance)


def ctrl_unsupervised_objective(
    z: jax.Array,
    z_hat: jax.Array,
    lam: float | jax.Array = 1.0,
    distance: str = "cosine",
    eps_sq: float | jax.Array = 0.5,
) -> jax.Array:
    """Unsupervised sample-wise CTRL objective ``T = R(Z) + ΔR(Z, Ẑ) − λ Σ_i D(z_i, ẑ_i)`` → scalar.

    ``z``, ``z_hat``: (m, d) with ``z_hat[i]`` the re-encoding of ``z[i]``. The per-sample pairwise
    rate reduction ``ΔR(z_i, ẑ_i)`` is approximated by ``D``: ``'l2'``: ``‖z_i − ẑ_i‖²``;
    ``'cosine'``: ``1 − ⟨z_i, ẑ_i⟩`` (the cosine distance for unit-norm rows; rows are not
    re-normalised). The sum is over the batch (not a mean), so ``λ`` scales with the batch size.

    Unverified: this variant (U-CTRL) is written from the paper's description only; its exact form
    (sum vs mean, distance, weighting) has not been checked against any public code.
    """
    _check_pair(z, z_hat, same_shape=True)
    checks.check_positive("eps_sq", eps_sq)
    checks.check_positive("lam", lam, allow_zero=True)
    checks.check_choice("distance", distance, SAMPLE_DISTANCES)
    return _ctrl_unsupervised(z, z_hat, lam, eps_sq, distance=distance)
