"""The sampling contract (:mod:`sdnet_jax.data.sampling`): splits, the epoch stream, process
slices and the per-example random words are functions of (seed, step) alone."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from sdnet_jax.data import sampling


def test_epochs_are_seeded_permutations_and_batches_straddle_them():
    # 100 examples, batch 16: the stream wraps around and every epoch covers each example once
    stream = np.concatenate(
        [sampling.stream_order(1, step, np.arange(16), 16, 100) for step in range(25)]
    )
    epochs = stream.reshape(4, 100)
    for epoch in epochs:
        np.testing.assert_array_equal(np.sort(epoch), np.arange(100))
    assert len({tuple(e) for e in epochs}) == 4  # a new order each epoch
    other = sampling.stream_order(2, 0, np.arange(100), 100, 100)
    assert not np.array_equal(other, epochs[0])  # another seed, another order
    # steps and positions broadcast: a (steps, positions) grid is each step's batch
    grid = sampling.stream_order(1, np.arange(3)[:, None], np.arange(16)[None, :], 16, 100)
    np.testing.assert_array_equal(grid.ravel(), stream[:48])
    # the seed is taken modulo 2**64
    np.testing.assert_array_equal(
        sampling.stream_order(2**64 + 1, 5, np.arange(16), 16, 100), stream[80:96]
    )


def test_process_slices_partition_every_global_batch():
    slices = [sampling.process_slice(12, p, 3) for p in range(3)]
    assert slices == [(0, 4), (4, 8), (8, 12)]
    assert sampling.process_slice(8) == (0, 8)  # one process here
    with pytest.raises(ValueError, match="multiple of the number of processes"):
        sampling.process_slice(10, 0, 3)
    with pytest.raises(ValueError, match="multiple of the number of processes"):
        sampling.process_slice(0, 0, 1)
    with pytest.raises(ValueError, match="process_index"):
        sampling.process_slice(8, 2, 2)


@pytest.mark.parametrize("validation_size", [20, 0.2])
def test_train_and_validation_partition_the_train_split(validation_size):
    train, validation = sampling.train_validation_indices(100, validation_size)
    assert len(train) == 80 and len(validation) == 20
    assert np.all(np.diff(train) > 0) and np.all(np.diff(validation) > 0)
    np.testing.assert_array_equal(np.sort(np.concatenate([train, validation])), np.arange(100))
    # fixed: independent of anything but the sizes
    np.testing.assert_array_equal(sampling.train_validation_indices(100, validation_size)[1],
                                  validation)  # fmt: skip
    assert sampling.train_validation_indices(100, 0)[1].size == 0


def test_validation_size_errors():
    for bad in (100, -1, 1.0, -0.1):
        with pytest.raises(ValueError, match="validation_size"):
            sampling.num_validation_examples(100, bad)
    with pytest.raises(TypeError, match="validation_size"):
        sampling.num_validation_examples(100, True)


def _bits(n, seed=0, step=4):
    return sampling.example_bits(seed, jnp.int32(step), n)


def test_random_words_depend_on_seed_step_and_position():
    bits = np.asarray(jax.jit(_bits, static_argnums=(0, 1))(64, 0, 4))
    assert bits.shape == (64, 4) and bits.dtype == np.uint32
    assert len({tuple(row) for row in bits}) == 64  # every position its own words
    np.testing.assert_array_equal(bits, np.asarray(_bits(64, 0, 4)))  # jit or not
    assert not np.array_equal(bits, np.asarray(_bits(64, 1, 4)))  # seed
    assert not np.array_equal(bits, np.asarray(_bits(64, 0, 5)))  # step
    big_seed = np.asarray(_bits(8, 2**40 + 3, 4))
    assert not np.array_equal(big_seed, np.asarray(_bits(8, 3, 4)))  # all 64 bits of the seed
    keys = sampling.example_keys(_bits(64))
    assert keys.shape == (64,) and jax.dtypes.issubdtype(keys.dtype, jax.dtypes.prng_key)
