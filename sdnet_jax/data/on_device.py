"""Small data sets on the device: decoded once, gathered and augmented inside the jitted step.

The host pipeline (:mod:`sdnet_jax.data.input_pipeline`) decodes and augments one example at a
time in Python; on a GPU/TPU that leaves the device idle. For a data set whose decoded training
split fits in memory (digits, Fashion-MNIST, CIFAR-10/100, STL-10, CelebA-64, ...) this module

1. decodes the training examples once into a uint8 array ``(N, H, W, C)`` (after the evaluation
   transform, so at the size the model sees) and int32 labels, in the order of
   :func:`input_pipeline.train_validation_indices`, and caches them in an ``.npz`` file
   (:func:`load_train_arrays`), so a second run loads them in a second;
2. lets the training loop place them on the devices, sharded over the ``'data'`` mesh axis
   (:class:`TrainArrays`; the leading axis is padded to a multiple of the device count);
3. feeds the step only the row indices of its examples, computed on the host
   (:func:`feed_iterator`) for :data:`STEPS_PER_FEED` steps at a time and transferred ahead, so
   most steps transfer nothing at all: the step picks its row of the feed from ``state.step``;
4. gathers the rows and augments them **inside the jitted step** (:func:`make_batch_fn`), with
   random numbers derived from ``(seed, step, position)`` (:func:`example_bits`), and normalises
   them as the host pipeline does (``(x / 255 - mean) / std``).

The contract of the host pipeline is kept: the examples of step ``s`` follow the same seeded
epoch permutations (:func:`input_pipeline.stream_order`), and their augmentation depends only on
``(seed, s, position)``, so the global batch of step ``s`` is a function of ``(seed, s)`` only,
whatever the number of devices or processes; each process feeds the records of its slice of the
positions. With ``augment='none'`` the batches equal the host pipeline's; with an augmentation they
follow the same distribution with different (JAX instead of NumPy) random numbers.

Augmentations (``jax.random``, per example, vmapped):
  ``'none'``                  identity;
  ``'cifar'``, ``'flip_crop'`` zero-pad 4, random crop back to the size, random horizontal flip;
  ``'imagenet'``              random-resized crop (scale (0.08, 1), ratio (3/4, 4/3), bilinear,
                              antialiased) of the *stored* image back to its size, and a random
                              flip (the host path crops the original image; stored images are
                              already at the model's size).

:func:`choose` picks the path from ``config.data.pipeline`` (``'auto'``: on device when the
decoded training split takes at most :data:`DEVICE_BYTES_LIMIT`, else through Grain).
"""

from __future__ import annotations

import dataclasses
import hashlib
import itertools
import math
import os
from collections.abc import Callable, Iterator

import jax
import jax.numpy as jnp
import numpy as np

from sdnet_jax.data import datasets
from sdnet_jax.data import input_pipeline as ip

PIPELINES = ("auto", "device", "host", "grain")
# 'auto' puts a training split on the devices when its decoded uint8 array takes at most this.
DEVICE_BYTES_LIMIT = 4 * 2**30
CACHE_FORMAT = 1  # bump when the cached array's meaning changes
STEPS_PER_FEED = 64  # steps whose row indices travel to the devices together
_AUGMENT_TAG = 1  # the host pipeline's tag of augmentation randomness (kept for symmetry)

Feed = dict[str, np.ndarray]


# --------------------------------------------------------------------------- the choice


def train_bytes(info: ip.DatasetInfo) -> int:
    """Bytes of the decoded uint8 training split at the model's image size."""
    return info.num_train * math.prod(info.image_shape)


def choose(pipeline: str, info: ip.DatasetInfo, *, augment: str) -> str:
    """``'device'``, ``'grain'`` or ``'host'`` for ``config.data.pipeline`` = ``pipeline``.

    ``'auto'`` is ``'device'`` when the decoded training split takes at most
    :data:`DEVICE_BYTES_LIMIT` bytes, else ``'grain'`` (:mod:`sdnet_jax.data.grain_pipeline`:
    the host pipeline's batches made by worker processes). Raises ``ValueError`` naming
    ``config.data.pipeline`` for an unknown value, or for ``'device'`` on a data set without a
    training split.
    """
    if pipeline not in PIPELINES:
        raise ValueError(f"config.data.pipeline must be one of {PIPELINES}, got {pipeline!r}.")
    if augment not in ip.AUGMENTATIONS:
        raise ValueError(f"config.data.augment must be one of {ip.AUGMENTATIONS}.")
    if info.num_train == 0:
        if pipeline == "device":
            raise ValueError(
                f"config.data.pipeline='device' needs a training split; {info.name!r} has none."
            )
        return "host"
    if pipeline == "auto":
        return "device" if train_bytes(info) <= DEVICE_BYTES_LIMIT else "grain"
    return pipeline


# --------------------------------------------------------------------------- decoded arrays


def default_cache_dir(name: str, data_dir: str | os.PathLike[str] | None) -> str | None:
    """The folder of ``name``'s files in ``data_dir`` (its decoded arrays,
    :func:`datasets.arrays_dir`, else its TFDS folder ``<data_dir>/<name>[/<config>]/<version>``)
    when it exists and is writable, else ``None``; ``None`` for the embedded ``digits`` (nothing
    to decode)."""
    base, config = datasets.parse_name(name)
    if base == "digits":
        return None
    arrays = datasets.arrays_dir(name, data_dir)
    if os.path.isdir(arrays):
        return arrays if os.access(arrays, os.W_OK) else None
    if base == "cifar10_corrupted" and config is None:
        config = datasets.tfds_configs(base)[0]
    folder = os.path.join(
        datasets.resolved_data_dir(data_dir),
        base,
        *([config] if config else []),
        datasets.tfds_version(base),
    )
    return folder if os.path.isdir(folder) and os.access(folder, os.W_OK) else None


def cache_path(
    cache_dir: str, name: str, validation_size: int | float, image_size: int | None
) -> str:
    """The ``.npz`` file holding the decoded training split of ``name`` in ``cache_dir``."""
    key = f"{name}|{validation_size!r}|{image_size}|{CACHE_FORMAT}"
    digest = hashlib.sha1(key.encode()).hexdigest()[:10]
    return os.path.join(cache_dir, f"sdnet_jax_train_uint8_{digest}.npz")


def load_train_arrays(
    name: str,
    *,
    data_dir: str | os.PathLike[str] | None,
    validation_size: int | float,
    image_size: int | None = None,
    cache_dir: str | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """``(images uint8 (N, H, W, C), labels int32 (N,))``: the training split (validation held
    out), after the evaluation transform, in :func:`input_pipeline.train_validation_indices`
    order. Read from / written to an ``.npz`` in ``cache_dir`` when given (written atomically, so
    concurrent processes and interrupted runs never leave a partial file)."""
    image_size = ip._check_image_size(image_size)
    path = None if cache_dir is None else cache_path(cache_dir, name, validation_size, image_size)
    if path is not None and os.path.exists(path):
        try:
            with np.load(path) as cached:
                return cached["image"], cached["label"]
        except (OSError, ValueError, KeyError):
            pass  # unreadable: decode again and overwrite it
    splits = datasets.open_splits(name, data_dir)
    if splits.train is None:
        raise ValueError(f"{name!r} has no training split (it is an evaluation-only data set)")
    train_indices, _ = ip.train_validation_indices(len(splits.train), validation_size)
    shape = ip._image_shape(splits.spec, image_size)
    images = np.empty((len(train_indices), *shape), np.uint8)
    labels = np.empty((len(train_indices),), np.int32)
    for row, index in enumerate(train_indices):
        example = splits.train[int(index)]
        image = ip._eval_transform(example["image"], splits.spec, image_size)
        if image.shape != shape:
            raise ValueError(f"got an image of shape {image.shape}, expected {shape}")
        images[row], labels[row] = image, int(example["label"])
    if path is not None:
        os.makedirs(cache_dir, exist_ok=True)
        partial = f"{path}.{os.getpid()}.tmp.npz"
        np.savez(partial, image=images, label=labels)
        os.replace(partial, path)
    return images, labels


@dataclasses.dataclass(frozen=True)
class TrainArrays:
    """What the loop places on the devices (sharded over ``'data'``) and the step reads.

    Attributes:
      arrays: host arrays with a common leading axis (``image`` uint8, ``label`` int32).
      make_batch: ``(arrays, feed, step) -> batch``, pure, traced inside the jitted step; ``feed``
        is the one of :func:`feed_iterator` that covers ``step`` (an int32 scalar array).
      steps_per_feed: the steps each feed covers (the loop takes a new one when
        ``step % steps_per_feed == 0``); the feed's batch axis is its axis 1.
    """

    arrays: dict[str, np.ndarray]
    make_batch: Callable[..., dict[str, jax.Array]]
    steps_per_feed: int = STEPS_PER_FEED


# --------------------------------------------------------------------------- per-step feeds


def feed_iterator(
    num_examples: int,
    *,
    global_batch_size: int,
    seed: int,
    start_step: int = 0,
    steps_per_feed: int = STEPS_PER_FEED,
    process_index: int | None = None,
    process_count: int | None = None,
) -> Iterator[Feed]:
    """This process's slices of the feeds, from the one covering ``start_step``: feed ``c`` is
    ``{'index': int32 (steps_per_feed, global_batch_size // process_count)}``, row ``k`` the rows
    (in :func:`load_train_arrays`' arrays) of this process's positions of step
    ``c * steps_per_feed + k`` (the host pipeline's order, :func:`input_pipeline.stream_order`)."""
    if start_step < 0:
        raise ValueError(f"start_step must be >= 0, got {start_step}")
    if num_examples < 1:
        raise ValueError("the training split is empty")
    if steps_per_feed < 1:
        raise ValueError(f"steps_per_feed must be >= 1, got {steps_per_feed}")
    lo, hi = ip._process_slice(global_batch_size, process_index, process_count)
    seed = int(seed) % 2**64
    positions = np.arange(lo, hi)
    for first in itertools.count(start_step - start_step % steps_per_feed, steps_per_feed):
        steps = first + np.arange(steps_per_feed)
        stream = (steps[:, None] * global_batch_size + positions[None, :]).ravel()
        order = ip.stream_order(seed, 0, stream, global_batch_size, num_examples)
        yield {"index": order.reshape(steps_per_feed, len(positions)).astype(np.int32)}


# --------------------------------------------------------------------------- in the step


def example_bits(seed: int, step: jax.Array, batch_size: int, words: int = 4) -> jax.Array:
    """``(batch_size, words)`` uint32 random words; row ``j`` is the randomness of position ``j``
    of step ``step``: ``bits(fold_in(key(seed), step), (batch_size, words))`` (one threefry call
    per step; its counters make row ``j`` a function of ``(seed, step, j)`` for the run's fixed
    global batch). The seed is taken modulo 2**64 and folded in as two 32-bit words."""
    seed = int(seed) % 2**64
    base = jax.random.fold_in(jax.random.key(seed % 2**32), seed >> 32)
    base = jax.random.fold_in(base, _AUGMENT_TAG)
    return jax.random.bits(jax.random.fold_in(base, step), (batch_size, words), jnp.uint32)


def example_keys(bits: jax.Array) -> jax.Array:
    """One threefry key per row of :func:`example_bits` (its first two words)."""
    return jax.random.wrap_key_data(bits[:, :2], impl="threefry2x32")


def pad_crop_flip(image: jax.Array, bits: jax.Array, *, pad: int = 4) -> jax.Array:
    """One ``(H, W, C)`` image: zero-pad ``pad``, crop a window of the original size at offsets
    uniform in ``[0, 2 * pad]``, flip horizontally with probability 1/2; ``bits``: 3 uint32
    random words (top, left, flip)."""
    height, width, channels = image.shape
    top = (bits[0] % (2 * pad + 1)).astype(jnp.int32)
    left = (bits[1] % (2 * pad + 1)).astype(jnp.int32)
    padded = jnp.pad(image, ((pad, pad), (pad, pad), (0, 0)))
    out = jax.lax.dynamic_slice(padded, (top, left, 0), (height, width, channels))
    return jnp.where(bits[2] & 1, out[:, ::-1], out)


def _fallback_box(height: int, width: int, ratio: tuple[float, float]) -> tuple[int, int]:
    """The crop size of the host pipeline's fallback (largest centred crop, ratio clipped)."""
    in_ratio = width / height
    if in_ratio < min(ratio):
        return max(1, round(width / min(ratio))), width
    if in_ratio > max(ratio):
        return height, max(1, round(height * max(ratio)))
    return height, width


def random_resized_crop_flip(
    image: jax.Array,
    key: jax.Array,
    *,
    size: tuple[int, int],
    scale: tuple[float, float] = (0.08, 1.0),
    ratio: tuple[float, float] = (3 / 4, 4 / 3),
    attempts: int = 10,
) -> jax.Array:
    """One ``(H, W, C)`` image: an Inception-style random-resized crop (area fraction uniform in
    ``scale``, aspect log-uniform in ``ratio``, the first of ``attempts`` samples that fits, else
    the centred fallback) resized bilinearly to ``size``, then a random flip. Float32 output."""
    height, width, channels = image.shape
    k_area, k_ratio, k_top, k_left, k_flip = jax.random.split(key, 5)
    area = jax.random.uniform(k_area, (attempts,), minval=scale[0], maxval=scale[1])
    aspect = jnp.exp(
        jax.random.uniform(
            k_ratio, (attempts,), minval=math.log(ratio[0]), maxval=math.log(ratio[1])
        )
    )
    crop_w = jnp.round(jnp.sqrt(area * height * width * aspect))
    crop_h = jnp.round(jnp.sqrt(area * height * width / aspect))
    fits = (crop_w > 0) & (crop_w <= width) & (crop_h > 0) & (crop_h <= height)
    first = jnp.argmax(fits)
    fallback_h, fallback_w = _fallback_box(height, width, ratio)
    found = jnp.any(fits)
    crop_h = jnp.where(found, crop_h[first], fallback_h)
    crop_w = jnp.where(found, crop_w[first], fallback_w)
    top = jnp.where(
        found,
        jnp.floor(jax.random.uniform(k_top) * (height - crop_h + 1)),
        (height - fallback_h) // 2,
    )
    left = jnp.where(
        found,
        jnp.floor(jax.random.uniform(k_left) * (width - crop_w + 1)),
        (width - fallback_w) // 2,
    )
    scales = jnp.stack([size[0] / crop_h, size[1] / crop_w])
    out = jax.image.scale_and_translate(
        image.astype(jnp.float32),
        (size[0], size[1], channels),
        (0, 1),
        scales,
        -jnp.stack([top, left]) * scales,
        method="linear",
        antialias=True,
    )
    out = jnp.clip(out, 0.0, 255.0)
    return jnp.where(jax.random.bernoulli(k_flip), out[:, ::-1], out)


def augment_images(images: jax.Array, bits: jax.Array, augment: str) -> jax.Array:
    """A batch ``(B, H, W, C)`` of uint8 images augmented per example (``bits``: its
    :func:`example_bits`); float32 values on the [0, 255] scale, same shape."""
    if augment == "none":
        return images.astype(jnp.float32)
    if augment in ("cifar", "flip_crop"):
        return jax.vmap(pad_crop_flip)(images, bits).astype(jnp.float32)
    if augment == "imagenet":
        size = images.shape[1:3]
        fn = lambda x, k: random_resized_crop_flip(x, k, size=size)
        return jax.vmap(fn)(images, example_keys(bits))
    raise ValueError(f"unknown augment {augment!r}; one of {ip.AUGMENTATIONS}")


def make_batch_fn(
    *,
    seed: int,
    augment: str,
    mean: tuple[float, ...],
    std: tuple[float, ...],
    steps_per_feed: int = STEPS_PER_FEED,
) -> Callable[..., dict[str, jax.Array]]:
    """``(arrays, feed, step) -> {'image': float32 normalised, 'label': int32}``: gathers the
    rows ``feed['index'][step % steps_per_feed]`` of the device arrays, augments them with
    :func:`example_bits` of ``step`` and normalises as :func:`sdnet_jax.data.augment.normalize`.
    Pure; meant to run inside ``jit``."""
    if augment not in ip.AUGMENTATIONS:
        raise ValueError(f"unknown augment {augment!r}; one of {ip.AUGMENTATIONS}")
    mean_arr = np.asarray(mean, np.float32)
    std_arr = np.asarray(std, np.float32)

    def make_batch(arrays, feed, step):
        step = jnp.asarray(step, jnp.int32)
        index = jax.lax.dynamic_index_in_dim(
            feed["index"], step % steps_per_feed, axis=0, keepdims=False
        )
        images = jnp.take(arrays["image"], index, axis=0)
        labels = jnp.take(arrays["label"], index, axis=0)
        bits = example_bits(seed, step, index.shape[0])
        images = augment_images(images, bits, augment)
        images = (images / np.float32(255.0) - mean_arr) / std_arr
        return {"image": images, "label": labels}

    return make_batch


def train_arrays(
    name: str,
    *,
    data_dir: str | os.PathLike[str] | None,
    validation_size: int | float,
    image_size: int | None,
    seed: int,
    augment: str,
    cache_dir: str | None,
) -> TrainArrays:
    """The decoded training split (:func:`load_train_arrays`) and its in-step batch function."""
    images, labels = load_train_arrays(
        name,
        data_dir=data_dir,
        validation_size=validation_size,
        image_size=image_size,
        cache_dir=cache_dir,
    )
    spec = datasets.SPECS[datasets.parse_name(name)[0]]
    return TrainArrays(
        arrays={"image": images, "label": labels},
        make_batch=make_batch_fn(seed=seed, augment=augment, mean=spec.mean, std=spec.std),
    )
