"""What the suite runs at each scale: the experiment configs (the repository's own, with the
overrides of this suite) and the smoke run's data set."""

from __future__ import annotations

import dataclasses
import importlib
import os

import numpy as np
from PIL import Image

from configs import common
from sdnet_jax.data import datasets

CLASSIFIERS = ("resnet18", "sdnet18", "sdnet18_all")
CTRL_PAIRS = ("csc", "dcgan")
DATASET = "fashion_mnist"


@dataclasses.dataclass(frozen=True)
class Scale:
    """The sizes of one scale of the suite.

    Attributes:
      smoke: the toy scale (the repository configs' ``'smoke'`` forms).
      classifier: overrides of ``configs/fashion_mnist_<model>.py``.
      ctrl: overrides of ``configs/ctrl_fashion_mnist_reference_<pair>.py``.
      loop_seconds: the most a loop measurement runs (bare and real loop each).
      loop_steps: ``(min, max)`` steps of each loop measurement.
      max_epochs: the accuracy part's longest schedule.
      compile_allowance_s: time set aside per training run for compiling and evaluating.
      robustness: overrides of the robustness job's ``config.eval``.
      sdnet_protocol: overrides of ``config.eval`` for SDNet's robust-inference protocol
        (``protocol='sdnet'``), run with the batch norms' running statistics and again with the
        stem's re-estimated on noisy validation images (the control of docs/sdnet_lambda_log.md).
      layer_batch: the layer part's batch.
    """

    smoke: bool
    classifier: dict
    ctrl: dict
    loop_seconds: float
    loop_steps: tuple[int, int]
    max_epochs: int
    compile_allowance_s: float
    robustness: dict
    sdnet_protocol: dict
    layer_batch: int


FULL = Scale(
    smoke=False,
    classifier={"model.width": 64, "data.image_size": 32, "batch_size": 128},
    ctrl={},  # the reference recipe as it is: batch 2048, 32 px, 4500 steps
    loop_seconds=8.0,
    loop_steps=(50, 3000),
    max_epochs=100,
    compile_allowance_s=45.0,
    robustness={
        "max_examples": 2000,
        "severities": (1, 3, 5),
        "pgd_steps": 5,
        "pgd_max_examples": 500,
        "lams": (0.0, 0.05, 0.1, 0.2, 0.3, 0.5, 1.0),
    },
    sdnet_protocol={
        "max_examples": 2000,
        "sdnet_lams": (0.0, 0.05, 0.1, 0.2, 0.3, 0.4, 0.5, 0.7, 1.0, 1.4),
        "bn_recalibration_examples": 500,
    },
    layer_batch=128,
)

SMOKE = Scale(
    smoke=True,
    classifier={
        "data.image_size": 32,
        "batch_size": 16,
        "eval_batch_size": 64,
        "data.validation_size": 200,
    },
    ctrl={
        "data.image_size": 32,
        "batch_size": 40,
        "eval_batch_size": 64,
        "num_train_steps": 24,
        "data.validation_size": 200,
        "eval.max_examples": 64,
        "eval.subspace_fit_examples": 64,
        "log_every_steps": 4,
    },
    loop_seconds=1.0,
    loop_steps=(8, 16),
    max_epochs=1,
    compile_allowance_s=10.0,
    robustness={
        "max_examples": 64,
        "severities": (1, 3),
        "pgd_steps": 1,
        "pgd_max_examples": 32,
        "lams": (0.1, 0.3),
        "corruptions": ("gaussian_noise", "impulse_noise"),
        "pgd_norms": ("linf",),
        "pgd_linf_epsilons": (0.0, 2 / 255),
        "batch_size": 32,
        "plots": False,
    },
    sdnet_protocol={
        "max_examples": 64,
        "sdnet_noises": ("gaussian", "impulse"),
        "sdnet_lams": (0.1, 0.3),
        "bn_recalibration_examples": 32,
        "batch_size": 32,
        "plots": False,
    },
    layer_batch=8,
)


def set_fields(config, overrides: dict, **more):
    """``overrides`` and then ``more`` (dotted paths) set on ``config``; returns it."""
    return common.set_fields(common.set_fields(config, overrides), more)


def _config(module: str, scale: Scale):
    return importlib.import_module(f"configs.{module}").get_config("smoke" if scale.smoke else None)


def data_fields(data_dir: str, cache_dir: str) -> dict:
    """Where every run of the suite reads its data, and caches the decoded training split (one
    decode for all the runs at a size, not one per run)."""
    return {"data.data_dir": data_dir, "data.cache_dir": cache_dir}


def classifier_config(model: str, scale: Scale, data: dict, **more):
    """``configs/fashion_mnist_<model>.py`` at ``scale``, reading ``data`` (:func:`data_fields`)."""
    config = _config(f"{DATASET}_{model}", scale)
    return set_fields(config, {**scale.classifier, **data}, **more)


def ctrl_config(pair: str, scale: Scale, data: dict, **more):
    """``configs/ctrl_fashion_mnist_reference_<pair>.py`` at ``scale``, reading ``data``."""
    config = _config(f"ctrl_{DATASET}_reference_{pair}", scale)
    return set_fields(config, {**scale.ctrl, **data}, **more)


def write_smoke_data(data_dir: str) -> str:
    """Fashion-MNIST's decoded-arrays layout in ``data_dir``, filled with scikit-learn's digits
    (the package's embedded data set) resized to 28 x 28: the smoke run's data, written here so
    it needs nothing prepared. Returns ``data_dir``."""
    folder = datasets.arrays_dir(DATASET, data_dir)
    for split, source in zip(("train", "test"), datasets.digits_splits(), strict=True):
        path = os.path.join(folder, f"{split}.npz")
        if os.path.exists(path):
            continue
        images = np.stack(
            [
                np.asarray(Image.fromarray(image[..., 0]).resize((28, 28), Image.BILINEAR))
                for image in source.images
            ]
        )[..., None]
        datasets.write_arrays(datasets.ArraySource(images, source.labels), path)
    return data_dir
