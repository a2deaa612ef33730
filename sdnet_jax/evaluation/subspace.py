"""Nearest-subspace classification of features (the MCR²/CTRL papers' evaluation of an encoder),
NumPy in float64; features are ``(m, d)`` rows.

For each class ``j`` the training features ``Z_j`` (``m_j × d``) give the principal subspace
``U_j`` (``d × n``, the top-``n`` right singular vectors of ``Z_j``); a test feature is assigned to
the class whose subspace leaves the smallest residual, ``argmin_j ‖(I − U_j U_jᵀ) z‖₂``. As in the
reference code (MCR², ``evaluate.py::nearsub``: the ``TruncatedSVD`` score) the subspaces are
**uncentred**: no class mean is subtracted, so ``U_j`` spans the directions of largest second
moment ``Z_jᵀZ_j``, which is what a union-of-subspaces model on the sphere calls for. (The same
function of the reference also computes a centred PCA score, ``‖(I − U_jU_jᵀ)(z − μ_j)‖``, which
is not reproduced here.)
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from sdnet_jax.checks import feature_matrix


def _labels(name: str, labels: Any, m: int, num_classes: int) -> np.ndarray:
    y = np.asarray(labels)
    if y.shape != (m,) or not np.issubdtype(y.dtype, np.integer):
        raise ValueError(f"{name} must be {m} integer labels, got dtype {y.dtype} shape {y.shape}.")
    if m and (y.min() < 0 or y.max() >= num_classes):
        raise ValueError(f"{name} must lie in [0, {num_classes}), got [{y.min()}, {y.max()}].")
    return y.astype(np.int64)


def fit_subspaces(
    features: Any, labels: Any, num_classes: int, n_components: int
) -> list[np.ndarray | None]:
    """Per-class principal subspaces of ``features`` (uncentred, as the MCR²/CTRL reference).

    For class ``j`` with rows ``Z_j`` (``m_j × d``) and SVD ``Z_j = A S Vᵀ``, the basis is
    ``U_j = V[:, :n]`` with ``n = min(n_components, m_j, d)``: orthonormal columns spanning the
    best rank-``n`` approximation of the rows in the least-squares sense (no mean is subtracted).

    Args:
      features: ``(m, d)`` training features.
      labels: ``(m,)`` integer classes in ``[0, num_classes)``.
      num_classes: number of classes.
      n_components: subspace dimension ``n ≥ 1`` (capped per class at ``min(m_j, d)``).

    Returns:
      ``num_classes`` entries: ``U_j`` of shape ``(d, n_j)`` (float64), or ``None`` for a class
      without training features (never predicted by :func:`predict_subspaces`).
    """
    if num_classes < 1 or n_components < 1:
        raise ValueError(
            f"num_classes and n_components must be >= 1, got {num_classes}, {n_components}."
        )
    z = feature_matrix("features", features)
    y = _labels("labels", labels, z.shape[0], num_classes)
    bases: list[np.ndarray | None] = []
    for j in range(num_classes):
        z_j = z[y == j]
        if z_j.shape[0] == 0:
            bases.append(None)
            continue
        _, _, vt = np.linalg.svd(z_j, full_matrices=False)
        n = min(n_components, vt.shape[0])
        bases.append(np.ascontiguousarray(vt[:n].T))
    return bases


def subspace_residuals(bases: Sequence[np.ndarray | None], features: Any) -> np.ndarray:
    """``r_ij = ‖(I − U_j U_jᵀ) z_i‖₂`` for every feature and class, shape ``(m, num_classes)``.

    A class without a basis (``None``) has residual ``+inf``.
    """
    z = feature_matrix("features", features)
    out = np.full((z.shape[0], len(bases)), np.inf)
    for j, u in enumerate(bases):
        if u is None:
            continue
        if u.ndim != 2 or u.shape[0] != z.shape[1]:
            raise ValueError(f"basis {j} has shape {u.shape}; expected ({z.shape[1]}, n).")
        out[:, j] = np.linalg.norm(z - (z @ u) @ u.T, axis=1)
    return out


def predict_subspaces(bases: Sequence[np.ndarray | None], features: Any) -> np.ndarray:
    """Nearest-subspace classes ``ŷ_i = argmin_j ‖(I − U_j U_jᵀ) z_i‖₂``, shape ``(m,)`` int64.

    Classes without a basis are never predicted (ties go to the lowest class index).
    """
    if not any(u is not None for u in bases):
        raise ValueError("no class has a subspace; fit_subspaces needs some training features.")
    return np.argmin(subspace_residuals(bases, features), axis=1).astype(np.int64)


def nearest_subspace_accuracy(
    train_features: Any,
    train_labels: Any,
    test_features: Any,
    test_labels: Any,
    num_classes: int,
    n_components: int,
) -> float:
    """Fraction of test features whose nearest class subspace (fit on train) is their class.

    See :func:`fit_subspaces` (uncentred per-class SVD subspaces of dimension ``n_components``) and
    :func:`predict_subspaces`. Labels are integers in ``[0, num_classes)``.
    """
    bases = fit_subspaces(train_features, train_labels, num_classes, n_components)
    z = feature_matrix("test_features", test_features)
    y = _labels("test_labels", test_labels, z.shape[0], num_classes)
    if z.shape[0] == 0:
        raise ValueError("test_features is empty.")
    return float(np.mean(predict_subspaces(bases, z) == y))
