"""The Grain path yields the host pipeline's batches: same (seed, step) contract, same process
slices, in this process or in worker processes."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from sdnet_jax.data import grain_pipeline
from sdnet_jax.data import input_pipeline as ip


def _args(data_dir, **overrides):
    args = dict(
        data_dir=data_dir, global_batch_size=8, seed=3, augment="cifar", validation_size=10,
        start_step=0, process_index=0, process_count=1,
    )  # fmt: skip
    return {**args, **overrides}


def _assert_same(a, b):
    assert len(a) == len(b)
    for x, y in zip(a, b, strict=True):
        assert x.keys() == y.keys()
        for key in x:
            np.testing.assert_array_equal(x[key], y[key])
            assert x[key].dtype == y[key].dtype


@pytest.mark.parametrize(
    "overrides",
    [
        {},
        {"start_step": 5},  # resumed
        {"process_index": 1, "process_count": 2, "augment": "none"},
        {"augment": "imagenet", "image_size": 16},
    ],
)
def test_grain_batches_are_the_host_batches(fashion_mnist_dir, overrides):
    args = _args(fashion_mnist_dir.data_dir, **overrides)
    host = list(itertools.islice(ip.train_iterator("fashion_mnist", **args), 3))
    grain = grain_pipeline.train_iterator("fashion_mnist", num_workers=0, **args)
    _assert_same(list(itertools.islice(grain, 3)), host)


def test_grain_worker_processes_give_the_same_batches(fashion_mnist_dir):
    args = _args(fashion_mnist_dir.data_dir, start_step=2)
    host = list(itertools.islice(ip.train_iterator("fashion_mnist", **args), 4))
    grain = grain_pipeline.train_iterator("fashion_mnist", num_workers=2, **args)
    _assert_same(list(itertools.islice(grain, 4)), host)


def test_grain_argument_errors(tmp_path):
    with pytest.raises(ValueError, match="augment"):
        grain_pipeline.train_iterator("digits", **_args(None, augment="mixup"))
    with pytest.raises(ValueError, match="start_step"):
        grain_pipeline.train_iterator("digits", **_args(None, start_step=-1))
    with pytest.raises(ValueError, match="prepare"):
        grain_pipeline.train_iterator("cifar10", **_args(str(tmp_path)))
