"""Swappable feature networks for Fréchet distances between real and generated images.

Each network is a small object with

* ``name``: a label that says exactly which network produced a number (it becomes part of the
  metric's key, ``frechet_distance[<name>]``, see
  :func:`sdnet_jax.evaluation.frechet.frechet_feature_distance`);
* ``__call__(images) -> (N, k)`` float64 NumPy features, for NHWC images in ``[-1, 1]``.

Available:

* :class:`RandomConvNet` — a fixed, randomly initialised conv net (always available, no weights,
  no data). A documented *proxy*: random conv features are known to separate image distributions
  reasonably, but the numbers are comparable only between runs that use the same seed and width,
  and never with FID.
* :class:`ClassifierFeatures` — the penultimate (pre-``head``) features of a classifier trained with
  :mod:`sdnet_jax.train.classifier` (e.g. a ResNet-18 on the same data set), restored from its
  workdir. A domain-specific stand-in for Inception.
* :class:`InceptionFeatures` — placeholder: real FID needs the Inception-v3 weights as a local file,
  which is not supported yet; constructing it raises.

The word "FID" is reserved for Inception-v3 pool3 features; no other network here uses it.
"""

from __future__ import annotations

import os
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from sdnet_jax.data import pixels


# ITU-R BT.601 luma weights, RGB → grey.
def _check_images(images: Any) -> np.ndarray:
    x = np.asarray(images, np.float32)
    if x.ndim != 4:
        raise ValueError(f"images must be NHWC, got shape {x.shape}.")
    return x


def _batched(fn, x: np.ndarray, batch_size: int) -> np.ndarray:
    """``fn`` over chunks of ``batch_size`` images, concatenated as float64."""
    if x.shape[0] == 0:
        raise ValueError("images is empty.")
    outs = [
        np.asarray(jax.device_get(fn(x[i : i + batch_size])))
        for i in range(0, x.shape[0], batch_size)
    ]
    return np.concatenate(outs, axis=0).astype(np.float64)


# ----------------------------------------------------------------------------- random conv net


_RANDOM_CONVNET_STRIDES = (1, 2, 2)


def _random_convnet_params(seed: int, width: int) -> list[tuple[np.ndarray, np.ndarray]]:
    """``(kernel HWIO, bias)`` per layer, drawn with NumPy's PCG64 from ``seed``.

    Kernels are He-normal, ``N(0, 2 / fan_in)`` with ``fan_in = 9·C_in`` (ReLU keeps the scale);
    biases ``N(0, 0.1²)``. NumPy (not ``jax.random``) so the weights do not depend on JAX's PRNG
    implementation or version, and no PRNG program is compiled.
    """
    rng = np.random.default_rng(seed)
    params = []
    c_in = 3
    for mult in (1, 2, 4):
        c_out = width * mult
        kernel = rng.normal(0.0, np.sqrt(2.0 / (9 * c_in)), (3, 3, c_in, c_out))
        bias = rng.normal(0.0, 0.1, (c_out,))
        params.append((kernel.astype(np.float32), bias.astype(np.float32)))
        c_in = c_out
    return params


@jax.jit
def _random_convnet_apply(params: Any, x: jax.Array) -> jax.Array:
    """``[3×3 conv ('SAME', strides 1, 2, 2) → ReLU]`` ×3, global average pool.

    One compiled program per (width, input shape), shared by every instance (seeds differ only in
    ``params``).
    """
    x = pixels.to_channels(x.astype(jnp.float32), 3)
    for (kernel, bias), s in zip(params, _RANDOM_CONVNET_STRIDES, strict=True):
        x = jax.lax.conv_general_dilated(
            x, kernel, (s, s), "SAME", dimension_numbers=("NHWC", "HWIO", "NHWC")
        )
        x = jax.nn.relu(x + bias)
    return jnp.mean(x, axis=(1, 2))


class RandomConvNet:
    """A fixed random-init conv net as a feature extractor (a proxy, always available).

    Three ``3×3`` conv + ReLU layers (``width``, ``2·width``, ``4·width`` channels; strides 1, 2, 2;
    'SAME' padding; He-normal weights, ``N(0, 0.1²)`` biases, drawn with
    ``np.random.default_rng(seed)``), then a global average pool: features ``(N, 4·width)``. Images
    are used as given (``[-1, 1]``); grey images are repeated to three channels, so grey and colour
    inputs go through the same weights. Deterministic given ``(seed, width)``; ``name`` is
    ``"random-convnet(seed=S, width=W)"``.
    """

    def __init__(self, seed: int = 0, width: int = 64, batch_size: int = 256) -> None:
        if width < 1 or batch_size < 1:
            raise ValueError(f"width and batch_size must be >= 1, got {width}, {batch_size}.")
        self.seed = int(seed)
        self.width = int(width)
        self.batch_size = int(batch_size)
        self.name = f"random-convnet(seed={self.seed}, width={self.width})"
        self._params = _random_convnet_params(self.seed, self.width)

    @property
    def dim(self) -> int:
        """Feature dimension ``4·width``."""
        return 4 * self.width

    def __call__(self, images: Any) -> np.ndarray:
        """``(N, H, W, 1 or 3)`` images in [-1, 1] → ``(N, 4·width)`` float64 features."""
        x = _check_images(images)
        return _batched(lambda b: _random_convnet_apply(self._params, b), x, self.batch_size)

    def __repr__(self) -> str:
        return self.name


# ----------------------------------------------------------------------------- trained classifier


def _is_head(module: nn.Module) -> bool:
    """The top-level dense layer named ``head`` (the classifier's logits layer)."""
    scope = getattr(module, "scope", None)
    return isinstance(module, nn.Dense) and scope is not None and tuple(scope.path) == ("head",)


class ClassifierFeatures:
    """Penultimate features of a trained classifier (the input of its final ``head`` Dense).

    The classifier is restored with :func:`sdnet_jax.runs.load_classifier` from ``workdir``
    (``which``: ``'best'``, ``'latest'`` or a step). Its ``head`` input is captured with
    :func:`flax.linen.intercept_methods` (the model is unchanged); for the ResNet / SDNet family it
    is the global-average-pooled last stage, ``(N, 8·width)``.

    Images in ``[-1, 1]`` are mapped to what the classifier was trained on: ``[0, 1]`` via
    ``(x + 1) / 2``, then its channel count (grey → RGB by repetition, RGB → grey by BT.601 luma),
    then, with ``resize`` (default), its image size (``jax.image.resize``, linear, antialiased), and
    finally its normalisation ``(x − info.mean) / info.std``.

    ``name`` is ``"classifier(<model>@<data set>, step=<step>, penultimate)"``, e.g.
    ``"classifier(resnet18@fashion_mnist, step=1404, penultimate)"``.
    """

    def __init__(
        self,
        workdir: str | os.PathLike[str],
        *,
        which: str | int = "best",
        data_dir: str | None = None,
        resize: bool = True,
        batch_size: int = 256,
    ) -> None:
        from sdnet_jax.runs import load_classifier  # heavy (TFDS, Orbax): only when used

        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}.")
        config, model, state, info = load_classifier(
            os.fspath(workdir), which=which, data_dir=data_dir
        )
        self.workdir = os.fspath(workdir)
        self.model_name = str(config.model.name)
        self.dataset = str(info.name)
        self.step = int(jax.device_get(state.step))
        self.image_shape = tuple(int(n) for n in info.image_shape)
        self.num_classes = int(info.num_classes)
        self.resize = bool(resize)
        self.batch_size = int(batch_size)
        self.name = f"classifier({self.model_name}@{self.dataset}, step={self.step}, penultimate)"
        self._variables = {"params": state.params, **state.model_state}
        mean = jnp.asarray(info.mean, jnp.float32)
        std = jnp.asarray(info.std, jnp.float32)
        h, w, c = self.image_shape

        def apply(variables: Any, x: jax.Array) -> tuple[jax.Array, jax.Array]:
            x = pixels.unit_from_symmetric(x.astype(jnp.float32))
            x = pixels.to_shape(x, (h, w, c)) if self.resize else pixels.to_channels(x, c)
            x = pixels.normalised_from_unit(x, mean, std)
            captured: list[jax.Array] = []

            def interceptor(next_fun, args, kwargs, context):
                if context.method_name == "__call__" and _is_head(context.module):
                    captured.append(args[0])
                return next_fun(*args, **kwargs)

            with nn.intercept_methods(interceptor):
                logits = model.apply(variables, x, train=False)
            if len(captured) != 1:
                raise RuntimeError(
                    f"expected one call of the classifier's 'head' Dense, saw {len(captured)}."
                )
            return captured[0].astype(jnp.float32), logits.astype(jnp.float32)

        self._apply = jax.jit(apply)

    def __call__(self, images: Any) -> np.ndarray:
        """``(N, H, W, C)`` images in [-1, 1] → ``(N, k)`` float64 penultimate features."""
        x = _check_images(images)
        return _batched(lambda b: self._apply(self._variables, b)[0], x, self.batch_size)

    def logits(self, images: Any) -> np.ndarray:
        """``(N, H, W, C)`` images in [-1, 1] → ``(N, num_classes)`` float64 logits (the same
        input mapping as the features; the classifier's prediction is their argmax)."""
        x = _check_images(images)
        return _batched(lambda b: self._apply(self._variables, b)[1], x, self.batch_size)

    def __repr__(self) -> str:
        return self.name


# ----------------------------------------------------------------------------- Inception


class InceptionFeatures:
    """Placeholder for Inception-v3 pool3 features, the only network whose Fréchet distance is FID.

    Not supported yet: FID needs the exact TF-slim Inception-v3 weights (``pt_inception-2015-12-05``)
    ported to JAX, loaded from a local file (this project downloads nothing at run time). Use
    :class:`ClassifierFeatures` or :class:`RandomConvNet` instead, and report their distances under
    their own names.
    """

    name = "inception-v3(pool3)"
    is_inception = True

    def __init__(self, weights_path: str | os.PathLike[str]) -> None:
        raise NotImplementedError(
            "InceptionFeatures (FID) needs the Inception-v3 weights as a local file "
            f"(got weights_path={os.fspath(weights_path)!r}), and loading them is not supported "
            "yet. Use feature_nets.ClassifierFeatures(workdir) or feature_nets.RandomConvNet(seed) "
            "and report frechet_distance[<their name>], not FID."
        )

    def __call__(self, images: Any) -> np.ndarray:  # pragma: no cover - cannot be constructed
        raise NotImplementedError


__all__ = ["ClassifierFeatures", "InceptionFeatures", "RandomConvNet"]
