"""Shared pieces of the classifier configs (the papers' recipes, docs/design.md section 3)."""

from __future__ import annotations

import ml_collections


def base(model: str, dataset: str) -> ml_collections.ConfigDict:
    c = ml_collections.ConfigDict()
    c.task = "classifier"
    c.model = ml_collections.ConfigDict()
    c.model.name = model
    c.model.stem = "cifar"
    c.model.width = 64
    c.model.stage_sizes = ()  # () = the named model's blocks per stage (the smoke form uses fewer)
    c.model.dtype = "float32"
    # SDNet's CSC layer: lambda 0.1, 2 unrolled iterations, non-negative codes, step 0.9 / L.
    c.model.csc = ml_collections.ConfigDict(
        dict(
            lam=0.1,
            num_iters=2,
            method="fista",
            nonneg=True,
            mu=0.0,
            grad="unrolled",
            power_iters=2,
        )
    )
    c.data = ml_collections.ConfigDict()
    c.data.name = dataset
    c.data.data_dir = (
        ""  # TFDS data_dir ('' = TFDS default); see `python -m sdnet_jax.data.prepare`
    )
    c.data.augment = "cifar"
    # 'auto': the training split on the devices when it fits (sdnet_jax.data.on_device), else
    # Grain worker processes (sdnet_jax.data.grain_pipeline); 'device' | 'grain' | 'host' (the
    # per-example pipeline in the training process) force one.
    c.data.pipeline = "auto"
    c.data.validation_size = 5000  # held out of train for model selection; test reported at the end
    c.optim = ml_collections.ConfigDict()
    c.optim.name = "sgd"
    c.optim.lr = 0.1
    c.optim.momentum = 0.9
    c.optim.nesterov = True
    c.optim.b1 = 0.9
    c.optim.b2 = 0.999
    c.optim.weight_decay = 5e-4
    c.optim.schedule = "cosine"
    c.optim.end_lr = 1e-6
    c.optim.warmup_steps = 0
    c.optim.boundaries = (0.3, 0.6, 0.9)
    c.optim.decay_factor = 0.1
    c.batch_size = 128
    c.eval_batch_size = 500
    c.num_epochs = 220.0
    c.num_train_steps = -1  # > 0 overrides num_epochs
    c.seed = 0
    c.log_every_steps = 100
    c.eval_every_steps = 2000
    c.checkpoint_every_steps = 2000
    c.max_to_keep = 3
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
