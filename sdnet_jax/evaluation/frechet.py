"""The Fréchet distance between Gaussians fitted to the features of real and generated images
under some feature network (:mod:`sdnet_jax.evaluation.feature_nets`), NumPy in float64::

    d²((μ₁, Σ₁), (μ₂, Σ₂)) = ‖μ₁ − μ₂‖² + Tr(Σ₁ + Σ₂ − 2 (Σ₁Σ₂)^{1/2}).

The name "FID" belongs only to this distance under the Inception-v3 pool3 features; with any
other network the value is reported under ``frechet_distance[<network name>]``
(:func:`frechet_feature_distance`).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, Protocol

import numpy as np

from sdnet_jax.checks import feature_matrix


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
        x = feature_matrix("batch", batch)
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
