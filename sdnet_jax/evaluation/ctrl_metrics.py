"""Evaluation metrics and figures of CSC-CTRL (closed loop ``Z = f(X)``, ``X̂ = g(Z)``, ``Ẑ = f(X̂)``).

Everything here is NumPy (float64 wherever precision matters) and runs on host arrays; pass JAX
arrays freely, they are converted with ``np.asarray``. Images are NHWC in ``[-1, 1]``; features are
``(m, d)`` rows (unit-norm for CTRL encoders, though nothing here requires it).

**Reconstruction.** :func:`mse` and :func:`psnr` per image,
``PSNR = 10 log₁₀(data_range² / MSE)`` with ``data_range = 2`` for ``[-1, 1]`` images. A PSNR alone
does not tell a reconstruction from a collapsed decoder that outputs one image for every input, so
:func:`collapse_metrics` puts it beside the PSNR of the mean image (:func:`mean_image_psnr`) and the
per-pixel spread of ``X̂`` across inputs beside ``X``'s (:func:`pixel_spread`).

**Encoder: nearest subspace** (the MCR²/CTRL papers' evaluation of the features). For each class
``j`` the training features ``Z_j`` (``m_j × d``) give the principal subspace ``U_j`` (``d × n``,
the top-``n`` right singular vectors of ``Z_j``); a test feature is assigned to the class whose
subspace leaves the smallest residual, ``argmin_j ‖(I − U_j U_jᵀ) z‖₂``. As in the reference code
(MCR², ``evaluate.py::nearsub``: the ``TruncatedSVD`` score) the subspaces are **uncentred**: no
class mean is subtracted, so ``U_j`` spans the directions of largest second moment ``Z_jᵀZ_j``,
which is what a union-of-subspaces model on the sphere calls for. (The same function of the
reference also computes a centred PCA score, ``‖(I − U_jU_jᵀ)(z − μ_j)‖``, which is not reproduced
here.)

**Generator: Fréchet distance** between Gaussians fitted to the features of real and generated
images under some feature network (:mod:`sdnet_jax.evaluation.feature_nets`)::

    d²((μ₁, Σ₁), (μ₂, Σ₂)) = ‖μ₁ − μ₂‖² + Tr(Σ₁ + Σ₂ − 2 (Σ₁Σ₂)^{1/2}).

The name "FID" belongs only to this distance under the Inception-v3 pool3 features; with any
other network the value is reported under ``frechet_distance[<network name>]``
(:func:`frechet_feature_distance`).

**Figures** (PNG, through Pillow): reconstructions beside their inputs, the ``|cos|`` heat map of
class-sorted features, and the first-stage dictionary atoms.
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, NamedTuple, Protocol

import numpy as np

from sdnet_jax import viz
from sdnet_jax.data import pixels
from sdnet_jax.viz import atom_grid, image_grid

# ----------------------------------------------------------------------------- reconstruction


def _images_pair(x: Any, x_hat: Any) -> tuple[np.ndarray, np.ndarray]:
    x = np.asarray(x, np.float64)
    x_hat = np.asarray(x_hat, np.float64)
    if x.shape != x_hat.shape or x.ndim < 2:
        raise ValueError(
            f"x and x_hat must be batches of images of the same shape (N, ...), got {x.shape} "
            f"and {x_hat.shape}."
        )
    return x, x_hat


def mse(x: Any, x_hat: Any) -> np.ndarray:
    """Per-image mean squared error ``MSE_i = mean_{pixels} (x_i − x̂_i)²``, shape ``(N,)``, float64."""
    x, x_hat = _images_pair(x, x_hat)
    return np.mean(np.square(x - x_hat).reshape(x.shape[0], -1), axis=1)


class PSNR(NamedTuple):
    """Per-image PSNR in dB, ``(N,)``, and their mean (``inf`` if any image is reproduced exactly)."""

    per_image: np.ndarray
    mean: float


def psnr(x: Any, x_hat: Any, data_range: float = 2.0) -> PSNR:
    """Peak signal-to-noise ratio per image, ``PSNR_i = 10 log₁₀(data_range² / MSE_i)`` dB.

    Args:
      x: reference images ``(N, H, W, C)`` (any ``(N, ...)``).
      x_hat: reconstructions, same shape.
      data_range: peak-to-peak range of the pixel values: 2 for images in ``[-1, 1]`` (the CTRL
        convention), 1 for ``[0, 1]``, 255 for bytes.

    Returns:
      :class:`PSNR` ``(per_image, mean)``; an exact reconstruction (``MSE_i = 0``) has ``+inf``.
      The mean is the mean of the per-image values (not the PSNR of the mean MSE).
    """
    if not data_range > 0:
        raise ValueError(f"data_range must be > 0, got {data_range!r}.")
    err = mse(x, x_hat)
    with np.errstate(divide="ignore"):
        per_image = 10.0 * np.log10(float(data_range) ** 2 / err)
    return PSNR(per_image, float(np.mean(per_image)))


def mean_image_psnr(x: Any, mean_image: Any | None = None, data_range: float = 2.0) -> float:
    """PSNR of the constant predictor ``x̂_i = mean_image`` for every image of ``x``, in dB.

    The baseline every reconstruction must beat: a decoder that ignores its input can reach it by
    outputting one image. ``mean_image`` (shape ``x.shape[1:]``) defaults to ``x``'s own mean over
    the batch (the split's mean image; pass the mean *training* image to use that instead). Same
    per-image mean of ``10 log₁₀(data_range² / MSE_i)`` as :func:`psnr`.
    """
    x = np.asarray(x, np.float64)
    if x.ndim < 2 or x.shape[0] == 0:
        raise ValueError(f"x must be a non-empty batch of images (N, ...), got shape {x.shape}.")
    mean = x.mean(axis=0) if mean_image is None else np.asarray(mean_image, np.float64)
    if mean.shape != x.shape[1:]:
        raise ValueError(f"mean_image must have shape {x.shape[1:]}, got {mean.shape}.")
    return psnr(x, np.broadcast_to(mean, x.shape), data_range).mean


def pixel_spread(images: Any) -> float:
    """Mean over pixels (and channels) of the standard deviation across the batch, ``(N, ...)``.

    ``mean_p std_i images[i, p]``: 0 for a batch of identical images (a collapsed decoder that maps
    every input to one output); compare ``pixel_spread(X̂)`` with ``pixel_spread(X)``.
    """
    x = np.asarray(images, np.float64)
    if x.ndim < 2 or x.shape[0] == 0:
        raise ValueError(f"images must be a non-empty batch (N, ...), got shape {x.shape}.")
    return float(np.mean(np.std(x.reshape(x.shape[0], -1), axis=0)))


def collapse_metrics(x: Any, x_hat: Any, mean_image: Any | None = None) -> dict[str, float]:
    """The numbers that tell a reconstruction from a collapse, for images in ``[-1, 1]``.

    ``psnr`` of ``x_hat`` against ``x``; ``psnr_mean_image``, the PSNR of always outputting
    ``mean_image`` (default: ``x``'s mean; :func:`mean_image_psnr`); ``psnr_gain_over_mean_image``
    their difference; ``spread_x_hat`` and ``spread_x``, the per-pixel spread across inputs
    (:func:`pixel_spread`).
    """
    x, x_hat = _images_pair(x, x_hat)
    value, baseline = psnr(x, x_hat).mean, mean_image_psnr(x, mean_image)
    return {
        "psnr": value,
        "psnr_mean_image": baseline,
        "psnr_gain_over_mean_image": value - baseline,
        "spread_x_hat": pixel_spread(x_hat),
        "spread_x": pixel_spread(x),
    }


# ----------------------------------------------------------------------------- nearest subspace


def _features(name: str, features: Any) -> np.ndarray:
    z = np.asarray(features, np.float64)
    if z.ndim != 2:
        raise ValueError(f"{name} must have shape (m, d), got {z.shape}.")
    if not np.all(np.isfinite(z)):
        raise ValueError(f"{name} has non-finite values.")
    return z


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
    z = _features("features", features)
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
    z = _features("features", features)
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
    z = _features("test_features", test_features)
    y = _labels("test_labels", test_labels, z.shape[0], num_classes)
    if z.shape[0] == 0:
        raise ValueError("test_features is empty.")
    return float(np.mean(predict_subspaces(bases, z) == y))


# ----------------------------------------------------------------------------- Fréchet distance


class FeatureStats:
    """Streaming mean and covariance of feature vectors, in float64.

    Accumulates ``n``, ``s = Σ_i (x_i − c)`` and ``S = Σ_i (x_i − c)(x_i − c)ᵀ`` over batches, with the
    shift ``c`` the mean of the first batch (shifting leaves the covariance unchanged and avoids the
    cancellation of the raw ``Σ x xᵀ − n μμᵀ`` when the mean is large). Then::

        μ = c + s / n,    Σ = (S − s sᵀ / n) / (n − 1)        (unbiased, as ``np.cov``).
    """

    def __init__(self) -> None:
        self.count: int = 0
        self._shift: np.ndarray | None = None
        self._sum: np.ndarray | None = None
        self._outer: np.ndarray | None = None

    @property
    def dim(self) -> int | None:
        """Feature dimension (``None`` before the first batch)."""
        return None if self._shift is None else int(self._shift.shape[0])

    def update(self, batch: Any) -> FeatureStats:
        """Adds a batch of features ``(n, k)``; returns ``self``."""
        x = _features("batch", batch)
        if x.shape[0] == 0:
            return self
        if self._shift is None:
            self._shift = x.mean(axis=0)
            self._sum = np.zeros_like(self._shift)
            self._outer = np.zeros((x.shape[1], x.shape[1]))
        elif x.shape[1] != self._shift.shape[0]:
            raise ValueError(f"batch has {x.shape[1]} features, earlier ones had {self.dim}.")
        xc = x - self._shift
        self._sum += xc.sum(axis=0)
        self._outer += xc.T @ xc
        self.count += x.shape[0]
        return self

    @classmethod
    def from_features(cls, features: Any) -> FeatureStats:
        """The statistics of one ``(n, k)`` array."""
        return cls().update(features)

    @property
    def mean(self) -> np.ndarray:
        """``μ``, shape ``(k,)``."""
        if self.count == 0:
            raise ValueError("FeatureStats has no samples.")
        return self._shift + self._sum / self.count

    @property
    def cov(self) -> np.ndarray:
        """Unbiased covariance ``Σ``, shape ``(k, k)`` (needs at least 2 samples)."""
        if self.count < 2:
            raise ValueError(f"the covariance needs at least 2 samples, got {self.count}.")
        s = self._sum
        cov = (self._outer - np.outer(s, s) / self.count) / (self.count - 1)
        return 0.5 * (cov + cov.T)


def _psd(name: str, sigma: Any, k: int) -> np.ndarray:
    s = np.asarray(sigma, np.float64)
    if s.shape != (k, k):
        raise ValueError(f"{name} must have shape ({k}, {k}), got {s.shape}.")
    if not np.all(np.isfinite(s)):
        raise ValueError(f"{name} has non-finite values.")
    return 0.5 * (s + s.T)


def _clean_eigenvalues(w: np.ndarray) -> np.ndarray:
    """Eigenvalues of a PSD matrix with rounding noise zeroed.

    Values below ``k · eps · max|w|`` (the rounding level of ``eigh``, the ``matrix_rank`` tolerance)
    are set to 0: they are numerically zero, and their square roots (``~1e-8`` for ``1e-16``)
    would otherwise bias the trace of a singular matrix's square root.
    """
    tol = w.shape[0] * np.finfo(np.float64).eps * float(np.max(np.abs(w), initial=0.0))
    return np.where(w > tol, w, 0.0)


def _psd_sqrt(sigma: np.ndarray) -> np.ndarray:
    """Symmetric PSD square root via ``eigh`` (rounding-level eigenvalues set to 0)."""
    w, v = np.linalg.eigh(sigma)
    return (v * np.sqrt(_clean_eigenvalues(w))) @ v.T


def frechet_distance(mu1: Any, sigma1: Any, mu2: Any, sigma2: Any) -> float:
    """Fréchet (2-Wasserstein²) distance between ``N(μ₁, Σ₁)`` and ``N(μ₂, Σ₂)``, in float64::

        d² = ‖μ₁ − μ₂‖² + Tr Σ₁ + Tr Σ₂ − 2 Tr (Σ₁Σ₂)^{1/2}.

    ``Σ₁Σ₂`` is similar to the PSD matrix ``M = Σ₁^{1/2} Σ₂ Σ₁^{1/2}`` (same eigenvalues), so
    ``Tr (Σ₁Σ₂)^{1/2} = Σ_i √λ_i(M)``, computed with symmetric eigendecompositions (``eigh``);
    eigenvalues at rounding level (``< k·eps·λ_max``, including negative ones) are set to 0.
    Unlike ``scipy.linalg.sqrtm(Σ₁Σ₂)`` this needs no ``εI`` regulariser and never produces an
    imaginary part, so it is finite and accurate for singular (rank-deficient) covariances too,
    e.g. fewer samples than feature dimensions. The result is clipped at 0 (the distance is
    non-negative; tiny negatives are rounding).
    """
    m1 = np.asarray(mu1, np.float64)
    m2 = np.asarray(mu2, np.float64)
    if m1.ndim != 1 or m1.shape != m2.shape:
        raise ValueError(f"mu1 and mu2 must be vectors of one shape, got {m1.shape}, {m2.shape}.")
    k = m1.shape[0]
    s1 = _psd("sigma1", sigma1, k)
    s2 = _psd("sigma2", sigma2, k)
    root1 = _psd_sqrt(s1)
    middle = root1 @ s2 @ root1
    eig = np.linalg.eigvalsh(0.5 * (middle + middle.T))
    tr_covmean = float(np.sum(np.sqrt(_clean_eigenvalues(eig))))
    diff = m1 - m2
    value = float(diff @ diff) + float(np.trace(s1) + np.trace(s2)) - 2.0 * tr_covmean
    return max(value, 0.0)


class FeatureNet(Protocol):
    """A feature network: ``name`` says which network; images ``(N, H, W, C)`` in [-1, 1] → ``(N, k)``."""

    name: str

    def __call__(self, images: Any) -> np.ndarray: ...


def frechet_feature_distance(
    feature_net: FeatureNet, real_batches: Iterable[Any], fake_batches: Iterable[Any]
) -> dict[str, Any]:
    """Fréchet distance between the ``feature_net`` features of real and generated images.

    Args:
      feature_net: e.g. :class:`~sdnet_jax.evaluation.feature_nets.RandomConvNet` or
        :class:`~sdnet_jax.evaluation.feature_nets.ClassifierFeatures`.
      real_batches: iterable of NHWC image batches in ``[-1, 1]`` (e.g. ``X``).
      fake_batches: the same for generated / reconstructed images (e.g. ``X̂ = g(f(X))``).

    Returns:
      ``{'name': feature_net.name, 'key': 'frechet_distance[<name>]', 'value': d², 'num_real': …,
      'num_fake': …}``. Report the value under ``key``: it names the network, and the word "FID" is
      reserved for Inception-v3 features (a network whose name claims "FID" is refused unless it
      declares ``is_inception = True``).
    """
    name = str(feature_net.name)
    if "fid" in name.lower() and not getattr(feature_net, "is_inception", False):
        raise ValueError(f"feature network name {name!r} says FID but it is not Inception-v3.")
    real, fake = FeatureStats(), FeatureStats()
    for batch in real_batches:
        real.update(feature_net(batch))
    for batch in fake_batches:
        fake.update(feature_net(batch))
    value = frechet_distance(real.mean, real.cov, fake.mean, fake.cov)
    return {
        "name": name,
        "key": f"frechet_distance[{name}]",
        "value": value,
        "num_real": real.count,
        "num_fake": fake.count,
    }


# ----------------------------------------------------------------------------- figures


def _to_unit(images: Any) -> np.ndarray:
    """NHWC images in [-1, 1] → [0, 1] float32 (clipped)."""
    x = np.asarray(images, np.float32)
    if x.ndim != 4:
        raise ValueError(f"images must be NHWC, got shape {x.shape}.")
    return np.clip(pixels.unit_from_symmetric(x), 0.0, 1.0)


def save_reconstruction_grid(
    path: str | os.PathLike[str], x: Any, x_hat: Any, n: int = 32, scale: int = 1, gap: int = 4
) -> np.ndarray:
    """Saves the first ``n`` images ``X`` (left panel) beside their reconstructions ``X̂`` (right).

    Both panels are :func:`sdnet_jax.viz.image_grid` tilings with the same layout
    (``ceil(√n)`` columns, 1-pixel white padding), so image ``i`` sits at the same place in each;
    the panels are separated by ``gap`` white pixels. Images in ``[-1, 1]`` are mapped to
    ``[0, 1]``; one channel gives a grey PNG, three an RGB one.

    Returns the saved ``uint8`` array ``(H, W, C)``: ``H = scale·(rows·(h+1)+1)``,
    ``W = scale·(2·(cols·(w+1)+1) + gap)``.
    """
    x, x_hat = _to_unit(x), _to_unit(x_hat)
    if x.shape != x_hat.shape:
        raise ValueError(f"x and x_hat must have one shape, got {x.shape} and {x_hat.shape}.")
    count = min(int(n), x.shape[0])
    if count < 1:
        raise ValueError("need at least one image.")
    columns = math.ceil(math.sqrt(count))
    left = image_grid(x[:count], columns)
    right = image_grid(x_hat[:count], columns)
    spacer = np.ones((left.shape[0], gap, left.shape[2]), np.float32)
    return viz.save_png(path, np.concatenate([left, spacer, right], axis=1), scale)


# A few anchors of matplotlib's 'viridis' colour map (0 → dark blue, 1 → yellow).
_VIRIDIS = np.array(
    [
        [0.267, 0.005, 0.329],
        [0.231, 0.322, 0.545],
        [0.128, 0.567, 0.551],
        [0.369, 0.789, 0.383],
        [0.993, 0.906, 0.144],
    ]
)


def _colormap(values: np.ndarray) -> np.ndarray:
    """Values in [0, 1] → RGB by piecewise-linear interpolation of :data:`_VIRIDIS`."""
    grid = np.linspace(0.0, 1.0, len(_VIRIDIS))
    v = np.clip(values, 0.0, 1.0)
    return np.stack([np.interp(v, grid, _VIRIDIS[:, c]) for c in range(3)], axis=-1)


def cosine_similarity_matrix(z: Any, labels: Any) -> tuple[np.ndarray, np.ndarray]:
    """``|cos(z_i, z_j)|`` for samples sorted by class, and the sorting permutation.

    Rows are normalised (so for CTRL's unit features this is ``|Z Zᵀ|``, the ``m × m`` matrix the
    papers write as ``|ZᵀZ|`` with samples as columns); the sort is stable, so samples keep their
    order within a class.
    """
    feats = _features("z", z)
    y = np.asarray(labels)
    if y.shape != (feats.shape[0],):
        raise ValueError(f"labels must have shape ({feats.shape[0]},), got {y.shape}.")
    order = np.argsort(y, kind="stable")
    f = feats[order]
    f = f / np.maximum(np.linalg.norm(f, axis=1, keepdims=True), 1e-12)
    return np.abs(f @ f.T), order


def save_cosine_heatmap(
    path: str | os.PathLike[str], z: Any, labels: Any, cell: int | None = None
) -> np.ndarray:
    """Saves the heat map of ``|cos(z_i, z_j)|`` with samples sorted by class (viridis, 0 → 1).

    Each sample is a ``cell × cell`` block (default ``max(1, 512 // m)``), so the PNG is
    ``(m·cell) × (m·cell)`` RGB. Good features show bright diagonal blocks (within class) on a dark
    background (orthogonal classes). Returns the saved ``uint8`` array.
    """
    sim, _ = cosine_similarity_matrix(z, labels)
    m = sim.shape[0]
    if m < 1:
        raise ValueError("z is empty.")
    cell = max(1, 512 // m) if cell is None else int(cell)
    return viz.save_png(path, _colormap(sim), cell)


def first_stage_dictionary(encoder_params: Mapping[str, Any]) -> np.ndarray:
    """The first-stage dictionary (HWIO) of a CTRL encoder's parameters.

    ``encoder_params`` is the encoder's ``params`` tree (or ``{'params': …}``): ``csc1/dictionary``
    for CSC-CTRL, ``conv1/kernel`` for the DCGAN baseline.
    """
    params = encoder_params.get("params", encoder_params)
    for layer, leaf in (("csc1", "dictionary"), ("conv1", "kernel")):
        if layer in params and leaf in params[layer]:
            return np.asarray(params[layer][leaf])
    raise KeyError(f"no csc1/dictionary or conv1/kernel in parameters with keys {list(params)}.")


def save_atoms(
    path: str | os.PathLike[str], dictionary: Any, scale: int = 4, columns: int | None = None
) -> np.ndarray:
    """Saves the atoms of an HWIO dictionary ``(kh, kw, C_in, n)`` via :func:`sdnet_jax.viz.atom_grid`.

    Each atom is scaled to ``[0, 1]`` on its own; colour for ``C_in = 3``, else the channel mean in
    grey. ``ceil(√n)`` columns by default, upscaled ``scale``×: the PNG is
    ``scale·(rows·(kh+1)+1) × scale·(cols·(kw+1)+1)``. Returns the saved ``uint8`` array.
    """
    d = np.asarray(dictionary)
    if d.ndim != 4:
        raise ValueError(f"dictionary must be HWIO (kh, kw, C_in, n), got shape {d.shape}.")
    return viz.save_png(path, atom_grid(d, columns), scale)


__all__ = [
    "PSNR",
    "FeatureNet",
    "FeatureStats",
    "cosine_similarity_matrix",
    "first_stage_dictionary",
    "fit_subspaces",
    "frechet_distance",
    "frechet_feature_distance",
    "mse",
    "nearest_subspace_accuracy",
    "predict_subspaces",
    "psnr",
    "save_atoms",
    "save_cosine_heatmap",
    "save_reconstruction_grid",
    "subspace_residuals",
]


def save_atom_grid(
    path: str | os.PathLike[str], encoder_params: Mapping[str, Any], scale: int = 8
) -> np.ndarray:
    """Saves the encoder's first-stage atoms (:func:`first_stage_dictionary`) as a PNG grid, each
    atom scaled to [0, 1] and upscaled ``scale``× (nearest). Returns the saved ``uint8`` array."""
    return viz.save_png(path, atom_grid(first_stage_dictionary(encoder_params)), scale)
