"""The fields every training config has, whatever its task: the model's name, dtype and CSC layer
(SDNet's), the data set, the optimizer (every field ``sdnet_jax.runtime.optim`` reads) and the
schedule of steps, logs, evaluations and checkpoints. ``classifier_base`` and ``ctrl_base`` add their
task's fields and recipes to it."""

from __future__ import annotations

import ml_collections


def base(task: str, model: str, dataset: str) -> ml_collections.ConfigDict:
    c = ml_collections.ConfigDict()
    c.task = task
    c.model = ml_collections.ConfigDict()
    c.model.name = model
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
    c.data.augment = "none"
    c.data.image_size = 0  # 0: native size; N: central square resized to N x N (input_pipeline)
    # 'auto': the training split on the devices when it fits (sdnet_jax.data.on_device), else
    # Grain worker processes (sdnet_jax.data.grain_pipeline); 'device' | 'grain' | 'host' (Grain
    # in the training process, no worker) force one.
    c.data.pipeline = "auto"
    # where the device loader caches the decoded split when the data set's TFDS folder is not
    # writable ('' = <workdir>/data_cache)
    c.data.cache_dir = ""
    c.data.validation_size = 5000  # held out of train for model selection; test reported at the end
    # '' = every class; '0,1,2,3,4,5,6,7': train (and validate) on those classes only, the test
    # split stays whole (CTRL then reports seen_ / unseen_ metrics: evaluation.heldout)
    c.data.train_classes = ""
    c.optim = ml_collections.ConfigDict()
    c.optim.name = "sgd"
    c.optim.lr = 0.1
    c.optim.momentum = 0.9
    c.optim.nesterov = True
    c.optim.b1 = 0.9
    c.optim.b2 = 0.999
    c.optim.weight_decay = 0.0
    c.optim.schedule = "cosine"
    c.optim.end_lr = 0.0
    c.optim.warmup_steps = 0
    c.optim.boundaries = (0.3, 0.6, 0.9)
    c.optim.decay_factor = 0.1
    c.batch_size = 128
    c.eval_batch_size = 500
    c.num_epochs = 1.0
    c.num_train_steps = -1  # > 0 overrides num_epochs
    c.seed = 0
    c.log_every_steps = 100
    c.eval_every_steps = 2000
    c.checkpoint_every_steps = 2000
    c.max_to_keep = 3
    return c


def set_fields(config: ml_collections.ConfigDict, overrides: dict) -> ml_collections.ConfigDict:
    """Sets ``config``'s fields by dotted path (``{"model.width": 64}``), as the command line's
    ``--config.model.width=64`` does; a path the config does not have is a ``KeyError`` (a
    misspelt override must not add a field). Returns ``config``."""
    for key, value in overrides.items():
        *path, leaf = key.split(".")
        target = config
        for part in path:
            target = target[part]
        if leaf not in target:
            raise KeyError(f"the config has no field {key!r}")
        target[leaf] = value
    return config
