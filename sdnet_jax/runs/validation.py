"""Config validation of both training tasks: every check runs in Python on the config before
anything is traced or compiled, and raises a ``ValueError`` naming the bad field
(:func:`validate_classifier`, :func:`validate_ctrl`; the shared :func:`validate_csc` and
:func:`validate_schedule`). Opening the data set is a file check, so missing data is reported here
with the command that prepares it."""

from __future__ import annotations

from typing import Any

import ml_collections

from sdnet_jax import checks, errors, models, ops
from sdnet_jax.data import augment, datasets, input_pipeline
from sdnet_jax.runs.common import DTYPES, data_source, train_classes
from sdnet_jax.runtime import checkpoint, optim, parallel

OBJECTIVES = ("multiclass", "binary", "unsupervised")  # the CTRL game's value T
PAIR_PLAYERS = ("both", "decoder")  # who reduces the CTRL sample-wise term pair_lam * D


def validate_csc(csc: Any, where: str = "config.model.csc") -> None:
    """Checks CSC layer options (keys and values) with errors naming the field."""
    unknown = sorted(set(csc.keys()) - set(models.CSC_OPTIONS))
    checks.require(
        not unknown, f"{where} has unknown option(s) {unknown}; valid: {models.CSC_OPTIONS}."
    )
    if "lam" in csc:
        checks.require(csc.lam >= 0, f"{where}.lam must be >= 0, got {csc.lam!r}.")
    if "mu" in csc:
        checks.require(csc.mu >= 0, f"{where}.mu must be >= 0, got {csc.mu!r}.")
    for name, minimum in [("num_iters", 1), ("power_iters", 0), ("init_power_iters", 1)]:
        if name in csc:
            value = csc[name]
            checks.require(
                checks.is_int(value) and value >= minimum,
                f"{where}.{name} must be an integer >= {minimum}, got {value!r}.",
            )
    if "method" in csc:
        checks.require(csc.method in ops.METHODS, f"{where}.method must be one of {ops.METHODS}.")
    if "grad" in csc:
        checks.require(csc.grad in ops.GRAD_MODES, f"{where}.grad must be one of {ops.GRAD_MODES}.")


def validate_schedule(config: Any) -> None:
    """Checks the fields shared by every training config (steps, batch, intervals, seed)."""
    checks.require(
        checks.is_int(config.batch_size) and config.batch_size > 0,
        f"config.batch_size must be a positive integer, got {config.batch_size!r}.",
    )
    parallel.check_batch_size(config.batch_size, "config.batch_size")
    parallel.check_batch_size(config.eval_batch_size, "config.eval_batch_size")
    checks.require(
        config.num_train_steps > 0 or config.num_epochs > 0,
        "set config.num_train_steps or config.num_epochs to a positive value.",
    )
    for name in ("log_every_steps", "checkpoint_every_steps", "max_to_keep"):
        value = config[name]
        checks.require(
            checks.is_int(value) and value >= 1, f"config.{name} must be an integer >= 1."
        )
    checks.require(
        checks.is_int(config.eval_every_steps) and config.eval_every_steps >= 0,
        "config.eval_every_steps must be an integer >= 0 (0: evaluate only at the end).",
    )


def validate_data(d: Any) -> input_pipeline.DatasetInfo:
    """Checks ``config.data`` and opens the data set (a file check: missing data is reported
    with the command that prepares it); returns its info."""
    checks.require(
        d.name.split("/")[0] in input_pipeline.SUPPORTED,
        f"config.data.name {d.name!r} is not one of {list(input_pipeline.SUPPORTED)}.",
    )
    checks.require(
        d.augment in augment.AUGMENTATIONS,
        f"config.data.augment must be one of {augment.AUGMENTATIONS}, got {d.augment!r}.",
    )
    checks.require(
        d.pipeline in input_pipeline.PIPELINES,
        f"config.data.pipeline must be one of {input_pipeline.PIPELINES}, got {d.pipeline!r}.",
    )
    checks.require(
        checks.is_int(d.image_size) and d.image_size >= 0,
        f"config.data.image_size must be an integer >= 0 (0: native size), got {d.image_size!r}.",
    )
    checks.require(
        isinstance(d.cache_dir, str), f"config.data.cache_dir must be a path, got {d.cache_dir!r}."
    )
    classes = train_classes(d)  # its syntax
    if classes is not None:
        num_classes = datasets.SPECS[d.name.split("/")[0]].num_classes
        checks.require(
            max(classes) < num_classes,
            f"config.data.train_classes must name classes in [0, {num_classes}) of {d.name!r}, "
            f"got {d.train_classes!r}.",
        )
    info = input_pipeline.get_info(d.name, **data_source(d))
    input_pipeline.choose(d.pipeline, info)  # 'device' for a data set without training split
    return info


def validate_classifier(config: ml_collections.ConfigDict) -> input_pipeline.DatasetInfo:
    """Raises a ``ValueError`` naming the first bad field; returns the data set's info.

    Runs before anything is compiled; opening the data set is a file check, so missing data is
    reported here with the command that prepares it.
    """
    checks.require(
        config.task == "classifier", f"config.task must be 'classifier', got {config.task!r}."
    )
    m = config.model
    checks.require(
        m.name in models.MODELS,
        f"config.model.name {m.name!r} is not one of {list(models.MODELS)}.",
    )
    checks.require(
        m.stem in ("cifar", "imagenet"), "config.model.stem must be 'cifar' or 'imagenet'."
    )
    checks.require(m.dtype in DTYPES, f"config.model.dtype must be one of {list(DTYPES)}.")
    checks.require(
        checks.is_int(m.width) and m.width >= 1, "config.model.width must be a positive integer."
    )
    checks.require(
        checks.is_int(m.stem_width) and m.stem_width >= 0,
        f"config.model.stem_width must be an integer >= 0 (0 = width), got {m.stem_width!r}.",
    )
    checks.require(
        all(checks.is_int(n) and n >= 1 for n in m.stage_sizes),
        f"config.model.stage_sizes must be positive integers (or empty), got {m.stage_sizes!r}.",
    )
    validate_csc(m.csc)
    optim.validate(config.optim, "config.optim")
    validate_schedule(config)
    return validate_data(config.data)


def validate_fidelity_classifier(config: Any) -> None:
    """``config.eval.fidelity_classifier_workdir`` ('' = none) must be a classifier run (with a
    checkpoint) trained on ``config.data.name``'s data set: its classes are the labels' classes."""
    workdir = config.eval.fidelity_classifier_workdir
    if not workdir:
        return
    field = "config.eval.fidelity_classifier_workdir"
    try:
        saved = checkpoint.read_run_config(workdir, "classifier", command=f"name it in {field}")
    except errors.RunError as err:
        raise errors.ConfigError(f"{field}: {err}") from err
    theirs, ours = saved.data.name.split("/")[0], config.data.name.split("/")[0]
    checks.require(
        theirs == ours,
        f"{field} is a classifier of {saved.data.name!r}, but this run's data set is "
        f"{config.data.name!r}: name a classifier trained on the same data set.",
    )


def validate_ctrl(config: ml_collections.ConfigDict) -> input_pipeline.DatasetInfo:
    """Raises a ``ValueError`` naming the first bad field; returns the data set's info."""

    checks.require(config.task == "ctrl", f"config.task must be 'ctrl', got {config.task!r}.")
    m = config.model
    checks.require(
        m.name in models.CTRL_MODELS,
        f"config.model.name must be one of {list(models.CTRL_MODELS)}.",
    )
    checks.require(
        m.dtype in DTYPES,
        f"config.model.dtype must be one of {list(DTYPES)}.",
    )
    checks.require(m.feature_dim >= 1, "config.model.feature_dim must be >= 1.")
    checks.require(len(m.channels) >= 1, "config.model.channels must name at least one stage.")
    validate_csc(m.csc)
    c = config.ctrl
    checks.require(c.objective in OBJECTIVES, f"config.ctrl.objective must be one of {OBJECTIVES}.")
    checks.require(c.eps_sq > 0, f"config.ctrl.eps_sq must be > 0, got {c.eps_sq!r}.")
    checks.require(
        checks.is_int(c.n_inner) and c.n_inner >= 1, "config.ctrl.n_inner must be an int >= 1."
    )
    checks.require(c.pair_lam >= 0, f"config.ctrl.pair_lam must be >= 0, got {c.pair_lam!r}.")
    checks.require(
        c.objective != "unsupervised" or c.pair_lam > 0,
        "config.ctrl.pair_lam must be > 0 with the unsupervised objective (its sample-wise term).",
    )
    checks.require(
        c.pairwise in ops.SAMPLE_DISTANCES, f"config.ctrl.pairwise in {ops.SAMPLE_DISTANCES}."
    )
    checks.require(
        c.pair_players in PAIR_PLAYERS,
        f"config.ctrl.pair_players must be one of {PAIR_PLAYERS}, got {c.pair_players!r}.",
    )
    checks.require(
        c.objective != "unsupervised" or c.pair_players == "both",
        "config.ctrl.pair_players must be 'both' with the unsupervised objective (its sample-wise "
        "term is part of the encoder's objective too).",
    )
    checks.require(c.code_lam >= 0, f"config.ctrl.code_lam must be >= 0, got {c.code_lam!r}.")
    checks.require(
        c.enc_lr_scale > 0, f"config.ctrl.enc_lr_scale must be > 0, got {c.enc_lr_scale!r}."
    )
    warmup = c.warmup_steps
    checks.require(
        checks.is_int(warmup) and warmup >= 0,
        f"config.ctrl.warmup_steps must be an integer >= 0, got {warmup!r}.",
    )
    checks.require(
        not warmup or c.objective != "unsupervised",
        "config.ctrl.warmup_steps needs labels (its encoder maximises the rate reduction ΔR(Z) of "
        "the classes): set it to 0 with the unsupervised objective.",
    )
    checks.require(
        config.eval.feature_net in ("random", "classifier"),
        "config.eval.feature_net: random|classifier",
    )
    validate_fidelity_classifier(config)
    optim.validate(config.optim, "config.optim")
    validate_schedule(config)
    info = validate_data(config.data)
    models.get_ctrl_models(  # checks that the strides divide the image size
        m.name, image_shape=info.image_shape, channels=tuple(m.channels), csc=dict(m.csc)
    )
    return info
