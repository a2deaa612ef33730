"""Shared pieces of the classifier configs (the papers' recipes, docs/design.md section 3)."""

from __future__ import annotations

import ml_collections

from configs import common


def base(model: str, dataset: str) -> ml_collections.ConfigDict:
    c = common.base("classifier", model, dataset)
    c.model.stem = "cifar"
    c.model.width = 64
    c.model.stem_width = 0  # channels (atoms) of the stem; 0 = width
    c.model.stage_sizes = ()  # () = the named model's blocks per stage (the smoke form uses fewer)
    c.data.augment = "cifar"
    c.optim.name = "sgd"
    c.optim.lr = 0.1
    c.optim.weight_decay = 5e-4
    c.optim.schedule = "cosine"
    c.optim.end_lr = 1e-6
    c.batch_size = 128
    c.num_epochs = 220.0
    c.log_every_steps = 100
    c.eval_every_steps = 2000
    c.checkpoint_every_steps = 2000
    return c


def smoke(c: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
    """The tiny form of any classifier config: a narrow model with one block per stage, a few
    steps, small batches."""
    c.model.width = 4
    c.model.stage_sizes = (1, 1, 1, 1)
    c.batch_size = 8
    c.eval_batch_size = 16
    c.num_train_steps = 2
    c.log_every_steps = 1
    c.eval_every_steps = 0
    c.checkpoint_every_steps = 2
    c.data.validation_size = 16
    return c


def cifar(dataset: str, model: str, arg: str | None) -> ml_collections.ConfigDict:
    """CIFAR-10/100: SGD Nesterov 0.9, wd 5e-4, batch 128, lr 0.1 cosine to 1e-6 over 220 epochs."""
    c = base(model, dataset)
    return smoke(c) if arg == "smoke" else c


def imagenet(model: str, arg: str | None) -> ml_collections.ConfigDict:
    """ImageNet: SGD 0.9, wd 1e-4, batch 512 (256 for -All), lr 0.1 x0.1 at epochs 30/60/90 of 100."""
    c = base(model, "imagenet2012")
    c.model.stem = "imagenet"
    c.data.augment = "imagenet"
    c.data.validation_size = 10000
    c.optim.nesterov = False
    c.optim.weight_decay = 1e-4
    c.optim.schedule = "step"
    c.optim.boundaries = (30, 60, 90)  # epochs
    c.batch_size = 256 if model.endswith("_all") else 512
    c.eval_batch_size = 500
    c.num_epochs = 100.0
    c.eval_every_steps = 5000
    c.checkpoint_every_steps = 5000
    return smoke(c) if arg == "smoke" else c


def fashion_mnist(model: str, arg: str | None) -> ml_collections.ConfigDict:
    """Fashion-MNIST (28x28 grey) with the CIFAR stem and recipe on a reduced schedule that fits
    on 2 CPU cores (see benchmarks/fashion_mnist.sh)."""
    c = base(model, "fashion_mnist")
    c.data.validation_size = 5000
    c.model.width = 16  # a quarter of the papers' width: ~30 min per run on 2 CPU cores
    c.num_epochs = 5.0
    c.batch_size = 128
    c.optim.lr = 0.05
    c.eval_every_steps = 500
    c.checkpoint_every_steps = 250
    c.log_every_steps = 50
    return smoke(c) if arg == "smoke" else c
