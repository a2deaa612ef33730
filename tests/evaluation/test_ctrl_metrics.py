"""CSC-CTRL evaluation: PSNR, nearest subspace, Fréchet distance, feature networks, PNG figures."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.linalg
from PIL import Image

from sdnet_jax.evaluation import feature_nets as fn
from sdnet_jax.evaluation import figures, frechet, reconstruction, subspace

# These tests share the session's trained tiny models: one pytest-xdist worker trains them once.
pytestmark = pytest.mark.xdist_group("trained_tiny_models")

# ----------------------------------------------------------------------------- PSNR / MSE


def test_psnr_of_identical_images_is_inf():
    x = np.random.default_rng(0).uniform(-1, 1, (3, 8, 8, 1))
    result = reconstruction.psnr(x, x.copy())
    assert result.per_image.shape == (3,)
    assert np.all(np.isinf(result.per_image)) and result.mean == np.inf


def test_psnr_matches_formula_for_known_noise():
    rng = np.random.default_rng(1)
    x = rng.uniform(-1, 1, (4, 6, 5, 3))
    noise = rng.normal(0, 0.1, x.shape)
    err = np.mean(noise.reshape(4, -1) ** 2, axis=1)
    np.testing.assert_allclose(reconstruction.mse(x, x + noise), err, rtol=1e-12)
    result = reconstruction.psnr(x, x + noise)
    np.testing.assert_allclose(result.per_image, 10 * np.log10(4.0 / err), rtol=1e-12)
    assert result.mean == pytest.approx(np.mean(10 * np.log10(4.0 / err)))
    # constant offset 0.1 → MSE 0.01 → 10 log10(4 / 0.01) ≈ 26.02 dB; data_range 1 → 20 dB
    assert reconstruction.psnr(x, x + 0.1).mean == pytest.approx(10 * np.log10(400.0))
    assert reconstruction.psnr(x, x + 0.1, data_range=1.0).mean == pytest.approx(20.0)
    with pytest.raises(ValueError, match="same shape"):
        reconstruction.psnr(x, x[:2])


def test_a_constant_decoder_has_zero_spread_and_the_psnr_of_its_constant():
    rng = np.random.default_rng(3)
    x = np.clip(rng.normal(0, 0.6, (50, 8, 8, 1)), -1, 1)
    constant = np.full(x.shape[1:], -0.3)
    x_hat = np.broadcast_to(constant, x.shape)  # a decoder that ignores its input
    m = reconstruction.collapse_metrics(x, x_hat)
    assert m["spread_x_hat"] == pytest.approx(0.0, abs=1e-12)
    assert m["spread_x"] == pytest.approx(np.mean(np.std(x, axis=0)))
    # its PSNR is the PSNR of that constant image, and the mean image does at least as well
    assert m["psnr"] == pytest.approx(reconstruction.psnr(x, x_hat).mean)
    assert m["psnr"] == pytest.approx(reconstruction.mean_image_psnr(x, constant))
    assert m["psnr_mean_image"] >= m["psnr"]
    assert m["psnr_gain_over_mean_image"] == pytest.approx(m["psnr"] - m["psnr_mean_image"])
    # outputting the split's mean image: PSNR gain exactly 0
    mean = reconstruction.collapse_metrics(x, np.broadcast_to(x.mean(axis=0), x.shape))
    assert mean["psnr_gain_over_mean_image"] == pytest.approx(0.0, abs=1e-12)
    assert mean["spread_x_hat"] == pytest.approx(0.0, abs=1e-12)


def test_mean_image_psnr_and_spread_by_hand():
    # two images, +-a everywhere: split mean 0, MSE a^2 → PSNR 10 log10(4 / a^2); spread a
    a = 0.5
    x = np.stack([np.full((4, 4, 1), a), np.full((4, 4, 1), -a)])
    assert reconstruction.mean_image_psnr(x) == pytest.approx(10 * np.log10(4 / a**2))
    assert reconstruction.pixel_spread(x) == pytest.approx(a)
    # another mean image (a training mean, say): MSE ((a-m)^2 + (a+m)^2) / 2 per image
    m = 0.25
    expected = np.mean([10 * np.log10(4 / (a - m) ** 2), 10 * np.log10(4 / (a + m) ** 2)])
    assert reconstruction.mean_image_psnr(x, np.full((4, 4, 1), m)) == pytest.approx(expected)
    # a perfect reconstruction keeps the spread of X
    assert reconstruction.collapse_metrics(x, x + 0.0)["spread_x_hat"] == pytest.approx(a)
    with pytest.raises(ValueError, match="mean_image must have shape"):
        reconstruction.mean_image_psnr(x, np.zeros((3, 3, 1)))
    with pytest.raises(ValueError, match="non-empty"):
        reconstruction.pixel_spread(np.zeros((0, 4, 4, 1)))


# ----------------------------------------------------------------------------- nearest subspace


def _union_of_subspaces(rng, num_classes=4, d=32, dim=3, per_class=40):
    bases = [np.linalg.qr(rng.normal(size=(d, dim)))[0] for _ in range(num_classes)]
    feats, labels = [], []
    for j, u in enumerate(bases):
        z = rng.normal(size=(per_class, dim)) @ u.T
        feats.append(z / np.linalg.norm(z, axis=1, keepdims=True))
        labels.append(np.full(per_class, j))
    return np.concatenate(feats), np.concatenate(labels)


def test_nearest_subspace_is_perfect_on_distinct_subspaces():
    rng = np.random.default_rng(0)
    z_train, y_train = _union_of_subspaces(rng)
    z_test, y_test = _union_of_subspaces(np.random.default_rng(0), per_class=40)
    z_test = z_test + 0.01 * np.random.default_rng(5).normal(size=z_test.shape)
    acc = subspace.nearest_subspace_accuracy(z_train, y_train, z_test, y_test, 4, 3)
    assert acc == 1.0
    bases = subspace.fit_subspaces(z_train, y_train, 4, 3)
    assert all(u.shape == (32, 3) for u in bases)
    np.testing.assert_allclose(bases[0].T @ bases[0], np.eye(3), atol=1e-12)


def test_nearest_subspace_is_chance_on_isotropic_noise():
    rng = np.random.default_rng(2)
    k = 5
    z_train, y_train = rng.normal(size=(500, 20)), rng.integers(0, k, 500)
    z_test, y_test = rng.normal(size=(3000, 20)), rng.integers(0, k, 3000)
    acc = subspace.nearest_subspace_accuracy(z_train, y_train, z_test, y_test, k, 3)
    assert abs(acc - 1 / k) < 0.05


def test_nearest_subspace_is_invariant_to_sign_flips():
    rng = np.random.default_rng(3)
    z_train, y_train = rng.normal(size=(200, 16)), rng.integers(0, 4, 200)
    z_test = rng.normal(size=(300, 16))
    before = subspace.predict_subspaces(subspace.fit_subspaces(z_train, y_train, 4, 2), z_test)
    flip_train = rng.choice([-1.0, 1.0], size=(200, 1))
    flip_test = rng.choice([-1.0, 1.0], size=(300, 1))
    after = subspace.predict_subspaces(
        subspace.fit_subspaces(flip_train * z_train, y_train, 4, 2), flip_test * z_test
    )
    np.testing.assert_array_equal(before, after)


def test_nearest_subspace_handles_an_empty_class():
    rng = np.random.default_rng(4)
    z, y = _union_of_subspaces(rng, num_classes=3, per_class=30)
    y = np.where(y == 2, 3, y)  # classes 0, 1, 3 of 4: class 2 has no features
    bases = subspace.fit_subspaces(z, y, 4, 3)
    assert bases[2] is None and all(bases[j] is not None for j in (0, 1, 3))
    residuals = subspace.subspace_residuals(bases, z)
    assert np.all(np.isinf(residuals[:, 2]))
    pred = subspace.predict_subspaces(bases, z)
    assert not np.any(pred == 2)
    assert subspace.nearest_subspace_accuracy(z, y, z, y, 4, 3) == 1.0
    # a class smaller than n_components gets a rank-capped basis
    assert subspace.fit_subspaces(z[:2], np.array([0, 0]), 2, 5)[0].shape == (32, 2)


def test_subspaces_are_uncentred():
    # class features = large mean along e0 + small spread along e1: the uncentred top direction
    # is e0 (second moment); centred PCA would pick e1.
    rng = np.random.default_rng(6)
    z = np.zeros((50, 4))
    z[:, 0] = 5.0
    z[:, 1] = rng.normal(0, 0.1, 50)
    (u,) = subspace.fit_subspaces(z, np.zeros(50, int), 1, 1)
    assert abs(u[0, 0]) > 0.999


# ----------------------------------------------------------------------------- Fréchet distance


def _random_cov(rng, k, rank=None):
    a = rng.normal(size=(k, rank or k))
    return a @ a.T / k


def test_frechet_distance_of_identical_stats_is_zero():
    rng = np.random.default_rng(0)
    mu, sigma = rng.normal(size=6), _random_cov(rng, 6)
    assert frechet.frechet_distance(mu, sigma, mu, sigma) == pytest.approx(0.0, abs=1e-9)


def test_frechet_distance_with_equal_covariances_is_mean_distance():
    rng = np.random.default_rng(1)
    mu1, mu2, sigma = rng.normal(size=5), rng.normal(size=5), _random_cov(rng, 5)
    expected = float(np.sum((mu1 - mu2) ** 2))
    assert frechet.frechet_distance(mu1, sigma, mu2, sigma) == pytest.approx(expected, rel=1e-9)


def test_frechet_distance_matches_closed_forms():
    rng = np.random.default_rng(2)
    mu1, mu2 = rng.normal(size=7), rng.normal(size=7)
    a, b = rng.uniform(0.1, 3.0, 7), rng.uniform(0.1, 3.0, 7)
    expected = np.sum((mu1 - mu2) ** 2) + np.sum((np.sqrt(a) - np.sqrt(b)) ** 2)
    got = frechet.frechet_distance(mu1, np.diag(a), mu2, np.diag(b))
    assert got == pytest.approx(expected, rel=1e-10)
    # general full-rank covariances: the sqrtm formula of the FID reference
    s1, s2 = _random_cov(rng, 7), _random_cov(rng, 7)
    covmean = scipy.linalg.sqrtm(s1 @ s2).real
    reference = np.sum((mu1 - mu2) ** 2) + np.trace(s1 + s2 - 2 * covmean)
    assert frechet.frechet_distance(mu1, s1, mu2, s2) == pytest.approx(reference, rel=1e-8)


def test_frechet_distance_is_symmetric():
    rng = np.random.default_rng(3)
    mu1, mu2 = rng.normal(size=8), rng.normal(size=8)
    s1, s2 = _random_cov(rng, 8), _random_cov(rng, 8, rank=3)
    d12 = frechet.frechet_distance(mu1, s1, mu2, s2)
    assert d12 == pytest.approx(frechet.frechet_distance(mu2, s2, mu1, s1), rel=1e-9)


def test_frechet_distance_is_finite_for_rank_deficient_covariances():
    rng = np.random.default_rng(4)
    k = 10
    s1, s2 = _random_cov(rng, k, rank=2), _random_cov(rng, k, rank=3)
    mu = np.zeros(k)
    d = frechet.frechet_distance(mu, s1, mu, s2)
    assert np.isfinite(d) and d >= 0
    assert frechet.frechet_distance(mu, s1, mu, s1) == pytest.approx(0.0, abs=1e-9)
    # commuting singular covariances: Σ (√a − √b)² in their common eigenbasis
    q = np.linalg.qr(rng.normal(size=(k, k)))[0]
    a = np.array([2.0, 1.0, 0.5, 0, 0, 0, 0, 0, 0, 0])
    b = np.array([0.0, 1.0, 0.0, 3.0, 0, 0, 0, 0, 0, 0])
    got = frechet.frechet_distance(mu, q @ np.diag(a) @ q.T, mu, q @ np.diag(b) @ q.T)
    assert got == pytest.approx(np.sum((np.sqrt(a) - np.sqrt(b)) ** 2), rel=1e-8)


def test_feature_stats_streaming_equals_batch():
    rng = np.random.default_rng(5)
    x = 1e4 + rng.normal(size=(103, 6)) * rng.uniform(0.1, 2, 6)  # a large mean: no cancellation
    stats = frechet.FeatureStats()
    for lo, hi in [(0, 10), (10, 10), (10, 57), (57, 103)]:  # includes an empty batch
        stats.update(x[lo:hi])
    assert stats.count == 103 and stats.dim == 6
    np.testing.assert_allclose(stats.mean, x.mean(axis=0), rtol=1e-13)
    np.testing.assert_allclose(stats.cov, np.cov(x, rowvar=False), rtol=1e-9, atol=1e-12)
    whole = frechet.FeatureStats.from_features(x)
    np.testing.assert_allclose(whole.cov, stats.cov, rtol=1e-10)
    with pytest.raises(ValueError, match="features"):
        stats.update(x[:, :3])
    with pytest.raises(ValueError, match="2 samples"):
        _ = frechet.FeatureStats.from_features(x[:1]).cov


# ----------------------------------------------------------------------------- feature networks


def test_random_convnet_is_deterministic_and_named():
    x = np.random.default_rng(0).uniform(-1, 1, (5, 12, 12, 1)).astype(np.float32)
    net = fn.RandomConvNet(seed=3, width=8)
    assert net.name == "random-convnet(seed=3, width=8)" and "fid" not in net.name.lower()
    f = net(x)
    assert f.shape == (5, 32) and f.dtype == np.float64 and np.all(np.isfinite(f))
    np.testing.assert_array_equal(f, fn.RandomConvNet(seed=3, width=8)(x))
    assert not np.allclose(f, fn.RandomConvNet(seed=4, width=8)(x), atol=1e-3)
    # chunked evaluation (3 + 2 images) agrees; grey equals its three-channel repetition
    np.testing.assert_allclose(fn.RandomConvNet(3, 8, batch_size=3)(x), f, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(net(np.repeat(x, 3, axis=-1)), f, rtol=1e-5, atol=1e-6)


def test_frechet_feature_distance_reports_the_network_name():
    rng = np.random.default_rng(1)
    real = [rng.uniform(-1, 1, (5, 12, 12, 1)) for _ in range(3)]
    net = fn.RandomConvNet(seed=0, width=8)
    same = frechet.frechet_feature_distance(net, real, iter(real))
    assert same["name"] == net.name and same["key"] == f"frechet_distance[{net.name}]"
    assert same["num_real"] == same["num_fake"] == 15
    assert same["value"] == pytest.approx(0.0, abs=1e-8)
    fake = [np.clip(b * 0.3 + 0.5, -1, 1) for b in real]
    assert frechet.frechet_feature_distance(net, real, fake)["value"] > 1e-4

    class Liar:
        name = "FID-ish"

        def __call__(self, images):
            return np.zeros((len(images), 2))

    with pytest.raises(ValueError, match="FID"):
        frechet.frechet_feature_distance(Liar(), real, real)


def test_inception_features_is_not_supported():
    with pytest.raises(NotImplementedError, match="weights"):
        fn.InceptionFeatures("/nonexistent/inception.npz")


def test_classifier_features_are_the_head_input(resnet_dir):
    from sdnet_jax import runs
    from tests.conftest import RESNET_STEPS

    workdir = resnet_dir  # a width-8 ResNet-18 trained on digits (tests/conftest.py)
    net = fn.ClassifierFeatures(workdir)
    assert net.name == f"classifier(resnet18@digits, step={RESNET_STEPS}, penultimate)"
    assert "fid" not in net.name.lower()
    x = np.random.default_rng(0).uniform(-1, 1, (6, 8, 8, 1)).astype(np.float32)
    f = net(x)
    width = 8  # of the tiny ResNet
    assert f.shape == (6, width * 8) and np.all(np.isfinite(f))
    # the features are exactly what the head maps to the logits
    _, model, state, info = runs.load_classifier(workdir)
    variables = {"params": state.params, **state.model_state}
    x_norm = ((x + 1) / 2 - np.asarray(info.mean)) / np.asarray(info.std)
    logits = np.asarray(model.apply(variables, jnp.asarray(x_norm), train=False))
    head = jax.device_get(state.params["head"])
    np.testing.assert_allclose(f @ head["kernel"] + head["bias"], logits, rtol=1e-4, atol=1e-4)
    # other sizes and channel counts are mapped to the classifier's (8, 8, 1)
    assert net(np.repeat(x, 3, axis=-1)).shape == (6, width * 8)
    np.testing.assert_allclose(net(np.repeat(x, 3, axis=-1)), f, rtol=1e-4, atol=1e-5)
    big = np.repeat(np.repeat(x, 2, axis=1), 2, axis=2)  # 16×16, antialiased back to 8×8
    assert net(big).shape == (6, width * 8)


# ----------------------------------------------------------------------------- figures


def test_reconstruction_grid_png(tmp_path):
    rng = np.random.default_rng(0)
    x = rng.uniform(-1, 1, (7, 8, 8, 1))
    x_hat = -x
    path = tmp_path / "sub" / "recon.png"
    saved = figures.save_reconstruction_grid(path, x, x_hat, n=5, scale=2)
    # 5 images → 3 columns × 2 rows; panel 19 × 28; two panels + 4-pixel gap, ×2
    img = Image.open(path)
    assert img.mode == "L" and img.size == (2 * (2 * 28 + 4), 2 * 19)
    np.testing.assert_array_equal(np.asarray(img), saved[..., 0])
    # the first image of each panel, at scale 2 (top-left, after the 1-pixel padding)
    first = np.round((x[0, ..., 0] + 1) / 2 * 255)
    np.testing.assert_array_equal(np.asarray(img)[2:18:2, 2:18:2], first)
    first_hat = np.round((x_hat[0, ..., 0] + 1) / 2 * 255)
    np.testing.assert_array_equal(np.asarray(img)[2:18:2, 2 * 32 + 2 : 2 * 32 + 18 : 2], first_hat)
    rgb = figures.save_reconstruction_grid(
        tmp_path / "rgb.png", np.repeat(x, 3, -1), np.repeat(x, 3, -1)
    )
    assert Image.open(tmp_path / "rgb.png").mode == "RGB" and rgb.shape == (28, 2 * 28 + 4, 3)


def test_cosine_heatmap_png(tmp_path):
    rng = np.random.default_rng(1)
    z, labels = _union_of_subspaces(rng, num_classes=3, d=16, dim=1, per_class=4)
    perm = rng.permutation(len(labels))
    z, labels = z[perm], labels[perm]
    sim, order = figures.cosine_similarity_matrix(z, labels)
    assert np.all(np.diff(labels[order]) >= 0)
    # one-dimensional classes: |cos| is exactly 1 within a class
    same = labels[order][:, None] == labels[order][None, :]
    np.testing.assert_allclose(sim[same], 1.0, atol=1e-12)
    saved = figures.save_cosine_heatmap(tmp_path / "cos.png", z, labels, cell=3)
    img = Image.open(tmp_path / "cos.png")
    assert img.mode == "RGB" and img.size == (36, 36)
    np.testing.assert_array_equal(np.asarray(img), saved)
    bright = np.asarray(img)[0, 0].astype(int)  # |cos| = 1: the top of the colour map (yellow)
    np.testing.assert_array_equal(bright, np.round(figures.VIRIDIS[-1] * 255).astype(int))
    assert figures.save_cosine_heatmap(tmp_path / "d.png", z, labels).shape == (12 * 42, 12 * 42, 3)


def test_cosine_heatmap_pools_beyond_size(tmp_path):
    """More samples than ``size``: block means of the class-sorted matrix, ``size × size`` pixels."""
    rng = np.random.default_rng(2)
    z, labels = _union_of_subspaces(rng, num_classes=3, d=16, dim=2, per_class=7)
    sim, _ = figures.cosine_similarity_matrix(z, labels)
    pooled = figures.pool_square(sim, 4)  # 21 samples into blocks of 5, 5, 6, 5 (rounded edges)
    edges = [0, 5, 10, 16, 21]
    for i in range(4):
        for j in range(4):
            block = sim[edges[i] : edges[i + 1], edges[j] : edges[j + 1]]
            np.testing.assert_allclose(pooled[i, j], block.mean(), rtol=1e-12)
    saved = figures.save_cosine_heatmap(tmp_path / "p.png", z, labels, size=4)
    assert saved.shape == (4, 4, 3)
    np.testing.assert_array_equal(np.asarray(Image.open(tmp_path / "p.png")), saved)


def test_atoms_png(tmp_path):
    from sdnet_jax.models import get_ctrl_models

    encoder, _ = get_ctrl_models("csc", image_shape=(8, 8, 1), feature_dim=4, channels=(6, 8))
    shapes = jax.eval_shape(encoder.init, jax.random.key(0), jnp.zeros((1, 8, 8, 1)))
    variables = jax.tree.map(lambda s: np.zeros(s.shape, s.dtype), shapes)
    dictionary = figures.first_stage_dictionary(variables)
    assert dictionary.shape == (4, 4, 1, 6)
    dictionary = np.random.default_rng(0).normal(size=dictionary.shape)
    saved = figures.save_atoms(tmp_path / "atoms.png", dictionary, scale=4)
    # 6 atoms → 3 columns × 2 rows of 4×4 with 1-pixel padding: 11 × 16, ×4
    img = Image.open(tmp_path / "atoms.png")
    assert img.mode == "L" and img.size == (64, 44)
    np.testing.assert_array_equal(np.asarray(img), saved[..., 0])
    assert Image.open(tmp_path / "atoms.png").getextrema() == (0, 255)
