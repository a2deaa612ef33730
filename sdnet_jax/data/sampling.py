"""The sampling contract: which examples a training step reads, in which order, which process reads
which of them, and the random numbers each one's augmentation gets — as functions of the run's
seed and the step alone.

* **Splits.** The held-out ``validation`` split is carved from a data set's raw ``train`` split by
  a fixed seeded permutation, independent of the training seed (:func:`train_validation_indices`):
  ``validation_size`` examples (a count, or a fraction of train) go to validation, the rest is
  the training split; both keep the raw split's order.
* **Order.** The training stream is the concatenation of epoch permutations: epoch ``e`` is a
  permutation of the training split seeded by ``(seed, e)``; the global batch of step ``s`` is
  stream positions ``[s·B, (s+1)·B)`` (:func:`stream_order`). Epochs are not aligned to batches:
  no example is dropped, and a batch straddling two epochs takes the end of one permutation and
  the start of the next.
* **Processes.** Process ``p`` of ``P`` reads the positions ``[p·B/P, (p+1)·B/P)`` of every
  global batch (:func:`process_slice`); the slices of all processes, in process order, are the
  global batch.
* **Randomness.** The augmentation of the example at position ``j`` of step ``s`` uses row ``j``
  of :func:`example_bits` ``(seed, s, B)``: one threefry draw per step, computed inside the jitted
  step for the whole global batch, so it does not depend on which device holds the example.

Hence the global batch of step ``s`` — its examples and their augmentation — is a function of
``(seed, s)`` only: a run resumed at step ``N`` continues exactly as an uninterrupted one, and 1
or 8 devices, 1 or 2 processes, the device-resident and the Grain loader all train on the same
batches (``tests/data/test_sampling.py`` and ``tests/data/test_loaders.py`` check each).
"""

from __future__ import annotations

import functools
import numbers

import jax
import jax.numpy as jnp
import numpy as np

# Fixed entropy of the train / validation partition, and tags that keep the random streams apart.
HOLDOUT_ENTROPY = 20240602
EPOCH_TAG = 0
AUGMENT_TAG = 1


def num_validation_examples(num_examples: int, validation_size: int | float) -> int:
    """Resolves ``validation_size`` (a count, or a fraction in [0, 1)) against ``num_examples``."""
    if isinstance(validation_size, bool) or not isinstance(validation_size, numbers.Real):
        raise TypeError(f"validation_size must be an int or a float, got {validation_size!r}")
    if isinstance(validation_size, numbers.Integral):
        count = int(validation_size)
    elif 0.0 <= validation_size < 1.0:
        count = round(float(validation_size) * num_examples)
    else:
        raise ValueError(f"a fractional validation_size must be in [0, 1), got {validation_size}")
    if not 0 <= count < num_examples:
        raise ValueError(
            f"validation_size={validation_size} gives {count} validation examples; need "
            f"0 <= count < {num_examples} (the train split's size, so some examples stay to train)"
        )
    return count


def train_validation_indices(
    num_examples: int, validation_size: int | float
) -> tuple[np.ndarray, np.ndarray]:
    """Indices (into the raw train split) of the training and held-out validation examples:
    sorted, disjoint, together ``range(num_examples)``; a function of the two arguments only."""
    count = num_validation_examples(num_examples, validation_size)
    order = np.random.default_rng(np.random.SeedSequence(HOLDOUT_ENTROPY)).permutation(num_examples)
    return np.sort(order[count:]), np.sort(order[:count])


def process_slice(
    global_batch_size: int, process_index: int | None = None, process_count: int | None = None
) -> tuple[int, int]:
    """``[lo, hi)``: the positions of this process's examples in every global batch (default:
    JAX's process index and count)."""
    if process_index is None:
        process_index = jax.process_index()
    if process_count is None:
        process_count = jax.process_count()
    if process_count < 1 or not 0 <= process_index < process_count:
        raise ValueError(
            f"need 0 <= process_index < process_count, got {process_index} and {process_count}"
        )
    if global_batch_size < 1 or global_batch_size % process_count:
        raise ValueError(
            f"global_batch_size={global_batch_size} must be a positive multiple of the number of "
            f"processes ({process_count})"
        )
    per_process = global_batch_size // process_count
    return process_index * per_process, (process_index + 1) * per_process


@functools.lru_cache(maxsize=4)
def _epoch_permutation(seed: int, epoch: int, num_examples: int) -> np.ndarray:
    entropy = [seed, EPOCH_TAG, epoch]
    order = np.random.default_rng(np.random.SeedSequence(entropy)).permutation(num_examples)
    order.flags.writeable = False
    return order


def stream_order(
    seed: int, step: int | np.ndarray, positions: np.ndarray, global_batch_size: int,
    num_examples: int,
) -> np.ndarray:  # fmt: skip
    """Which training example (an index into the training split) sits at each of the global-batch
    ``positions`` of ``step`` (an int, or an array broadcasting against ``positions``); ``seed``
    is taken modulo 2**64."""
    seed = int(seed) % 2**64
    stream = np.asarray(step) * global_batch_size + np.asarray(positions)
    epochs, offsets = np.divmod(stream, num_examples)
    order = np.empty_like(stream)
    for epoch in np.unique(epochs):
        in_epoch = epochs == epoch
        order[in_epoch] = _epoch_permutation(seed, int(epoch), num_examples)[offsets[in_epoch]]
    return order


def example_bits(seed: int, step: jax.Array, batch_size: int, words: int = 4) -> jax.Array:
    """``(batch_size, words)`` uint32 random words; row ``j`` is the randomness of position ``j``
    of ``step``: ``bits(fold_in(key, step), (batch_size, words))``, ``key`` the seed's (taken
    modulo 2**64, folded in as two 32-bit words) tagged for augmentation. Jittable (``step`` may
    be traced); one threefry call per step."""
    seed = int(seed) % 2**64
    key = jax.random.fold_in(jax.random.key(seed % 2**32), seed >> 32)
    key = jax.random.fold_in(key, AUGMENT_TAG)
    return jax.random.bits(jax.random.fold_in(key, step), (batch_size, words), jnp.uint32)


def example_keys(bits: jax.Array) -> jax.Array:
    """One threefry key per row of :func:`example_bits` (its first two words)."""
    return jax.random.wrap_key_data(bits[:, :2], impl="threefry2x32")
